//! Instrument traits: what the engine may ask of a battery cycler, and the telemetry it gets back.
//!
//! Orchestration never knows hardware: the engine talks to a [`Cycler`] and nothing else. Concrete
//! instruments live outside this crate (`drivers/sim` is one, and a first-class one: it implements the
//! same trait a vendor adapter would). Transports and their codecs live here too: [`mqtt`] (JSON
//! messages in [`wire`]) and [`serial`] (SCPI-style lines in [`scpi`]), both carrying the same
//! operations, so [`remote`] builds instruments on either; this crate is the only one that knows wire
//! formats.

pub mod broker;
pub mod mqtt;
pub mod remote;
pub mod scpi;
pub mod serial;
pub mod wire;

use async_trait::async_trait;
use labloop_core::{ChannelId, ChargeProtocol, CycleRecord};
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
    /// What the cell is made of, by component, as recorded with the test (simulators model its
    /// chemistry from it; real instruments keep it as metadata).
    #[serde(default)]
    pub formulation: Vec<(String, f64)>,
    /// The charging protocol to run every cycle.
    pub protocol: ChargeProtocol,
    /// Discharge current as a C-rate (Severson et al. used 4C to 2.0 V).
    pub discharge_c_rate: f64,
    /// Stop after this many cycles.
    pub cycles: u32,
}

/// A cycle record with the channel's sequence number, which counts from 1 without gaps so the receiver
/// can detect losses and duplicates and ask for a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry {
    /// Per-channel sequence number, starting at 1 for each test.
    pub seq: u64,
    /// The measurement.
    pub record: CycleRecord,
}

/// Records returned by [`Cycler::records`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordBatch {
    /// Records with `seq >= from_seq`, in order.
    pub records: Vec<Telemetry>,
    /// Whether the test on the channel has ended: no record will follow the last one here.
    pub finished: bool,
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

    /// Loads and starts a test on an idle (or finished) channel. Sequence numbers restart at 1.
    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError>;

    /// Stops the channel's test; stopping an idle channel is not an error.
    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError>;

    /// What the channel is doing.
    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError>;

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
}
