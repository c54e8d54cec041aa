//! The instruments a workflow names, built: simulated ones (with a journal beside the store, so
//! their tests outlive the process), MQTT and serial bridges, and queue-served cell builders. One
//! factory for `labloop run`, `resume` and the benchmarks.

use crate::{EngineError, Instruments, QueueCellBuilder};
use labloop_drivers::broker::{BrokerAddress, TlsFiles};
use labloop_drivers::mqtt::{MqttCycler, MqttOptionsExt};
use labloop_drivers::remote::RemoteCellBuilder;
use labloop_drivers::serial::{SerialCycler, SerialLink, SerialOptions};
use labloop_sim::{SimCellBuilder, SimClock, SimCycler};
use labloop_workflow::{DriverKind, InstrumentKind, InstrumentSpec, TransportSpec, Workflow};
use std::sync::Arc;

/// The journal a simulated instrument keeps beside the store, so it outlives this process.
fn sim_journal(store_url: &str, campaign: &str, instrument: &str) -> std::path::PathBuf {
    let base = store_url
        .strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p).to_owned())
        .unwrap_or_else(|| "labloop-data/sim".to_owned());
    std::path::PathBuf::from(format!("{base}.{campaign}.{instrument}.sim.jsonl"))
}

/// The broker of an MQTT instrument, with its TLS files and credentials (the password read from the
/// environment variable the workflow names).
fn broker_address(inst: &InstrumentSpec) -> Result<BrokerAddress, EngineError> {
    let Some(TransportSpec::Mqtt {
        broker,
        ca_file,
        client_cert,
        client_key,
        username,
        password_env,
        ..
    }) = &inst.transport
    else {
        return Err(EngineError::Instrument(format!(
            "instrument `{}`: no MQTT transport",
            inst.name
        )));
    };
    let context = |e: String| EngineError::Instrument(format!("instrument `{}`: {e}", inst.name));
    let mut address = BrokerAddress::parse(broker).map_err(context)?;
    if broker.starts_with("mqtts://") {
        address = address
            .with_tls(TlsFiles {
                ca_file: ca_file.as_ref().map(Into::into),
                client: client_cert
                    .as_ref()
                    .zip(client_key.as_ref())
                    .map(|(c, k)| (c.into(), k.into())),
            })
            .map_err(context)?;
    }
    if let Some(user) = username {
        let password = match password_env {
            Some(var) => std::env::var(var)
                .map_err(|_| context(format!("the password variable `{var}` is not set")))?,
            None => String::new(),
        };
        address = address.with_credentials(user, &password);
    }
    Ok(address)
}

/// How long to wait for a remote builder's reply to one `build` (a real robot takes ~10 minutes per
/// coin cell; a simulated one runs on its accelerated clock), before asking again.
fn build_patience(inst: &InstrumentSpec) -> std::time::Duration {
    std::time::Duration::from_secs_f64((1800.0 / inst.clock_acceleration.max(1.0)).max(2.0))
}

/// The workflow's instruments (simulated ones keep their journal beside the store), and the
/// simulated cyclers among them.
pub fn build(
    workflow: &Workflow,
    store_url: &str,
) -> Result<(Instruments, Vec<SimCycler>), EngineError> {
    let mut sims = Vec::new();
    let mut out = Instruments::default();
    for inst in &workflow.instruments {
        let clock = SimClock {
            acceleration: inst.clock_acceleration,
        };
        match (inst.driver, inst.kind) {
            (DriverKind::Sim, InstrumentKind::Cycler) => {
                let journal = sim_journal(store_url, &workflow.campaign.name, &inst.name);
                let sim = SimCycler::with_journal(
                    &inst.name,
                    inst.channels,
                    clock,
                    workflow.campaign.seed,
                    &journal,
                )
                .map_err(|e| {
                    EngineError::Instrument(format!("opening {}: {e}", journal.display()))
                })?;
                sims.push(sim.clone());
                out.cyclers.push(Arc::new(sim));
            }
            (DriverKind::Sim, InstrumentKind::CellBuilder) => out.builders.push(Arc::new(
                SimCellBuilder::new(&inst.name, inst.channels, clock),
            )),
            (DriverKind::Mqtt, kind) => {
                let Some(TransportSpec::Mqtt { topic_prefix, .. }) = &inst.transport else {
                    return Err(EngineError::Instrument(format!(
                        "instrument `{}`: the mqtt driver needs `transport: {{mqtt: ...}}`",
                        inst.name
                    )));
                };
                let address = broker_address(inst)?;
                let channels = if kind == InstrumentKind::Cycler {
                    inst.channels
                } else {
                    0
                };
                let link = MqttCycler::connect_to(
                    &inst.name,
                    channels,
                    &address,
                    topic_prefix,
                    MqttOptionsExt::default(),
                )
                .map_err(|e| EngineError::Instrument(format!("instrument `{}`: {e}", inst.name)))?;
                match kind {
                    InstrumentKind::Cycler => out.cyclers.push(Arc::new(link)),
                    InstrumentKind::CellBuilder => out
                        .builders
                        .push(Arc::new(RemoteCellBuilder::new(link, build_patience(inst)))),
                }
            }
            (DriverKind::Queue, kind) => {
                let Some(TransportSpec::Queue { capability }) = &inst.transport else {
                    return Err(EngineError::Instrument(format!(
                        "instrument `{}`: the queue driver needs `transport: {{queue: {{capability: ...}}}}`",
                        inst.name
                    )));
                };
                if kind != InstrumentKind::CellBuilder {
                    return Err(EngineError::Instrument(format!(
                        "instrument `{}`: the queue driver serves cell builders",
                        inst.name
                    )));
                }
                out.builders.push(Arc::new(QueueCellBuilder::new(
                    &inst.name,
                    capability,
                    store_url,
                    std::time::Duration::from_millis(200),
                )));
            }
            (DriverKind::Serial, kind) => {
                let Some(TransportSpec::Serial { port, baud }) = &inst.transport else {
                    return Err(EngineError::Instrument(format!(
                        "instrument `{}`: the serial driver needs `transport: {{serial: {{port: ...}}}}`",
                        inst.name
                    )));
                };
                let options = SerialOptions::default();
                match kind {
                    InstrumentKind::Cycler => out.cyclers.push(Arc::new(SerialCycler::new(
                        &inst.name,
                        inst.channels,
                        port,
                        *baud,
                        options,
                    ))),
                    InstrumentKind::CellBuilder => {
                        out.builders.push(Arc::new(RemoteCellBuilder::new(
                            SerialLink::new(&inst.name, port, *baud, options),
                            build_patience(inst),
                        )))
                    }
                }
            }
        }
    }
    Ok((out, sims))
}
