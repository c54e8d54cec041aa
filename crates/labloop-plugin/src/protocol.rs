//! The messages of `plugins/PROTOCOL.md`, as labloop writes and reads them. Decoding never panics: a
//! line that is not a message gives a [`LineError`] naming the line and the byte where it went wrong.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The protocol labloop speaks; a plugin must answer `hello` with the same major version.
pub const PROTOCOL: &str = "labloop-plugin/1";

/// Longest line labloop reads from a plugin (a reply with a model's inputs is far below it).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// labloop's first message.
#[derive(Clone, Debug, Serialize)]
pub struct HelloRequest<'a> {
    /// Always `hello`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// [`PROTOCOL`].
    pub protocol: &'static str,
    /// The campaign it serves (empty for `labloop validate`).
    pub campaign: &'a str,
    /// A folder the plugin may keep its state in (results by call id, so a repeated call gets
    /// the first reply); it outlives the plugin's process.
    pub state_dir: &'a str,
}

/// What a plugin says about itself in its `hello`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol it speaks, e.g. `labloop-plugin/1`.
    pub protocol: String,
    /// Its name.
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// Whether it keeps each call's result by id where a restart of its own finds it (so a call
    /// repeated under the same id is answered, never carried out twice). A plugin that keeps
    /// nothing says `false`, and labloop then never repeats a call that acts (`step.run`, and
    /// instrument operations other than reads) blindly.
    #[serde(default)]
    pub persistent: bool,
    /// What it offers.
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// What a plugin offers, by capability.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Step kinds, by name (`step.run`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, Operation>,
    /// Measurements, by name (`measurement.read`): they change nothing, so labloop may repeat one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measurements: BTreeMap<String, Operation>,
    /// Lifetime models, by name (`model.predict`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelInfo>,
    /// A battery cycler (`instrument` calls with `drivers/PROTOCOL.md`'s operations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycler: Option<InstrumentInfo>,
    /// A cell builder (`instrument` calls: `identify`, `build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_builder: Option<InstrumentInfo>,
}

/// A step kind or a measurement: its inputs' JSON Schema and its outputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// For people.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the `with:` object (absent: any object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Value>,
    /// The outputs it returns, by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, Output>,
}

/// One output of a step or measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// Its unit, e.g. `ohm`, `mS/cm` (empty: none).
    #[serde(default)]
    pub unit: String,
    /// For people.
    #[serde(default)]
    pub description: String,
}

/// A lifetime model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Early cycles it predicts from.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Whether it wants each early cycle's summary (`records`) besides labloop's features.
    #[serde(default)]
    pub records: bool,
    /// For people.
    #[serde(default)]
    pub description: String,
}

fn default_window() -> u32 {
    100
}

/// An instrument a plugin drives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstrumentInfo {
    /// Channels (cyclers) or cells at once (builders).
    #[serde(default)]
    pub channels: u32,
}

/// A call labloop makes.
#[derive(Clone, Debug, Serialize)]
pub struct Call<'a> {
    /// Always `call`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unique per action; repeated only for the same action.
    pub id: &'a str,
    /// `step.run`, `measurement.read`, `model.predict`, `instrument` or `ping`.
    pub method: &'a str,
    /// The method's parameters.
    pub params: &'a Value,
}

/// What a plugin writes.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Its `hello`.
    Hello(Box<Hello>),
    /// A call succeeded.
    Result {
        /// The call's id.
        id: String,
        /// Its result.
        #[serde(default)]
        value: Value,
    },
    /// A call failed.
    Error {
        /// The call's id.
        id: String,
        /// `bad_request`, `busy`, `instrument`, `timeout`, `internal`, or one of
        /// `drivers/PROTOCOL.md`'s codes for `instrument` calls.
        code: String,
        /// For people.
        #[serde(default)]
        message: String,
    },
    /// Something to keep with the campaign's log (`topic`: `log`, `progress`, ...).
    Event {
        /// What it is about.
        topic: String,
        /// Its content.
        #[serde(default)]
        value: Value,
    },
}

/// A line that is not a message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("line {line}, byte {byte}: {detail} (`{excerpt}`)")]
pub struct LineError {
    /// 1-based line of the plugin's output.
    pub line: u64,
    /// 0-based byte in the line where decoding failed.
    pub byte: usize,
    /// What was wrong.
    pub detail: String,
    /// The line's start, for people.
    pub excerpt: String,
}

/// Decodes line `number` of a plugin's output.
pub fn decode(line: &[u8], number: u64) -> Result<Message, LineError> {
    let excerpt = || String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    let text = std::str::from_utf8(line).map_err(|e| LineError {
        line: number,
        byte: e.valid_up_to(),
        detail: "not UTF-8".into(),
        excerpt: excerpt(),
    })?;
    serde_json::from_str(text).map_err(|e| {
        // serde_json counts lines and columns from 1 within this one line.
        let byte = text
            .lines()
            .take(e.line().saturating_sub(1))
            .map(|l| l.len() + 1)
            .sum::<usize>()
            + e.column().saturating_sub(1);
        LineError {
            line: number,
            byte,
            detail: e.to_string(),
            excerpt: excerpt(),
        }
    })
}

/// Whether `protocol` (a plugin's) can be spoken with: `labloop-plugin/<major>[.<minor>]` with
/// labloop's major.
pub fn check_protocol(protocol: &str) -> Result<(), String> {
    let major = |p: &str| {
        p.strip_prefix("labloop-plugin/")
            .map(|v| v.split('.').next().unwrap_or("").to_owned())
    };
    match major(protocol) {
        Some(theirs) if Some(theirs.clone()) == major(PROTOCOL) => Ok(()),
        Some(_) => Err(format!(
            "speaks {protocol}; labloop speaks {PROTOCOL} (major versions must match)"
        )),
        None => Err(format!("`protocol` is {protocol:?}, expected `{PROTOCOL}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode_and_garbage_names_its_place() {
        let ok = decode(br#"{"type":"result","id":"a/b/1","value":{"x":1}}"#, 1).unwrap();
        assert_eq!(
            ok,
            Message::Result {
                id: "a/b/1".into(),
                value: serde_json::json!({"x": 1})
            }
        );
        let e = decode(b"{\"type\":\"result\",\"id\": 3}", 7).unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.detail.contains("invalid type"), "{e}");
        let e = decode(b"hello there", 2).unwrap_err();
        assert_eq!((e.line, e.byte), (2, 0));
        let e = decode(&[b'{', 0xff, b'}'], 3).unwrap_err();
        assert_eq!((e.byte, e.detail.as_str()), (1, "not UTF-8"));
    }

    #[test]
    fn protocol_majors_must_match() {
        assert!(check_protocol("labloop-plugin/1").is_ok());
        assert!(check_protocol("labloop-plugin/1.3").is_ok());
        assert!(
            check_protocol("labloop-plugin/2")
                .unwrap_err()
                .contains("major")
        );
        assert!(check_protocol("lab/1").is_err());
    }
}
