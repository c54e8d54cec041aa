//! Checks on a workflow whose shape is right: values in range, names unique, references that
//! resolve, a step graph without cycles, a search space that admits candidates, protocols within the
//! instruments' safety limits. Every problem is reported, not just the first.

use crate::Source;
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::locate::locate_or_start;
use crate::refs::references;
use crate::spec::{
    CYCLE_LIFE, DriverKind, InstrumentKind, InstrumentSpec, RecordField, SearchSpaceSpec,
    StepAction, TransportSpec, VendorVariable, Workflow, parse_duration, variable_number,
};
use instruments::check_instruments;
use labloop_core::limits::MAX_CANDIDATES;
use space::check_space;
use std::collections::{BTreeMap, HashMap, HashSet};
use steps::check_steps;

mod instruments;
mod space;
mod steps;

/// Fewest early cycles any prediction step accepts.
pub const MIN_PREDICT_CYCLES: u32 = 20;

struct Checker<'a> {
    sources: &'a [Source],
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn report(&mut self, path: &str, message: impl Into<String>) {
        let main = &self.sources[0];
        let (line, column) = locate_or_start(&main.text, path);
        self.problems
            .push(Diagnostic::new(&main.file, line, column, path, message));
    }

    /// Reports on `instruments[i]...`, in the file that declared that instrument.
    fn report_instrument(&mut self, i: usize, rest: &str, message: impl Into<String>) {
        let source = self
            .sources
            .iter()
            .rev()
            .find(|s| i >= s.first_instrument)
            .unwrap_or(&self.sources[0]);
        let local = i - source.first_instrument;
        let path = format!("instruments[{local}]{rest}");
        let (line, column) = locate_or_start(&source.text, &path);
        self.problems
            .push(Diagnostic::new(&source.file, line, column, &path, message));
    }

    fn positive(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.report(path, format!("expected a positive number, got {value}"));
        }
    }

    fn duration(&mut self, path: &str, text: &str) -> Option<f64> {
        match parse_duration(text) {
            Ok(s) => Some(s),
            Err(e) => {
                self.report(path, e);
                None
            }
        }
    }
}

/// A sum shown without floating-point noise (`0.3`, not `0.30000000000000004`).
fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// Reports `name` at `path` unless it is a plain name (it is shown in reports and dashboards).
fn check_plain_name(c: &mut Checker<'_>, path: &str, name: &str) {
    use labloop_core::limits::MAX_NAME_LEN;
    if !labloop_core::limits::is_plain_name(name) {
        let shown: String = name.chars().take(40).collect();
        c.report(
            path,
            format!(
                "`{shown}` is not a plain name: use at most {MAX_NAME_LEN} letters, digits, spaces and `_ - . + % / ( ) ,`"
            ),
        );
    }
}

