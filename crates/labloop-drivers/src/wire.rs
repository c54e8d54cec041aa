//! The wire protocols' messages (`drivers/PROTOCOL.md`), as the drivers and the simulator both encode
//! and decode them: JSON as MQTT carries it, and the operations and results the serial line codec
//! ([`crate::scpi`]) maps to and from SCPI-style lines. Decoding never panics: garbage gives a
//! [`WireError`] naming where it came from.

use crate::{ChannelStatus, CyclingTest, DriverError};
use labloop_core::{ChannelId, CycleRecord, Telemetry};
use serde::{Deserialize, Serialize};

/// Protocol version carried in `status` messages and `identify` replies; a driver refuses an
/// instrument with another major ([`check_protocol`]).
pub const PROTOCOL_VERSION: &str = "1.1";

/// Whether an instrument speaking `version` can be driven: the same major version (a later minor
/// only adds what a reader may ignore).
pub fn check_protocol(version: &str) -> Result<(), String> {
    let ours = PROTOCOL_VERSION.split('.').next().unwrap_or("1");
    let mut parts = version.trim().split('.');
    let major = parts.next().unwrap_or("");
    let minor_ok = parts.next().is_none_or(|m| m.parse::<u32>().is_ok()) && parts.next().is_none();
    if major.parse::<u32>().is_err() || !minor_ok {
        return Err(format!(
            "protocol version {version:?} is not MAJOR.MINOR (labloop speaks {PROTOCOL_VERSION})"
        ));
    }
    if major != ours {
        return Err(format!(
            "speaks protocol {version}; labloop speaks {PROTOCOL_VERSION} (major versions must match)"
        ));
    }
    Ok(())
}

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
        #[serde(deserialize_with = "labloop_core::integral::u64_lenient")]
        from_seq: u64,
    },
    /// Records of the channel's current test with `seq >= from_seq`, at most `max`, returned in the
    /// reply as a [`DataReply`] (pull mode: the serial transport's way to read records).
    Data {
        /// The channel.
        channel: String,
        /// First sequence number wanted.
        #[serde(deserialize_with = "labloop_core::integral::u64_lenient")]
        from_seq: u64,
        /// Most records in one reply.
        #[serde(
            default = "default_max_records",
            deserialize_with = "labloop_core::integral::u32_lenient"
        )]
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

/// The result of [`Op::Data`]. Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReply {
    /// The idempotency key of the test on the channel (none: no test was ever loaded).
    pub test_key: Option<String>,
    /// Records with their `seq`, in order, from the one asked for.
    pub records: Vec<Telemetry>,
    /// Set once the test has ended: its last `seq` (0 when it produced none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "labloop_core::integral::option_u64_lenient"
    )]
    pub end_seq: Option<u64>,
    /// Why the test stopped, when it stopped on a fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl DataReply {
    /// Checks every record ([`check_record`]); the first bad one names its `seq`.
    pub fn check(&self) -> Result<(), String> {
        self.records.iter().try_for_each(|r| {
            check_record(&r.record).map_err(|e| format!("record seq {}: {e}", r.seq))
        })
    }
}

/// What a record must be beyond its JSON shape: a discharge curve, when present, has the shape of a
/// discharge (equal lengths, voltage falling; [`labloop_core::DischargeCurve::check_shape`]), so a
/// curve that would silently mislead a lifetime model is a protocol error instead.
pub fn check_record(record: &CycleRecord) -> Result<(), String> {
    match &record.discharge_curve {
        Some(curve) => curve.check_shape(),
        None => Ok(()),
    }
}

/// The result of [`Op::Status`] as JSON (`{"state": "running", "cycle": 17}`, ...); an instrument
/// speaking 1.1 adds the channel's `test_key`.
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

/// One message on `<prefix>/telemetry/<channel>`: a record, or the end of the test. Unknown fields
/// (a bridge's own time stamp, say) are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TelemetryMessage {
    /// The test's idempotency key (records of another test are ignored).
    pub test_key: String,
    /// Per-test sequence number of the record, from 1 without gaps; absent on the end message.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "labloop_core::integral::option_u64_lenient"
    )]
    pub seq: Option<u64>,
    /// The record (with `seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<CycleRecord>,
    /// On the end message: the last `seq` of the test (0 when it produced none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "labloop_core::integral::option_u64_lenient"
    )]
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

