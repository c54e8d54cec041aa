//! MacNet's JSON messages: requests built, replies framed and decoded. Decoding never panics: a
//! reply that is not what was asked for is an error naming its byte offset in the stream.
//!
//! A request is one JSON-RPC 2.0 object (`"method": "MacNet"`, the operation in
//! `params.FClass`/`params.FNum`, channels 0-based in `params.Chan`), sent without a terminator.
//! A reply is one JSON object ended by `\r\n` (MacNet pretty-prints with `\n` inside, never
//! `\r\n`). Replies are matched to their request by `FClass`, `FNum` and `Chan` in the result:
//! MacNet servers are not consistent about echoing the request's `id` (pymacnet's
//! `MaccorSpoofer` always answers 1987).

use crate::link::{Answer, Framing};
use crate::vendor::VendorState;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// MacNet's default JSON port.
pub const DEFAULT_PORT: u16 = 57570;

/// The longest reply labloop waits for the end of (a status reply is ~400 bytes).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// One request, as bytes on the wire.
pub fn request(id: u64, fclass: u16, fnum: u16, params: Map<String, Value>) -> Vec<u8> {
    let mut all = Map::new();
    all.insert("FClass".into(), fclass.into());
    all.insert("FNum".into(), fnum.into());
    all.extend(params);
    let message = json!({"jsonrpc": "2.0", "method": "MacNet", "params": all, "id": id});
    serde_json::to_vec(&message).expect("a JSON value always serialises")
}

/// Cuts the reply stream into messages.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    /// Bytes of the stream consumed before `buffer`.
    consumed: u64,
}

impl Framing for Framer {
    type Message = Map<String, Value>;

    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete message: `None` until one has arrived; an error for a message that is
    /// not a JSON object (garbage, a truncated reply) or one too long to be MacNet's.
    fn next_message(&mut self) -> Option<Result<Map<String, Value>, String>> {
        let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") else {
            if self.buffer.len() > MAX_FRAME_BYTES {
                let offset = self.consumed;
                self.consumed += self.buffer.len() as u64;
                self.buffer.clear();
                return Some(Err(format!(
                    "byte offset {offset}: no end of message (\\r\\n) within {MAX_FRAME_BYTES} bytes"
                )));
            }
            return None;
        };
        let offset = self.consumed;
        let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
        self.consumed += frame.len() as u64;
        Some(match serde_json::from_slice::<Value>(&frame[..end]) {
            Ok(Value::Object(message)) => Ok(message),
            Ok(other) => Err(format!(
                "byte offset {offset}: expected a JSON object, got `{}`",
                shorten(&other.to_string())
            )),
            Err(e) => Err(format!(
                "byte offset {offset}: not a JSON message ({e}): `{}`",
                shorten(&String::from_utf8_lossy(&frame[..end]))
            )),
        })
    }
}

fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// The reply to `fclass`/`fnum` on `chan` (a JSON-RPC `error`, or a `Result` other than `OK`,
/// is a refusal), or what is wrong with it (a protocol error).
pub fn reply(
    message: Map<String, Value>,
    fclass: u16,
    fnum: u16,
    chan: Option<u32>,
) -> Result<Answer<Map<String, Value>>, String> {
    if let Some(error) = message.get("error") {
        return Ok(Answer::Refused(error.to_string()));
    }
    let Some(Value::Object(result)) = message.get("result") else {
        return Err(format!(
            "a reply without a `result` object: `{}`",
            shorten(&Value::Object(message).to_string())
        ));
    };
    let field = |name: &str| result.get(name).and_then(Value::as_i64);
    if field("FClass") != Some(i64::from(fclass)) || field("FNum") != Some(i64::from(fnum)) {
        return Err(format!(
            "asked for ({fclass}, {fnum}), got a reply to ({}, {})",
            field("FClass").map_or("?".into(), |v| v.to_string()),
            field("FNum").map_or("?".into(), |v| v.to_string())
        ));
    }
    if let (Some(asked), Some(got)) = (chan, field("Chan"))
        && got != i64::from(asked)
    {
        return Err(format!(
            "asked about channel {asked} (0-based), got a reply about channel {got}"
        ));
    }
    match result.get("Result").and_then(Value::as_str) {
        Some(r) if !r.eq_ignore_ascii_case("OK") => Ok(Answer::Refused(r.to_owned())),
        _ => Ok(Answer::Reply(result.clone())),
    }
}

