//! What a vendor adapter provides and is given: its wire ([`VendorLink`]), its channels' states
//! ([`VendorState`]), how it is polled ([`PolledOptions`]) and what it reads off its workflow
//! instrument ([`VendorConfig`]).

use crate::readings::Reading;
use async_trait::async_trait;
use labloop_drivers::{CyclingTest, DriverError};
use labloop_workflow::{InstrumentSpec, TransportSpec, VendorSpec};
use std::time::Duration;

/// What a vendor's channel is doing, in the adapter's words.
#[derive(Clone, Debug, PartialEq)]
pub enum VendorState {
    /// No test, or one that was reset.
    Idle,
    /// A test is starting or running (suspended and waiting count as running).
    Running,
    /// The test ran to its end.
    Completed,
    /// The channel stopped on a fault, in the vendor's words.
    Faulted(String),
}

/// One vendor's wire: what [`PolledCycler`](crate::PolledCycler) needs from it. Channels are the instrument's own
/// 0-based numbers.
#[async_trait]
pub trait VendorLink: Send + Sync + 'static {
    /// The instrument's model and software, in its own words.
    async fn identify(&self) -> Result<String, DriverError>;

    /// Starts the lab's procedure on `channel` with `test`'s numbers in its variables, as the
    /// instrument's test `test_name`.
    async fn start(
        &self,
        channel: u32,
        test: &CyclingTest,
        test_name: &str,
    ) -> Result<(), DriverError>;

    /// Gives the started test its numbers (procedure variables); called after every start and
    /// again when a start sent before a crash is found running, so it must be idempotent.
    async fn configure(&self, channel: u32, test: &CyclingTest) -> Result<(), DriverError>;

    /// Stops (resets) the channel's test.
    async fn stop(&self, channel: u32) -> Result<(), DriverError>;

    /// The channel's state and, while it runs, its latest reading.
    async fn read(&self, channel: u32) -> Result<(VendorState, Option<Reading>), DriverError>;

    /// What is wrong with the link now (offline since when, protocol errors), for saying why a
    /// wait ran out.
    fn health(&self) -> Option<String>;

    /// Whether the instrument's readings carry its cycle count; if not, cycles are numbered from
    /// the current's direction ([`ChannelLog::number`](crate::ChannelLog::number)).
    fn counts_cycles(&self) -> bool {
        true
    }
}

/// How a [`PolledCycler`](crate::PolledCycler) polls.
#[derive(Clone, Debug)]
pub struct PolledOptions {
    /// Between two readings of each running channel.
    pub poll_interval: Duration,
    /// How long one [`Cycler::records`](labloop_drivers::Cycler::records) call waits for a new record before it returns none (the
    /// engine asks again; a cycle of a real cell takes hours).
    pub wait: Duration,
    /// Without any reply for this long, the instrument is offline: waits end with that cause.
    pub offline_after: Duration,
}

impl Default for PolledOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            wait: Duration::from_secs(30),
            offline_after: Duration::from_secs(60),
        }
    }
}

/// What every vendor adapter reads off its workflow instrument: the TCP address, the `vendor`
/// section, how to poll, and how long to wait for a reply.
pub struct VendorConfig<'a> {
    /// The instrument PC.
    pub host: String,
    /// The vendor interface's port.
    pub port: u16,
    /// The instrument's `vendor` section.
    pub vendor: &'a VendorSpec,
    /// How to poll it.
    pub polled: PolledOptions,
    /// How long to wait for one reply.
    pub reply_timeout: Duration,
}

impl<'a> VendorConfig<'a> {
    /// The config of a `driver` instrument (validated already: an error here names what the
    /// validator would have).
    pub fn of(inst: &'a InstrumentSpec, driver: &str) -> Result<Self, String> {
        let Some(TransportSpec::Tcp { host, port }) = &inst.transport else {
            return Err(format!(
                "the {driver} driver needs `transport: {{tcp: {{host, port}}}}`"
            ));
        };
        let Some(vendor) = &inst.vendor else {
            return Err(format!("the {driver} driver needs a `vendor` section"));
        };
        let seconds = |s: f64| Duration::from_secs_f64(s.max(0.001));
        Ok(Self {
            host: host.clone(),
            port: *port,
            vendor,
            polled: PolledOptions {
                poll_interval: seconds(vendor.poll_interval_s),
                offline_after: seconds(vendor.offline_after_s),
                ..PolledOptions::default()
            },
            reply_timeout: seconds(vendor.reply_timeout_s),
        })
    }
}
