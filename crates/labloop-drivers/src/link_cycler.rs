//! A battery cycler behind any [`CommandLink`] (a serial line, a plugin's pipes): each operation is
//! one command with its JSON result, and records are polled with `data` from the first one not yet
//! stored, the pause doubling while a channel is quiet.

use crate::remote::CommandLink;
use crate::wire::{DataReply, Op, status_from_value};
use crate::{
    ChannelStatus, Cycler, CyclingTest, DriverError, Identity, LoadedTest, RecordBatch, Telemetry,
};
use async_trait::async_trait;
use labloop_core::ChannelId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How a [`LinkCycler`] waits.
#[derive(Clone, Copy, Debug)]
pub struct PollTiming {
    /// How long one attempt of a command waits for its reply.
    pub command_timeout: Duration,
    /// First pause between `data` polls of a channel with nothing new (doubling while quiet).
    pub poll_min: Duration,
    /// Longest pause between polls.
    pub poll_max: Duration,
    /// Records asked for per `data`.
    pub max_records: u32,
}

/// A cycler with channels `ch01`..`chNN` on the link and `<name>/chNN` to the engine.
pub struct LinkCycler<L> {
    link: L,
    timing: PollTiming,
    channels: Vec<ChannelId>,
    tests: Mutex<HashMap<String, String>>,
}

impl<L: CommandLink> LinkCycler<L> {
    /// A cycler of `channels` channels on `link`.
    pub fn on(link: L, channels: u32, timing: PollTiming) -> Self {
        Self {
            channels: crate::channel_ids(link.instrument(), channels),
            link,
            timing,
            tests: Mutex::new(HashMap::new()),
        }
    }

    /// The link underneath (for its counters).
    pub fn link(&self) -> &L {
        &self.link
    }

    fn local<'a>(&self, channel: &'a ChannelId) -> Result<&'a str, DriverError> {
        crate::wire_name_of(self.link.instrument(), &self.channels, channel)
    }

    async fn send(&self, op: Op) -> Result<serde_json::Value, DriverError> {
        self.link.command(op, self.timing.command_timeout).await
    }
}

#[async_trait]
impl<L: CommandLink> Cycler for LinkCycler<L> {
    fn name(&self) -> &str {
        self.link.instrument()
    }

    fn channels(&self) -> Vec<ChannelId> {
        self.channels.clone()
    }

    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError> {
        let local = self.local(channel)?.to_owned();
        let key = test.key.clone();
        self.send(Op::Start {
            channel: local.clone(),
            test,
        })
        .await?;
        self.tests.lock().expect("tests lock").insert(local, key);
        Ok(())
    }

    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError> {
        let local = self.local(channel)?.to_owned();
        self.send(Op::Stop { channel: local }).await.map(|_| ())
    }

    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError> {
        let local = self.local(channel)?.to_owned();
        let result = self.send(Op::Status { channel: local }).await?;
        Ok(status_from_value(&result))
    }

    async fn identify(&self) -> Result<Identity, DriverError> {
        crate::remote::identify_via(&self.link, self.timing.command_timeout).await
    }

    async fn loaded_test(&self, channel: &ChannelId) -> Result<Option<LoadedTest>, DriverError> {
        let local = self.local(channel)?.to_owned();
        crate::remote::loaded_test_via(&self.link, &local, self.timing.command_timeout).await
    }

    async fn records(
        &self,
        channel: &ChannelId,
        from_seq: u64,
    ) -> Result<RecordBatch, DriverError> {
        let local = self.local(channel)?.to_owned();
        let from_seq = from_seq.max(1);
        let instrument = self.link.instrument().to_owned();
        let key = self
            .tests
            .lock()
            .expect("tests lock")
            .get(&local)
            .cloned()
            .ok_or_else(|| DriverError::Instrument {
                instrument: instrument.clone(),
                message: format!("{channel}: no test started through this driver"),
            })?;
        let timing = self.timing;
        let mut pause = timing.poll_min;
        loop {
            let result = self
                .send(Op::Data {
                    channel: local.clone(),
                    from_seq,
                    max: timing.max_records,
                })
                .await?;
            let reply: DataReply = serde_json::from_value(result)
                .map_err(|e| e.to_string())
                .and_then(|r: DataReply| r.check().map(|()| r))
                .map_err(|e| {
                    self.link.protocol_error(&e);
                    DriverError::Protocol {
                        instrument: instrument.clone(),
                        detail: format!("a data reply on {local}: {e}"),
                    }
                })?;
            if reply.test_key.as_deref() != Some(key.as_str()) {
                return Err(DriverError::LostRecords {
                    instrument,
                    channel: channel.clone(),
                    detail: format!(
                        "asked {local} for test {key} from seq {from_seq}; it holds {} (did the instrument restart without its state?)",
                        reply
                            .test_key
                            .as_deref()
                            .map_or("no test at all".to_owned(), |k| format!("test {k} instead"))
                    ),
                });
            }
            let records: Vec<Telemetry> = reply
                .records
                .into_iter()
                .skip_while(|r| r.seq < from_seq)
                .zip(from_seq..)
                .take_while(|(r, expected)| r.seq == *expected)
                .map(|(r, _)| r)
                .collect();
            let next = from_seq + records.len() as u64;
            let finished = reply.end_seq.is_some_and(|end| next > end);
            if !records.is_empty() || finished {
                return Ok(RecordBatch {
                    records,
                    finished,
                    fault: reply.fault.filter(|_| finished),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(timing.poll_max);
        }
    }
}
