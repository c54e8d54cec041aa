//! What the vendor adapters' tests share: the Python with the vendors' simulators, harness
//! processes, tests and following a channel to its end.

#![allow(dead_code)]

use labloop_core::{CcCvFinish, ChannelId, ChargeProtocol};
use labloop_drivers::{Cycler, CyclingTest, Telemetry};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Python with `module` importable: `LABLOOP_TEST_PYTHON` (default: the virtual environment
/// `.ci/run` makes); `None` (the test skips) outside CI, a failure under CI=true.
pub fn python(module: &str) -> Option<PathBuf> {
    let path = std::env::var("LABLOOP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/labloop-venv/bin/python"));
    let found = std::process::Command::new(&path)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no Python with {module} at {} (.ci/run installs it; LABLOOP_TEST_PYTHON overrides)",
        path.display()
    );
    eprintln!("skipped: no Python with {module} at {}", path.display());
    None
}

/// The procedure variables the harnesses read (`cycling_cell.py`): the four CC steps' C-rates,
/// the finish's, the discharge's, the cycle count.
pub fn clo_variables() -> Vec<(u32, labloop_workflow::VendorVariable)> {
    [
        "charge_c_rate_1",
        "charge_c_rate_2",
        "charge_c_rate_3",
        "charge_c_rate_4",
        "finish_c_rate",
        "discharge_c_rate",
        "cycles",
    ]
    .iter()
    .zip(1..)
    .map(|(name, n)| {
        let variable = labloop_workflow::VendorVariable::parse(name).expect("a known variable");
        (n, variable)
    })
    .collect()
}

/// A port nothing listens on.
/// How the tests poll a harness: often, with short bounds, so faults show within seconds.
pub fn polling() -> labloop_vendors::PolledOptions {
    labloop_vendors::PolledOptions {
        poll_interval: Duration::from_millis(5),
        wait: Duration::from_secs(2),
        offline_after: Duration::from_secs(4),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A harness script of `tests/` on `port`, started and listening.
pub async fn harness(python: &Path, script: &str, port: u16, args: &[&str]) -> Child {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let mut child = Command::new(python)
        .arg(script)
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the harness");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the harness starts within 20 s")
        .expect("read its stdout");
    assert_eq!(ready.as_deref(), Some(format!("READY {port}").as_str()));
    child
}

/// A test of `cycles` cycles of a four-step protocol, discharged at 1C.
pub fn test(key: &str, rates: &[f64], cycles: u32) -> CyclingTest {
    CyclingTest {
        key: key.into(),
        cell_id: format!("cell-{key}"),
        cycles_before: 2,
        formulation: Vec::new(),
        parameters: Vec::new(),
        protocol: ChargeProtocol::equal_steps(
            rates,
            0.8,
            CcCvFinish {
                c_rate: 1.0,
                cv_voltage_v: 3.6,
            },
        ),
        discharge_c_rate: 1.0,
        cycles,
    }
}

/// The harness cell's capacity in cycle `n` (from 0) under `rates` (`cycling_cell.py`).
pub fn truth(rates: &[f64], n: usize) -> f64 {
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let fade = 0.0002 * (1.0 + 0.2 * mean.powi(2));
    1.1 * (1.0 - fade * n as f64)
}

/// Follows a channel to the end of its test, as the engine does.
pub async fn follow(cycler: &dyn Cycler, channel: &ChannelId, from_seq: u64) -> Vec<Telemetry> {
    let mut records = Vec::new();
    let mut next = from_seq;
    for _ in 0..200 {
        let batch = cycler.records(channel, next).await.expect("records");
        for t in batch.records {
            assert_eq!(t.seq, next, "records come in order, each once");
            next += 1;
            records.push(t);
        }
        if batch.finished {
            assert_eq!(batch.fault, None);
            return records;
        }
    }
    panic!("the test on {channel} did not finish");
}

/// The harness's record of its channels' tests.
pub fn harness_state(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("harness state")).expect("json")
}

/// A fresh directory under the system's temporary one.
pub fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "labloop-vendor-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A harness process (re)started.
pub type Start<'a> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Child> + 'a>> + 'a>;

/// labloop goes away mid-test, the instrument's server restarts (its channels run on: the
/// harness's state file is the instrument's memory), labloop comes back while the server is still
/// down: the start is known from the journal (no command goes out), the link's health says why
/// no reading comes, and once the server is back every cycle is recorded once, the ones from
/// before the restart replayed as they were. A cycle lasts ~3 s at the harnesses' 2 000× clock:
/// the server is down for less than one.
pub async fn survives_restarts(
    make: &dyn Fn() -> Box<dyn Cycler>,
    start_server: Start<'_>,
    channel: &ChannelId,
    state: &Path,
) {
    let mut server = start_server().await;
    let t = test("exp-r/cycle/1", &[2.0; 4], 8);
    let mut seen = Vec::new();
    {
        let cycler = make();
        cycler.start(channel, t.clone()).await.expect("start");
        while seen.len() < 2 {
            let batch = cycler
                .records(channel, seen.len() as u64 + 1)
                .await
                .unwrap();
            seen.extend(batch.records);
        }
    }
    server.kill().await.expect("kill the harness");
    let _ = server.wait().await;
    let cycler = make();
    cycler
        .start(channel, t.clone())
        .await
        .expect("a journaled start is a no-op");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = cycler.health().expect("the link is down");
    assert!(health.contains("cannot connect"), "{health}");
    let _server = start_server().await;
    cycler
        .start(channel, t.clone())
        .await
        .expect("the same start again is a no-op");
    let replayed = cycler.records(channel, 1).await.expect("replay");
    let json = |records: &[Telemetry]| {
        records
            .iter()
            .map(|t| (t.seq, serde_json::to_string(&t.record).expect("json")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        json(&replayed.records[..seen.len().min(replayed.records.len())]),
        json(&seen),
        "records kept across the restart are replayed as they were"
    );
    let next = seen.last().map_or(1, |t| t.seq + 1);
    let rest = follow(cycler.as_ref(), channel, next).await;
    let all: Vec<u64> = seen.iter().chain(&rest).map(|t| t.seq).collect();
    assert_eq!(all, (1..=8).collect::<Vec<_>>());
    for (n, t) in seen.iter().chain(&rest).enumerate() {
        let (q, truth) = (t.record.discharge_capacity_ah, truth(&[2.0; 4], n));
        assert!(
            (q - truth).abs() < 0.004,
            "cycle {}: {q} Ah, truth {truth}",
            t.record.cycle
        );
    }
    assert_eq!(harness_state(state)["0"]["starts"], 1);
}
