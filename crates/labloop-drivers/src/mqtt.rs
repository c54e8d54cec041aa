//! A [`Cycler`] over MQTT (`drivers/PROTOCOL.md`): commands with unique ids on `<prefix>/cmd`, replies
//! on `<prefix>/ack`, one record per message on `<prefix>/telemetry/<channel>` with a per-test `seq`.
//!
//! What real links do, and what this driver does about it: the connection drops or the broker restarts
//! (QoS 1, a persistent session, reconnection with backoff, subscriptions renewed on every connect); a
//! reply is lost (the command is sent again under the same id, which the instrument answers once); a
//! record is lost (a gap in `seq`, or silence, asks for a replay from the first missing one); a record
//! arrives twice or out of order (kept once, by `seq`); garbage arrives (counted, logged, dropped).

pub use crate::broker::BrokerAddress;
use crate::remote::CommandLink;
use crate::wire::{
    Ack, Command, InstrumentStatus, Op, TelemetryMessage, Topics, WireError, WireFault, decode,
    decode_telemetry, encode, status_from_value,
};
use crate::{
    ChannelStatus, Cycler, CyclingTest, DriverError, Identity, LoadedTest, RecordBatch, Telemetry,
};
use async_trait::async_trait;
use labloop_core::{ChannelId, CycleRecord};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Messages in a row on one topic that fail to decode before the driver gives up on the channel
/// (or the command) with [`DriverError::Protocol`], quoting the first.
pub const PROTOCOL_ERROR_LIMIT: u64 = 10;

/// Timing of the driver.
#[derive(Clone, Copy, Debug)]
pub struct MqttOptionsExt {
    /// How long one attempt of a command waits for its reply.
    pub command_timeout: Duration,
    /// Attempts of a command before it fails with [`DriverError::Timeout`].
    pub attempts: u32,
    /// Silence on a running channel after which a replay is asked for.
    pub replay_after: Duration,
    /// An instrument offline this long (announced gone, never seen, or its broker unreachable)
    /// fails a follower of its records as [`DriverError::Offline`]; shorter absences are waited
    /// out, and what was published meanwhile is replayed.
    pub offline_after: Duration,
}

impl Default for MqttOptionsExt {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_secs(3),
            attempts: 5,
            replay_after: Duration::from_secs(2),
            offline_after: Duration::from_secs(600),
        }
    }
}

/// Records of the test on one channel, by `seq`.
#[derive(Default)]
struct ChannelBuffer {
    test_key: Option<String>,
    records: BTreeMap<u64, CycleRecord>,
    end_seq: Option<u64>,
    fault: Option<String>,
}

struct Inner {
    name: String,
    channels: Vec<ChannelId>,
    topics: Topics,
    client: AsyncClient,
    options: MqttOptionsExt,
    session: String,
    next_id: AtomicU64,
    pending: Mutex<HashMap<String, oneshot::Sender<Ack>>>,
    buffers: Mutex<HashMap<String, ChannelBuffer>>,
    changed: watch::Sender<u64>,
    counters: Counters,
    presence: Mutex<Presence>,
    /// Per topic: messages in a row that did not decode, and the first of them.
    rejected: Mutex<HashMap<String, Rejected>>,
}

/// What the driver knows of the instrument's presence, for saying why it does not answer.
struct Presence {
    since: Instant,
    broker_connected: bool,
    broker_error: Option<String>,
    /// When the broker connection was lost (none while connected).
    broker_lost_at: Option<Instant>,
    /// The last retained status seen, and when.
    status: Option<(InstrumentStatus, Instant)>,
}

#[derive(Default)]
struct Rejected {
    in_a_row: u64,
    first: String,
}

/// What the driver has seen go wrong on the link, for logs and tests.
#[derive(Default, Debug)]
pub struct Counters {
    /// Messages that could not be decoded.
    pub protocol_errors: AtomicU64,
    /// Records received a second time.
    pub duplicates: AtomicU64,
    /// Replays asked for.
    pub replays: AtomicU64,
    /// Commands sent again after no reply.
    pub command_retries: AtomicU64,
    /// Connections (re)established.
    pub connects: AtomicU64,
}

/// A cycler reached through an MQTT broker.
#[derive(Clone)]
pub struct MqttCycler {
    inner: Arc<Inner>,
}

