//! An example labloop plugin in Rust, written from `plugins/PROTOCOL.md` alone (it uses nothing
//! of labloop's crates): a glovebox balance offered as the measurement `mass`, so a workflow can
//! weigh each cell (`measure: {plugin: balance, measurement: mass}`) and use the mass as a step
//! output or as the campaign's objective.
//!
//! It keeps each call's reply by id in `<state_dir>/replies.jsonl` (synced before the reply is
//! written), so it says `persistent: true`: a call repeated after a crash is answered from there.
//! The "balance" reads a mass from the cell's id (a real plugin reads its instrument's serial
//! line here).

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, Write};

const PROTOCOL: &str = "labloop-plugin/1";

/// Replies by call id, kept in a file that outlives the process.
struct Replies {
    file: Option<std::fs::File>,
    known: HashMap<String, Value>,
}

impl Replies {
    fn open(state_dir: Option<&str>) -> Self {
        let Some(dir) = state_dir else {
            return Self {
                file: None,
                known: HashMap::new(),
            };
        };
        let _ = std::fs::create_dir_all(dir);
        let path = std::path::Path::new(dir).join("replies.jsonl");
        let mut known = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Ok(entry) = serde_json::from_str::<Value>(line)
                    && let Some(id) = entry.get("id").and_then(Value::as_str)
                {
                    known.insert(id.to_owned(), entry);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        Self { file, known }
    }

    fn keep(&mut self, id: &str, reply: &Value) {
        if let Some(file) = &mut self.file {
            let _ = writeln!(file, "{reply}");
            let _ = file.sync_data();
        }
        self.known.insert(id.to_owned(), reply.clone());
    }
}

/// The mass (g) the balance reads for a cell: a coin cell weighs about 3.2 g.
fn weigh(cell_id: &str) -> f64 {
    let hash = cell_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    3.2 + (hash % 1000) as f64 / 1000.0 * 0.05
}

fn hello() -> Value {
    json!({
        "type": "hello",
        "protocol": PROTOCOL,
        "name": "balance",
        "version": env!("CARGO_PKG_VERSION"),
        "persistent": true,
        "capabilities": {
            "measurements": {
                "mass": {
                    "description": "The cell's mass on the glovebox balance",
                    "inputs": {
                        "type": "object",
                        "properties": {"tare_g": {"type": "number", "minimum": 0}},
                        "additionalProperties": false
                    },
                    "outputs": {
                        "mass_g": {"unit": "g"},
                        "mass_g_sigma": {"unit": "g"}
                    }
                }
            }
        }
    })
}

fn answer(call: &Value) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let params = call.get("params").cloned().unwrap_or(Value::Null);
    match call.get("method").and_then(Value::as_str) {
        Some("ping") => json!({"type": "result", "id": id, "value": {}}),
        Some("measurement.read") if params["measurement"] == "mass" => {
            let cell = params["experiment"]["cell_id"].as_str().unwrap_or("");
            let tare = params["inputs"]["tare_g"].as_f64().unwrap_or(0.0);
            json!({"type": "result", "id": id, "value": {
                "mass_g": weigh(cell) - tare,
                "mass_g_sigma": 0.0005,
            }})
        }
        Some(method) => json!({
            "type": "error", "id": id, "code": "bad_request",
            "message": format!("balance does not offer {method} {}", params.get("measurement").unwrap_or(&Value::Null)),
        }),
        None => json!({"type": "error", "id": id, "code": "bad_request", "message": "no method"}),
    }
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut replies = Replies::open(None);
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let message: Value = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("labloop sent a line that is not JSON: {e}");
                continue;
            }
        };
        let reply = match message.get("type").and_then(Value::as_str) {
            Some("hello") => {
                replies = Replies::open(message.get("state_dir").and_then(Value::as_str));
                hello()
            }
            Some("call") => {
                let id = message
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                match replies.known.get(&id) {
                    Some(kept) => kept.clone(),
                    None => {
                        let reply = answer(&message);
                        if message.get("method").and_then(Value::as_str) != Some("ping") {
                            replies.keep(&id, &reply);
                        }
                        reply
                    }
                }
            }
            Some("shutdown") => break,
            other => {
                eprintln!("unknown message type {other:?}");
                continue;
            }
        };
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}
