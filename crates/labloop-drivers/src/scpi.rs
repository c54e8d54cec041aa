//! The serial line codec (`drivers/PROTOCOL.md`, "Serial"): SCPI-style ASCII lines, one command and
//! one reply per line, each optionally tagged `@<tag>` so a late reply is never taken for the next
//! command's. The operations are the same [`Op`]s the MQTT transport carries, and replies decode to the
//! same JSON results, so the drivers above both transports share one meaning.
//!
//! ```text
//! → @7 STAT? ch03            ← @7 OK RUNNING 17
//! → @8 DATA? ch03,18,100     ← @8 OK {"test_key":"exp-1/cycle/1","records":[...]}
//! → @9 START ch09 {...}      ← @9 ERR BUSY ch09: busy with another test
//! ```
//!
//! Decoding never panics: a line that is not a command or a reply is a [`WireError`].

use crate::wire::{Op, WireError, WireFault};
use serde_json::Value;

/// Longest line either side accepts (a `DATA?` reply of 100 records with discharge curves fits).
pub const MAX_LINE: usize = 8 << 20;

/// Where serial errors say they came from.
const WHERE: &str = "serial line";

fn error(message: impl Into<String>, line: &str) -> WireError {
    let shown: String = line.chars().take(120).collect();
    WireError {
        topic: WHERE.into(),
        message: format!("{} in `{}`", message.into(), shown.escape_debug()),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("wire messages always serialise")
}

/// The line (with its newline) that sends `op` under `tag`. `replay` is MQTT's and has no line:
/// the serial transport reads records with `DATA?`.
pub fn encode_command(tag: &str, op: &Op) -> Result<String, WireError> {
    let body = match op {
        Op::Identify => "*IDN?".to_owned(),
        Op::Start { channel, test } => format!("START {channel} {}", json(test)),
        Op::Stop { channel } => format!("STOP {channel}"),
        Op::Status { channel } => format!("STAT? {channel}"),
        Op::Data {
            channel,
            from_seq,
            max,
        } => format!("DATA? {channel},{from_seq},{max}"),
        Op::Build { order } => format!("BUILD {}", json(order)),
        Op::Replay { .. } => return Err(error("`replay` is not a serial command", "replay")),
    };
    Ok(format!("@{tag} {body}\n"))
}

/// Splits an optional leading `@tag ` off a line (without its line ending).
fn split_tag(line: &str) -> Result<(Option<String>, &str), WireError> {
    let Some(rest) = line.strip_prefix('@') else {
        return Ok((None, line));
    };
    let (tag, body) = rest.split_once(' ').unwrap_or((rest, ""));
    let valid = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(error("a tag is @ and 1–64 of [A-Za-z0-9._-]", line));
    }
    Ok((Some(tag.to_owned()), body.trim_start()))
}

fn channel_arg<'a>(args: &'a str, line: &str) -> Result<&'a str, WireError> {
    let channel = args.trim();
    if channel.is_empty() || channel.contains(char::is_whitespace) || channel.contains(',') {
        return Err(error("expected one channel name", line));
    }
    Ok(channel)
}

/// Reads a command line (line ending optional): its tag, if any, and its operation.
pub fn decode_command(line: &str) -> Result<(Option<String>, Op), WireError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (tag, body) = split_tag(line)?;
    let (header, args) = body.split_once(' ').unwrap_or((body, ""));
    let op = match header.to_ascii_uppercase().as_str() {
        "*IDN?" => Op::Identify,
        "START" => {
            let (channel, test) = args
                .trim()
                .split_once(' ')
                .ok_or_else(|| error("expected START <channel> <test JSON>", line))?;
            let test =
                serde_json::from_str(test).map_err(|e| error(format!("the test: {e}"), line))?;
            Op::Start {
                channel: channel_arg(channel, line)?.to_owned(),
                test,
            }
        }
        "STOP" => Op::Stop {
            channel: channel_arg(args, line)?.to_owned(),
        },
        "STAT?" => Op::Status {
            channel: channel_arg(args, line)?.to_owned(),
        },
        "DATA?" => {
            let mut parts = args.trim().split(',');
            let channel = channel_arg(parts.next().unwrap_or(""), line)?.to_owned();
            let mut number = |what: &str| -> Result<Option<u64>, WireError> {
                parts
                    .next()
                    .map(|p| {
                        p.trim()
                            .parse()
                            .map_err(|_| error(format!("{what} must be a whole number"), line))
                    })
                    .transpose()
            };
            let from_seq = number("from_seq")?
                .ok_or_else(|| error("expected DATA? <channel>,<from_seq>[,<max>]", line))?;
            let max = number("max")?.map_or(crate::wire::DEFAULT_MAX_RECORDS, |m| {
                m.min(u64::from(u32::MAX)) as u32
            });
            if parts.next().is_some() {
                return Err(error("expected DATA? <channel>,<from_seq>[,<max>]", line));
            }
            Op::Data {
                channel,
                from_seq,
                max,
            }
        }
        "BUILD" => Op::Build {
            order: serde_json::from_str(args)
                .map_err(|e| error(format!("the order: {e}"), line))?,
        },
        "" => return Err(error("empty command", line)),
        other => {
            return Err(error(
                format!("unknown command `{other}` (*IDN?, START, STOP, STAT?, DATA?, BUILD)"),
                line,
            ));
        }
    };
    Ok((tag, op))
}

