//! A simulated instrument (cycler or cell builder) as an MQTT instrument (`drivers/PROTOCOL.md`): it answers commands on
//! `<prefix>/cmd`, publishes each channel's records on `<prefix>/telemetry/<channel>`, keeps a
//! retained status with an `offline` last will, and can misbehave on purpose ([`Faults`]) the way real
//! links do, so drivers are tested against loss, duplication, reordering, garbage and disconnects.

use crate::station::Station;
use labloop_drivers::mqtt::BrokerAddress;
use labloop_drivers::wire::{
    Ack, Command, InstrumentStatus, Op, PROTOCOL_VERSION, TelemetryMessage, Topics, WireFault,
    decode, encode,
};
use labloop_drivers::{Cycler, DriverError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Misbehaviour to inject, each a probability per message (0 = never).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// A telemetry message is never sent.
    pub drop: f64,
    /// A telemetry message is sent twice.
    pub duplicate: f64,
    /// A telemetry message is held back and sent after the next one.
    pub reorder: f64,
    /// Random bytes are sent on a telemetry topic before a message.
    pub garbage: f64,
    /// A reply to a command is lost (the command is carried out; a repeat gets the reply).
    pub drop_ack: f64,
    /// The connection is cut this often (messages published meanwhile are lost).
    pub disconnect_every: Option<Duration>,
}

/// Replies kept to answer repeated command ids.
const REMEMBERED_REPLIES: usize = 10_000;

struct State {
    station: Station,
    topics: Topics,
    faults: Faults,
    link: Mutex<AsyncClient>,
    rng: Mutex<StdRng>,
    replies: Mutex<(HashMap<String, Ack>, VecDeque<String>)>,
    following: Mutex<HashSet<(String, String)>>,
    held: Mutex<Option<(String, Vec<u8>)>>,
}

