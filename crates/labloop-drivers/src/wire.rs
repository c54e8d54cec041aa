//! The wire protocols' messages (`drivers/PROTOCOL.md`), as the drivers and the simulator both encode
//! and decode them: JSON as MQTT carries it, and the operations and results the serial line codec
//! ([`crate::scpi`]) maps to and from SCPI-style lines. Decoding never panics: garbage gives a
//! [`WireError`] naming where it came from.

use crate::{ChannelStatus, CyclingTest, DriverError};
use labloop_core::{ChannelId, CycleRecord};
use serde::{Deserialize, Serialize};

/// Protocol version carried in `status` messages; a driver refuses an instrument with another major.
pub const PROTOCOL_VERSION: &str = "1.0";

/// A command to an instrument (`<prefix>/cmd`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Unique per command; a repeated id gets the first reply again and is not carried out twice.
    pub id: String,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

/// The operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Who are you: model, channels, protocol version.
    Identify,
    /// Load and start a test on a channel (idempotent by `test.key`).
    Start {
        /// The channel's local name, e.g. `ch01`.
        channel: String,
        /// What to run.
        test: CyclingTest,
    },
    /// Stop the channel's test (an idle channel is not an error).
    Stop {
        /// The channel.
        channel: String,
    },
    /// What the channel does.
    Status {
        /// The channel.
        channel: String,
    },
    /// Publish the current test's records with `seq >= from_seq` again (and its end, if it ended).
    Replay {
        /// The channel.
        channel: String,
        /// First sequence number wanted.
        from_seq: u64,
    },
    /// Records of the channel's current test with `seq >= from_seq`, at most `max`, returned in the
    /// reply as a [`DataReply`] (pull mode: the serial transport's way to read records).
    Data {
        /// The channel.
        channel: String,
        /// First sequence number wanted.
        from_seq: u64,
        /// Most records in one reply.
        #[serde(default = "default_max_records")]
        max: u32,
    },
    /// Build a coin cell (cell builders), idempotent by `order.key`; the reply is a
    /// [`crate::BuiltCell`].
    Build {
        /// What to build.
        order: crate::CellOrder,
    },
}

fn default_max_records() -> u32 {
    DEFAULT_MAX_RECORDS
}

/// Records per `data` reply when the command does not say.
pub const DEFAULT_MAX_RECORDS: u32 = 100;

/// The result of [`Op::Data`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataReply {
    /// The idempotency key of the test on the channel (none: no test was ever loaded).
    pub test_key: Option<String>,
    /// Records with their `seq`, in order, from the one asked for.
    pub records: Vec<SeqRecord>,
    /// Set once the test has ended: its last `seq` (0 when it produced none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_seq: Option<u64>,
    /// Why the test stopped, when it stopped on a fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// One record and its sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqRecord {
    /// Per-test sequence number, from 1.
    pub seq: u64,
    /// The measurement.
    pub record: CycleRecord,
}

/// The result of [`Op::Status`] as JSON (`{"state": "running", "cycle": 17}`, ...).
pub fn status_value(status: &ChannelStatus) -> serde_json::Value {
    match status {
        ChannelStatus::Idle => serde_json::json!({"state": "idle"}),
        ChannelStatus::Running { cycle } => serde_json::json!({"state": "running", "cycle": cycle}),
        ChannelStatus::Finished { cycles } => {
            serde_json::json!({"state": "finished", "cycle": cycles})
        }
        ChannelStatus::Faulted { reason } => {
            serde_json::json!({"state": "faulted", "reason": reason})
        }
    }
}

/// Reads the result of [`Op::Status`] back.
pub fn status_from_value(result: &serde_json::Value) -> ChannelStatus {
    let cycle = result["cycle"].as_u64().unwrap_or(0) as u32;
    match result["state"].as_str().unwrap_or("") {
        "running" => ChannelStatus::Running { cycle },
        "finished" => ChannelStatus::Finished { cycles: cycle },
        "faulted" => ChannelStatus::Faulted {
            reason: result["reason"].as_str().unwrap_or("").to_owned(),
        },
        _ => ChannelStatus::Idle,
    }
}

/// A reply (`<prefix>/ack`), matched to its command by `id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The command's id.
    pub id: String,
    /// Whether it was carried out.
    pub ok: bool,
    /// What it returns (see each operation), when `ok`.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub result: serde_json::Value,
    /// Why not, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireFault>,
}

/// An instrument's refusal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireFault {
    /// `BUSY`, `UNKNOWN_CHANNEL`, `BAD_COMMAND`, `FAULT`.
    pub code: String,
    /// For people; a channel refusal starts with the channel's local name and a colon.
    pub message: String,
}

