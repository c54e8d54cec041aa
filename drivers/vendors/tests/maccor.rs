//! The Maccor adapter against pymacnet's own `MaccorSpoofer` (from the Python registry), its
//! channels cycling cells by `maccor_harness.py`: every cycle recorded once and in order, a start
//! repeated or resumed from the journal never starts a second test, stop resets the channel, a
//! channel busy with someone else's test is refused, a dropped link and a restarted MacNet are
//! survived, and garbage and truncated replies are counted as protocol errors.
//!
//! Needs a Python with pymacnet: `LABLOOP_TEST_PYTHON` (default: the virtual environment
//! `.ci/run` makes); under CI=true a missing one fails the test.

mod common;

use common::{follow, free_port, harness, harness_state, tempdir, test, truth};
use labloop_core::ChannelId;
use labloop_drivers::{ChannelStatus, Cycler, DriverError};
use labloop_vendors::PolledCycler;
use labloop_vendors::PolledOptions;
use labloop_vendors::maccor::{MacNet, MaccorOptions};
use std::path::Path;
use std::time::Duration;
use tokio::process::Child;

/// The Maccor harness (a clock 2 000× the wall clock's, four channels) on `port`.
/// The spoofer at 1 000× the wall clock's pace: at 2 000× a clean-clone CI run here once read a
/// cycle's discharge as 1.17 Ah (a poll late by more than a step's end while this file's tests
/// and their spoofers shared two cores).
async fn maccor(python: &Path, port: u16, state: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["--channels", "4", "--acceleration", "1000", "--state"];
    args.push(state.to_str().expect("a UTF-8 path"));
    args.extend_from_slice(extra);
    harness(python, "maccor_harness.py", port, &args).await
}

fn options(port: u16) -> (MaccorOptions, PolledOptions) {
    let variables = common::clo_variables();
    (
        MaccorOptions {
            host: "127.0.0.1".into(),
            port,
            procedure: "LABLOOP-CLO".into(),
            variables,
            nominal_capacity_ah: 1.1,
            reply_timeout: Duration::from_millis(500),
        },
        common::polling(),
    )
}

fn adapter(port: u16, journal: &Path) -> PolledCycler<MacNet> {
    let (maccor, polled) = options(port);
    PolledCycler::new(
        "maccor1",
        4,
        MacNet::new("maccor1", maccor),
        polled,
        Some(journal),
    )
    .expect("open the journal")
}

