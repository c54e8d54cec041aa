//! Instrument traits: what the engine may ask of a battery cycler, and the telemetry it gets back.
//!
//! Orchestration never knows hardware: the engine talks to a [`Cycler`] and nothing else. Concrete
//! instruments live outside this crate (`drivers/sim` is one, and a first-class one: it implements the
//! same trait a vendor adapter would). Transports (serial, MQTT) and their codecs belong here too as
//! they arrive; this crate is the only one that knows wire formats.

use async_trait::async_trait;
use labloop_core::{ChannelId, ChargeProtocol, CycleRecord};
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
}

/// What to build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellOrder {
    /// Idempotency key: a repeated order with the same key returns the same cell, never a second one.
    pub key: String,
    /// Electrolyte composition, by component.
    pub formulation: Vec<(String, f64)>,
    /// Electrolyte volume (µL).
    pub electrolyte_ul: f64,
}

/// A robot that assembles coin cells.
#[async_trait]
pub trait CellBuilder: Send + Sync {
    /// The instrument's name as the workflow gives it.
    fn name(&self) -> &str;

    /// Builds one cell; returns when it is sealed.
    async fn build(&self, order: CellOrder) -> Result<BuiltCell, DriverError>;
}
