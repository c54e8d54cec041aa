//! What the transport tests share: the tests they run on every channel, how they follow them, and
//! what the same instrument measures in-process for comparison.

#![allow(dead_code)]

use labloop_core::{CcCvFinish, ChargeProtocol, ChargeStep};
use labloop_drivers::{Cycler, CyclingTest};
use labloop_sim::{SimClock, SimCycler};
use std::process::Child;
use std::time::Duration;

/// The broker the MQTT tests use: `LABLOOP_TEST_MQTT_URL`, default `mqtt://127.0.0.1:1883`.
pub fn broker_url() -> String {
    std::env::var("LABLOOP_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

/// `tag` made unique to this run: `<tag>-<pid>-<nanos>`.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// A topic prefix of a cycler no other test run uses.
pub fn unique_prefix(tag: &str) -> String {
    format!("labloop-test/{}/cycler1", unique(tag))
}

/// Cycles per test.
pub const CYCLES: u32 = 150;

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test run on channel `i`.
pub fn test(i: usize) -> CyclingTest {
    CyclingTest {
        key: format!("exp-{i}/cycle/1"),
        cell_id: format!("cell-{i}"),
        cycles_before: 0,
        formulation: Vec::new(),
        parameters: Vec::new(),
        protocol: ChargeProtocol {
            steps: vec![ChargeStep {
                soc_from: 0.0,
                soc_to: 0.8,
                c_rate: 3.6 + 0.4 * i as f64,
            }],
            finish: CcCvFinish {
                c_rate: 1.0,
                cv_voltage_v: 3.6,
            },
        },
        discharge_c_rate: 4.0,
        cycles: CYCLES,
    }
}

/// Starts a test on every channel and follows each to its end; returns per channel the sequence
/// numbers received (in order of receipt, as the engine would store them) and the discharge
/// capacities.
pub async fn run_tests(
    cycler: &dyn Cycler,
    during: impl std::future::Future<Output = ()>,
) -> Vec<(Vec<u64>, Vec<f64>)> {
    let channels = cycler.channels();
    for (i, ch) in channels.iter().enumerate() {
        cycler.start(ch, test(i)).await.expect("test starts");
    }
    let follow = channels.iter().map(|ch| async move {
        let mut seqs = Vec::new();
        let mut capacities = Vec::new();
        let mut next = 1;
        loop {
            let batch = tokio::time::timeout(Duration::from_secs(60), cycler.records(ch, next))
                .await
                .expect("records keep coming")
                .expect("records");
            for t in batch.records {
                assert_eq!(t.seq, next, "{ch}: out of order");
                seqs.push(t.seq);
                capacities.push(t.record.discharge_capacity_ah);
                next += 1;
            }
            if batch.finished {
                return (seqs, capacities);
            }
        }
    });
    // Channels are read one after another; the driver buffers the others' records meanwhile.
    let read_all = async {
        let mut results = Vec::new();
        for f in follow {
            results.push(f.await);
        }
        results
    };
    let (results, ()) = tokio::join!(read_all, during);
    results
}

/// What the same instrument measures in-process for the same tests (the simulation is seeded).
pub async fn expected() -> Vec<Vec<f64>> {
    let sim = SimCycler::new("cycler1", 4, SimClock { acceleration: 1e9 }, 5);
    let mut out = Vec::new();
    for (i, ch) in sim.channels().iter().enumerate() {
        sim.start(ch, test(i)).await.unwrap();
        let mut all = Vec::new();
        let mut next = 1;
        loop {
            let batch = sim.records(ch, next).await.unwrap();
            for t in &batch.records {
                all.push(t.record.discharge_capacity_ah);
                next = t.seq + 1;
            }
            if batch.finished {
                break;
            }
        }
        out.push(all);
    }
    out
}

pub fn check(results: &[(Vec<u64>, Vec<f64>)], expected: &[Vec<f64>]) {
    for (ch, ((seqs, capacities), truth)) in results.iter().zip(expected).enumerate() {
        assert_eq!(
            seqs,
            &(1..=u64::from(CYCLES)).collect::<Vec<_>>(),
            "channel {ch}: every record exactly once"
        );
        assert_eq!(capacities, truth, "channel {ch}: records as measured");
    }
}
