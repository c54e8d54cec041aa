//! Instrument traits: what the engine may ask of a battery cycler, and the telemetry it gets back.
//!
//! Orchestration never knows hardware: the engine talks to a [`Cycler`] and nothing else. Concrete
//! instruments live outside this crate (`drivers/sim` is one, and a first-class one: it implements the
//! same trait a vendor adapter would). Transports and their codecs live here too: [`mqtt`] (JSON
//! messages in [`wire`]) and [`serial`] (SCPI-style lines in [`scpi`]), both carrying the same
//! operations, so [`remote`] builds instruments on either; this crate is the only one that knows wire
//! formats.

pub mod broker;
pub mod conformance;
pub mod link_cycler;
pub mod mqtt;
pub mod remote;
pub mod scpi;
pub mod serial;
pub mod wire;

use async_trait::async_trait;
use labloop_core::{ChannelId, ChargeProtocol};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The engine's ids of an instrument's channels: `<name>/ch01` .. `<name>/chNN`.
pub fn channel_ids(name: &str, channels: u32) -> Vec<ChannelId> {
    (1..=channels)
        .map(|i| ChannelId::from(format!("{name}/ch{i:02}").as_str()))
        .collect()
}

/// A channel's name on the wire: `ch03` of `cycler1/ch03`.
pub fn wire_name(channel: &ChannelId) -> &str {
    channel
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or(channel.as_str())
}

/// The wire name of `channel` when it is one of `channels` of `instrument`.
pub fn wire_name_of<'a>(
    instrument: &str,
    channels: &[ChannelId],
    channel: &'a ChannelId,
) -> Result<&'a str, DriverError> {
    if !channels.contains(channel) {
        return Err(DriverError::UnknownChannel {
            instrument: instrument.to_owned(),
            channel: channel.clone(),
        });
    }
    Ok(wire_name(channel))
}

/// What to run on one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CyclingTest {
    /// Idempotency key: starting a test whose key the channel already runs (or ran) does nothing, so
    /// a command repeated after a crash never starts a second test.
    pub key: String,
    /// The cell on the channel (a barcode for commercial cells, the builder's id for built ones).
    pub cell_id: String,
    /// Cycles the cell has had before this test (formation, earlier steps); record `cycle`s count on
    /// from there.
    #[serde(default)]
    pub cycles_before: u32,
    /// The electrolyte's mixture, by component (fractions summing to 1), as recorded with the test
    /// (simulators model its chemistry from it; real instruments keep it as metadata).
    #[serde(default)]
    pub formulation: Vec<(String, f64)>,
    /// The campaign's other design parameters for this cell (additive loading, temperature, ...),
    /// by name with their values and units; metadata, like `formulation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<DesignParameter>,
    /// The charging protocol to run every cycle.
    pub protocol: ChargeProtocol,
    /// Discharge current as a C-rate (Severson et al. used 4C to 2.0 V).
    pub discharge_c_rate: f64,
    /// Stop after this many cycles.
    pub cycles: u32,
}

/// A design parameter of a cell that is not a mixture fraction: a named value in its own unit, as
/// the workflow's search space defines it (`{"name": "VC_wt_pct", "value": 2.14, "unit": "wt%",
/// "min": 0, "max": 3}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesignParameter {
    /// Its name in the workflow.
    pub name: String,
    /// Its value: a number for a continuous or integer parameter, the choice's name for a
    /// categorical one.
    pub value: serde_json::Value,
    /// The unit of `value`, when the workflow names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The lower end of the range the campaign searches (numeric parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The upper end of that range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

pub use labloop_core::Telemetry;

/// Records returned by [`Cycler::records`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordBatch {
    /// Records with `seq >= from_seq`, in order.
    pub records: Vec<Telemetry>,
    /// Whether the test on the channel has ended: no record will follow the last one here.
    pub finished: bool,
    /// Why the test ended early, when the instrument stopped it on a fault (its own words).
    pub fault: Option<String>,
}

/// The test a channel holds.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedTest {
    /// Its idempotency key.
    pub key: String,
    /// Whether it has ended (finished, stopped or faulted).
    pub ended: bool,
}

/// Who an instrument says it is (the `identify` operation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Its model, free text.
    pub model: String,
    /// The protocol version it speaks (`1.1`).
    pub protocol: String,
    /// Its channels' local names (`ch01`, ...); none for a cell builder.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// What a channel is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum ChannelStatus {
    /// No test loaded.
    Idle,
    /// Cycling; `cycle` cycles are complete.
    Running {
        /// Cycles completed so far.
        cycle: u32,
    },
    /// The test ran to its end.
    Finished {
        /// Cycles completed.
        cycles: u32,
    },
    /// The channel stopped on a fault.
    Faulted {
        /// What the instrument reported.
        reason: String,
    },
}

