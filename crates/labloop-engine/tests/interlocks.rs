//! Safety interlocks: a cycle record beyond the workflow's limits stops that channel's test, fails its
//! experiment with the reason (after storing the record), and touches no other channel.

mod common;

use async_trait::async_trait;
use common::run_campaign;
use labloop_core::{ChannelId, ExperimentState};
use labloop_drivers::{ChannelStatus, Cycler, CyclingTest, DriverError, RecordBatch};
use labloop_sim::{SimClock, SimCycler};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Which reading goes out of bounds.
#[derive(Clone, Copy)]
enum Excursion {
    Heat,
    OverVoltage,
    UnderVoltage,
    OverCurrent,
}

/// The simulator, with one channel whose cell misbehaves from cycle 5 on. Every `stop` is noted with
/// how many records the channel had delivered by then.
struct HotChannel {
    sim: SimCycler,
    hot: ChannelId,
    excursion: Excursion,
    delivered: Mutex<HashMap<ChannelId, u64>>,
    stops: Mutex<Vec<(ChannelId, u64)>>,
}

#[async_trait]
impl Cycler for HotChannel {
    fn name(&self) -> &str {
        self.sim.name()
    }
    fn channels(&self) -> Vec<ChannelId> {
        self.sim.channels()
    }
    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError> {
        self.sim.start(channel, test).await
    }
    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError> {
        let delivered = self
            .delivered
            .lock()
            .unwrap()
            .get(channel)
            .copied()
            .unwrap_or(0);
        self.stops
            .lock()
            .unwrap()
            .push((channel.clone(), delivered));
        self.sim.stop(channel).await
    }
    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError> {
        self.sim.status(channel).await
    }
    async fn records(
        &self,
        channel: &ChannelId,
        from_seq: u64,
    ) -> Result<RecordBatch, DriverError> {
        let mut batch = self.sim.records(channel, from_seq).await?;
        if let Some(last) = batch.records.last() {
            self.delivered
                .lock()
                .unwrap()
                .insert(channel.clone(), last.seq);
        }
        if *channel == self.hot {
            for t in batch.records.iter_mut().filter(|t| t.seq >= 5) {
                let r = &mut t.record;
                match self.excursion {
                    Excursion::Heat => r.temperature_max_c = 80.0,
                    Excursion::OverVoltage => r.voltage_max_v = Some(4.7),
                    Excursion::UnderVoltage => r.voltage_min_v = Some(1.2),
                    Excursion::OverCurrent => r.current_max_a = Some(12.0),
                }
            }
        }
        Ok(batch)
    }
}

const WORKFLOW: &str = include_str!("../../../workflows/fast-charge-clo.yaml");

async fn run(excursion: Excursion, expected_reason: &str, name: &str) {
    // Retries are asked for, yet a cell that tripped an interlock is never cycled again.
    let text = WORKFLOW
        .replace("timeout: 30d", "timeout: 30d\n      retries: 2")
        .replace("batch_size: 48", "batch_size: 2")
        .replace("channels: 48", "channels: 2")
        .replace("max_rounds: 4", "max_rounds: 1")
        .replace("cycles: 100", "cycles: 30")
        .replace(
            "clock_acceleration: 100000",
            "clock_acceleration: 100000\n    safety: {min_voltage_v: 1.8, max_current_a: 10}",
        );
    assert!(
        text.contains("min_voltage_v"),
        "the workflow's instrument moved"
    );
    let hot = ChannelId::from("cycler1/ch01");
    let cycler = Arc::new(HotChannel {
        sim: SimCycler::new("cycler1", 2, SimClock { acceleration: 1e7 }, 1),
        hot: hot.clone(),
        excursion,
        delivered: Mutex::new(HashMap::new()),
        stops: Mutex::new(Vec::new()),
    });
    let (result, store) = run_campaign(&text, cycler.clone(), name).await;
    let result = result.unwrap();
    assert_eq!((result.cells, result.failed), (2, 1));
    for e in store.experiments(&result.campaign).await.unwrap() {
        let records = store.records(&e.id).await.unwrap();
        if e.channel_id.as_deref() == Some(hot.as_str()) {
            assert_eq!(e.state, ExperimentState::Failed);
            let cycle = &store.step_states(&e.id).await.unwrap()["cycle"];
            let why = cycle.detail.as_deref().unwrap_or("");
            assert!(
                why.starts_with("step `cycle` attempt 1: safety: cycle 5 ")
                    && why.contains(expected_reason),
                "{why}"
            );
            assert!(why.ends_with("channel stopped"), "{why}");
            // The record that tripped the interlock is kept (with those measured beside it in the
            // same batch, which at this clock may be all of them).
            assert!(
                (5..=30).contains(&records.len()),
                "{} records",
                records.len()
            );
        } else {
            assert_eq!(e.state, ExperimentState::Completed);
            assert_eq!(records.len(), 30);
        }
    }
    let stops = cycler.stops.lock().unwrap().clone();
    assert!(
        stops.iter().any(|(ch, _)| *ch == hot),
        "the hot channel is stopped"
    );
    // The other channel is stopped only when its test is done (the engine's usual release).
    for (ch, delivered) in &stops {
        assert!(
            *ch == hot || *delivered >= 30,
            "{ch} stopped after {delivered} records"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_temperature_stops_only_its_channel() {
    run(
        Excursion::Heat,
        "80.000 °C, above cycler1's limit of 75 °C",
        "heat",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_voltage_stops_only_its_channel() {
    run(
        Excursion::OverVoltage,
        "4.700 V, above cycler1's limit of 4.5 V",
        "overvoltage",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_voltage_stops_only_its_channel() {
    run(
        Excursion::UnderVoltage,
        "1.200 V, below cycler1's limit of 1.8 V",
        "undervoltage",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_current_stops_only_its_channel() {
    run(
        Excursion::OverCurrent,
        "12.000 A, above cycler1's limit of 10 A",
        "overcurrent",
    )
    .await;
}
