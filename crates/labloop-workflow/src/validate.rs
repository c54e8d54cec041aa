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
use labloop_core::limits::MAX_CANDIDATES;
use std::collections::{BTreeMap, HashMap, HashSet};

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

fn check_space(c: &mut Checker<'_>, workflow: &Workflow) {
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

/// A vendor cycler's procedure and its variables: every value named is one labloop has, every
/// protocol of the campaign's space fits the variables given, and a driver that runs no vendor
/// procedure has no `vendor` section.
fn check_vendor(c: &mut Checker<'_>, workflow: &Workflow, i: usize, inst: &InstrumentSpec) {
    let wants_vendor = inst.driver.is_vendor();
    let Some(vendor) = &inst.vendor else {
        if wants_vendor {
            let wanted = if inst.driver == DriverKind::Neware {
                "`vendor: {step_dir: FOLDER, nominal_capacity_ah: 1.1}`"
            } else {
                "`vendor: {procedure: NAME, nominal_capacity_ah: 1.1, variables: {1: charge_c_rate_1, ...}}`"
            };
            c.report_instrument(i, "", format!("this driver needs {wanted}"));
        }
        return;
    };
    if !wants_vendor {
        c.report_instrument(
            i,
            ".vendor",
            "only vendor drivers (maccor, arbin, neware) run a vendor procedure",
        );
        return;
    }
    if inst.kind != InstrumentKind::Cycler {
        c.report_instrument(i, ".kind", "vendor drivers drive cyclers");
    }
    if inst.driver == DriverKind::Neware {
        if vendor.step_dir.is_none() {
            c.report_instrument(
                i,
                ".vendor",
                "the neware driver writes each test's step file: give `step_dir` (a folder the BTS PC reads; `step_dir_on_cycler` if it names it otherwise)",
            );
        }
        if !vendor.variables.is_empty() {
            c.report_instrument(
                i,
                ".vendor.variables",
                "the neware driver writes the protocol into the step file: it takes no variables",
            );
        }
        if !vendor.procedure.is_empty() {
            c.report_instrument(
                i,
                ".vendor.procedure",
                "the neware driver writes each test's step file: it runs no prepared procedure",
            );
        }
    } else if vendor.procedure.trim().is_empty() {
        c.report_instrument(i, ".vendor.procedure", "expected the procedure's name");
    }
    for (field, value) in [
        ("nominal_capacity_ah", vendor.nominal_capacity_ah),
        ("poll_interval_s", vendor.poll_interval_s),
        ("reply_timeout_s", vendor.reply_timeout_s),
        ("offline_after_s", vendor.offline_after_s),
    ] {
        if !(value.is_finite() && value > 0.0) {
            c.report_instrument(
                i,
                &format!(".vendor.{field}"),
                format!("expected a positive number, got {value}"),
            );
        }
    }
    // What each adapter's records carry (none reads auxiliary channels yet).
    let carries: &[RecordField] = match inst.driver {
        DriverKind::Arbin => &[
            RecordField::DischargeCurve,
            RecordField::InternalResistance,
            RecordField::ChargeTime,
        ],
        _ => &[RecordField::DischargeCurve, RecordField::ChargeTime],
    };
    let declared_beyond = match &inst.records {
        None => true,
        Some(list) => list.iter().any(|f| !carries.contains(f)),
    };
    if declared_beyond {
        let names: Vec<&str> = carries.iter().map(|f| record_field_name(*f)).collect();
        c.report_instrument(
            i,
            if inst.records.is_some() { ".records" } else { "" },
            format!(
                "this adapter's records carry {} (it reads no auxiliary temperature probe): declare `records: [{}]`",
                names.join(", "),
                names.join(", ")
            ),
        );
    }
    if inst.driver == DriverKind::Arbin && vendor.username.is_none() {
        c.report_instrument(
            i,
            ".vendor",
            "the arbin driver logs in: give `username` (and `password_env`, the variable holding the password)",
        );
    }
    let mut steps_mapped = Vec::new();
    for (number, name) in &vendor.variables {
        if let Err(e) = variable_number(number) {
            c.report_instrument(i, &format!(".vendor.variables.{number}"), e);
        }
        match VendorVariable::parse(name) {
            Ok(VendorVariable::ChargeCRate(k)) => steps_mapped.push(k),
            Ok(_) => {}
            Err(e) => c.report_instrument(i, &format!(".vendor.variables.{number}"), e),
        }
    }
    if let Some(space) = workflow
        .protocol_space()
        .filter(|_| inst.driver != DriverKind::Neware)
    {
        let steps = space.steps();
        let missing: Vec<String> = (1..=steps)
            .filter(|k| !steps_mapped.contains(k))
            .map(|k| format!("charge_c_rate_{k}"))
            .collect();
        if !missing.is_empty() {
            c.report_instrument(
                i,
                ".vendor.variables",
                format!(
                    "the campaign's protocols have {steps} constant-current steps; no procedure variable takes {}",
                    missing.join(", ")
                ),
            );
        }
        if let Some(k) = steps_mapped.iter().find(|&&k| k > steps) {
            c.report_instrument(
                i,
                ".vendor.variables",
                format!("charge_c_rate_{k}: the campaign's protocols have only {steps} steps"),
            );
        }
    }
}

/// A record field's name as the workflow writes it.
fn record_field_name(field: RecordField) -> &'static str {
    match field {
        RecordField::DischargeCurve => "discharge_curve",
        RecordField::InternalResistance => "internal_resistance",
        RecordField::Temperature => "temperature",
        RecordField::ChargeTime => "charge_time",
    }
}

