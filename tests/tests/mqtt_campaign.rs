//! Whole campaigns over MQTT: `labloop run` drives `labloop-sim` (a separate process) through a real
//! Mosquitto while the simulator drops, duplicates, reorders and garbles telemetry, loses replies and
//! cuts its connection — and, in the second test, while the broker itself (one this test starts on a
//! spare port) is killed and restarted mid-campaign. Every cycle record must be in the store exactly
//! once, in order, and the campaign must finish with every cell.
//!
//! The shared broker is `LABLOOP_TEST_MQTT_URL` (default `mqtt://127.0.0.1:1883`); unreachable, the
//! test fails. The second test needs the `mosquitto` binary.

use labloop_tests::{
    Killed, assert_every_record_once, fresh_dir, json_result, labloop_bin, repo_root, workspace_bin,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The example workflow on `broker` under `prefix`: two rounds of eight cells at a fast clock.
fn workflow(dir: &Path, broker: &str, prefix: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("workflows/fast-charge-clo-mqtt.yaml"))
        .unwrap()
        .replace("mqtt://127.0.0.1:1883", broker)
        .replace("labloop/lab1/cycler1", prefix)
        .replace("batch_size: 16", "batch_size: 8")
        .replace("channels: 16", "channels: 8")
        .replace("max_rounds: 3", "max_rounds: 2")
        .replace("clock_acceleration: 100000", "clock_acceleration: 1000000")
        // 30 simulated days are 2.6 s at this clock: too tight beside the injected faults' replays.
        .replace("      timeout: 30d\n", "");
    let path = dir.join("workflow.yaml");
    std::fs::write(&path, &text).unwrap();
    path
}

fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("labloop-test/{tag}-{}-{nanos}/cycler1", std::process::id())
}

/// `labloop-sim` serving the campaign's cycler at `acceleration` with `faults`.
fn simulator(broker: &str, prefix: &str, acceleration: &str, faults: &[&str]) -> Killed {
    Killed(
        Command::new(workspace_bin("labloop-sim"))
            .args(["mqtt", "--broker", broker, "--prefix", prefix])
            .args([
                "--channels",
                "8",
                "--acceleration",
                acceleration,
                "--seed",
                "2020",
            ])
            .args(faults)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("labloop-sim starts"),
    )
}

fn run_campaign(workflow: &Path, url: &str) -> Command {
    let mut command = Command::new(labloop_bin());
    command
        .args(["run", workflow.to_str().unwrap(), "--store", url, "--json"])
        .env(
            "RUST_LOG",
            std::env::var("LABLOOP_TEST_LOG").unwrap_or_else(|_| "error".into()),
        );
    command
}

fn check_result(result: &serde_json::Value) {
    assert_eq!(result["cells"], 16);
    assert_eq!(result["failed"], 0);
    assert_eq!(result["records"], 1600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_over_mqtt_stores_every_record_once_despite_faults() {
    let broker =
        std::env::var("LABLOOP_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let prefix = unique_prefix("campaign");
    let dir = fresh_dir("mqtt-campaign");
    let workflow = workflow(&dir, &broker, &prefix);
    let _sim = simulator(
        &broker,
        &prefix,
        "1000000",
        &[
            "--drop",
            "0.05",
            "--duplicate",
            "0.05",
            "--reorder",
            "0.05",
            "--garbage",
            "0.02",
            "--drop-ack",
            "0.1",
            "--disconnect-every",
            "1s",
        ],
    );
    let url = format!("sqlite://{}/store.sqlite", dir.display());
    check_result(&json_result(&mut run_campaign(&workflow, &url)));
    assert_every_record_once(&url, "fast-charge-clo-mqtt", 16, 100).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Mosquitto on `port`, without persistence: a restart forgets every session and queued message.
fn mosquitto(port: u16) -> Killed {
    let broker = Killed(
        Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto)"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mosquitto did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_over_mqtt_survives_a_broker_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut broker = mosquitto(port);
    let url_of_broker = format!("mqtt://127.0.0.1:{port}");
    let prefix = unique_prefix("restart");
    let dir = fresh_dir("mqtt-restart");
    let workflow = workflow(&dir, &url_of_broker, &prefix);
    // A slower instrument, so the restart falls mid-campaign.
    let _sim = simulator(&url_of_broker, &prefix, "100000", &[]);
    let workflow_text = std::fs::read_to_string(&workflow)
        .unwrap()
        .replace("clock_acceleration: 1000000", "clock_acceleration: 100000");
    std::fs::write(&workflow, workflow_text).unwrap();
    let url = format!("sqlite://{}/store.sqlite", dir.display());
    let out = std::fs::File::create(dir.join("run.json")).unwrap();
    let err = std::fs::File::create(dir.join("run.log")).unwrap();
    let mut campaign = Killed(
        run_campaign(&workflow, &url)
            .env("RUST_LOG", "labloop_drivers=info,error")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("labloop starts"),
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        campaign.0.try_wait().unwrap().is_none(),
        "the campaign ended before the broker restart: make the instrument slower"
    );
    drop(broker);
    std::thread::sleep(Duration::from_millis(1500));
    broker = mosquitto(port);
    let status = campaign.0.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(status.success(), "labloop run failed: {log}");
    assert!(
        log.matches("connected to the broker").count() >= 2,
        "the driver never reconnected: {log}"
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    check_result(&result);
    assert_every_record_once(&url, "fast-charge-clo-mqtt", 16, 100).await;
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}
