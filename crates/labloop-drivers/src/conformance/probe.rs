//! The checker's hands: a raw MQTT client on a bridge's topics, and the run that sends each
//! command on either transport and logs what went and came.

use super::*;

pub(super) type Reply = Result<Value, WireFault>;

/// A raw MQTT client on the bridge's topics: every reply by id, every telemetry message by
/// channel, the retained status.
pub struct MqttProbe {
    pub(super) client: AsyncClient,
    pub(super) topics: Topics,
    pub(super) acks: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>,
    pub(super) telemetry: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>,
    pub(super) status: Arc<Mutex<Option<Vec<u8>>>>,
    pub(super) errors: Arc<Mutex<Vec<String>>>,
}

impl MqttProbe {
    /// Connects to `address` and subscribes to the bridge's topics under `prefix`; returns once
    /// subscribed (or with the broker's error).
    pub async fn connect(address: &BrokerAddress, prefix: &str) -> Result<Self, String> {
        let topics = Topics::new(prefix);
        let nonce = nonce();
        let mut options = address.options(&format!("labloop-check-{nonce}"))?;
        options.set_clean_session(true);
        let (client, mut events) = AsyncClient::new(options, 4096);
        let probe = Self {
            client: client.clone(),
            topics: topics.clone(),
            acks: Arc::default(),
            telemetry: Arc::default(),
            status: Arc::default(),
            errors: Arc::default(),
        };
        let (acks, telemetry, status, errors) = (
            probe.acks.clone(),
            probe.telemetry.clone(),
            probe.status.clone(),
            probe.errors.clone(),
        );
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in [topics.ack(), topics.status(), topics.all_telemetry()] {
                            let _ = client.subscribe(t, QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = p.payload.to_vec();
                        if p.topic == topics.ack() {
                            match serde_json::from_slice::<Value>(&payload) {
                                Ok(v) => acks
                                    .lock()
                                    .expect("acks")
                                    .entry(v["id"].as_str().unwrap_or("").to_owned())
                                    .or_default()
                                    .push(payload),
                                Err(e) => errors
                                    .lock()
                                    .expect("errors")
                                    .push(format!("{}: {e}", p.topic)),
                            }
                        } else if p.topic == topics.status() {
                            *status.lock().expect("status") = Some(payload);
                        } else if let Some(ch) = topics.channel_of(&p.topic) {
                            telemetry
                                .lock()
                                .expect("telemetry")
                                .entry(ch.to_owned())
                                .or_default()
                                .push(payload);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(Err(format!("broker: {e}")));
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(probe),
            Ok(Ok(Err(e))) => Err(e),
            _ => Err("the broker did not accept the subscriptions within 10 s".into()),
        }
    }

    /// Publishes `payload` on the command topic and waits for one more reply with `id`.
    pub(super) async fn publish_and_wait(
        &self,
        id: &str,
        payload: Vec<u8>,
        patience: Duration,
    ) -> Result<Vec<u8>, String> {
        let before = self.replies(id).len();
        self.client
            .publish(self.topics.cmd(), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + patience;
        loop {
            if let Some(reply) = self.replies(id).get(before) {
                return Ok(reply.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("no reply with id {id} within {patience:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(super) fn replies(&self, id: &str) -> Vec<Vec<u8>> {
        self.acks
            .lock()
            .expect("acks")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    pub(super) fn telemetry_of(&self, channel: &str) -> Vec<Vec<u8>> {
        self.telemetry
            .lock()
            .expect("telemetry")
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }
}

pub(super) fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff)
}

pub(super) fn text(bytes: &[u8]) -> String {
    let t = String::from_utf8_lossy(bytes);
    if t.len() > 300 {
        format!(
            "{}…",
            &t[..t.char_indices().nth(300).map_or(t.len(), |(i, _)| i)]
        )
    } else {
        t.into_owned()
    }
}

/// The checker's run: the target, its log of the current rule, and the results so far.
pub(super) struct Run<'a> {
    pub(super) target: &'a Target,
    pub(super) options: &'a CheckOptions,
    pub(super) results: Vec<RuleResult>,
    pub(super) exchange: Vec<String>,
    pub(super) next_id: u64,
    pub(super) nonce: String,
}

impl Run<'_> {
    pub(super) fn id(&mut self) -> String {
        self.next_id += 1;
        format!("chk-{}-{}", self.nonce, self.next_id)
    }

    /// Sends `op` under `id`; the reply, or why none came.
    pub(super) async fn call_as(&mut self, id: &str, op: &Op) -> Result<Reply, String> {
        let patience = match op {
            // A build takes minutes; every other command answers at once.
            Op::Build { .. } => self.options.wait,
            _ => self.options.reply_timeout,
        };
        self.call_within(id, op, patience).await
    }

    pub(super) async fn call_within(
        &mut self,
        id: &str,
        op: &Op,
        patience: Duration,
    ) -> Result<Reply, String> {
        match self.target {
            Target::Mqtt(probe) => {
                let payload = wire::encode(&wire::Command {
                    id: id.to_owned(),
                    op: op.clone(),
                });
                self.exchange.push(format!("→ {}", text(&payload)));
                let reply = probe.publish_and_wait(id, payload, patience).await;
                let reply = reply.inspect_err(|e| self.exchange.push(format!("← ({e})")))?;
                self.exchange.push(format!("← {}", text(&reply)));
                let ack: Ack =
                    wire::decode(&probe.topics.ack(), &reply).map_err(|e| e.to_string())?;
                Ok(match ack.error {
                    Some(fault) if !ack.ok => Err(fault),
                    None if !ack.ok => Err(WireFault::new("", "refused without an error")),
                    _ => Ok(ack.result),
                })
            }
            Target::Serial(link) => {
                let line = crate::scpi::encode_command(id, op).map_err(|e| e.to_string())?;
                self.exchange.push(format!("→ {}", line.trim_end()));
                let outcome = link.command(op.clone(), patience).await;
                self.exchange.push(format!("← {outcome:?}"));
                match outcome {
                    Ok(v) => Ok(Ok(v)),
                    Err(DriverError::Busy { .. }) => Ok(Err(WireFault::new("BUSY", ""))),
                    Err(DriverError::UnknownChannel { .. }) => {
                        Ok(Err(WireFault::new("UNKNOWN_CHANNEL", "")))
                    }
                    Err(DriverError::Instrument { message, .. }) => {
                        let (code, rest) = message.split_once(": ").unwrap_or(("", &message));
                        Ok(Err(WireFault::new(code, rest)))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    pub(super) async fn call(&mut self, op: &Op) -> Result<Reply, String> {
        let id = self.id();
        self.call_as(&id, op).await
    }

    pub(super) fn record(
        &mut self,
        rule: &'static str,
        requires: &'static str,
        result: Result<String, String>,
    ) {
        let (outcome, detail) = match result {
            Ok(d) => (Outcome::Pass, d),
            Err(d) => (Outcome::Fail, d),
        };
        self.results.push(RuleResult {
            rule,
            requires,
            outcome,
            detail,
            exchange: std::mem::take(&mut self.exchange),
        });
    }

    pub(super) fn skip(&mut self, rule: &'static str, requires: &'static str, why: &str) {
        self.results.push(RuleResult {
            rule,
            requires,
            outcome: Outcome::Skip,
            detail: why.to_owned(),
            exchange: std::mem::take(&mut self.exchange),
        });
    }

    /// The channel's test, read with `data` asking for no records.
    pub(super) async fn loaded(&mut self, channel: &str) -> Result<DataReply, String> {
        self.data(channel, 1, 0).await
    }

    pub(super) async fn data(
        &mut self,
        channel: &str,
        from_seq: u64,
        max: u32,
    ) -> Result<DataReply, String> {
        let op = Op::Data {
            channel: channel.to_owned(),
            from_seq,
            max,
        };
        match self.call(&op).await? {
            Ok(v) => serde_json::from_value(v).map_err(|e| format!("a data reply: {e}")),
            Err(f) => Err(format!("data refused: {} {}", f.code, f.message)),
        }
    }
}

pub(super) fn check_test(key: &str, cycles: u32) -> CyclingTest {
    CyclingTest {
        key: key.to_owned(),
        cell_id: format!("{key}-cell"),
        cycles_before: 0,
        formulation: Vec::new(),
        parameters: Vec::new(),
        protocol: ChargeProtocol::equal_steps(
            &[4.8, 4.0],
            0.8,
            CcCvFinish {
                c_rate: 1.0,
                cv_voltage_v: 3.6,
            },
        ),
        discharge_c_rate: 4.0,
        cycles,
    }
}
