//! Property: no payload or line, however broken, panics either codec (MQTT's JSON messages, the
//! serial line codec); garbage and truncated frames are errors that name their topic or the serial
//! line. Seeded random bytes, truncations and byte flips of valid messages.
//! `LABLOOP_FUZZ_CASES` sets the number of cases per kind (default 25 000: 100 000 in all, each frame
//! at most a few kB).

use labloop_core::CycleRecord;
use labloop_drivers::wire::{
    Ack, Command, InstrumentStatus, Op, TelemetryMessage, WireError, decode, encode,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn cases() -> usize {
    std::env::var("LABLOOP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25_000)
}

fn valid_messages() -> Vec<Vec<u8>> {
    let record = CycleRecord {
        cycle: 7,
        charge_capacity_ah: 1.07,
        discharge_capacity_ah: 1.069,
        internal_resistance_ohm: 0.0165,
        temperature_min_c: 30.0,
        temperature_avg_c: 33.0,
        temperature_max_c: 36.0,
        charge_time_s: 600.0,
        voltage_max_v: Some(3.6),
        voltage_min_v: Some(2.0),
        current_max_a: Some(4.4),
        discharge_curve: None,
    };
    vec![
        encode(&Command {
            id: "a-1".into(),
            op: Op::Replay {
                channel: "ch01".into(),
                from_seq: 3,
            },
        }),
        encode(&Command {
            id: "a-2".into(),
            op: Op::Status {
                channel: "ch02".into(),
            },
        }),
        encode(&Ack {
            id: "a-1".into(),
            ok: true,
            result: serde_json::json!({"count": 2}),
            error: None,
        }),
        encode(&TelemetryMessage {
            test_key: "e/cycle/1".into(),
            seq: Some(7),
            record: Some(record),
            end_seq: None,
            fault: None,
        }),
        encode(&InstrumentStatus {
            state: "online".into(),
            protocol: "1.0".into(),
            model: "x".into(),
            channels: vec!["ch01".into()],
        }),
    ]
}

/// Decodes `payload` as every message type; returns how many were errors (and checks them).
fn decode_all(payload: &[u8]) -> usize {
    let results: [Result<(), WireError>; 4] = [
        decode::<Command>("p/cmd", payload).map(drop),
        decode::<Ack>("p/ack", payload).map(drop),
        decode::<TelemetryMessage>("p/telemetry/ch01", payload).map(drop),
        decode::<InstrumentStatus>("p/status", payload).map(drop),
    ];
    results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .inspect(|e| assert!(e.to_string().starts_with("p/"), "{e}"))
        .count()
}

#[test]
fn random_bytes_are_errors_not_panics() {
    let mut rng = StdRng::seed_from_u64(0x3117e);
    for _ in 0..cases() {
        let len = rng.random_range(0..300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        assert_eq!(decode_all(&bytes), 4, "{bytes:?} decoded");
    }
}

#[test]
fn truncated_and_flipped_frames_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xf11b);
    let messages = valid_messages();
    for m in &messages {
        assert!(decode_all(m) < 4, "a valid message decodes as its own type");
    }
    let mut truncated_errors = 0;
    for case in 0..cases() {
        let mut m = messages[case % messages.len()].clone();
        if rng.random_bool(0.5) {
            let cut = rng.random_range(0..m.len());
            m.truncate(cut);
            // A JSON object cut anywhere is never whole.
            assert_eq!(
                decode_all(&m),
                4,
                "truncated {}",
                String::from_utf8_lossy(&m)
            );
            truncated_errors += 1;
        } else {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..m.len());
                m[i] = rng.random();
            }
            decode_all(&m);
        }
    }
    assert!(truncated_errors > 0);
}

/// Valid serial lines: every command, and replies to them.
fn valid_lines() -> Vec<String> {
    use labloop_drivers::scpi::{encode_command, encode_reply};
    let ops = [
        Op::Identify,
        Op::Status {
            channel: "ch02".into(),
        },
        Op::Data {
            channel: "ch01".into(),
            from_seq: 3,
            max: 50,
        },
        Op::Stop {
            channel: "ch07".into(),
        },
    ];
    let mut lines: Vec<String> = ops
        .iter()
        .map(|op| encode_command("a1-7", op).unwrap())
        .collect();
    let data = serde_json::json!({"test_key": "e/cycle/1", "records": [], "end_seq": 4});
    lines.push(encode_reply(Some("a1-7"), &ops[2], &Ok(data)));
    lines.push(encode_reply(
        Some("a1-8"),
        &ops[1],
        &Ok(serde_json::json!({"state": "running", "cycle": 41})),
    ));
    lines
}

/// Decodes `line` as a command, a reply, and each operation's result; checks that every error names
/// the serial line.
fn decode_line(line: &str) {
    use labloop_drivers::scpi::{decode_command, decode_reply, result_value};
    let named = |e: WireError| assert!(e.to_string().starts_with("serial line: "), "{e}");
    if let Err(e) = decode_command(line) {
        named(e);
    }
    if let Ok(reply) = decode_reply(line).map_err(named)
        && let Ok(payload) = reply.outcome
    {
        for op in [
            Op::Identify,
            Op::Status {
                channel: "ch01".into(),
            },
            Op::Data {
                channel: "ch01".into(),
                from_seq: 1,
                max: 1,
            },
        ] {
            if let Err(e) = result_value(&op, &payload) {
                named(e);
            }
        }
    }
}

#[test]
fn serial_lines_of_noise_truncations_and_flips_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5e71);
    let lines = valid_lines();
    for case in 0..cases() {
        let line = match case % 3 {
            0 => {
                let len = rng.random_range(0..200);
                let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            1 => {
                let whole = lines[case % lines.len()].as_bytes();
                String::from_utf8_lossy(&whole[..rng.random_range(0..whole.len())]).into_owned()
            }
            _ => {
                let mut bytes = lines[case % lines.len()].clone().into_bytes();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        decode_line(&line);
    }
    // Noise is never taken for a command.
    let mut taken = 0;
    for _ in 0..cases() {
        let len = rng.random_range(1..100);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        taken += usize::from(
            labloop_drivers::scpi::decode_command(&String::from_utf8_lossy(&bytes)).is_ok(),
        );
    }
    assert_eq!(taken, 0);
}