/// Errors an instrument reports, each naming the instrument and channel.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    /// The channel does not exist on this instrument.
    #[error("{instrument}: no channel {channel}")]
    UnknownChannel {
        /// The instrument's name.
        instrument: String,
        /// The channel asked for.
        channel: ChannelId,
    },
    /// A test is already running on the channel.
    #[error("{instrument}: channel {channel} is busy")]
    Busy {
        /// The instrument's name.
        instrument: String,
        /// The busy channel.
        channel: ChannelId,
    },
    /// The instrument did not answer in time.
    #[error("{instrument}: no reply within {after:?}")]
    Timeout {
        /// The instrument's name.
        instrument: String,
        /// How long the driver waited.
        after: Duration,
    },
    /// The instrument is not there: never seen on its link, or announced gone.
    #[error("{instrument} is offline: {detail}")]
    Offline {
        /// The instrument's name.
        instrument: String,
        /// What was (not) seen, and where.
        detail: String,
    },
    /// The instrument's messages do not follow the protocol.
    #[error("{instrument}: protocol error: {detail}")]
    Protocol {
        /// The instrument's name.
        instrument: String,
        /// The first offending message and what was wrong with it.
        detail: String,
    },
    /// The instrument no longer has records that labloop has not stored (it lost its state).
    #[error("{instrument}: records lost on {channel}: {detail}")]
    LostRecords {
        /// The instrument's name.
        instrument: String,
        /// The channel.
        channel: ChannelId,
        /// What was asked for and what the instrument has.
        detail: String,
    },
    /// The instrument refused the command or faulted.
    #[error("{instrument}: {message}")]
    Instrument {
        /// The instrument's name.
        instrument: String,
        /// Its message.
        message: String,
    },
}

/// A battery cycler with one or more channels.
#[async_trait]
pub trait Cycler: Send + Sync {
    /// The instrument's name as the workflow gives it.
    fn name(&self) -> &str;

    /// Its channels.
    fn channels(&self) -> Vec<ChannelId>;

    /// Who the instrument says it is. In-process instruments answer with their own channels and
    /// [`wire::PROTOCOL_VERSION`]; remote ones send `identify`.
    async fn identify(&self) -> Result<Identity, DriverError> {
        Ok(Identity {
            model: self.name().to_owned(),
            protocol: wire::PROTOCOL_VERSION.to_owned(),
            channels: self
                .channels()
                .iter()
                .map(|c| wire_name(c).to_owned())
                .collect(),
        })
    }

    /// Loads and starts a test on an idle (or finished) channel. Sequence numbers restart at 1.
    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError>;

    /// Stops the channel's test; stopping an idle channel is not an error.
    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError>;

    /// What the channel is doing.
    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError>;

    /// What the driver knows is wrong with the instrument right now (offline, unreachable), for
    /// saying why a wait ran out; `None` when nothing is known to be wrong.
    fn health(&self) -> Option<String> {
        None
    }

    /// The test loaded on the channel, as the instrument reports it (`None`: no test was ever
    /// loaded, or an instrument that cannot tell). Remote instruments answer a `data` with `max: 0`.
    async fn loaded_test(&self, channel: &ChannelId) -> Result<Option<LoadedTest>, DriverError> {
        let _ = channel;
        Ok(None)
    }

    /// Records with `seq >= from_seq`. Waits until at least one is available or the test has ended,
    /// so a caller can follow a channel without polling; asking again for an old `from_seq` replays.
    async fn records(&self, channel: &ChannelId, from_seq: u64)
    -> Result<RecordBatch, DriverError>;
}

/// A cell a builder assembled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuiltCell {
    /// Its id (printed on the can).
    pub cell_id: String,
    /// Electrolyte dispensed (µL).
    pub electrolyte_ul: f64,
    /// What was dispensed from each stock solution (µL), by stock name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dispensed_ul: Vec<(String, f64)>,
    /// The builder's checks of the sealed cell.
    #[serde(default)]
    pub qc: CellQc,
}

/// Quality checks a builder makes on a sealed cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellQc {
    /// Open-circuit voltage after crimping (V), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocv_v: Option<f64>,
    /// Mass of the sealed cell (g), when weighed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_g: Option<f64>,
    /// Whether the crimp passed its check (a failed crimp leaks: the cell must not be cycled).
    pub crimp_ok: bool,
}

impl Default for CellQc {
    fn default() -> Self {
        Self {
            ocv_v: None,
            mass_g: None,
            crimp_ok: true,
        }
    }
}

/// What to build: a recipe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellOrder {
    /// Idempotency key: a repeated order with the same key returns the same cell, never a second one.
    pub key: String,
    /// Electrolyte composition, by component (fractions summing to 1), dispensed from the robot's
    /// stock solutions.
    pub formulation: Vec<(String, f64)>,
    /// The campaign's other design parameters for this cell, with their units (an additive's
    /// loading, a formation temperature): never fractions, never dispensed as a stock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<DesignParameter>,
    /// Electrolyte volume (µL).
    pub electrolyte_ul: f64,
    /// The cathode to pick (a name in the robot's inventory); empty: the robot's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cathode: String,
    /// The anode to pick; empty: the robot's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub anode: String,
    /// The separator to pick; empty: the robot's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub separator: String,
}

/// A robot that assembles coin cells.
#[async_trait]
pub trait CellBuilder: Send + Sync {
    /// The instrument's name as the workflow gives it.
    fn name(&self) -> &str;

    /// Builds one cell; returns when it is sealed.
    async fn build(&self, order: CellOrder) -> Result<BuiltCell, DriverError>;

    /// Who the robot says it is (remote builders send `identify`; in-process ones answer themselves).
    async fn identify(&self) -> Result<Identity, DriverError> {
        Ok(Identity {
            model: self.name().to_owned(),
            protocol: wire::PROTOCOL_VERSION.to_owned(),
            channels: Vec::new(),
        })
    }
}
