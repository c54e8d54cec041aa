//! A conformance checker for instrument bridges (`labloop check-instrument`): it drives a bridge
//! through the rules of `drivers/PROTOCOL.md` — identify, idempotent start by key, command-id replay,
//! `seq` continuity, replay and data from a sequence number, stop, and (when asked) persistence across
//! a restart — and reports each rule as passed, failed or skipped, with what was sent and received.
//! It speaks the wire itself (its own ids, raw payloads), so it sees what a driver would hide.

use crate::broker::BrokerAddress;
use crate::remote::CommandLink;
use crate::wire::{self, Ack, DataReply, Op, Topics, WireFault};
use crate::{CyclingTest, DriverError, Identity};
use labloop_core::{CcCvFinish, ChargeProtocol};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a rule came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The bridge did what the rule says.
    Pass,
    /// It did not; `detail` says how.
    Fail,
    /// The rule could not be checked (not this transport, not asked for, or a rule before it failed).
    Skip,
}

/// One rule's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleResult {
    /// The rule's name, e.g. `start-idempotent-by-key`.
    pub rule: &'static str,
    /// What it requires, in a line.
    pub requires: &'static str,
    /// How it came out.
    pub outcome: Outcome,
    /// What was seen.
    pub detail: String,
    /// What was sent (`→`) and received (`←`), in order.
    pub exchange: Vec<String>,
}

/// What to check, and how long to wait for it.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The channel to run the check's test on (default: the first the bridge announces).
    pub channel: Option<String>,
    /// Cycles of the check's test.
    pub cycles: u32,
    /// How long one command waits for its reply.
    pub reply_timeout: Duration,
    /// How long the test may take, and a restarted bridge to come back.
    pub wait: Duration,
    /// A shell command that restarts the bridge (checks persistence when given).
    pub restart_hook: Option<String>,
}

/// The bridge under test, on either transport.
pub enum Target {
    /// A bridge on an MQTT broker under a topic prefix.
    Mqtt(MqttProbe),
    /// An instrument on a serial line.
    Serial(Box<crate::serial::SerialLink>),
}

type Reply = Result<Value, WireFault>;

/// A raw MQTT client on the bridge's topics: every reply by id, every telemetry message by
/// channel, the retained status.
pub struct MqttProbe {
    client: AsyncClient,
    topics: Topics,
    acks: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>,
    telemetry: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>,
    status: Arc<Mutex<Option<Vec<u8>>>>,
    errors: Arc<Mutex<Vec<String>>>,
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
    async fn publish_and_wait(
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

    fn replies(&self, id: &str) -> Vec<Vec<u8>> {
        self.acks
            .lock()
            .expect("acks")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn telemetry_of(&self, channel: &str) -> Vec<Vec<u8>> {
        self.telemetry
            .lock()
            .expect("telemetry")
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }
}

fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff)
}

fn text(bytes: &[u8]) -> String {
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
struct Run<'a> {
    target: &'a Target,
    options: &'a CheckOptions,
    results: Vec<RuleResult>,
    exchange: Vec<String>,
    next_id: u64,
    nonce: String,
}

