//! The Arbin adapter against pycti-arbin's own `ArbinSpoofer` (from the Python registry), its
//! channels cycling cells by `arbin_harness.py`: login (and a refused one named), every cycle
//! recorded once and in order with cycles numbered from the current's direction (CTI's channel
//! info has no cycle count), a start repeated or resumed from the journal never starts a second
//! test, stop, a channel busy with someone else's test refused, garbage and truncated frames
//! counted as protocol errors.
//!
//! Needs a Python with pycti-arbin: `LABLOOP_TEST_PYTHON` (default: the virtual environment
//! `.ci/run` makes); under CI=true a missing one fails the test.

mod common;

use common::{follow, free_port, harness, harness_state, tempdir, test, truth};
use labloop_core::ChannelId;
use labloop_drivers::{ChannelStatus, Cycler, DriverError};
use labloop_vendors::PolledCycler;
use labloop_vendors::arbin::{ArbinOptions, Cti};
use std::path::Path;
use std::time::Duration;
use tokio::process::Child;

const MODULE: &str = "pyctiarbin.arbinspoofer.arbin_spoofer";

async fn arbin(python: &Path, port: u16, state: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["--channels", "4", "--acceleration", "2000"];
    args.extend_from_slice(&["--username", "labloop", "--password", "s3cret", "--state"]);
    args.push(state.to_str().expect("a UTF-8 path"));
    args.extend_from_slice(extra);
    harness(python, "arbin_harness.py", port, &args).await
}

fn adapter(port: u16, password: &str, journal: &Path) -> PolledCycler<Cti> {
    let variables = common::clo_variables();
    let options = ArbinOptions {
        host: "127.0.0.1".into(),
        port,
        username: "labloop".into(),
        password: password.into(),
        schedule: "LABLOOP-CLO.sdx".into(),
        variables,
        nominal_capacity_ah: 1.1,
        reply_timeout: Duration::from_millis(500),
    };
    let polled = common::polling();
    PolledCycler::new(
        "arbin1",
        4,
        Cti::new("arbin1", options),
        polled,
        Some(journal),
    )
    .expect("open the journal")
}

fn ch(n: u32) -> ChannelId {
    ChannelId::from(format!("arbin1/ch{n:02}").as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arbin_cycles_cells_through_cti() {
    let Some(python) = common::python(MODULE) else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let state = dir.join("arbin-state.json");
    let _arbin = arbin(&python, port, &state, &["--busy", "3"]).await;
    let journal = dir.join("arbin1.journal.jsonl");

    // A wrong password is refused, and said so.
    let refused = adapter(port, "wrong", &dir.join("other.jsonl"));
    let error = refused.identify().await.unwrap_err().to_string();
    assert!(error.contains("login refused"), "{error}");

    let cycler = adapter(port, "s3cret", &journal);
    let identity = cycler.identify().await.expect("identify");
    assert!(
        identity.model.contains("Arbin") && identity.model.contains("4 channels"),
        "{identity:?}"
    );

    let gentle = test("exp-a/cycle/1", &[1.0; 4], 4);
    let hard = test("exp-b/cycle/1", &[3.0, 3.0, 2.5, 2.0], 4);
    for (channel, t) in [(ch(1), &gentle), (ch(2), &hard)] {
        cycler.start(&channel, t.clone()).await.expect("start");
        cycler
            .start(&channel, t.clone())
            .await
            .expect("start again");
    }
    // labloop restarts during the first cycles: the journal carries the tests on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(cycler);
    let cycler = adapter(port, "s3cret", &journal);
    cycler
        .start(&ch(1), gentle.clone())
        .await
        .expect("a journaled start is a no-op");
    let (one, two) = (ch(1), ch(2));
    let (a, b) = tokio::join!(follow(&cycler, &one, 1), follow(&cycler, &two, 1));
    // The counters run over the whole test, so the polls lose nothing; the last discharge ends
    // with the test's final reading.
    for (records, rates) in [(&a, [1.0; 4]), (&b, [3.0, 3.0, 2.5, 2.0])] {
        assert_eq!(records.len(), 4);
        for (n, t) in records.iter().enumerate() {
            let truth = truth(&rates, n);
            let (charge, discharge) = (t.record.charge_capacity_ah, t.record.discharge_capacity_ah);
            assert_eq!(t.record.cycle, 3 + n as u32);
            assert!(
                (charge - truth).abs() < 0.004,
                "cycle {n}: charged {charge}, truth {truth}"
            );
            assert!(
                (discharge - truth).abs() < 0.004,
                "cycle {n}: discharged {discharge}, truth {truth}"
            );
            assert!(t.record.discharge_curve.is_some());
            assert!(
                (t.record.internal_resistance_ohm - 0.03).abs() < 1e-6,
                "{:?}",
                t.record
            );
        }
    }
    assert_eq!(
        cycler.status(&ch(1)).await.unwrap(),
        ChannelStatus::Finished { cycles: 4 }
    );
    let seen = harness_state(&state);
    assert_eq!(seen["0"]["starts"], 1, "one start per test: {seen}");
    assert_eq!(seen["1"]["starts"], 1, "{seen}");
    assert_eq!(seen["1"]["vars"]["1"], 3.0);
    assert_eq!(seen["1"]["vars"]["7"], 4.0);
    assert_eq!(seen["1"]["schedule"], "LABLOOP-CLO.sdx");

    // Stop.
    cycler
        .start(&ch(3), test("exp-c/cycle/1", &[2.0; 4], 500))
        .await
        .expect("start");
    cycler.stop(&ch(3)).await.expect("stop");
    assert_eq!(harness_state(&state)["2"]["stops"], 1);

    // Someone else's test is refused and left alone.
    let busy = cycler
        .start(&ch(4), test("exp-d/cycle/1", &[1.0; 4], 3))
        .await
        .unwrap_err();
    assert!(matches!(busy, DriverError::Busy { .. }), "{busy:?}");
    assert_eq!(harness_state(&state)["3"]["stops"], 0);
    assert_eq!(cycler.link().protocol_errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_frames_are_protocol_errors_and_cost_no_cycle() {
    let Some(python) = common::python(MODULE) else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let state = dir.join("arbin-state.json");
    let _arbin = arbin(
        &python,
        port,
        &state,
        &["--garbage-every", "11", "--truncate-every", "23"],
    )
    .await;
    let cycler = adapter(port, "s3cret", &dir.join("journal.jsonl"));
    let t = test("exp-g/cycle/1", &[1.5; 4], 4);
    let mut started = false;
    for _ in 0..5 {
        if cycler.start(&ch(1), t.clone()).await.is_ok() {
            started = true;
            break;
        }
    }
    assert!(started);
    let records = follow(&cycler, &ch(1), 1).await;
    assert_eq!(
        records.iter().map(|t| t.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(cycler.link().protocol_errors() > 0);
    let health = cycler.health().expect("the link's health names the errors");
    assert!(health.contains("protocol errors"), "{health}");
    assert_eq!(harness_state(&state)["0"]["starts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_labloop_and_of_the_server_lose_and_repeat_nothing() {
    let Some(python) = common::python(MODULE) else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let state = dir.join("state.json");
    let journal = dir.join("journal.jsonl");
    common::survives_restarts(
        &|| Box::new(adapter(port, "s3cret", &journal)),
        Box::new(|| Box::pin(arbin(&python, port, &state, &[]))),
        &ch(1),
        &state,
    )
    .await;
}
