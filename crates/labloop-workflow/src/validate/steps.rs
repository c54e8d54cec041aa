//! The experiment's steps: their actions, needs and order, and what each can rely on from the
//! steps before it.

use super::*;

pub(super) fn check_steps(c: &mut Checker<'_>, workflow: &Workflow) {
    let steps = &workflow.experiment.steps;
    if steps.is_empty() {
        c.report("experiment.steps", "expected at least one step");
        return;
    }
    if steps.len() > labloop_core::limits::MAX_STEPS {
        c.report(
            "experiment.steps",
            format!(
                "{} steps: at most {}",
                steps.len(),
                labloop_core::limits::MAX_STEPS
            ),
        );
        return;
    }
    let ids = workflow.step_ids();
    let needs = workflow.step_needs();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let instruments: HashMap<&str, InstrumentKind> = workflow
        .instruments
        .iter()
        .map(|i| (i.name.as_str(), i.kind))
        .collect();
    let mut seen = HashSet::new();
    for (i, step) in steps.iter().enumerate() {
        let path = format!("experiment.steps[{i}]");
        let actions = step.actions();
        if actions.len() != 1 {
            let keys: Vec<&str> = actions.iter().map(StepAction::key).collect();
            c.report(
                &path,
                format!(
                    "a step needs exactly one action (`build_cell`, `rest`, `formation`, `cycle`, `predict`, `cycle_to_eol`, `approve`), got {}",
                    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
                ),
            );
            continue;
        }
        if !valid_name(&ids[i]) {
            c.report(
                &format!("{path}.id"),
                format!(
                    "`{}` is not a valid step id: use letters, digits, `-` and `_`",
                    ids[i]
                ),
            );
        }
        if !seen.insert(ids[i].as_str()) {
            let place = if step.id.is_some() {
                format!("{path}.id")
            } else {
                path.clone()
            };
            c.report(
                &place,
                format!("step id `{}` is used twice; give the step an `id:`", ids[i]),
            );
        }
        for (j, need) in needs[i].iter().enumerate() {
            if !index.contains_key(need.as_str()) {
                let mut message = format!("`{need}` is not a step");
                if let Some(hint) = did_you_mean(need, ids.iter()) {
                    message.push_str(&format!("; did you mean `{hint}`?"));
                }
                c.report(&format!("{path}.needs[{j}]"), message);
            } else if need == &ids[i] && step.needs.is_some() {
                c.report(&format!("{path}.needs[{j}]"), "a step cannot need itself");
            }
        }
        if let Some(t) = &step.timeout
            && let Some(s) = c.duration(&format!("{path}.timeout"), t)
            && s <= 0.0
        {
            c.report(&format!("{path}.timeout"), "expected a timeout above zero");
        }
        c.duration(&format!("{path}.backoff"), &step.backoff);
        for (j, r) in step.resources.iter().enumerate() {
            if !instruments.contains_key(r.as_str()) {
                let mut message = format!("`{r}` is not an instrument; resources name instruments");
                if let Some(hint) = did_you_mean(r, instruments.keys()) {
                    message.push_str(&format!("; did you mean `{hint}`?"));
                }
                c.report(&format!("{path}.resources[{j}]"), message);
            }
        }
        check_action(c, workflow, &path, actions[0], &instruments);
    }
    if !c.problems.is_empty() {
        return;
    }
    let order = match crate::order::step_order(&ids, &needs) {
        Ok(order) => order,
        Err(cycle) => {
            let first = index[cycle[0].as_str()];
            c.report(
                &format!("experiment.steps[{first}].needs"),
                format!("the steps form a cycle: {}", cycle.join(" → ")),
            );
            return;
        }
    };
    check_flow(c, workflow, &ids, &needs, &order);
}

