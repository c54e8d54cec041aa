//! The instruments: drivers and their transports, vendors' settings, channels, records and
//! safety limits.

use super::*;

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

pub(super) fn check_instruments(c: &mut Checker<'_>, workflow: &Workflow) {
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