/// One line of text: line breaks in free text would end the line early.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The reply line (with its newline) to `op` under `tag`, from the operation's JSON result.
pub fn encode_reply(tag: Option<&str>, op: &Op, outcome: &Result<Value, WireFault>) -> String {
    let body = match outcome {
        Err(fault) => format!("ERR {} {}", fault.code, one_line(&fault.message)),
        Ok(result) => match op {
            Op::Identify => {
                let mut fields = vec![
                    result["model"].as_str().unwrap_or("").to_owned(),
                    result["protocol"].as_str().unwrap_or("").to_owned(),
                ];
                fields.extend(
                    result["channels"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_owned)),
                );
                format!("OK {}", one_line(&fields.join(",")))
            }
            Op::Start { .. } | Op::Stop { .. } => "OK".to_owned(),
            Op::Status { .. } => {
                let state = result["state"]
                    .as_str()
                    .unwrap_or("idle")
                    .to_ascii_uppercase();
                match state.as_str() {
                    "RUNNING" | "FINISHED" => {
                        format!("OK {state} {}", result["cycle"].as_u64().unwrap_or(0))
                    }
                    "FAULTED" => format!(
                        "OK FAULTED {}",
                        one_line(result["reason"].as_str().unwrap_or(""))
                    ),
                    _ => "OK IDLE".to_owned(),
                }
            }
            Op::Data { .. } | Op::Build { .. } | Op::Replay { .. } => {
                format!("OK {}", json(result))
            }
        },
    };
    match tag {
        Some(tag) => format!("@{tag} {body}\n"),
        None => format!("{body}\n"),
    }
}

/// A reply line: its tag, and either its payload (the text after `OK`) or the refusal.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The tag it echoes, if the instrument echoes tags.
    pub tag: Option<String>,
    /// `OK <payload>` or `ERR <code> <message>`.
    pub outcome: Result<String, WireFault>,
}

/// Reads a reply line (line ending optional).
pub fn decode_reply(line: &str) -> Result<Reply, WireError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (tag, body) = split_tag(line)?;
    let outcome = if body == "OK" {
        Ok(String::new())
    } else if let Some(payload) = body.strip_prefix("OK ") {
        Ok(payload.to_owned())
    } else if let Some(rest) = body.strip_prefix("ERR ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return Err(error(
                "an error code is upper case, e.g. ERR BUSY ...",
                line,
            ));
        }
        Err(WireFault::new(code, message))
    } else {
        return Err(error("a reply starts with OK or ERR", line));
    };
    Ok(Reply { tag, outcome })
}