/// Serves `station` under `prefix` on the broker at `address` until the process ends.
pub async fn serve(
    station: Station,
    address: &BrokerAddress,
    prefix: &str,
    faults: Faults,
    seed: u64,
) -> Result<(), DriverError> {
    let refused = |message: String| DriverError::Instrument {
        instrument: station.name().to_owned(),
        message,
    };
    let topics = Topics::new(prefix);
    let client_id = format!("labloop-sim-{}", topics.prefix.replace('/', "-"));
    // The TLS files are read once, up front: a bad one is an error now, not at each reconnection.
    let base = address.options(&client_id).map_err(refused)?;
    let model = station.model();
    let connect = || {
        let mut options = base.clone();
        let offline = InstrumentStatus {
            state: "offline".into(),
            protocol: PROTOCOL_VERSION.into(),
            model: model.into(),
            channels: Vec::new(),
        };
        options.set_last_will(LastWill::new(
            topics.status(),
            encode(&offline),
            QoS::AtLeastOnce,
            true,
        ));
        AsyncClient::new(options, 4096)
    };
    let (client, mut eventloop) = connect();
    let state = Arc::new(State {
        station,
        topics: topics.clone(),
        faults: faults.clone(),
        link: Mutex::new(client),
        rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xfa017)),
        replies: Mutex::new((HashMap::new(), VecDeque::new())),
        following: Mutex::new(HashSet::new()),
        held: Mutex::new(None),
    });
    loop {
        let cut = async {
            match faults.disconnect_every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cut);
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                () = &mut cut => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => state.connected(),
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topics.cmd() => {
                    let state = state.clone();
                    tokio::spawn(async move { state.command(&p.payload).await });
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "broker connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // An injected cut: the socket goes away without a goodbye, as when a cable is pulled.
        tracing::info!("cutting the broker connection (fault injection)");
        let (client, next) = connect();
        drop(std::mem::replace(&mut eventloop, next));
        *state.link.lock().expect("link lock") = client;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl State {
    fn client(&self) -> AsyncClient {
        self.link.lock().expect("link lock").clone()
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().expect("rng lock").random_bool(p.min(1.0))
    }

    fn connected(self: &Arc<Self>) {
        let client = self.client();
        let _ = client.try_subscribe(self.topics.cmd(), QoS::AtLeastOnce);
        let status = InstrumentStatus {
            state: "online".into(),
            protocol: PROTOCOL_VERSION.into(),
            model: self.station.model().into(),
            channels: self.station.locals(),
        };
        let _ = client.try_publish(
            self.topics.status(),
            QoS::AtLeastOnce,
            true,
            encode(&status),
        );
        tracing::info!(prefix = %self.topics.prefix, "online");
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) {
        if let Err(e) = self
            .client()
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            tracing::debug!(error = %e, "publish lost");
        }
    }

    /// A telemetry message, through the injected faults.
    async fn telemetry(&self, channel: &str, message: &TelemetryMessage) {
        let topic = self.topics.telemetry(channel);
        let payload = encode(message);
        let f = &self.faults;
        if self.chance(f.garbage) {
            let noise: Vec<u8> = {
                let mut rng = self.rng.lock().expect("rng lock");
                (0..rng.random_range(1..64)).map(|_| rng.random()).collect()
            };
            self.publish(topic.clone(), noise).await;
        }
        if self.chance(f.drop) {
            return;
        }
        if self.chance(f.reorder) {
            let earlier = self
                .held
                .lock()
                .expect("held lock")
                .replace((topic, payload));
            if let Some((t, p)) = earlier {
                self.publish(t, p).await;
            }
            return;
        }
        self.publish(topic.clone(), payload.clone()).await;
        if self.chance(f.duplicate) {
            self.publish(topic, payload).await;
        }
        let held = self.held.lock().expect("held lock").take();
        if let Some((t, p)) = held {
            self.publish(t, p).await;
        }
    }

    async fn command(self: &Arc<Self>, payload: &[u8]) {
        let command = match decode::<Command>(&self.topics.cmd(), payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "protocol error: command dropped");
                // Answer what can be answered: a readable id gets a BAD_COMMAND reply.
                if let Some(id) = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                {
                    let ack = refuse(&id, "BAD_COMMAND", &e.message);
                    self.publish(self.topics.ack(), encode(&ack)).await;
                }
                return;
            }
        };
        let remembered = self
            .replies
            .lock()
            .expect("replies lock")
            .0
            .get(&command.id)
            .cloned();
        let ack = match remembered {
            Some(ack) => ack,
            None => {
                let ack = self.execute(&command).await;
                let mut replies = self.replies.lock().expect("replies lock");
                replies.0.insert(command.id.clone(), ack.clone());
                replies.1.push_back(command.id.clone());
                if replies.1.len() > REMEMBERED_REPLIES
                    && let Some(old) = replies.1.pop_front()
                {
                    replies.0.remove(&old);
                }
                if self.chance(self.faults.drop_ack) {
                    return;
                }
                ack
            }
        };
        self.publish(self.topics.ack(), encode(&ack)).await;
    }

    async fn execute(self: &Arc<Self>, command: &Command) -> Ack {
        let outcome = match (&command.op, self.station.cycler()) {
            (Op::Replay { channel, from_seq }, Some(sim)) => {
                match sim.snapshot(&self.station.channel_id(channel), *from_seq) {
                    Ok(snap) => {
                        let key = snap.key.clone().unwrap_or_default();
                        for t in &snap.records {
                            self.telemetry(channel, &record_message(&key, t)).await;
                        }
                        if snap.finished {
                            self.telemetry(channel, &end_message(&key, snap.last_seq, snap.fault))
                                .await;
                        }
                        Ok(serde_json::json!({"count": snap.records.len()}))
                    }
                    Err(e) => Err(WireFault::from_error(&e)),
                }
            }
            (op, _) => {
                let outcome = self.station.execute(op).await;
                if let (Op::Start { channel, test }, Ok(_)) = (op, &outcome) {
                    self.follow(channel, &test.key);
                }
                outcome
            }
        };
        match outcome {
            Ok(result) => Ack {
                id: command.id.clone(),
                ok: true,
                result,
                error: None,
            },
            Err(fault) => Ack {
                id: command.id.clone(),
                ok: false,
                result: serde_json::Value::Null,
                error: Some(fault),
            },
        }
    }

    /// Publishes the records of the test `key` on `channel` as they come, then its end.
    fn follow(self: &Arc<Self>, channel: &str, key: &str) {
        let entry = (channel.to_owned(), key.to_owned());
        if !self
            .following
            .lock()
            .expect("following lock")
            .insert(entry.clone())
        {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let (channel, key) = entry;
            let Some(sim) = state.station.cycler() else {
                return;
            };
            let cid = state.station.channel_id(&channel);
            let mut next = 1;
            loop {
                let Ok(batch) = sim.records(&cid, next).await else {
                    break;
                };
                let Ok(snap) = sim.snapshot(&cid, u64::MAX) else {
                    break;
                };
                if snap.key.as_deref() != Some(key.as_str()) {
                    break; // another test took the channel
                }
                for t in &batch.records {
                    state.telemetry(&channel, &record_message(&key, t)).await;
                    next = t.seq + 1;
                }
                if batch.finished {
                    state
                        .telemetry(&channel, &end_message(&key, snap.last_seq, snap.fault))
                        .await;
                    break;
                }
            }
            state
                .following
                .lock()
                .expect("following lock")
                .remove(&(channel, key));
        });
    }
}

fn refuse(id: &str, code: &str, message: &str) -> Ack {
    Ack {
        id: id.to_owned(),
        ok: false,
        result: serde_json::Value::Null,
        error: Some(WireFault::new(code, message)),
    }
}

fn record_message(key: &str, t: &labloop_drivers::Telemetry) -> TelemetryMessage {
    TelemetryMessage {
        test_key: key.to_owned(),
        seq: Some(t.seq),
        record: Some(t.record.clone()),
        end_seq: None,
        fault: None,
    }
}

fn end_message(key: &str, last_seq: u64, fault: Option<String>) -> TelemetryMessage {
    TelemetryMessage {
        test_key: key.to_owned(),
        seq: None,
        record: None,
        end_seq: Some(last_seq),
        fault,
    }
}
