//! Failures that name their cause, within bounded time (issue 17): an instrument never seen, one
//! that went away, a bridge whose every message breaks the protocol, one restarted without its
//! state — and what numpy/pandas bridges send (`"cycle": 1.0`, extra envelope fields) read fine.
//! Through a real Mosquitto (`LABLOOP_TEST_MQTT_URL`, default `mqtt://127.0.0.1:1883`).

mod common;

use common::{Killed, broker_url, test, unique_prefix};
use labloop_core::ChannelId;
use labloop_drivers::mqtt::{MqttCycler, MqttOptionsExt, PROTOCOL_ERROR_LIMIT};
use labloop_drivers::{Cycler, DriverError};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The test broker's host and port, for a raw client.
fn broker() -> (String, u16) {
    let url = broker_url();
    let rest = url.trim_start_matches("mqtt://");
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    (host.to_owned(), port.parse().unwrap())
}

fn driver(prefix: &str) -> MqttCycler {
    driver_waiting(prefix, Duration::from_secs(600))
}

/// A driver on `prefix` that waits `offline_after` for a gone instrument.
fn driver_waiting(prefix: &str, offline_after: Duration) -> MqttCycler {
    MqttCycler::connect(
        "cycler1",
        2,
        &broker_url(),
        prefix,
        MqttOptionsExt {
            command_timeout: Duration::from_millis(300),
            attempts: 3,
            replay_after: Duration::from_millis(300),
            offline_after,
        },
    )
    .unwrap()
}

fn simulator(prefix: &str, acceleration: &str) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_labloop-sim"))
            .args(["mqtt", "--broker", &broker_url(), "--prefix", prefix])
            .args([
                "--channels",
                "2",
                "--acceleration",
                acceleration,
                "--seed",
                "5",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("labloop-sim starts"),
    )
}