fn check_instruments(c: &mut Checker<'_>, workflow: &Workflow) {
    if !workflow.instruments.is_empty()
        && workflow
            .instruments
            .iter()
            .all(|i| i.kind != InstrumentKind::Cycler)
    {
        c.report(
            "instruments",
            "expected at least one cycler (`kind: cycler`, the default)",
        );
    }
    if workflow.instruments.is_empty() {
        c.report("instruments", "expected at least one instrument");
    }
    let mut names = HashSet::new();
    for (i, inst) in workflow.instruments.iter().enumerate() {
        if !valid_name(&inst.name) {
            c.report_instrument(
                i,
                ".name",
                format!(
                    "`{}` is not a valid name: use letters, digits, `-` and `_`",
                    inst.name
                ),
            );
        }
        if !names.insert(inst.name.as_str()) {
            c.report_instrument(
                i,
                ".name",
                format!("instrument `{}` is declared twice", inst.name),
            );
        }
        if inst.channels == 0 {
            c.report_instrument(i, ".channels", "expected at least 1 channel");
        }
        if !(inst.clock_acceleration.is_finite() && inst.clock_acceleration > 0.0) {
            c.report_instrument(
                i,
                ".clock_acceleration",
                format!(
                    "expected a positive number, got {}",
                    inst.clock_acceleration
                ),
            );
        }
        match (inst.driver, &inst.transport) {
            (DriverKind::Sim, Some(_)) => c.report_instrument(
                i,
                ".transport",
                "the `sim` driver runs in-process and takes no transport",
            ),
            (DriverKind::Serial, Some(TransportSpec::Serial { .. }))
            | (DriverKind::Mqtt, Some(TransportSpec::Mqtt { .. }))
            | (DriverKind::Queue, Some(TransportSpec::Queue { .. }))
            | (DriverKind::Plugin, Some(TransportSpec::Plugin { .. }))
            | (
                DriverKind::Maccor | DriverKind::Arbin | DriverKind::Neware,
                Some(TransportSpec::Tcp { .. }),
            )
            | (DriverKind::Sim, None) => {}
            (driver, _) => {
                let wanted = match driver {
                    DriverKind::Serial => {
                        "`transport: {serial: {port: /dev/ttyUSB0, baud: 115200}}`"
                    }
                    DriverKind::Queue => "`transport: {queue: {capability: coin-cell-robot}}`",
                    DriverKind::Maccor => "`transport: {tcp: {host: maccor-pc, port: 57570}}`",
                    DriverKind::Arbin => "`transport: {tcp: {host: arbin-pc, port: 9031}}`",
                    DriverKind::Neware => "`transport: {tcp: {host: bts-pc, port: 502}}`",
                    DriverKind::Plugin => "`transport: {plugin: {name: my-cycler}}`",
                    _ => {
                        "`transport: {mqtt: {broker: mqtt://host:1883, topic_prefix: labloop/lab/name}}`"
                    }
                };
                c.report_instrument(i, ".transport", format!("this driver needs {wanted}"));
            }
        }
        check_vendor(c, workflow, i, inst);
        if inst.driver == DriverKind::Queue && inst.kind != InstrumentKind::CellBuilder {
            c.report_instrument(
                i,
                ".driver",
                "the queue driver serves cell builders (a cycler streams records: use serial or mqtt)",
            );
        }
        if let Some(TransportSpec::Mqtt {
            broker,
            ca_file,
            client_cert,
            client_key,
            username,
            password_env,
            ..
        }) = &inst.transport
        {
            let tls = broker.starts_with("mqtts://");
            if crate::url_has_password(broker) {
                c.report_instrument(
                    i,
                    ".transport.mqtt.broker",
                    "a password in the broker URL would be stored with the campaign and shown to viewers: \
                     give `username` here and the password in an environment variable named by `password_env`",
                );
            }
            if !(broker.starts_with("mqtt://") || tls) {
                c.report_instrument(
                    i,
                    ".transport.mqtt.broker",
                    format!("expected `mqtt://host:port` or `mqtts://host:port`, got `{broker}`"),
                );
            }
            for (field, set) in [
                ("ca_file", ca_file.is_some()),
                ("client_cert", client_cert.is_some()),
                ("client_key", client_key.is_some()),
            ] {
                if set && !tls {
                    c.report_instrument(
                        i,
                        &format!(".transport.mqtt.{field}"),
                        format!("a TLS setting, but the broker `{broker}` is not mqtts://"),
                    );
                }
            }
            if client_cert.is_some() != client_key.is_some() {
                let missing = if client_cert.is_some() {
                    "client_key"
                } else {
                    "client_cert"
                };
                c.report_instrument(
                    i,
                    ".transport.mqtt",
                    format!("a client certificate needs both client_cert and client_key; `{missing}` is missing"),
                );
            }
            if password_env.is_some() && username.is_none() {
                c.report_instrument(
                    i,
                    ".transport.mqtt.password_env",
                    "a password needs a `username`".to_owned(),
                );
            }
        }
        let s = inst.safety;
        if let Some(min) = s.min_voltage_v
            && min >= s.max_voltage_v
        {
            c.report_instrument(
                i,
                ".safety.min_voltage_v",
                format!("{min} V is not below max_voltage_v ({} V)", s.max_voltage_v),
            );
        }
        for (field, value) in [
            ("max_c_rate", Some(s.max_c_rate)),
            ("max_voltage_v", Some(s.max_voltage_v)),
            ("max_temperature_c", Some(s.max_temperature_c)),
            ("min_voltage_v", s.min_voltage_v),
            ("max_current_a", s.max_current_a),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some((field, value?)))
        {
            if !(value.is_finite() && value > 0.0) {
                c.report_instrument(
                    i,
                    &format!(".safety.{field}"),
                    format!("expected a positive number, got {value}"),
                );
            }
        }
    }
}

fn check_steps(c: &mut Checker<'_>, workflow: &Workflow) {
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