fn check_action(
    c: &mut Checker<'_>,
    workflow: &Workflow,
    path: &str,
    action: StepAction<'_>,
    instruments: &HashMap<&str, InstrumentKind>,
) {
    let key = action.key();
    let here = format!("{path}.{key}");
    match action {
        StepAction::BuildCell(b) => {
            match instruments.get(b.robot.as_str()) {
                Some(InstrumentKind::CellBuilder) => {}
                Some(_) => c.report(
                    &format!("{here}.robot"),
                    format!("`{}` is a cycler, not a cell builder", b.robot),
                ),
                None => {
                    let mut message = format!("`{}` is not an instrument", b.robot);
                    if let Some(hint) = did_you_mean(&b.robot, instruments.keys()) {
                        message.push_str(&format!("; did you mean `{hint}`?"));
                    }
                    c.report(&format!("{here}.robot"), message);
                }
            }
            c.positive(&format!("{here}.electrolyte_ul"), b.electrolyte_ul);
        }
        StepAction::Rest(r) => {
            c.duration(&format!("{here}.duration"), &r.duration);
        }
        StepAction::Formation(f) => {
            if f.cycles == 0 {
                c.report(&format!("{here}.cycles"), "expected at least 1 cycle");
            }
            c.positive(&format!("{here}.c_rate"), f.c_rate);
        }
        StepAction::Cycle(cycle) => {
            if cycle.cycles == 0 {
                c.report(&format!("{here}.cycles"), "expected at least 1 cycle");
            }
            c.positive(&format!("{here}.discharge_c_rate"), cycle.discharge_c_rate);
            match (&workflow.campaign.search_space, &cycle.protocol) {
                (SearchSpaceSpec::ChargeProtocol(_), Some(_)) => c.report(
                    &format!("{here}.protocol"),
                    "the search space chooses the charge protocol; remove `protocol` here",
                ),
                (SearchSpaceSpec::Formulation(_), None) => c.report(
                    &here,
                    "a formulation campaign cycles with a fixed protocol: add `protocol: {c_rates: [...], finish: {c_rate: 1, cv_voltage_v: 3.6}}`",
                ),
                (_, Some(p)) => {
                    if p.c_rates.is_empty() || p.c_rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
                        c.report(&format!("{here}.protocol.c_rates"), "expected one or more positive C-rates");
                    }
                    if !(p.soc_end > 0.0 && p.soc_end <= 1.0) {
                        c.report(&format!("{here}.protocol.soc_end"), format!("expected a SOC in (0, 1], got {}", p.soc_end));
                    }
                }
                _ => {}
            }
        }
        StepAction::Predict(p) => {
            if p.model.trim().is_empty() {
                c.report(&format!("{here}.model"), "expected a model name or file");
            }
        }
        StepAction::CycleToEol(e) => {
            if !(e.end_fraction > 0.0 && e.end_fraction < 1.0) {
                c.report(
                    &format!("{here}.end_fraction"),
                    format!(
                        "expected a fraction between 0 and 1, got {}",
                        e.end_fraction
                    ),
                );
            }
        }
        StepAction::Approve(a) => {
            if let Err(e) = references(&a.message) {
                c.report(&format!("{here}.message"), e);
            }
        }
        StepAction::Run(r) => check_valid_name(c, &format!("{here}.step"), &r.step),
        StepAction::Measure(m) => {
            check_valid_name(c, &format!("{here}.measurement"), &m.measurement);
        }
    }
}

