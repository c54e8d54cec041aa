//! Checks on a workflow that parsed: values in range, references that resolve, a search space that
//! admits protocols, steps in a runnable order. Every problem is reported, not just the first.

use crate::diagnostic::Diagnostic;
use crate::locate::locate;
use crate::spec::{SearchSpaceSpec, StepSpec, Workflow};
use std::collections::HashSet;

struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn report(&mut self, path: &str, message: impl Into<String>) {
        let (line, column) = locate(self.text, path);
        self.problems
            .push(Diagnostic::new(self.file, line, column, path, message));
    }

    fn positive(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.report(path, format!("expected a positive number, got {value}"));
        }
    }
}

pub(crate) fn validate(workflow: &Workflow, text: &str, file: &str) -> Vec<Diagnostic> {
    let mut c = Checker {
        text,
        file,
        problems: Vec::new(),
    };
    let name = &workflow.campaign.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        c.report(
            "campaign.name",
            format!("`{name}` is not a valid name: use letters, digits, `-` and `_`"),
        );
    }
    match &workflow.campaign.search_space {
        SearchSpaceSpec::ChargeProtocol(spec) => {
            let base = "campaign.search_space.charge_protocol";
            c.positive(&format!("{base}.charge_time_min"), spec.charge_time_min);
            let space = spec.to_space();
            match space.check() {
                Err(e) => {
                    let field = match e {
                        labloop_core::ProtocolSpaceError::Breakpoints(_) => "soc_breakpoints",
                        labloop_core::ProtocolSpaceError::ChargeTime(_) => "charge_time_min",
                        _ => "free_steps",
                    };
                    c.report(&format!("{base}.{field}"), e.to_string());
                }
                Ok(()) if space.enumerate().is_empty() => c.report(
                    base,
                    "this template admits no valid protocol: no combination of the free steps leaves a last step within last_step's bounds in the charge time",
                ),
                Ok(()) => {}
            }
            let bounds = spec.last_step;
            if bounds.min_c_rate > bounds.max_c_rate {
                c.report(
                    &format!("{base}.last_step"),
                    format!(
                        "min_c_rate {} is above max_c_rate {}",
                        bounds.min_c_rate, bounds.max_c_rate
                    ),
                );
            }
            for (i, ex) in spec.exclude.iter().enumerate() {
                if ex.len() != spec.soc_breakpoints.len().saturating_sub(1) {
                    c.report(
                        &format!("{base}.exclude[{i}]"),
                        format!(
                            "expected one C-rate per step ({}), got {}",
                            spec.soc_breakpoints.len().saturating_sub(1),
                            ex.len()
                        ),
                    );
                }
            }
            c.positive(&format!("{base}.finish.c_rate"), spec.finish.c_rate);
        }
    }

    let opt = &workflow.optimizer;
    if opt.batch_size == 0 {
        c.report(
            "optimizer.batch_size",
            "expected at least 1 experiment per round",
        );
    }
    if !(opt.exploration.is_finite() && opt.exploration >= 0.0) {
        c.report(
            "optimizer.exploration",
            format!("expected a number ≥ 0, got {}", opt.exploration),
        );
    }
    if opt.restarts == 0 {
        c.report("optimizer.restarts", "expected at least 1 start");
    }
    if workflow.stopping.max_rounds == 0 {
        c.report("stopping.max_rounds", "expected at least 1 round");
    }
    if workflow.stopping.max_cells == Some(0) {
        c.report("stopping.max_cells", "expected at least 1 cell");
    }

    if workflow.instruments.is_empty() {
        c.report("instruments", "expected at least one instrument");
    }
    let mut names = HashSet::new();
    for (i, inst) in workflow.instruments.iter().enumerate() {
        if !names.insert(inst.name.as_str()) {
            c.report(
                &format!("instruments[{i}].name"),
                format!("instrument `{}` is declared twice", inst.name),
            );
        }
        if inst.channels == 0 {
            c.report(
                &format!("instruments[{i}].channels"),
                "expected at least 1 channel",
            );
        }
        c.positive(
            &format!("instruments[{i}].clock_acceleration"),
            inst.clock_acceleration,
        );
    }

    let steps = &workflow.experiment.steps;
    let mut cycles_before: Option<u32> = None;
    for (i, step) in steps.iter().enumerate() {
        match step {
            StepSpec::Cycle(cycle) => {
                if cycle.cycles == 0 {
                    c.report(&format!("experiment.steps[{i}].cycle.cycles"), "expected at least 1 cycle");
                }
                c.positive(&format!("experiment.steps[{i}].cycle.discharge_c_rate"), cycle.discharge_c_rate);
                cycles_before = Some(cycles_before.unwrap_or(0) + cycle.cycles);
            }
            StepSpec::Predict(_) => match cycles_before {
                None => c.report(&format!("experiment.steps[{i}]"), "`predict` needs a `cycle` step before it"),
                Some(n) if n < 20 => c.report(&format!("experiment.steps[{i}]"), format!("`predict` needs at least 20 early cycles before it, the steps before run {n}")),
                Some(_) => {}
            },
        }
    }
    if cycles_before.is_none() {
        c.report(
            "experiment.steps",
            "expected a `cycle` step: an experiment must cycle its cell",
        );
    }
    c.problems
}