impl MqttCycler {
    /// Connects to the broker at the URL `broker` and talks to the instrument under `topic_prefix`
    /// (see [`Self::connect_to`]).
    pub fn connect(
        name: &str,
        channels: u32,
        broker: &str,
        topic_prefix: &str,
        options: MqttOptionsExt,
    ) -> Result<Self, DriverError> {
        let address = BrokerAddress::parse(broker).map_err(|message| DriverError::Instrument {
            instrument: name.to_owned(),
            message,
        })?;
        Self::connect_to(name, channels, &address, topic_prefix, options)
    }

    /// Connects to the broker at `address` (TLS and credentials included) and talks to the
    /// instrument under `topic_prefix`, whose channels are `ch01`..`chNN` on the wire and
    /// `<name>/chNN` to the engine. Returns at once; the connection is made (and remade) in the
    /// background.
    pub fn connect_to(
        name: &str,
        channels: u32,
        address: &BrokerAddress,
        topic_prefix: &str,
        options: MqttOptionsExt,
    ) -> Result<Self, DriverError> {
        let topics = Topics::new(topic_prefix);
        // A stable client id keeps the broker's session (and its queued messages) across restarts.
        let client_id = format!("labloop-driver-{}", topics.prefix.replace('/', "-"));
        let mqtt_options =
            address
                .options(&client_id)
                .map_err(|message| DriverError::Instrument {
                    instrument: name.to_owned(),
                    message,
                })?;
        let (client, eventloop) = AsyncClient::new(mqtt_options, 1024);
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            channels: crate::channel_ids(name, channels),
            topics,
            client,
            options,
            session: format!("{}-{}", std::process::id(), unique_suffix()),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            buffers: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            counters: Counters::default(),
            presence: Mutex::new(Presence {
                since: Instant::now(),
                broker_connected: false,
                broker_error: None,
                broker_lost_at: None,
                status: None,
            }),
            rejected: Mutex::new(HashMap::new()),
        });
        tokio::spawn(run_link(Arc::downgrade(&inner), eventloop));
        Ok(Self { inner })
    }

    /// What went wrong on the link so far.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    fn local<'a>(&self, channel: &'a ChannelId) -> Result<&'a str, DriverError> {
        crate::wire_name_of(&self.inner.name, &self.inner.channels, channel)
    }

    /// Sends a command and waits for its reply, sending it again (same id) when none comes.
    async fn request(&self, op: Op) -> Result<serde_json::Value, DriverError> {
        self.command_within(op, self.inner.options.command_timeout)
            .await
    }

    /// [`Self::request`], waiting up to `patience` per attempt.
    async fn command_within(
        &self,
        op: Op,
        patience: Duration,
    ) -> Result<serde_json::Value, DriverError> {
        let inner = &self.inner;
        let id = format!(
            "{}-{}",
            inner.session,
            inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let payload = encode(&Command { id: id.clone(), op });
        for attempt in 1..=inner.options.attempts {
            let (tx, rx) = oneshot::channel();
            inner
                .pending
                .lock()
                .expect("pending lock")
                .insert(id.clone(), tx);
            if attempt > 1 {
                inner
                    .counters
                    .command_retries
                    .fetch_add(1, Ordering::Relaxed);
            }
            inner
                .client
                .publish(inner.topics.cmd(), QoS::AtLeastOnce, false, payload.clone())
                .await
                .map_err(|e| DriverError::Instrument {
                    instrument: inner.name.clone(),
                    message: format!("MQTT client closed: {e}"),
                })?;
            match tokio::time::timeout(patience, rx).await {
                Ok(Ok(ack)) if ack.ok => return Ok(ack.result),
                Ok(Ok(ack)) => return Err(self.refusal(ack)),
                _ => {
                    tracing::warn!(instrument = %inner.name, command = %id, attempt, "no reply; sending again")
                }
            }
        }
        inner.pending.lock().expect("pending lock").remove(&id);
        Err(inner.silence(patience * inner.options.attempts))
    }

    fn refusal(&self, ack: Ack) -> DriverError {
        ack.error
            .unwrap_or_else(|| WireFault::new("FAULT", "refused without a reason"))
            .into_error(&self.inner.name)
    }

    /// Asks for a replay from `from_seq`; returns how many records the instrument says it sends
    /// again (`None` when it did not answer, or without a count).
    async fn replay(&self, channel: &str, from_seq: u64) -> Option<u64> {
        self.inner.counters.replays.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(instrument = %self.inner.name, channel, from_seq, "asking for a replay");
        match self
            .request(Op::Replay {
                channel: channel.to_owned(),
                from_seq,
            })
            .await
        {
            Ok(result) => result
                .get("count")
                .and_then(serde_json::Value::as_f64)
                .map(|c| c as u64),
            Err(e) => {
                tracing::warn!(instrument = %self.inner.name, channel, error = %e, "replay not acknowledged");
                None
            }
        }
    }

    /// After a replay that brought nothing: whether the instrument still has our test. It lost our
    /// records when it holds another test (or none), or when it holds ours but has nothing from
    /// `from_seq` while we know later records exist (`gap`).
    async fn check_not_lost(
        &self,
        channel: &ChannelId,
        local: &str,
        key: &str,
        from_seq: u64,
        gap: bool,
    ) -> Result<(), DriverError> {
        let loaded = self.loaded_test(channel).await?;
        let lost = |detail: String| DriverError::LostRecords {
            instrument: self.inner.name.clone(),
            channel: channel.clone(),
            detail,
        };
        match loaded {
            Some(t) if t.key == key && !gap => Ok(()),
            Some(t) if t.key == key => Err(lost(format!(
                "a replay of test {key} from seq {from_seq} returned no record, though later ones exist"
            ))),
            Some(t) => Err(lost(format!(
                "asked {local} for test {key} from seq {from_seq}; it holds test {} instead (did the bridge restart without its state?)",
                t.key
            ))),
            None => Err(lost(format!(
                "asked {local} for test {key} from seq {from_seq}; it holds no test at all (did the bridge restart without its state?)"
            ))),
        }
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Polls the connection for as long as the driver lives: routes replies and records, reconnects with
/// backoff, and renews subscriptions on every connect.
async fn run_link(inner: Weak<Inner>, mut eventloop: rumqttc::EventLoop) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = eventloop.poll().await;
        let Some(inner) = inner.upgrade() else { return };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                {
                    let mut presence = inner.presence.lock().expect("presence lock");
                    presence.broker_connected = true;
                    presence.broker_error = None;
                    presence.broker_lost_at = None;
                }
                inner.counters.connects.fetch_add(1, Ordering::Relaxed);
                for topic in [
                    inner.topics.ack(),
                    inner.topics.status(),
                    inner.topics.all_telemetry(),
                ] {
                    if let Err(e) = inner.client.try_subscribe(topic, QoS::AtLeastOnce) {
                        tracing::warn!(instrument = %inner.name, error = %e, "subscribing");
                    }
                }
                tracing::info!(instrument = %inner.name, "connected to the broker");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => inner.receive(&p.topic, &p.payload),
            Ok(_) => {}
            Err(e) => {
                {
                    let mut presence = inner.presence.lock().expect("presence lock");
                    presence.broker_connected = false;
                    presence.broker_error = Some(e.to_string());
                    presence.broker_lost_at.get_or_insert_with(Instant::now);
                }
                tracing::warn!(instrument = %inner.name, error = %e, retry_in = ?backoff, "broker connection lost");
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Inner {
    fn receive(&self, topic: &str, payload: &[u8]) {
        let outcome = if topic == self.topics.ack() {
            decode::<Ack>(topic, payload).map(|ack| {
                if let Some(tx) = self.pending.lock().expect("pending lock").remove(&ack.id) {
                    let _ = tx.send(ack);
                }
            })
        } else if topic == self.topics.status() {
            decode::<InstrumentStatus>(topic, payload).map(|s| {
                tracing::info!(instrument = %self.name, state = %s.state, protocol = %s.protocol, "instrument status");
                if s.state == "online"
                    && let Err(e) = crate::wire::check_protocol(&s.protocol)
                {
                    tracing::warn!(instrument = %self.name, error = %e, "instrument status");
                }
                self.presence.lock().expect("presence lock").status = Some((s, Instant::now()));
            })
        } else if let Some(channel) = self.topics.channel_of(topic) {
            decode_telemetry(topic, payload).and_then(|m| self.telemetry(channel, m, topic))
        } else {
            Ok(())
        };
        let mut rejected = self.rejected.lock().expect("rejected lock");
        match outcome {
            Ok(()) => {
                rejected.remove(topic);
            }
            Err(e) => {
                self.counters
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                let entry = rejected.entry(topic.to_owned()).or_default();
                entry.in_a_row += 1;
                if entry.in_a_row == 1 {
                    entry.first = e.to_string();
                    tracing::warn!(instrument = %self.name, error = %e, "protocol error; message dropped");
                } else {
                    // One warning per run of errors, not one per message.
                    tracing::debug!(instrument = %self.name, error = %e, "protocol error; message dropped");
                }
                drop(rejected);
                // A follower waiting for records learns of the errors.
                self.changed.send_modify(|n| *n += 1);
            }
        }
    }

    /// The protocol error of `topic`, once [`PROTOCOL_ERROR_LIMIT`] messages in a row failed there.
    fn rejected_on(&self, topic: &str, limit: u64) -> Option<DriverError> {
        let rejected = self.rejected.lock().expect("rejected lock");
        let r = rejected.get(topic).filter(|r| r.in_a_row >= limit)?;
        Some(DriverError::Protocol {
            instrument: self.name.clone(),
            detail: format!(
                "{} messages in a row rejected on {topic}; the first: {}",
                r.in_a_row, r.first
            ),
        })
    }

    /// Why the instrument did not answer for `after`: its replies unreadable, or it is gone
    /// ([`Self::gone`]) — or, when all looks well, a plain timeout.
    fn silence(&self, after: Duration) -> DriverError {
        if let Some(e) = self.rejected_on(&self.topics.ack(), 1) {
            return e;
        }
        self.gone().map_or(
            DriverError::Timeout {
                instrument: self.name.clone(),
                after,
            },
            |(_, e)| e,
        )
    }

    /// Whether the instrument is gone, since how long, and how that reads: the broker
    /// unreachable, the instrument never seen under its prefix, or announced offline.
    fn gone(&self) -> Option<(Duration, DriverError)> {
        let presence = self.presence.lock().expect("presence lock");
        let offline = |detail: String| DriverError::Offline {
            instrument: self.name.clone(),
            detail,
        };
        if !presence.broker_connected {
            let since = presence.broker_lost_at.unwrap_or(presence.since);
            return Some((
                since.elapsed(),
                offline(format!(
                    "the broker is not reachable ({}) for {:.0?}; no command can reach the instrument",
                    presence
                        .broker_error
                        .as_deref()
                        .unwrap_or("not connected yet"),
                    since.elapsed()
                )),
            ));
        }
        match &presence.status {
            None => Some((
                presence.since.elapsed(),
                offline(format!(
                    "no status on {} in {:.0?} since connecting: no instrument has announced itself under this prefix (is its bridge running, with this prefix?)",
                    self.topics.status(),
                    presence.since.elapsed()
                )),
            )),
            Some((s, at)) if s.state != "online" => Some((
                at.elapsed(),
                offline(format!(
                    "it announced `{}` on {} {:.0?} ago (its last will, when its connection dropped)",
                    s.state,
                    self.topics.status(),
                    at.elapsed()
                )),
            )),
            Some(_) => None,
        }
    }

    fn telemetry(&self, channel: &str, m: TelemetryMessage, topic: &str) -> Result<(), WireError> {
        let mut buffers = self.buffers.lock().expect("buffers lock");
        let buffer = buffers.entry(channel.to_owned()).or_default();
        if buffer.test_key.as_deref() != Some(m.test_key.as_str()) {
            // A record of an earlier test (or of a test this driver did not start): not ours.
            return Ok(());
        }
        match (m.seq, m.record, m.end_seq) {
            (Some(seq), Some(record), None) if seq > 0 => {
                if buffer.records.insert(seq, record).is_some() {
                    self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            (None, None, Some(end)) => {
                buffer.end_seq = Some(end);
                buffer.fault = m.fault;
            }
            _ => {
                return Err(WireError {
                    topic: topic.to_owned(),
                    message: "expected a record with its seq, or an end_seq".into(),
                });
            }
        }
        drop(buffers);
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// The connection also drives instruments that are not cyclers (a cell builder: connect it with no
/// channels and wrap it in a [`crate::remote::RemoteCellBuilder`]).
#[async_trait]
impl CommandLink for MqttCycler {
    fn instrument(&self) -> &str {
        &self.inner.name
    }

    async fn command(&self, op: Op, patience: Duration) -> Result<serde_json::Value, DriverError> {
        self.command_within(op, patience).await
    }
}

#[async_trait]
impl Cycler for MqttCycler {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn channels(&self) -> Vec<ChannelId> {
        self.inner.channels.clone()
    }

    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError> {
        let local = self.local(channel)?.to_owned();
        {
            let mut buffers = self.inner.buffers.lock().expect("buffers lock");
            let buffer = buffers.entry(local.clone()).or_default();
            if buffer.test_key.as_deref() != Some(test.key.as_str()) {
                *buffer = ChannelBuffer {
                    test_key: Some(test.key.clone()),
                    ..ChannelBuffer::default()
                };
            }
        }
        self.request(Op::Start {
            channel: local,
            test,
        })
        .await
        .map(|_| ())
    }

    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError> {
        let local = self.local(channel)?.to_owned();
        self.request(Op::Stop { channel: local }).await.map(|_| ())
    }

    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError> {
        let local = self.local(channel)?.to_owned();
        let result = self.request(Op::Status { channel: local }).await?;
        Ok(status_from_value(&result))
    }

    async fn identify(&self) -> Result<Identity, DriverError> {
        crate::remote::identify_via(self, self.inner.options.command_timeout).await
    }

    fn health(&self) -> Option<String> {
        self.inner.gone().map(|(_, e)| e.to_string())
    }

    async fn loaded_test(&self, channel: &ChannelId) -> Result<Option<LoadedTest>, DriverError> {
        let local = self.local(channel)?.to_owned();
        crate::remote::loaded_test_via(self, &local, self.inner.options.command_timeout).await
    }

    async fn records(
        &self,
        channel: &ChannelId,
        from_seq: u64,
    ) -> Result<RecordBatch, DriverError> {
        let local = self.local(channel)?.to_owned();
        let topic = self.inner.topics.telemetry(&local);
        let from_seq = from_seq.max(1);
        let mut changes = self.inner.changed.subscribe();
        let mut first_look = true;
        // Silence is normal on a slow real cycler: replays for it back off.
        let mut silence = self.inner.options.replay_after;
        loop {
            if let Some(e) = self.inner.rejected_on(&topic, PROTOCOL_ERROR_LIMIT) {
                return Err(e);
            }
            if let Some((away, e)) = self.inner.gone()
                && away >= self.inner.options.offline_after
            {
                return Err(e);
            }
            let (ask_replay, gap, key) = {
                let buffers = self.inner.buffers.lock().expect("buffers lock");
                let Some((buffer, key)) = buffers
                    .get(&local)
                    .and_then(|b| Some((b, b.test_key.clone()?)))
                else {
                    return Err(DriverError::Instrument {
                        instrument: self.inner.name.clone(),
                        message: format!("{channel}: no test started through this driver"),
                    });
                };
                let mut run = Vec::new();
                let mut seq = from_seq;
                while let Some(record) = buffer.records.get(&seq) {
                    run.push(Telemetry {
                        seq,
                        record: record.clone(),
                    });
                    seq += 1;
                }
                let ended = buffer.end_seq.is_some_and(|end| seq > end);
                if !run.is_empty() || ended {
                    return Ok(RecordBatch {
                        records: run,
                        finished: ended,
                        fault: buffer.fault.clone().filter(|_| ended),
                    });
                }
                // Something later than `from_seq` is here (or the end is announced) but not it: lost.
                let gap =
                    buffer.records.range(from_seq..).next().is_some() || buffer.end_seq.is_some();
                // Asked for more than this driver has seen could come next (a restart): ask at once.
                let behind = first_look
                    && buffer.records.keys().next_back().copied().unwrap_or(0) + 1 < from_seq;
                (gap || behind, gap, key)
            };
            first_look = false;
            if ask_replay && self.replay(&local, from_seq).await == Some(0) {
                self.check_not_lost(channel, &local, &key, from_seq, gap)
                    .await?;
            }
            let wait = silence.min(self.inner.options.offline_after);
            match tokio::time::timeout(wait, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(DriverError::Instrument {
                        instrument: self.inner.name.clone(),
                        message: "driver shut down".into(),
                    });
                }
                // Silence: a record may have been lost with nothing after it to show the gap.
                Err(_) => {
                    if self.replay(&local, from_seq).await == Some(0) {
                        self.check_not_lost(channel, &local, &key, from_seq, false)
                            .await?;
                    }
                    silence = (silence * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}