/// A channel's status and readings (operation 4/7).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    /// The channel (0-based).
    pub chan: i64,
    /// Its state ([`state`]).
    pub stat: i64,
    /// Cycles of the test so far (the procedure's cycle counter, from 0).
    pub cycle: i64,
    /// The procedure's step.
    pub step: i64,
    /// Test time (s).
    pub test_time: f64,
    /// Time since the step began (s).
    pub step_time: f64,
    /// Capacity of the step so far (Ah).
    pub capacity: f64,
    /// Energy of the step so far (Wh).
    pub energy: f64,
    /// Current (A), negative while discharging.
    pub current: f64,
    /// Voltage (V).
    pub voltage: f64,
    /// The number of the channel's latest data record.
    pub last_rec_num: u64,
}

/// Decodes a 4/7 result.
pub fn status(result: Map<String, Value>) -> Result<Status, String> {
    serde_json::from_value(Value::Object(result)).map_err(|e| format!("channel status: {e}"))
}

/// A MacNet channel state (`Stat`) in the adapter's words; `None` for a number MacNet does not
/// define.
pub fn state(stat: i64) -> Option<VendorState> {
    let faulted = |what: &str| VendorState::Faulted(format!("the channel reports {what}"));
    Some(match stat {
        0 | 1 | 7 => VendorState::Idle,
        2 | 3 | 8 | 12 | 14 | 15 => VendorState::Running,
        4 => VendorState::Completed,
        5 => faulted("Problem (a limit or safety stop; see the test's data file)"),
        6 => faulted("Not/Avl (channel not available)"),
        9 => faulted("PWR Fail (power failure)"),
        10 => faulted("No Cntllr (no controller)"),
        11 => faulted("ShutDown"),
        13 => faulted("Blocked"),
        16 => faulted("Rem Maint (under remote maintenance)"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_framed_across_reads_and_garbage_is_named_by_offset() {
        let mut framer = Framer::default();
        let reply = "{\n    \"jsonrpc\": \"2.0\",\n    \"result\": {\"FClass\": 6, \"FNum\": 5, \"Chan\": 2, \"Result\": \"OK\"},\n    \"id\": 1987\n}\r\n";
        let (a, b) = reply.as_bytes().split_at(17);
        framer.push(a);
        assert!(framer.next_message().is_none());
        framer.push(b);
        framer.push(b"\x00\xffgarbage\r\n{\"truncated\": \r\n");
        let first = framer.next_message().expect("one message").expect("json");
        assert_eq!(
            super::reply(first, 6, 5, Some(2)),
            Ok(Answer::Reply(
                serde_json::from_str(r#"{"FClass": 6, "FNum": 5, "Chan": 2, "Result": "OK"}"#)
                    .unwrap()
            ))
        );
        let garbage = framer.next_message().expect("a frame").unwrap_err();
        assert!(
            garbage.starts_with(&format!("byte offset {}", reply.len())),
            "{garbage}"
        );
        assert!(framer.next_message().expect("a frame").is_err());
        assert!(framer.next_message().is_none());
    }

    #[test]
    fn a_reply_to_another_question_is_a_protocol_error() {
        let message = |text: &str| serde_json::from_str::<Map<String, Value>>(text).unwrap();
        let other = message(r#"{"result": {"FClass": 4, "FNum": 7, "Chan": 1}}"#);
        assert!(reply(other.clone(), 6, 2, Some(1)).is_err());
        assert!(reply(other, 4, 7, Some(3)).is_err());
        assert!(reply(message(r#"{"err": 1}"#), 4, 7, Some(3)).is_err());
        assert_eq!(
            reply(
                message(
                    r#"{"result": {"FClass": 6, "FNum": 2, "Chan": 0, "Result": "Channel busy"}}"#
                ),
                6,
                2,
                Some(0)
            ),
            Ok(Answer::Refused("Channel busy".into()))
        );
        let status = status(
            message(r#"{"FClass": 4, "FNum": 7, "Chan": 0, "Stat": 2, "Cycle": 3, "Step": 5, "TestTime": 2.0, "StepTime": 1.0, "Capacity": 0.1, "Energy": 0.3, "Current": -1.0, "Voltage": 3.1, "LastRecNum": 9}"#),
        )
        .unwrap();
        assert_eq!((status.cycle, status.last_rec_num), (3, 9));
        let missing = super::status(message(r#"{"FClass": 4, "FNum": 7, "Chan": 0}"#)).unwrap_err();
        assert!(missing.contains("missing field"), "{missing}");
        assert_eq!(state(99), None);
    }
}
