//! The MQTT driver against `labloop-sim` as a separate process, through a real Mosquitto: every record
//! of every channel arrives exactly once and equal to what the instrument measured, while the
//! simulator drops, duplicates, reorders and garbles messages, loses replies and cuts its connection;
//! and again across a restart of the broker itself (one this test starts on a spare port).
//!
//! The broker is `LABLOOP_TEST_MQTT_URL` (default `mqtt://127.0.0.1:1883`); an unreachable broker fails
//! the test, it never skips.

mod common;

use common::{CYCLES, Killed, broker_url, check, expected, run_tests, test, unique_prefix};
use labloop_core::ChannelId;
use labloop_drivers::Cycler;
use labloop_drivers::mqtt::{MqttCycler, MqttOptionsExt};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ACCELERATION: &str = "2000000";

fn simulator(broker: &str, prefix: &str, faults: &[&str]) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_labloop-sim"))
        .args(["mqtt", "--broker", broker, "--prefix", prefix])
        .args([
            "--channels",
            "4",
            "--acceleration",
            ACCELERATION,
            "--seed",
            "5",
        ])
        .args(faults)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("labloop-sim starts");
    Killed(child)
}

fn driver(broker: &str, prefix: &str) -> MqttCycler {
    MqttCycler::connect(
        "cycler1",
        4,
        broker,
        prefix,
        MqttOptionsExt {
            command_timeout: Duration::from_millis(400),
            attempts: 40,
            replay_after: Duration::from_millis(300),
            offline_after: Duration::from_secs(600),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_through_every_fault_kind() {
    let broker = broker_url();
    let prefix = unique_prefix("faults");
    let _sim = simulator(
        &broker,
        &prefix,
        &[
            "--drop",
            "0.1",
            "--duplicate",
            "0.1",
            "--reorder",
            "0.1",
            "--garbage",
            "0.05",
            "--drop-ack",
            "0.2",
            "--disconnect-every",
            "700ms",
        ],
    );
    let cycler = driver(&broker, &prefix);
    let started = Instant::now();
    let results = run_tests(&cycler, async {}).await;
    check(&results, &expected().await);
    let c = cycler.counters();
    println!(
        "{} records in {:?}: duplicates {}, replays {}, protocol errors {}, command retries {}",
        4 * CYCLES,
        started.elapsed(),
        c.duplicates.load(Ordering::Relaxed),
        c.replays.load(Ordering::Relaxed),
        c.protocol_errors.load(Ordering::Relaxed),
        c.command_retries.load(Ordering::Relaxed)
    );
    // Each fault kind showed up and was handled.
    assert!(
        c.duplicates.load(Ordering::Relaxed) > 0,
        "no duplicate seen"
    );
    assert!(c.replays.load(Ordering::Relaxed) > 0, "no replay asked");
    assert!(
        c.protocol_errors.load(Ordering::Relaxed) > 0,
        "no garbage seen"
    );
    assert!(
        c.command_retries.load(Ordering::Relaxed) > 0,
        "no lost reply"
    );
    // A repeated start with the same key (a driver retry after a crash) starts nothing new.
    let ch = ChannelId::from("cycler1/ch01");
    cycler.start(&ch, test(0)).await.unwrap();
    let again = cycler.records(&ch, 1).await.unwrap();
    assert_eq!(again.records.len(), CYCLES as usize);
    assert!(again.finished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    // A broker of our own on a spare port, so it can be restarted.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start_broker = || {
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto)");
        std::thread::sleep(Duration::from_millis(300));
        Killed(child)
    };
    let mut broker = start_broker();
    let url = format!("mqtt://127.0.0.1:{port}");
    let prefix = unique_prefix("restart");
    // Slower clock so the restart falls mid-test.
    let _sim = Killed(
        Command::new(env!("CARGO_BIN_EXE_labloop-sim"))
            .args(["mqtt", "--broker", &url, "--prefix", &prefix])
            .args(["--channels", "4", "--acceleration", "400000", "--seed", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cycler = driver(&url, &prefix);
    let restart = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        drop(std::mem::replace(
            &mut broker,
            Killed(Command::new("true").spawn().unwrap()),
        ));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        broker = start_broker();
    };
    let results = run_tests(&cycler, restart).await;
    check(&results, &expected().await);
    assert!(
        cycler.counters().connects.load(Ordering::Relaxed) >= 2,
        "the driver reconnected"
    );
}
