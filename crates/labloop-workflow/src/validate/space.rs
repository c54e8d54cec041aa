//! The search space: protocol grids and their safety against the instruments, formulation
//! spaces, and the candidates they enumerate.

use super::*;

pub(super) fn check_space(c: &mut Checker<'_>, workflow: &Workflow) {
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
                Ok(()) => check_protocol_safety(c, workflow, &space),
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
            let steps = spec.soc_breakpoints.len().saturating_sub(1);
            for (i, ex) in spec.exclude.iter().enumerate() {
                if ex.len() != steps {
                    c.report(
                        &format!("{base}.exclude[{i}]"),
                        format!("expected one C-rate per step ({steps}), got {}", ex.len()),
                    );
                }
            }
            c.positive(&format!("{base}.finish.c_rate"), spec.finish.c_rate);
        }
        SearchSpaceSpec::Formulation(spec) => {
            let base = "campaign.search_space.formulation";
            c.positive(&format!("{base}.total"), spec.total);
            if spec.components.len() < 2 {
                c.report(
                    &format!("{base}.components"),
                    format!(
                        "a mixture needs at least 2 components, got {}",
                        spec.components.len()
                    ),
                );
            }
            let mut names = HashSet::new();
            for (i, comp) in spec.components.iter().enumerate() {
                let path = format!("{base}.components[{i}]");
                check_plain_name(c, &format!("{path}.name"), &comp.name);
                if !names.insert(comp.name.as_str()) {
                    c.report(
                        &format!("{path}.name"),
                        format!("component `{}` is listed twice", comp.name),
                    );
                }
                if !(comp.min >= 0.0 && comp.min <= comp.max && comp.max <= spec.total) {
                    c.report(
                        &path,
                        format!(
                            "expected 0 ≤ min ≤ max ≤ total ({}), got min {} and max {}",
                            spec.total, comp.min, comp.max
                        ),
                    );
                }
            }
            let low: f64 = spec.components.iter().map(|x| x.min).sum();
            let high: f64 = spec.components.iter().map(|x| x.max).sum();
            if spec.components.len() >= 2 && (low > spec.total + 1e-9 || high < spec.total - 1e-9) {
                c.report(
                    &format!("{base}.components"),
                    format!(
                        "no mixture fits: the minimums sum to {} and the maximums to {}, but the fractions must sum to {}",
                        round9(low),
                        round9(high),
                        spec.total
                    ),
                );
            }
            for (i, p) in spec.parameters.iter().enumerate() {
                let path = format!("{base}.parameters[{i}]");
                check_plain_name(c, &format!("{path}.name"), &p.name);
                if !names.insert(p.name.as_str()) {
                    c.report(
                        &format!("{path}.name"),
                        format!("`{}` is named twice", p.name),
                    );
                }
                let kinds: Vec<&str> = [
                    ("`continuous`", p.continuous.is_some()),
                    ("`integer`", p.integer.is_some()),
                    ("`categorical`", p.categorical.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, set)| set.then_some(name))
                .collect();
                if kinds.len() != 1 {
                    let got = if kinds.is_empty() {
                        "none".to_owned()
                    } else {
                        kinds.join(" and ")
                    };
                    c.report(
                        &path,
                        format!("expected exactly one of `continuous`, `integer`, `categorical`, got {got}"),
                    );
                }
                if let Some(r) = p.continuous
                    && !(r.min.is_finite() && r.max.is_finite() && r.min < r.max)
                {
                    c.report(
                        &format!("{path}.continuous"),
                        format!("expected min < max, got {} and {}", r.min, r.max),
                    );
                }
                if let Some(r) = p.integer
                    && r.min > r.max
                {
                    c.report(
                        &format!("{path}.integer"),
                        format!("expected min ≤ max, got {} and {}", r.min, r.max),
                    );
                }
                if let Some(choices) = &p.categorical {
                    for (k, choice) in choices.iter().enumerate() {
                        check_plain_name(c, &format!("{path}.categorical[{k}]"), choice);
                    }
                    let unique: HashSet<_> = choices.iter().collect();
                    if choices.is_empty() || unique.len() != choices.len() {
                        c.report(
                            &format!("{path}.categorical"),
                            "expected a list of distinct choices",
                        );
                    }
                }
            }
            if spec.candidates == 0 {
                c.report(
                    &format!("{base}.candidates"),
                    "expected at least 1 candidate",
                );
            }
            if u64::from(spec.candidates) > MAX_CANDIDATES {
                c.report(
                    &format!("{base}.candidates"),
                    format!("{} candidates: at most {MAX_CANDIDATES}", spec.candidates),
                );
            }
        }
    }
}

/// Every protocol the campaign may run must stay within every cycler's limits.
fn check_protocol_safety(
    c: &mut Checker<'_>,
    workflow: &Workflow,
    space: &labloop_core::StepProtocolSpace,
) {
    let protocols = space.enumerate();
    let highest = protocols
        .iter()
        .flat_map(|p| p.c_rates())
        .fold(0.0_f64, f64::max);
    for (i, inst) in workflow.instruments.iter().enumerate() {
        if inst.kind != InstrumentKind::Cycler {
            continue;
        }
        if highest > inst.safety.max_c_rate {
            let over = protocols
                .iter()
                .filter(|p| p.c_rates().iter().any(|r| *r > inst.safety.max_c_rate))
                .count();
            c.report_instrument(
                i,
                ".safety.max_c_rate",
                format!(
                    "{over} of {} protocols in the search space charge faster than this limit ({} C; the fastest asks {highest} C): raise the limit or narrow free_steps",
                    protocols.len(),
                    inst.safety.max_c_rate
                ),
            );
        }
        if space.finish.cv_voltage_v > inst.safety.max_voltage_v {
            c.report_instrument(
                i,
                ".safety.max_voltage_v",
                format!(
                    "the protocols hold {} V, above this limit ({} V)",
                    space.finish.cv_voltage_v, inst.safety.max_voltage_v
                ),
            );
        }
    }
}