/// Decodes a JSON payload arriving on `topic`; an error names the field (`record.cycle: ...`) and
/// quotes the start of the payload.
pub fn decode<T: for<'de> Deserialize<'de>>(topic: &str, payload: &[u8]) -> Result<T, WireError> {
    let quote = || String::from_utf8_lossy(&payload[..payload.len().min(120)]).into_owned();
    let mut reader = serde_json::Deserializer::from_slice(payload);
    let value: T = serde_path_to_error::deserialize(&mut reader).map_err(|e| WireError {
        topic: topic.to_owned(),
        message: match e.path().to_string().as_str() {
            "." => format!("{} in `{}`", e.inner(), quote()),
            path => format!("field `{path}`: {} in `{}`", e.inner(), quote()),
        },
    })?;
    reader.end().map_err(|e| WireError {
        topic: topic.to_owned(),
        message: format!("{e} in `{}`", quote()),
    })?;
    Ok(value)
}

/// [`decode`], then the checks beyond shape ([`check_record`]) for telemetry.
pub fn decode_telemetry(topic: &str, payload: &[u8]) -> Result<TelemetryMessage, WireError> {
    let message: TelemetryMessage = decode(topic, payload)?;
    if let Some(record) = &message.record {
        check_record(record).map_err(|e| WireError {
            topic: topic.to_owned(),
            message: format!("seq {}: record.{e}", message.seq.unwrap_or(0)),
        })?;
    }
    Ok(message)
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

    fn record_json(cycle: &str, curve: &str) -> String {
        format!(
            r#"{{"cycle": {cycle}, "charge_capacity_ah": 1.07, "discharge_capacity_ah": 1.06,
            "internal_resistance_ohm": 0.016, "temperature_min_c": 30.0, "temperature_avg_c": 33.0,
            "temperature_max_c": 36.0, "charge_time_s": 600.0{curve}}}"#
        )
    }

    /// What numpy and pandas bridges send (whole numbers as floats) and envelope fields of a
    /// bridge's own are read, not refused.
    #[test]
    fn integral_floats_and_extra_envelope_fields_are_accepted() {
        let text = format!(
            r#"{{"test_key": "k", "seq": 41.0, "ts": "2026-12-02T10:00:00Z", "record": {}}}"#,
            record_json("41.0", "")
        );
        let m: TelemetryMessage = decode("t", text.as_bytes()).unwrap();
        assert_eq!(m.seq, Some(41));
        assert_eq!(m.record.unwrap().cycle, 41);
        let end: TelemetryMessage = decode(
            "t",
            br#"{"test_key": "k", "end_seq": 100.0, "bridge": "x"}"#,
        )
        .unwrap();
        assert_eq!(end.end_seq, Some(100));
        let data: DataReply = decode(
            "t",
            format!(
                r#"{{"test_key": "k", "records": [{{"seq": 1.0, "record": {}}}], "host": "b"}}"#,
                record_json("1", "")
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(data.records[0].seq, 1);
        let cmd: Command = decode(
            "t",
            br#"{"id": "1", "op": "data", "channel": "ch01", "from_seq": 3.0, "max": 10.0}"#,
        )
        .unwrap();
        assert_eq!(
            cmd.op,
            Op::Data {
                channel: "ch01".into(),
                from_seq: 3,
                max: 10
            }
        );
    }

    /// Leniency stops where meaning would change: a fraction of a cycle, a negative seq.
    #[test]
    fn non_whole_numbers_stay_errors_naming_the_field() {
        for (cycle, seq) in [("41.5", "41"), ("41", "-1"), ("41", "1.5"), ("1e20", "1")] {
            let text = format!(
                r#"{{"test_key": "k", "seq": {seq}, "record": {}}}"#,
                record_json(cycle, "")
            );
            assert!(
                decode::<TelemetryMessage>("t", text.as_bytes()).is_err(),
                "{cycle} {seq}"
            );
        }
    }

    #[test]
    fn a_curve_that_is_not_a_discharge_is_a_protocol_error() {
        let rising = r#", "discharge_curve": {"voltage_v": [2.0, 3.0, 3.6], "capacity_ah": [0.0, 0.5, 1.0]}"#;
        let uneven =
            r#", "discharge_curve": {"voltage_v": [3.6, 3.0, 2.0], "capacity_ah": [0.0, 0.5]}"#;
        let good = r#", "discharge_curve": {"voltage_v": [3.6, 3.0, 2.0], "capacity_ah": [0.0, 0.5, 1.0]}"#;
        let read = |curve: &str| -> CycleRecord {
            serde_json::from_str(&record_json("1", curve)).unwrap()
        };
        assert!(check_record(&read(rising)).unwrap_err().contains("rises"));
        assert!(
            check_record(&read(uneven))
                .unwrap_err()
                .contains("3 voltages but 2 capacities")
        );
        assert_eq!(check_record(&read(good)), Ok(()));
    }

    #[test]
    fn protocol_versions_must_share_the_major() {
        assert_eq!(check_protocol("1.0"), Ok(()));
        assert_eq!(check_protocol("1.7"), Ok(()));
        assert!(check_protocol("2.7").unwrap_err().contains("major"));
        assert!(check_protocol("").is_err());
        assert!(check_protocol("one").is_err());
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