async fn wait_identified(cycler: &MqttCycler) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while cycler.identify().await.is_err() {
        assert!(Instant::now() < deadline, "the simulator never answered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrument_never_seen_is_named_offline_not_timed_out() {
    let prefix = unique_prefix("never-seen");
    let cycler = driver(&prefix);
    let started = Instant::now();
    let e = cycler.identify().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(matches!(e, DriverError::Offline { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("no status on {prefix}/status")) && text.contains("this prefix"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrument_that_went_away_is_named_by_its_last_will() {
    let prefix = unique_prefix("gone");
    let cycler = driver(&prefix);
    let sim = simulator(&prefix, "1000");
    wait_identified(&cycler).await;
    drop(sim); // SIGKILL: the broker publishes the last will.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = cycler
        .status(&ChannelId::from("cycler1/ch01"))
        .await
        .unwrap_err();
    assert!(matches!(e, DriverError::Offline { .. }), "{e}");
    assert!(e.to_string().contains("announced `offline`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_restarted_without_its_state_is_named_lost_records() {
    let prefix = unique_prefix("amnesia");
    let cycler = driver(&prefix);
    let ch = ChannelId::from("cycler1/ch01");
    // ~0.4 s of wall time per cycle: the restart falls mid-test.
    let sim = simulator(&prefix, "5000");
    wait_identified(&cycler).await;
    cycler.start(&ch, test(0)).await.unwrap();
    let first = cycler.records(&ch, 1).await.unwrap();
    let next = first.records.last().unwrap().seq + 1;
    drop(sim);
    let _again = simulator(&prefix, "5000");
    wait_identified(&cycler).await;
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(20), cycler.records(&ch, next))
        .await
        .expect("bounded")
        .unwrap_err();
    assert!(matches!(e, DriverError::LostRecords { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "for test exp-0/cycle/1 from seq {next}; it holds no test at all"
        )),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A bridge of our own making: answers `start`, `replay` and `identify`, and publishes the
/// telemetry `records` on ch01 after each start or replay.
async fn fake_bridge(prefix: String, records: Vec<String>) {
    let (host, port) = broker();
    let mut options = MqttOptions::new(format!("fake-{}", prefix.replace('/', "-")), host, port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 256);
    client
        .subscribe(format!("{prefix}/cmd"), QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish(
            format!("{prefix}/status"),
            QoS::AtLeastOnce,
            true,
            r#"{"state": "online", "protocol": "1.1", "model": "fake", "channels": ["ch01", "ch02"]}"#,
        )
        .await
        .unwrap();
    loop {
        let Ok(event) = events.poll().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Event::Incoming(Packet::Publish(p)) = event else {
            continue;
        };
        let cmd: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        let result = match cmd["op"].as_str().unwrap() {
            "identify" => {
                serde_json::json!({"model": "fake", "protocol": "1.1", "channels": ["ch01", "ch02"]})
            }
            "replay" => serde_json::json!({"count": records.len()}),
            "data" => serde_json::json!({"test_key": "exp-0/cycle/1", "records": []}),
            _ => serde_json::json!({}),
        };
        let ack = serde_json::json!({"id": cmd["id"], "ok": true, "result": result, "ts": 1.0});
        client
            .publish(
                format!("{prefix}/ack"),
                QoS::AtLeastOnce,
                false,
                ack.to_string(),
            )
            .await
            .unwrap();
        if matches!(cmd["op"].as_str(), Some("start" | "replay")) {
            for r in &records {
                client
                    .publish(
                        format!("{prefix}/telemetry/ch01"),
                        QoS::AtLeastOnce,
                        false,
                        r.clone(),
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

fn record(seq: &str, cycle: &str) -> String {
    format!(
        r#"{{"test_key": "exp-0/cycle/1", "seq": {seq}, "ts": "2026-12-02T10:00:00Z", "record": {{"cycle": {cycle},
        "charge_capacity_ah": 1.07, "discharge_capacity_ah": 1.06, "internal_resistance_ohm": 0.016,
        "temperature_min_c": 30.0, "temperature_avg_c": 33.0, "temperature_max_c": 36.0,
        "charge_time_s": 600.0}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pandas_style_numbers_and_extra_fields_are_read() {
    let prefix = unique_prefix("pandas");
    let records = (1..=3)
        .map(|i| record(&format!("{i}.0"), &format!("{i}.0")))
        .collect();
    tokio::spawn(fake_bridge(prefix.clone(), records));
    let cycler = driver(&prefix);
    wait_identified(&cycler).await;
    let ch = ChannelId::from("cycler1/ch01");
    cycler.start(&ch, test(0)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = tokio::time::timeout(
            Duration::from_secs(10),
            cycler.records(&ch, got.len() as u64 + 1),
        )
        .await
        .unwrap()
        .unwrap();
        got.extend(batch.records.into_iter().map(|t| (t.seq, t.record.cycle)));
    }
    assert_eq!(got, [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(
        cycler
            .counters()
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_protocol_errors_fails_the_channel_quoting_the_first() {
    let prefix = unique_prefix("garbled");
    // Half a cycle: no reading makes that a whole number.
    let records = (1..=4).map(|i| record(&i.to_string(), "1.5")).collect();
    tokio::spawn(fake_bridge(prefix.clone(), records));
    let cycler = driver(&prefix);
    wait_identified(&cycler).await;
    let ch = ChannelId::from("cycler1/ch01");
    cycler.start(&ch, test(0)).await.unwrap();
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(30), cycler.records(&ch, 1))
        .await
        .expect("bounded")
        .unwrap_err();
    assert!(matches!(e, DriverError::Protocol { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "messages in a row rejected on {prefix}/telemetry/ch01"
        )) && text.contains("field `record.cycle`"),
        "{text}"
    );
    let replays = cycler
        .counters()
        .replays
        .load(std::sync::atomic::Ordering::Relaxed);
    // It gives up after the limit, not after thousands of replays.
    assert!(replays <= PROTOCOL_ERROR_LIMIT, "{replays} replays");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// A bridge gone mid-test is waited for `offline_after`, then named: the step does not hold its
/// channel for the whole step timeout saying only "timed out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_gone_mid_test_fails_its_follower_as_offline_after_the_bound() {
    let prefix = unique_prefix("gone-mid-test");
    let cycler = driver_waiting(&prefix, Duration::from_secs(2));
    let ch = ChannelId::from("cycler1/ch01");
    let sim = simulator(&prefix, "5000");
    wait_identified(&cycler).await;
    cycler.start(&ch, test(0)).await.unwrap();
    let first = cycler.records(&ch, 1).await.unwrap();
    let next = first.records.last().unwrap().seq + 1;
    drop(sim);
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(20), cycler.records(&ch, next))
        .await
        .expect("bounded")
        .unwrap_err();
    assert!(matches!(e, DriverError::Offline { .. }), "{e}");
    assert!(e.to_string().contains("announced `offline`"), "{e}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(cycler.health().is_some_and(|h| h.contains("offline")));
}
