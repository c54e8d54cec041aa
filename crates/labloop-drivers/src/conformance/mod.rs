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

mod builder;
mod probe;
mod restart;

use builder::check_builder;
pub use probe::MqttProbe;
use probe::{Reply, Run, check_test, nonce, text};
use restart::restart_persistence;

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

    restart_persistence(&mut run, &channel, &start, &key, end_seq, &pulled_records).await;
    run.results
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
