//! The instruments a workflow names, built: simulated ones (with a journal beside the store, so
//! their tests outlive the process), MQTT and serial bridges, vendors' cyclers (Maccor MacNet,
//! Arbin CTI, Neware BTS; journaled the same way), instruments a plugin drives, and
//! queue-served cell builders. One
//! factory for `labloop run`, `resume` and the benchmarks.

use crate::{EngineError, QueueCellBuilder};
use labloop_drivers::broker::{BrokerAddress, TlsFiles};
use labloop_drivers::link_cycler::{LinkCycler, PollTiming};
use labloop_drivers::mqtt::{MqttCycler, MqttOptionsExt};
use labloop_drivers::remote::RemoteCellBuilder;
use labloop_drivers::serial::{SerialCycler, SerialLink, SerialOptions};
use labloop_drivers::{CellBuilder, Cycler};
use labloop_plugin::PluginLink;
use labloop_sim::{SimCellBuilder, SimClock, SimCycler};
use labloop_vendors::PolledCycler;
use labloop_vendors::arbin::{ArbinOptions, Cti};
use labloop_vendors::maccor::{MacNet, MaccorOptions};
use labloop_vendors::neware::{Bts, NewareOptions};
use labloop_workflow::{DriverKind, InstrumentKind, InstrumentSpec, TransportSpec, Workflow};
use std::sync::Arc;

/// The journal an instrument of labloop's keeps beside the store, so its tests outlive this
/// process: `kind` is `sim` for a simulated instrument, `vendor` for a vendor adapter (its tests
/// and records, so a restarted labloop neither starts a test twice nor loses a cycle).
fn journal_beside_store(
    store_url: &str,
    campaign: &str,
    instrument: &str,
    kind: &str,
) -> std::path::PathBuf {
    let base = store_url
        .strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p).to_owned())
        .unwrap_or_else(|| format!("labloop-data/{kind}"));
    std::path::PathBuf::from(format!("{base}.{campaign}.{instrument}.{kind}.jsonl"))
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
        let password =
            labloop_workflow::password_from_env(password_env.as_deref(), "").map_err(context)?;
        address = address.with_credentials(user, &password);
    }
    Ok(address)
}

/// How long to wait for a remote builder's reply to one `build` (a real robot takes ~10 minutes per
/// coin cell; a simulated one runs on its accelerated clock), before asking again.
fn build_patience(inst: &InstrumentSpec) -> std::time::Duration {
    std::time::Duration::from_secs_f64((1800.0 / inst.clock_acceleration.max(1.0)).max(2.0))
}

/// The workflow's plugins, started in `folder` (the workflow's), keeping their state and their
/// log beside the store.
pub fn plugins(
    workflow: &Workflow,
    store_url: &str,
    folder: &std::path::Path,
) -> Result<labloop_plugin::Plugins, EngineError> {
    let journal = journal_beside_store(store_url, &workflow.campaign.name, "plugins", "state");
    let state = journal.with_extension("");
    let log = state.with_extension("log");
    if let Some(parent) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| EngineError::Workflow(format!("creating {}: {e}", parent.display())))?;
    }
    labloop_plugin::Plugins::of(workflow, folder, &state, Some(log)).map_err(EngineError::Workflow)
}

/// How a cycler a plugin drives is polled.
const PLUGIN_CYCLER_TIMING: PollTiming = PollTiming {
    command_timeout: std::time::Duration::from_secs(30),
    poll_min: std::time::Duration::from_millis(10),
    poll_max: std::time::Duration::from_secs(1),
    max_records: 50,
};

/// The workflow's instruments (simulated ones keep their journal beside the store), and the
/// simulated cyclers among them. `plugins` are the workflow's (for instruments a plugin drives;
/// they go with the instruments to the engine).
pub fn build(
    workflow: &Workflow,
    store_url: &str,
    plugins: &labloop_plugin::Plugins,
) -> Result<(Instruments, Vec<SimCycler>), EngineError> {
    let mut sims = Vec::new();
    let mut out = Instruments {
        plugins: plugins.clone(),
        ..Instruments::default()
    };
    for inst in &workflow.instruments {
        let clock = SimClock {
            acceleration: inst.clock_acceleration,
        };
        match (inst.driver, inst.kind) {
            (DriverKind::Sim, InstrumentKind::Cycler) => {
                let journal =
                    journal_beside_store(store_url, &workflow.campaign.name, &inst.name, "sim");
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
            (driver @ (DriverKind::Maccor | DriverKind::Arbin | DriverKind::Neware), kind) => {
                let context =
                    |e: String| EngineError::Instrument(format!("instrument `{}`: {e}", inst.name));
                if kind != InstrumentKind::Cycler {
                    return Err(context("vendor drivers drive cyclers".into()));
                }
                let journal =
                    journal_beside_store(store_url, &workflow.campaign.name, &inst.name, "vendor");
                let opened =
                    |e: std::io::Error| context(format!("opening {}: {e}", journal.display()));
                let (name, channels, journal) = (&inst.name, inst.channels, Some(&*journal));
                let cycler: Arc<dyn labloop_drivers::Cycler> = match driver {
                    DriverKind::Maccor => {
                        let (options, polled) = MaccorOptions::from_spec(inst).map_err(context)?;
                        let link = MacNet::new(name, options);
                        Arc::new(
                            PolledCycler::new(name, channels, link, polled, journal)
                                .map_err(opened)?,
                        )
                    }
                    DriverKind::Arbin => {
                        let (options, polled) = ArbinOptions::from_spec(inst).map_err(context)?;
                        let link = Cti::new(name, options);
                        Arc::new(
                            PolledCycler::new(name, channels, link, polled, journal)
                                .map_err(opened)?,
                        )
                    }
                    _ => {
                        let (options, polled) = NewareOptions::from_spec(inst).map_err(context)?;
                        let link = Bts::new(name, options);
                        Arc::new(
                            PolledCycler::new(name, channels, link, polled, journal)
                                .map_err(opened)?,
                        )
                    }
                };
                out.cyclers.push(cycler);
            }
            (DriverKind::Plugin, kind) => {
                let Some(TransportSpec::Plugin { name }) = &inst.transport else {
                    return Err(EngineError::Instrument(format!(
                        "instrument `{}`: the plugin driver needs `transport: {{plugin: {{name: ...}}}}`",
                        inst.name
                    )));
                };
                let plugin = plugins.get(name).map_err(|e| {
                    EngineError::Instrument(format!("instrument `{}`: {e}", inst.name))
                })?;
                let link = PluginLink::new(std::sync::Arc::clone(plugin), &inst.name);
                match kind {
                    InstrumentKind::Cycler => out.cyclers.push(Arc::new(LinkCycler::on(
                        link,
                        inst.channels,
                        PLUGIN_CYCLER_TIMING,
                    ))),
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

/// The instruments a campaign runs on.
#[derive(Clone, Default)]
pub struct Instruments {
    /// Battery cyclers.
    pub cyclers: Vec<Arc<dyn Cycler>>,
    /// Cell-assembly robots, by name.
    pub builders: Vec<Arc<dyn CellBuilder>>,
    /// The workflow's plugins (its steps', models' and instruments'), started on first use.
    pub plugins: labloop_plugin::Plugins,
}