/// What each step can rely on from the steps before it.
fn check_flow(
    c: &mut Checker<'_>,
    workflow: &Workflow,
    ids: &[String],
    needs: &[Vec<String>],
    order: &[usize],
) {
    let steps = &workflow.experiment.steps;
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // Ancestors of each step, in topological order.
    let mut ancestors: Vec<HashSet<usize>> = vec![HashSet::new(); steps.len()];
    for &i in order {
        let mut set = HashSet::new();
        for need in &needs[i] {
            let j = index[need.as_str()];
            set.insert(j);
            set.extend(ancestors[j].iter().copied());
        }
        ancestors[i] = set;
    }
    let builds: Vec<usize> = (0..steps.len())
        .filter(|&i| matches!(steps[i].action(), StepAction::BuildCell(_)))
        .collect();
    let mut cycles = 0;
    let mut objective = 0;
    let mut channel_steps: Vec<usize> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let path = format!("experiment.steps[{i}]");
        let action = step.action();
        let early: u32 = ancestors[i]
            .iter()
            .filter_map(|&j| steps[j].cycle.as_ref().map(|c| c.cycles))
            .sum();
        if action.uses_channel() {
            channel_steps.push(i);
            if let Some(&b) = builds.first()
                && !ancestors[i].contains(&b)
            {
                c.report(
                    &path,
                    format!(
                        "`{}` runs on a cell that step `{}` builds: add it to `needs`",
                        ids[i], ids[b]
                    ),
                );
            }
        }
        match action {
            StepAction::Cycle(_) => cycles += 1,
            StepAction::Predict(_) => {
                objective += 1;
                if early == 0 {
                    c.report(&path, "`predict` needs a `cycle` step before it");
                } else if early < MIN_PREDICT_CYCLES {
                    c.report(
                        &path,
                        format!("`predict` needs at least {MIN_PREDICT_CYCLES} early cycles before it, the steps before run {early}"),
                    );
                }
            }
            StepAction::CycleToEol(e) => {
                objective += 1;
                if early == 0 {
                    c.report(
                        &path,
                        "`cycle_to_eol` goes on from a `cycle` step: add one to `needs`",
                    );
                } else if e.max_cycles <= early {
                    c.report(
                        &format!("{path}.cycle_to_eol.max_cycles"),
                        format!(
                            "expected more than the {early} cycles run before it, got {}",
                            e.max_cycles
                        ),
                    );
                }
            }
            StepAction::BuildCell(_) if builds.len() > 1 => {
                c.report(
                    &path,
                    "an experiment builds one cell: only one `build_cell` step",
                );
            }
            _ => {}
        }
        // Runtime references must name an earlier step and one of its outputs.
        if let StepAction::Approve(a) = action {
            for r in references(&a.message).unwrap_or_default() {
                let parts: Vec<&str> = r.expr.split('.').collect();
                let ok = match parts.as_slice() {
                    ["steps", id, "outputs", output] => match index.get(id) {
                        Some(&j) if ancestors[i].contains(&j) => {
                            match steps[j].action().outputs() {
                                // A plugin's outputs are checked against its `hello`.
                                None => true,
                                Some(offered) if offered.contains(output) => true,
                                Some(offered) => {
                                    c.report(
                                        &format!("{path}.approve.message"),
                                        format!(
                                            "step `{id}` has no output `{output}`; it offers: {}",
                                            offered.join(", ")
                                        ),
                                    );
                                    continue;
                                }
                            }
                        }
                        Some(_) => {
                            c.report(
                                &format!("{path}.approve.message"),
                                format!("`{}` refers to step `{id}`, which does not run before this one: add it to `needs`", r.expr),
                            );
                            continue;
                        }
                        None => false,
                    },
                    _ => false,
                };
                if !ok {
                    c.report(
                        &format!("{path}.approve.message"),
                        format!("unknown reference `{}`; expected `steps.<id>.outputs.<name>` of an earlier step", r.expr),
                    );
                }
            }
        }
    }
    // Steps on the channel hold it one after another, never two at once.
    for (a, &i) in channel_steps.iter().enumerate() {
        for &j in &channel_steps[a + 1..] {
            if !ancestors[j].contains(&i) && !ancestors[i].contains(&j) {
                c.report(
                    &format!("experiment.steps[{j}]"),
                    format!(
                        "`{}` and `{}` both use the cell's channel: one must `need` the other",
                        ids[i], ids[j]
                    ),
                );
            }
        }
    }
    if cycles == 0 {
        c.report(
            "experiment.steps",
            "expected a `cycle` step: an experiment must cycle its cell",
        );
    }
    if objective == 0 && workflow.campaign.objective.from.is_none() {
        c.report(
            "experiment.steps",
            "expected a `predict` or `cycle_to_eol` step: something must yield the objective",
        );
    }
    let predicts = steps.iter().filter(|s| s.predict.is_some()).count();
    let eols = steps.iter().filter(|s| s.cycle_to_eol.is_some()).count();
    if predicts > 1 || eols > 1 {
        let mut counts = BTreeMap::new();
        counts.insert("predict", predicts);
        counts.insert("cycle_to_eol", eols);
        c.report(
            "experiment.steps",
            format!("expected at most one `predict` and one `cycle_to_eol` step, got {counts:?}"),
        );
    }
}