fn ch(n: u32) -> ChannelId {
    ChannelId::from(format!("maccor1/ch{n:02}").as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maccor_cycles_cells_through_macnet() {
    let Some(python) = common::python("pymacnet.maccorspoofer") else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let state = dir.join("maccor-state.json");
    let _maccor = maccor(&python, port, &state, &["--busy", "3"]).await;
    let journal = dir.join("maccor1.journal.jsonl");
    let cycler = adapter(port, &journal);

    let identity = cycler.identify().await.expect("identify");
    assert!(identity.model.starts_with("Maccor"), "{identity:?}");

    // Two cells on two channels; each start sent twice (a retry after a lost reply).
    let gentle = test("exp-a/cycle/1", &[1.0, 1.0, 1.0, 1.0], 5);
    let hard = test("exp-b/cycle/1", &[3.0, 3.0, 2.5, 2.0], 5);
    for (channel, t) in [(ch(1), &gentle), (ch(2), &hard)] {
        cycler.start(&channel, t.clone()).await.expect("start");
        cycler
            .start(&channel, t.clone())
            .await
            .expect("start again");
    }
    let (one, two) = (ch(1), ch(2));
    let (a, b) = tokio::join!(follow(&cycler, &one, 1), follow(&cycler, &two, 1));
    for records in [&a, &b] {
        assert_eq!(records.len(), 5);
        for (i, t) in records.iter().enumerate() {
            assert_eq!(
                t.record.cycle,
                3 + i as u32,
                "cycles count on from cycles_before"
            );
            let q = t.record.discharge_capacity_ah;
            assert!(
                (0.9..1.15).contains(&q),
                "cycle {}: discharged {q} Ah",
                t.record.cycle
            );
            let curve = t
                .record
                .discharge_curve
                .as_ref()
                .expect("a discharge curve");
            assert!(curve.voltage_v.len() > 5, "{curve:?}");
        }
    }
    // Each cycle's capacities are the cell's (the harness's model): steps that end between two
    // polls are closed at the step's current, so nothing is lost to the poll rate.
    for (records, rates) in [(&a, [1.0; 4]), (&b, [3.0, 3.0, 2.5, 2.0])] {
        for (n, t) in records.iter().enumerate() {
            let truth = truth(&rates, n);
            let (charge, discharge) = (t.record.charge_capacity_ah, t.record.discharge_capacity_ah);
            let cycle = t.record.cycle;
            assert!(
                (truth - 0.004..truth + 0.004).contains(&charge),
                "cycle {cycle}: charged {charge} Ah, the cell took {truth}"
            );
            assert!(
                (truth - 0.004..truth + 0.004).contains(&discharge),
                "cycle {cycle}: discharged {discharge} Ah, the cell gave {truth}"
            );
        }
    }
    assert_eq!(
        cycler.status(&ch(1)).await.unwrap(),
        ChannelStatus::Finished { cycles: 5 }
    );
    let seen = harness_state(&state);
    assert_eq!(seen["0"]["starts"], 1, "one start per test: {seen}");
    assert_eq!(seen["1"]["starts"], 1, "{seen}");
    assert_eq!(seen["0"]["vars"]["1"], 1.0);
    assert_eq!(seen["1"]["vars"]["2"], 3.0);
    assert_eq!(seen["1"]["vars"]["7"], 5.0);

    // Stop: the channel is reset on the Maccor, the records so far stay.
    let long = test("exp-c/cycle/1", &[2.0, 2.0, 2.0, 2.0], 500);
    cycler.start(&ch(3), long).await.expect("start");
    let first = cycler.records(&ch(3), 1).await.expect("records");
    assert!(!first.finished);
    cycler.stop(&ch(3)).await.expect("stop");
    assert!(matches!(
        cycler.status(&ch(3)).await.unwrap(),
        ChannelStatus::Finished { .. }
    ));
    assert_eq!(harness_state(&state)["2"]["resets"], 1);

    // A channel running a test labloop did not start is refused, and left alone.
    let busy = cycler
        .start(&ch(4), test("exp-d/cycle/1", &[1.0; 4], 3))
        .await
        .unwrap_err();
    assert!(matches!(busy, DriverError::Busy { .. }), "{busy:?}");
    assert_eq!(cycler.loaded_test(&ch(4)).await.unwrap(), None);
    assert_eq!(harness_state(&state)["3"]["resets"], 0);
    assert_eq!(cycler.link().protocol_errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_labloop_and_of_macnet_lose_and_repeat_nothing() {
    let Some(python) = common::python("pymacnet.maccorspoofer") else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let state = dir.join("maccor-state.json");
    let journal = dir.join("maccor1.journal.jsonl");
    common::survives_restarts(
        &|| Box::new(adapter(port, &journal)),
        Box::new(|| Box::pin(maccor(&python, port, &state, &[]))),
        &ch(1),
        &state,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_replies_are_protocol_errors_and_cost_no_cycle() {
    let Some(python) = common::python("pymacnet.maccorspoofer") else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let state = dir.join("maccor-state.json");
    let _maccor = maccor(
        &python,
        port,
        &state,
        &["--garbage-every", "13", "--truncate-every", "29"],
    )
    .await;
    let cycler = adapter(port, &dir.join("journal.jsonl"));
    let t = test("exp-g/cycle/1", &[1.5, 1.5, 1.5, 1.5], 5);
    // A start may meet a bad reply: the engine retries, and the journal keeps it one test.
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
        vec![1, 2, 3, 4, 5]
    );
    let errors = cycler.link().protocol_errors();
    assert!(errors > 0, "the harness sent bad replies");
    let health = cycler.health().expect("the link's health names the errors");
    assert!(health.contains("protocol errors"), "{health}");
    assert!(health.contains("byte offset"), "{health}");
    assert_eq!(harness_state(&state)["0"]["starts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_maccor_is_named_offline_within_the_bound() {
    let dir = tempdir();
    let port = free_port();
    let cycler = adapter(port, &dir.join("journal.jsonl"));
    let started = std::time::Instant::now();
    let error = cycler
        .start(&ch(1), test("exp-o/cycle/1", &[1.0; 4], 3))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let DriverError::Offline { detail, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(detail.contains(&format!("127.0.0.1:{port}")), "{detail}");
    assert_eq!(
        cycler.loaded_test(&ch(1)).await.unwrap(),
        None,
        "nothing journaled"
    );
}