impl Run<'_> {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("chk-{}-{}", self.nonce, self.next_id)
    }

    /// Sends `op` under `id`; the reply, or why none came.
    async fn call_as(&mut self, id: &str, op: &Op) -> Result<Reply, String> {
        let patience = match op {
            // A build takes minutes; every other command answers at once.
            Op::Build { .. } => self.options.wait,
            _ => self.options.reply_timeout,
        };
        self.call_within(id, op, patience).await
    }

    async fn call_within(
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

    async fn call(&mut self, op: &Op) -> Result<Reply, String> {
        let id = self.id();
        self.call_as(&id, op).await
    }

    fn record(
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

    fn skip(&mut self, rule: &'static str, requires: &'static str, why: &str) {
        self.results.push(RuleResult {
            rule,
            requires,
            outcome: Outcome::Skip,
            detail: why.to_owned(),
            exchange: std::mem::take(&mut self.exchange),
        });
    }

    /// The channel's test, read with `data` asking for no records.
    async fn loaded(&mut self, channel: &str) -> Result<DataReply, String> {
        self.data(channel, 1, 0).await
    }

    async fn data(&mut self, channel: &str, from_seq: u64, max: u32) -> Result<DataReply, String> {
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

fn check_test(key: &str, cycles: u32) -> CyclingTest {
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

/// Runs every rule against `target` and returns the results in order.
pub async fn check(target: &Target, options: &CheckOptions) -> Vec<RuleResult> {
    let mut run = Run {
        target,
        options,
        results: Vec::new(),
        exchange: Vec::new(),
        next_id: 0,
        nonce: nonce(),
    };
    let mqtt = matches!(target, Target::Mqtt(_));

    // identify
    let identity: Option<Identity> = match run.call(&Op::Identify).await {
        Ok(Ok(v)) => {
            match serde_json::from_value::<Identity>(v) {
                Ok(i) => {
                    let verdict = wire::check_protocol(&i.protocol).map(|()| {
                        format!(
                            "{} speaks {}, channels [{}]",
                            i.model,
                            i.protocol,
                            i.channels.join(", ")
                        )
                    });
                    run.record("identify", "identify answers {model, protocol MAJOR.MINOR with labloop's major, channels}", verdict);
                    Some(i)
                }
                Err(e) => {
                    run.record(
                        "identify",
                        "identify answers {model, protocol, channels}",
                        Err(format!("the result: {e}")),
                    );
                    None
                }
            }
        }
        Ok(Err(f)) => {
            run.record(
                "identify",
                "identify answers",
                Err(format!("refused: {} {}", f.code, f.message)),
            );
            None
        }
        Err(e) => {
            run.record("identify", "identify answers", Err(e));
            None
        }
    };
    let Some(identity) = identity else {
        run.skip(
            "*",
            "the other rules",
            "identify failed: nothing else can be checked",
        );
        return run.results;
    };

    // retained status
    if let Target::Mqtt(probe) = target {
        let status = probe.status.lock().expect("status").clone();
        let verdict = match status {
            None => Err(format!("nothing retained on {}", probe.topics.status())),
            Some(bytes) => {
                run.exchange
                    .push(format!("← {} {}", probe.topics.status(), text(&bytes)));
                match wire::decode::<wire::InstrumentStatus>(&probe.topics.status(), &bytes) {
                    Err(e) => Err(e.to_string()),
                    Ok(s) if s.state != "online" => {
                        Err(format!("state `{}`, not `online`", s.state))
                    }
                    Ok(s) if s.protocol != identity.protocol || s.channels != identity.channels => {
                        Err(format!(
                            "says protocol {} and channels [{}]; identify said {} and [{}]",
                            s.protocol,
                            s.channels.join(", "),
                            identity.protocol,
                            identity.channels.join(", ")
                        ))
                    }
                    Ok(_) => Ok("online, same protocol and channels as identify".into()),
                }
            }
        };
        run.record(
            "retained-status",
            "a retained status {state: online, protocol, model, channels} on <prefix>/status",
            verdict,
        );
    } else {
        run.skip(
            "retained-status",
            "a retained status",
            "serial: no status topic",
        );
    }

    if identity.channels.is_empty() {
        check_builder(&mut run, mqtt).await;
        return run.results;
    }
    let channel = options
        .channel
        .clone()
        .unwrap_or_else(|| identity.channels[0].clone());
    let other = identity.channels.iter().find(|c| **c != channel).cloned();

    // unknown channel
    let verdict = match run
        .call(&Op::Status {
            channel: "no-such-channel".into(),
        })
        .await
    {
        Ok(Err(f)) if f.code == "UNKNOWN_CHANNEL" => Ok("UNKNOWN_CHANNEL".into()),
        Ok(Err(f)) => Err(format!(
            "refused with {} instead of UNKNOWN_CHANNEL",
            f.code
        )),
        Ok(Ok(v)) => Err(format!("answered {v} for a channel it does not have")),
        Err(e) => Err(e),
    };
    run.record(
        "unknown-channel",
        "a command for a channel the instrument lacks gets UNKNOWN_CHANNEL",
        verdict,
    );

    // bad command
    if let Target::Mqtt(probe) = target {
        let id = run.id();
        let payload = format!(r#"{{"id": "{id}", "op": "self_destruct"}}"#).into_bytes();
        run.exchange.push(format!("→ {}", text(&payload)));
        let verdict = match probe
            .publish_and_wait(&id, payload, options.reply_timeout)
            .await
        {
            Ok(reply) => {
                run.exchange.push(format!("← {}", text(&reply)));
                match wire::decode::<Ack>("ack", &reply) {
                    Ok(Ack {
                        ok: false,
                        error: Some(f),
                        ..
                    }) if f.code == "BAD_COMMAND" => Ok("BAD_COMMAND".into()),
                    Ok(a) => Err(format!("expected ok: false with BAD_COMMAND, got {a:?}")),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e),
        };
        run.record(
            "bad-command",
            "a command that cannot be read, with a readable id, gets BAD_COMMAND",
            verdict,
        );
    } else {
        run.skip(
            "bad-command",
            "BAD_COMMAND",
            "checked by the serial codec's own tests",
        );
    }

    // start, idempotent by key, id replay
    let key = format!("labloop-check/{}/cycle/1", run.nonce);
    let test = check_test(&key, options.cycles);
    let start = Op::Start {
        channel: channel.clone(),
        test: test.clone(),
    };
    let start_id = run.id();
    let verdict = match run.call_as(&start_id, &start).await {
        Ok(Ok(_)) => Ok(format!("test {key} started on {channel}")),
        Ok(Err(f)) => Err(format!(
            "refused: {} {} (is {channel} free?)",
            f.code, f.message
        )),
        Err(e) => Err(e),
    };
    let started = verdict.is_ok();
    run.record(
        "start",
        "start loads and starts a test on an idle channel",
        verdict,
    );
    if !started {
        run.skip("*", "the test's rules", "the check's test did not start");
        return run.results;
    }
    // busy
    let status = run
        .call(&Op::Status {
            channel: channel.clone(),
        })
        .await;
    let running = matches!(&status, Ok(Ok(v)) if v["state"] == "running");
    if running {
        let other_key = format!("labloop-check/{}/cycle/busy", run.nonce);
        let busy = Op::Start {
            channel: channel.clone(),
            test: check_test(&other_key, options.cycles),
        };
        let verdict = match run.call(&busy).await {
            Ok(Err(f)) if f.code == "BUSY" => Ok("BUSY".into()),
            Ok(Err(f)) => Err(format!("refused with {} instead of BUSY", f.code)),
            Ok(Ok(_)) => Err("started a second test over a running one".into()),
            Err(e) => Err(e),
        };
        run.record(
            "busy",
            "start with another key on a running channel gets BUSY",
            verdict,
        );
    } else {
        run.skip(
            "busy",
            "BUSY",
            "the test was no longer running (too fast to check)",
        );
    }

    // Once the test has a record, the same key again must leave it as it is (not start it over).
    let deadline = Instant::now() + options.wait;
    let first_record = loop {
        match run.data(&channel, 1, 1).await {
            Ok(d) if !d.records.is_empty() => break Ok(d.records[0].clone()),
            Ok(_) if Instant::now() < deadline => {
                run.exchange.clear();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => break Err(format!("no record within {:?}", options.wait)),
            Err(e) => break Err(e),
        }
    };
    let verdict = match first_record {
        Err(e) => Err(e),
        Ok(first) => match run.call(&start).await {
            Ok(Ok(_)) => match run.data(&channel, 1, 1).await {
                Ok(d)
                    if d.test_key.as_deref() == Some(&key) && d.records.first() == Some(&first) =>
                {
                    Ok("the same key again: success, the test goes on untouched".into())
                }
                Ok(d) if d.test_key.as_deref() == Some(&key) => Err(format!(
                    "the same key again started the test over: its first record is now {:?}",
                    d.records.first().map(|r| r.seq)
                )),
                Ok(d) => Err(format!("the channel now holds {:?}", d.test_key)),
                Err(e) => Err(e),
            },
            Ok(Err(f)) => Err(format!(
                "the same key again was refused: {} {}",
                f.code, f.message
            )),
            Err(e) => Err(e),
        },
    };
    run.record(
        "start-idempotent-by-key",
        "start with a key the channel runs or ran starts nothing and succeeds",
        verdict,
    );
    if mqtt {
        let first = run
            .results
            .iter()
            .find(|r| r.rule == "start")
            .and_then(|r| r.exchange.get(1).cloned());
        let other_key = format!("labloop-check/{}/cycle/other", run.nonce);
        let impostor = Op::Start {
            channel: channel.clone(),
            test: check_test(&other_key, options.cycles),
        };
        let verdict = match run.call_as(&start_id, &impostor).await {
            Ok(Ok(_)) => match run.loaded(&channel).await {
                Ok(d) if d.test_key.as_deref() == Some(&key) => {
                    let again = run.exchange.get(1).cloned();
                    if again == first {
                        Ok(
                            "the repeated id got the first reply again and was not carried out"
                                .into(),
                        )
                    } else {
                        Err(format!(
                            "the repeated id was not carried out, but its reply differs: first {first:?}, again {again:?}"
                        ))
                    }
                }
                Ok(d) => Err(format!(
                    "the repeated id was carried out again: the channel now holds {:?}",
                    d.test_key
                )),
                Err(e) => Err(e),
            },
            Ok(Err(f)) => Err(format!(
                "a repeated id must get its first reply (success) again; got {} {}",
                f.code, f.message
            )),
            Err(e) => Err(e),
        };
        run.record("command-id-replay", "a command id answered before is not carried out again; its first reply is published again", verdict);
    } else {
        run.skip(
            "command-id-replay",
            "id replay",
            "serial: repeated tags need no memory (every command is idempotent)",
        );
    }

    // the test to its end
    let deadline = Instant::now() + options.wait;
    let ended = loop {
        match run.loaded(&channel).await {
            Ok(d) if d.end_seq.is_some() => break Some(d),
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            _ => break None,
        }
        run.exchange.clear();
    };
    run.exchange.clear();
    let Some(ended) = ended else {
        run.record(
            "test-ends",
            "the test ends after its cycles",
            Err(format!(
                "not ended within {:?} (give more --wait, or fewer --cycles)",
                options.wait
            )),
        );
        return run.results;
    };
    let end_seq = ended.end_seq.unwrap_or(0);
    let pulled = run.data(&channel, 1, end_seq as u32 + 10).await;
    let pulled_records = pulled
        .as_ref()
        .map(|d| d.records.clone())
        .unwrap_or_default();
    let verdict = match &pulled {
        Ok(d) => {
            let seqs: Vec<u64> = d.records.iter().map(|r| r.seq).collect();
            let expected: Vec<u64> = (1..=end_seq).collect();
            if seqs != expected {
                Err(format!(
                    "data from 1 gave seqs {seqs:?}, expected 1..={end_seq}"
                ))
            } else if let Err(e) = d.check() {
                Err(e)
            } else if end_seq != u64::from(options.cycles) && d.fault.is_none() {
                Err(format!(
                    "ended at seq {end_seq} of {} cycles without a fault",
                    options.cycles
                ))
            } else {
                Ok(format!("seq 1..={end_seq}, every record well-formed"))
            }
        }
        Err(e) => Err(e.clone()),
    };
    run.record("data-from-seq", "data returns the test's records from from_seq in seq order without gaps; end_seq once ended", verdict);
    let verdict = match run.data(&channel, 2, 1).await {
        Ok(d) if end_seq < 2 => Ok(format!("{} records", d.records.len())),
        Ok(d)
            if d.records.len() == 1
                && d.records[0].seq == 2
                && Some(&d.records[0]) == pulled_records.get(1) =>
        {
            Ok("from_seq 2, max 1: exactly seq 2, as before".into())
        }
        Ok(d) => Err(format!(
            "from_seq 2, max 1 gave seqs {:?}",
            d.records.iter().map(|r| r.seq).collect::<Vec<_>>()
        )),
        Err(e) => Err(e),
    };
    run.record(
        "data-max",
        "data honours from_seq and max, and repeats the same records",
        verdict,
    );

    if let Target::Mqtt(probe) = target {
        // Telemetry as it streamed.
        let messages = probe.telemetry_of(&channel);
        let topic = probe.topics.telemetry(&channel);
        let mut seen = HashMap::new();
        let mut end = None;
        let mut bad = None;
        for m in &messages {
            match wire::decode_telemetry(&topic, m) {
                Ok(t) if t.test_key != key => {}
                Ok(t) => match (t.seq, t.record, t.end_seq) {
                    (Some(seq), Some(r), None) => {
                        seen.entry(seq).or_insert(r);
                    }
                    (None, None, Some(e)) => end = Some(e),
                    _ => {
                        bad = bad.or(Some(format!(
                            "neither a record with seq nor an end message: {}",
                            text(m)
                        )))
                    }
                },
                Err(e) => bad = bad.or(Some(e.to_string())),
            }
        }
        let verdict = if let Some(b) = bad {
            Err(b)
        } else if end != Some(end_seq) {
            Err(format!("end message {end:?}, expected end_seq {end_seq}"))
        } else if (1..=end_seq).any(|s| !seen.contains_key(&s)) {
            Err(format!(
                "seqs 1..={end_seq} not all streamed: missing {:?}",
                (1..=end_seq)
                    .filter(|s| !seen.contains_key(s))
                    .collect::<Vec<_>>()
            ))
        } else if pulled_records
            .iter()
            .any(|r| seen.get(&r.seq) != Some(&r.record))
        {
            Err("streamed records differ from those `data` returns".into())
        } else {
            Ok(format!(
                "{} messages: seq 1..={end_seq} and the end message, equal to `data`",
                messages.len()
            ))
        };
        run.record(
            "telemetry-seq",
            "telemetry carries each record with seq from 1 without gaps, then one end message",
            verdict,
        );
        let before = probe.telemetry_of(&channel).len();
        let verdict = match run
            .call(&Op::Replay {
                channel: channel.clone(),
                from_seq: 2,
            })
            .await
        {
            Ok(Ok(v)) => {
                let count = v["count"].as_u64();
                tokio::time::sleep(Duration::from_millis(500)).await;
                let again: Vec<wire::TelemetryMessage> = probe.telemetry_of(&channel)[before..]
                    .iter()
                    .filter_map(|m| wire::decode_telemetry(&topic, m).ok())
                    .filter(|t| t.test_key == key)
                    .collect();
                let seqs: Vec<u64> = again.iter().filter_map(|t| t.seq).collect();
                let expected: Vec<u64> = (2..=end_seq).collect();
                if count != Some(end_seq.saturating_sub(1)) {
                    Err(format!(
                        "count {count:?}, expected {}",
                        end_seq.saturating_sub(1)
                    ))
                } else if seqs != expected {
                    Err(format!("republished seqs {seqs:?}, expected 2..={end_seq}"))
                } else if !again.iter().any(|t| t.end_seq == Some(end_seq)) {
                    Err("no end message after the replay of an ended test".into())
                } else {
                    Ok(format!(
                        "count {}, seq 2..={end_seq} and the end message again",
                        end_seq - 1
                    ))
                }
            }
            Ok(Err(f)) => Err(format!("refused: {} {}", f.code, f.message)),
            Err(e) => Err(e),
        };
        run.record(
            "replay-from-seq",
            "replay republishes the records from from_seq, then the end message of an ended test",
            verdict,
        );
    }

    // stop
    let verdict = match run
        .call(&Op::Stop {
            channel: channel.clone(),
        })
        .await
    {
        Ok(Ok(_)) => match run
            .call(&Op::Status {
                channel: channel.clone(),
            })
            .await
        {
            Ok(Ok(v)) if v["state"] == "finished" || v["state"] == "faulted" => {
                match run.loaded(&channel).await {
                    Ok(d) if d.test_key.as_deref() == Some(&key) && d.end_seq == Some(end_seq) => {
                        Ok(format!(
                            "success; status stays {}, the test's records stay",
                            v["state"]
                        ))
                    }
                    Ok(d) => Err(format!(
                        "after stop the channel holds {:?} ending at {:?}",
                        d.test_key, d.end_seq
                    )),
                    Err(e) => Err(e),
                }
            }
            Ok(Ok(v)) => Err(format!("status after stopping a finished test: {v}")),
            Ok(Err(f)) => Err(format!("status refused: {}", f.code)),
            Err(e) => Err(e),
        },
        Ok(Err(f)) => Err(format!(
            "stop of a finished test refused: {} {}",
            f.code, f.message
        )),
        Err(e) => Err(e),
    };
    run.record(
        "stop-finished",
        "stop after a finished test succeeds and changes nothing",
        verdict,
    );
    if let Some(idle) = other.clone() {
        let verdict = match run
            .call(&Op::Stop {
                channel: idle.clone(),
            })
            .await
        {
            Ok(Ok(_)) => Ok(format!("stop on {idle}: success")),
            Ok(Err(f)) if f.code == "BUSY" => Err("BUSY on stop".into()),
            Ok(Err(f)) => Err(format!("refused: {} {}", f.code, f.message)),
            Err(e) => Err(e),
        };
        run.record("stop-idle", "stop on an idle channel succeeds", verdict);
    }

    // restart persistence
    let Some(hook) = &options.restart_hook else {
        run.skip(
            "restart-persistence",
            "tests and records survive a restart",
            "no --restart-hook given",
        );
        return run.results;
    };
    run.exchange.push(format!("$ {hook}"));
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(hook)
        .status()
        .await;
    if !status.as_ref().is_ok_and(|s| s.success()) {
        run.record(
            "restart-persistence",
            "tests and records survive a restart",
            Err(format!("the restart hook failed: {status:?}")),
        );
        return run.results;
    }
    let deadline = Instant::now() + options.wait;
    let back = loop {
        if let Ok(Ok(_)) = run.call(&Op::Identify).await {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let verdict = if !back {
        Err(format!(
            "no identify within {:?} of the restart",
            options.wait
        ))
    } else {
        match run.data(&channel, 1, end_seq as u32 + 10).await {
            Ok(d) if d.test_key.as_deref() == Some(&key) && d.records == pulled_records && d.end_seq == Some(end_seq) => match run.call(&start).await {
                Ok(Ok(_)) => match run.loaded(&channel).await {
                    Ok(d) if d.test_key.as_deref() == Some(&key) && d.end_seq == Some(end_seq) => Ok("after the restart: the same test, the same records, and its key still starts nothing new".into()),
                    Ok(d) => Err(format!("starting the old key after the restart started a new test: {:?} {:?}", d.test_key, d.end_seq)),
                    Err(e) => Err(e),
                },
                Ok(Err(f)) => Err(format!("the old key refused after the restart: {} {}", f.code, f.message)),
                Err(e) => Err(e),
            },
            Ok(d) => Err(format!("after the restart the channel holds {:?} with {} records ending {:?}; before: {key} with {end_seq}", d.test_key, d.records.len(), d.end_seq)),
            Err(e) => Err(e),
        }
    };
    run.record(
        "restart-persistence",
        "a restarted instrument keeps its tests, their records and their keys",
        verdict,
    );
    run.results
}

/// The rules of a cell builder: a build, idempotent by order key, and (MQTT) by command id.
async fn check_builder(run: &mut Run<'_>, mqtt: bool) {
    let order = |key: &str| crate::CellOrder {
        key: key.to_owned(),
        formulation: vec![("EC".into(), 0.3), ("EMC".into(), 0.7)],
        parameters: Vec::new(),
        electrolyte_ul: 70.0,
        ..crate::CellOrder::default()
    };
    let key = format!("labloop-check/{}/build/1", run.nonce);
    let build = Op::Build { order: order(&key) };
    let build_id = run.id();
    let cell = |reply: Result<Reply, String>| -> Result<crate::BuiltCell, String> {
        match reply? {
            Ok(v) => {
                serde_json::from_value(v).map_err(|e| format!("a build reply is a built cell: {e}"))
            }
            Err(f) => Err(format!("refused: {} {}", f.code, f.message)),
        }
    };
    let first = cell(run.call_as(&build_id, &build).await);
    let verdict = first
        .as_ref()
        .map(|c| format!("cell {} ({} µL)", c.cell_id, c.electrolyte_ul))
        .map_err(Clone::clone);
    run.record(
        "build",
        "build answers a built cell {cell_id, electrolyte_ul, qc}",
        verdict,
    );
    let Ok(first) = first else { return };
    let again = cell(run.call(&build).await);
    let verdict = match again {
        Ok(c) if c == first => Ok("the same key again: the same cell".into()),
        Ok(c) => Err(format!(
            "the same key again built another cell: {} (first {})",
            c.cell_id, first.cell_id
        )),
        Err(e) => Err(e),
    };
    run.record(
        "build-idempotent-by-key",
        "a repeated order key returns the same cell, never a second one",
        verdict,
    );
    if mqtt {
        let other = Op::Build {
            order: order(&format!("labloop-check/{}/build/other", run.nonce)),
        };
        let verdict = match cell(run.call_as(&build_id, &other).await) {
            Ok(c) if c == first => Ok("the repeated id got the first cell again".into()),
            Ok(c) => Err(format!(
                "the repeated id was carried out again: cell {}",
                c.cell_id
            )),
            Err(e) => Err(e),
        };
        run.record(
            "command-id-replay",
            "a command id answered before is not carried out again",
            verdict,
        );
    }
}

/// The report for people: one line per rule, and what was sent and received under a failed one.
pub fn report(results: &[RuleResult]) -> String {
    let mut out = String::new();
    for r in results {
        let mark = match r.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        };
        out.push_str(&format!("{mark}  {:<24} {}\n", r.rule, r.detail));
        if r.outcome == Outcome::Fail {
            out.push_str(&format!("      rule: {}\n", r.requires));
            for line in &r.exchange {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    let count = |o| results.iter().filter(|r| r.outcome == o).count();
    out.push_str(&format!(
        "{} passed, {} failed, {} skipped\n",
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip)
    ));
    out
}