/// The JSON result of `op` from a reply's payload: the same shapes the MQTT transport returns.
pub fn result_value(op: &Op, payload: &str) -> Result<Value, WireError> {
    Ok(match op {
        Op::Identify => {
            let mut fields = payload.split(',').map(str::trim);
            let model = fields.next().unwrap_or("");
            let protocol = fields.next().unwrap_or("");
            let channels: Vec<&str> = fields.filter(|c| !c.is_empty()).collect();
            serde_json::json!({"model": model, "protocol": protocol, "channels": channels})
        }
        Op::Start { .. } | Op::Stop { .. } => serde_json::json!({}),
        Op::Status { .. } => {
            let (state, rest) = payload.split_once(' ').unwrap_or((payload, ""));
            let cycle = || -> Result<u64, WireError> {
                rest.trim()
                    .parse()
                    .map_err(|_| error("expected a cycle count after the state", payload))
            };
            match state {
                "IDLE" => serde_json::json!({"state": "idle"}),
                "RUNNING" => serde_json::json!({"state": "running", "cycle": cycle()?}),
                "FINISHED" => serde_json::json!({"state": "finished", "cycle": cycle()?}),
                "FAULTED" => serde_json::json!({"state": "faulted", "reason": rest}),
                _ => {
                    return Err(error(
                        "expected IDLE, RUNNING, FINISHED or FAULTED",
                        payload,
                    ));
                }
            }
        }
        Op::Data { .. } | Op::Build { .. } | Op::Replay { .. } => {
            serde_json::from_str(payload).map_err(|e| error(format!("the result: {e}"), payload))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CyclingTest;
    use labloop_core::{CcCvFinish, ChargeProtocol, ChargeStep};

    fn test_spec() -> CyclingTest {
        CyclingTest {
            key: "exp-1/cycle/1".into(),
            cell_id: "cell-1".into(),
            cycles_before: 0,
            formulation: vec![("EC".into(), 0.5)],
            parameters: Vec::new(),
            protocol: ChargeProtocol {
                steps: vec![ChargeStep {
                    soc_from: 0.0,
                    soc_to: 0.8,
                    c_rate: 4.8,
                }],
                finish: CcCvFinish {
                    c_rate: 1.0,
                    cv_voltage_v: 3.6,
                },
            },
            discharge_c_rate: 4.0,
            cycles: 100,
        }
    }

    #[test]
    fn every_serial_operation_round_trips() {
        let ops = [
            Op::Identify,
            Op::Start {
                channel: "ch01".into(),
                test: test_spec(),
            },
            Op::Stop {
                channel: "ch02".into(),
            },
            Op::Status {
                channel: "ch03".into(),
            },
            Op::Data {
                channel: "ch04".into(),
                from_seq: 17,
                max: 50,
            },
            Op::Build {
                order: crate::CellOrder {
                    key: "exp-1/build/1".into(),
                    formulation: vec![("EC".into(), 0.3)],
                    parameters: Vec::new(),
                    electrolyte_ul: 70.0,
                    ..crate::CellOrder::default()
                },
            },
        ];
        for op in ops {
            let line = encode_command("t-9", &op).unwrap();
            assert!(
                line.ends_with('\n') && line.matches('\n').count() == 1,
                "{line}"
            );
            assert_eq!(
                decode_command(&line).unwrap(),
                (Some("t-9".into()), op.clone())
            );
        }
        assert_eq!(
            decode_command("stat? ch07\r\n").unwrap(),
            (
                None,
                Op::Status {
                    channel: "ch07".into()
                }
            )
        );
    }

    #[test]
    fn replies_decode_to_the_results_mqtt_returns() {
        let status = Op::Status {
            channel: "ch01".into(),
        };
        for value in [
            serde_json::json!({"state": "idle"}),
            serde_json::json!({"state": "running", "cycle": 17}),
            serde_json::json!({"state": "finished", "cycle": 100}),
            serde_json::json!({"state": "faulted", "reason": "over temperature: 80 °C"}),
        ] {
            let line = encode_reply(Some("a"), &status, &Ok(value.clone()));
            let reply = decode_reply(&line).unwrap();
            assert_eq!(reply.tag.as_deref(), Some("a"));
            assert_eq!(
                result_value(&status, &reply.outcome.unwrap()).unwrap(),
                value
            );
        }
        let identify =
            serde_json::json!({"model": "sim", "protocol": "1.0", "channels": ["ch01", "ch02"]});
        let line = encode_reply(None, &Op::Identify, &Ok(identify.clone()));
        assert_eq!(line, "OK sim,1.0,ch01,ch02\n");
        let payload = decode_reply(&line).unwrap().outcome.unwrap();
        assert_eq!(result_value(&Op::Identify, &payload).unwrap(), identify);
        let refused = encode_reply(
            Some("b"),
            &status,
            &Err(WireFault::new("BUSY", "ch01: busy\nwith another")),
        );
        assert_eq!(refused, "@b ERR BUSY ch01: busy with another\n");
        assert_eq!(
            decode_reply(&refused).unwrap().outcome,
            Err(WireFault::new("BUSY", "ch01: busy with another"))
        );
    }

    #[test]
    fn garbage_lines_are_errors_naming_the_serial_line() {
        for bad in [
            "",
            "@",
            "@bad!tag OK",
            "HELLO",
            "START ch01",
            "START ch01 {",
            "DATA? ch01",
            "DATA? ch01,x",
            "DATA? ch01,1,2,3",
            "STOP",
            "STOP a b",
            "\u{0}\u{1}\u{ff}",
        ] {
            let e = decode_command(bad).unwrap_err();
            assert!(e.to_string().starts_with("serial line: "), "{bad:?}: {e}");
        }
        for bad in ["", "KO", "ERR", "ERR busy x", "@x", "OKAY"] {
            assert!(decode_reply(bad).is_err(), "{bad:?}");
        }
        let status = Op::Status {
            channel: "ch01".into(),
        };
        for bad in ["RUNNING", "RUNNING x", "SLEEPING"] {
            assert!(result_value(&status, bad).is_err(), "{bad:?}");
        }
    }
}