/// Reports `name` at `path` unless it is made of letters, digits, `-` and `_`.
fn check_valid_name(c: &mut Checker<'_>, path: &str, name: &str) {
    if !valid_name(name) {
        c.report(
            path,
            format!("`{name}` is not a valid name: use letters, digits, `-` and `_`"),
        );
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

pub(crate) fn validate(workflow: &Workflow, sources: &[Source]) -> Vec<Diagnostic> {
    let mut c = Checker {
        sources,
        problems: Vec::new(),
    };
    let name = &workflow.campaign.name;
    if !valid_name(name) {
        c.report(
            "campaign.name",
            format!("`{name}` is not a valid name: use letters, digits, `-` and `_`"),
        );
    }
    if workflow
        .store
        .url
        .as_deref()
        .is_some_and(crate::url_has_password)
    {
        c.report(
            "store.url",
            "a password in the store URL would be stored with the campaign and shown to viewers: \
             leave it out and set PGPASSWORD (or give the URL with --store)",
        );
    }
    check_space(&mut c, workflow);
    check_prior_data(&mut c, workflow);
    check_optimizer_and_stopping(&mut c, workflow);
    check_plugins(&mut c, workflow);
    check_instruments(&mut c, workflow);
    check_steps(&mut c, workflow);
    check_objective(&mut c, workflow);
    c.problems
}

/// Plugins: plain unique names, a program to start, a call timeout that reads; everything that
/// names a plugin names a declared one.
fn check_plugins(c: &mut Checker<'_>, workflow: &Workflow) {
    let mut names = HashSet::new();
    for (i, plugin) in workflow.plugins.iter().enumerate() {
        let path = format!("plugins[{i}]");
        check_valid_name(c, &format!("{path}.name"), &plugin.name);
        if !names.insert(plugin.name.as_str()) {
            c.report(
                &format!("{path}.name"),
                format!("plugin `{}` is declared twice", plugin.name),
            );
        }
        if plugin.command.first().is_none_or(|p| p.trim().is_empty()) {
            c.report(
                &format!("{path}.command"),
                "expected the program and its arguments, e.g. `[python3, plugins/eis.py]`",
            );
        }
        c.duration(&format!("{path}.call_timeout"), &plugin.call_timeout);
    }
    let mut uses: Vec<(String, &str)> = Vec::new();
    for (i, step) in workflow.experiment.steps.iter().enumerate() {
        for action in step.actions() {
            if let Some(name) = action.plugin() {
                uses.push((
                    format!("experiment.steps[{i}].{}.plugin", action.key()),
                    name,
                ));
            }
        }
    }
    for (path, name) in uses {
        if !names.contains(name) {
            let mut message = format!("`{name}` is not a plugin of this workflow");
            match did_you_mean(name, names.iter()) {
                Some(hint) => message.push_str(&format!("; did you mean `{hint}`?")),
                None => message.push_str(": declare it under `plugins:`"),
            }
            c.report(&path, message);
        }
    }
    for (i, inst) in workflow.instruments.iter().enumerate() {
        if let Some(TransportSpec::Plugin { name }) = &inst.transport
            && !names.contains(name.as_str())
        {
            c.report_instrument(
                i,
                ".transport.plugin.name",
                format!("`{name}` is not a plugin of this workflow: declare it under `plugins:`"),
            );
        }
    }
}

/// A measured objective names a step's output; cycle life is labloop's own.
fn check_objective(c: &mut Checker<'_>, workflow: &Workflow) {
    let objective = &workflow.campaign.objective;
    let path = "campaign.objective";
    match (&objective.from, objective.measured()) {
        (None, _) if objective.name != CYCLE_LIFE => c.report(
            &format!("{path}.name"),
            format!(
                "`{}` is not labloop's own objective (`{CYCLE_LIFE}`): say where it is measured with `from: steps.<id>.outputs.<name>`",
                objective.name
            ),
        ),
        (None, _) => {}
        (Some(from), None) => c.report(
            &format!("{path}.from"),
            format!("expected `steps.<id>.outputs.<name>`, got `{from}`"),
        ),
        (Some(_), Some(_)) if objective.name == CYCLE_LIFE => c.report(
            &format!("{path}.name"),
            format!("`{CYCLE_LIFE}` is the predicted or observed life: give a measured objective its own name"),
        ),
        (Some(_), Some((step, _))) => {
            if !workflow.campaign.prior_data.is_empty() {
                c.report(
                    "campaign.prior_data",
                    format!(
                        "prior cells carry cycle lives, not `{}`: a campaign with a measured objective cannot start from them",
                        objective.name
                    ),
                );
            }
            let ids = workflow.step_ids();
            if !ids.iter().any(|id| id == step) {
                c.report(
                    &format!("{path}.from"),
                    format!("no step `{step}`; the steps are: {}", ids.join(", ")),
                );
            }
        }
    }
}

fn check_prior_data(c: &mut Checker<'_>, workflow: &Workflow) {
    for (k, prior) in workflow.campaign.prior_data.iter().enumerate() {
        let base = format!("campaign.prior_data[{k}]");
        check_plain_name(c, &format!("{base}.dataset"), &prior.dataset);
        let f = prior.end_of_life_fraction;
        if !(f > 0.0 && f < 1.0) {
            c.report(
                &format!("{base}.end_of_life_fraction"),
                format!(
                    "{f} is not a fraction between 0 and 1 (0.8: 80 % of the initial capacity)"
                ),
            );
        }
        if prior.cells.is_empty() {
            c.report(
                &format!("{base}.cells"),
                "no cells: name the dataset's cells to use and the candidate each ran",
            );
        }
        for (name, cell) in &prior.cells {
            if let Some(life) = cell.life
                && !(life.is_finite() && life > 0.0)
            {
                c.report(
                    &format!("{base}.cells.{name}.life"),
                    format!("{life} is not a cycle life"),
                );
            }
        }
    }
}

fn check_optimizer_and_stopping(c: &mut Checker<'_>, workflow: &Workflow) {
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
    let stop = &workflow.stopping;
    if stop.max_rounds == 0 {
        c.report("stopping.max_rounds", "expected at least 1 round");
    }
    if stop.max_cells == Some(0) {
        c.report("stopping.max_cells", "expected at least 1 cell");
    }
    if let Some(days) = stop.max_days {
        c.positive("stopping.max_days", days);
    }
    if let Some(p) = stop.best_probability
        && !(p > 0.0 && p < 1.0)
    {
        c.report(
            "stopping.best_probability",
            format!("expected a probability between 0 and 1 (exclusive), got {p}"),
        );
    }
}
