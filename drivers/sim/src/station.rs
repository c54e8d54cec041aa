//! What a simulated instrument does with a wire operation, whichever transport carried it: the MQTT
//! server ([`crate::mqtt_server`]) and the serial server ([`crate::serial_server`]) both hand their
//! decoded [`Op`]s here, so the two speak one instrument.

use crate::{SimCellBuilder, SimCycler};
use labloop_core::ChannelId;
use labloop_drivers::wire::{DataReply, Op, PROTOCOL_VERSION, WireFault, status_value};
use labloop_drivers::{CellBuilder, Cycler};
use serde_json::{Value, json};

/// A simulated instrument behind a protocol server: a cycler or a coin-cell builder.
pub enum Station {
    /// A battery cycler.
    Cycler(SimCycler),
    /// A coin-cell builder.
    Builder(SimCellBuilder),
}

impl Station {
    /// The instrument's name.
    pub fn name(&self) -> &str {
        match self {
            Station::Cycler(c) => c.name(),
            Station::Builder(b) => b.name(),
        }
    }

    /// Its model, as `*IDN?` and the MQTT status report it.
    pub fn model(&self) -> &'static str {
        match self {
            Station::Cycler(_) => "labloop-sim cycler",
            Station::Builder(_) => "labloop-sim cell builder",
        }
    }

    /// The cycler, if this is one.
    pub fn cycler(&self) -> Option<&SimCycler> {
        match self {
            Station::Cycler(c) => Some(c),
            Station::Builder(_) => None,
        }
    }

    /// The channels' local names (`ch01`, ...); none for a builder.
    pub fn locals(&self) -> Vec<String> {
        self.cycler()
            .map(|c| {
                c.channels()
                    .iter()
                    .map(|id| labloop_drivers::wire_name(id).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The engine's id of a local channel name.
    pub fn channel_id(&self, local: &str) -> ChannelId {
        ChannelId::from(format!("{}/{local}", self.name()).as_str())
    }

    fn need_cycler(&self) -> Result<&SimCycler, WireFault> {
        self.cycler().ok_or_else(|| {
            WireFault::new(
                "BAD_COMMAND",
                "this instrument is a cell builder: only *IDN? and BUILD",
            )
        })
    }

    /// Carries out `op` and returns its result (`drivers/PROTOCOL.md` gives each shape). `replay` is
    /// the MQTT server's own (it republishes); here it is refused.
    pub async fn execute(&self, op: &Op) -> Result<Value, WireFault> {
        let fault = |e: labloop_drivers::DriverError| WireFault::from_error(&e);
        match op {
            Op::Identify => Ok(json!({
                "model": self.model(),
                "protocol": PROTOCOL_VERSION,
                "channels": self.locals(),
            })),
            Op::Start { channel, test } => {
                let sim = self.need_cycler()?;
                sim.start(&self.channel_id(channel), test.clone())
                    .await
                    .map_err(fault)?;
                Ok(json!({}))
            }
            Op::Stop { channel } => {
                let sim = self.need_cycler()?;
                sim.stop(&self.channel_id(channel)).await.map_err(fault)?;
                Ok(json!({}))
            }
            Op::Status { channel } => {
                let sim = self.need_cycler()?;
                let id = self.channel_id(channel);
                let status = sim.status(&id).await.map_err(fault)?;
                let mut value = status_value(&status);
                // Protocol 1.1: the channel's test key with its status.
                value["test_key"] =
                    serde_json::json!(sim.snapshot(&id, u64::MAX).map_err(fault)?.key);
                Ok(value)
            }
            Op::Data {
                channel,
                from_seq,
                max,
            } => {
                let sim = self.need_cycler()?;
                let snap = sim
                    .snapshot(&self.channel_id(channel), *from_seq)
                    .map_err(fault)?;
                let reply = DataReply {
                    test_key: snap.key,
                    records: snap.records.into_iter().take(*max as usize).collect(),
                    end_seq: snap.finished.then_some(snap.last_seq),
                    fault: snap.fault,
                };
                Ok(serde_json::to_value(reply).expect("a data reply serialises"))
            }
            Op::Build { order } => match self {
                Station::Builder(b) => {
                    let cell = b.build(order.clone()).await.map_err(fault)?;
                    Ok(serde_json::to_value(cell).expect("a built cell serialises"))
                }
                Station::Cycler(_) => Err(WireFault::new(
                    "BAD_COMMAND",
                    "this instrument is a cycler: no BUILD",
                )),
            },
            Op::Replay { .. } => Err(WireFault::new(
                "BAD_COMMAND",
                "replay is an MQTT command; read records with DATA?",
            )),
        }
    }
}