impl WireFault {
    /// A refusal with `code`.
    pub fn new(code: &str, message: &str) -> Self {
        Self {
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// What an instrument answers for a driver error of its own.
    pub fn from_error(error: &DriverError) -> Self {
        match error {
            DriverError::Busy { channel, .. } => Self::new(
                "BUSY",
                &format!("{}: busy with another test", crate::wire_name(channel)),
            ),
            DriverError::UnknownChannel { channel, .. } => Self::new(
                "UNKNOWN_CHANNEL",
                &format!("{}: no such channel", crate::wire_name(channel)),
            ),
            other => Self::new("FAULT", &other.to_string()),
        }
    }

    /// The driver error for this refusal by `instrument`.
    pub fn into_error(self, instrument: &str) -> DriverError {
        let channel = || {
            let local = self.message.split(':').next().unwrap_or("").trim();
            ChannelId::from(format!("{instrument}/{local}").as_str())
        };
        match self.code.as_str() {
            "BUSY" => DriverError::Busy {
                instrument: instrument.to_owned(),
                channel: channel(),
            },
            "UNKNOWN_CHANNEL" => DriverError::UnknownChannel {
                instrument: instrument.to_owned(),
                channel: channel(),
            },
            code => DriverError::Instrument {
                instrument: instrument.to_owned(),
                message: format!("{code}: {}", self.message),
            },
        }
    }
}

/// One message on `<prefix>/telemetry/<channel>`: a record, or the end of the test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMessage {
    /// The test's idempotency key (records of another test are ignored).
    pub test_key: String,
    /// Per-test sequence number of the record, from 1 without gaps; absent on the end message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The record (with `seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<CycleRecord>,
    /// On the end message: the last `seq` of the test (0 when it produced none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_seq: Option<u64>,
    /// On the end message when the test stopped on a fault: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// The retained `<prefix>/status` message (also the broker's last will, with `state: offline`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstrumentStatus {
    /// `online` or `offline`.
    pub state: String,
    /// [`PROTOCOL_VERSION`] of the instrument.
    #[serde(default)]
    pub protocol: String,
    /// Its model, free text.
    #[serde(default)]
    pub model: String,
    /// Its channels' local names.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// A message that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{topic}: {message}")]
pub struct WireError {
    /// Where it came.
    pub topic: String,
    /// What was wrong.
    pub message: String,
}

/// Decodes a JSON payload arriving on `topic`.
pub fn decode<T: for<'de> Deserialize<'de>>(topic: &str, payload: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(payload).map_err(|e| WireError {
        topic: topic.to_owned(),
        message: format!(
            "{e} in `{}`",
            String::from_utf8_lossy(&payload[..payload.len().min(120)])
        ),
    })
}

/// Encodes a message as JSON.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).expect("wire messages always serialise")
}

/// The topics of an instrument under its prefix.
#[derive(Clone, Debug)]
pub struct Topics {
    /// `<prefix>`, without a trailing slash.
    pub prefix: String,
}

impl Topics {
    /// Topics under `prefix` (`labloop/<lab>/<instrument>`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }
    /// Commands to the instrument.
    pub fn cmd(&self) -> String {
        format!("{}/cmd", self.prefix)
    }
    /// Replies from it.
    pub fn ack(&self) -> String {
        format!("{}/ack", self.prefix)
    }
    /// Its retained status and last will.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }
    /// One channel's records.
    pub fn telemetry(&self, channel: &str) -> String {
        format!("{}/telemetry/{channel}", self.prefix)
    }
    /// Every channel's records (a subscription filter).
    pub fn all_telemetry(&self) -> String {
        format!("{}/telemetry/+", self.prefix)
    }
    /// The channel a telemetry topic is about.
    pub fn channel_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/telemetry/")
            .filter(|c| !c.is_empty() && !c.contains('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_with_their_op_tag() {
        let c = Command {
            id: "c-1".into(),
            op: Op::Replay {
                channel: "ch02".into(),
                from_seq: 17,
            },
        };
        let bytes = encode(&c);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"id":"c-1","op":"replay","channel":"ch02","from_seq":17}"#
        );
        assert_eq!(decode::<Command>("t", &bytes).unwrap(), c);
    }

    #[test]
    fn garbage_is_an_error_naming_the_topic() {
        for bad in [
            &b"\xff\xfe"[..],
            b"{",
            b"{\"id\":\"x\",\"op\":\"explode\"}",
            b"[]",
            b"",
        ] {
            let e = decode::<Command>("lab/c1/cmd", bad).unwrap_err();
            assert!(e.to_string().starts_with("lab/c1/cmd: "), "{e}");
        }
    }

    #[test]
    fn telemetry_topics_name_their_channel() {
        let t = Topics::new("labloop/lab1/cycler1/");
        assert_eq!(t.telemetry("ch03"), "labloop/lab1/cycler1/telemetry/ch03");
        assert_eq!(
            t.channel_of("labloop/lab1/cycler1/telemetry/ch03"),
            Some("ch03")
        );
        assert_eq!(t.channel_of("labloop/lab1/cycler1/telemetry/"), None);
        assert_eq!(t.channel_of("labloop/lab1/other/telemetry/ch03"), None);
    }
}
