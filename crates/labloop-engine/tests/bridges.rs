//! What a third-party bridge found wrong around the link layer (issue 17), each at the trait
//! boundary: what an order carries, censored lives, an instrument's fault, a busy channel, and an
//! instrument that is not what the workflow says.

mod common;

use async_trait::async_trait;
use common::{WORKFLOW, fresh_store, real_time_clo, run_campaign, runner};
use labloop_core::{ChannelId, ExperimentState};
use labloop_drivers::{
    BuiltCell, CellBuilder, CellOrder, ChannelStatus, Cycler, CyclingTest, DriverError, Identity,
    LoadedTest, RecordBatch,
};
use labloop_engine::{CampaignRunner, EngineError, resolve_model};
use labloop_sim::{SimCellBuilder, SimClock, SimCycler};
use std::sync::{Arc, Mutex};

/// The simulator behind knobs a test turns: a foreign or stale test on every channel at first, a
/// fault after some cycles, another identity.
struct Scripted {
    sim: SimCycler,
    /// The key the instrument reports on a channel it calls busy (first start on each channel).
    busy_with: Option<String>,
    busy_done: Mutex<Vec<ChannelId>>,
    stops: Mutex<Vec<ChannelId>>,
    /// Records after which the instrument ends the test, with its reason.
    fault_after: Option<(u64, String)>,
    identity: Option<Identity>,
    /// Records never come, and the driver knows why.
    gone: Option<String>,
}

impl Scripted {
    fn new(channels: u32) -> Self {
        Self {
            sim: SimCycler::new("cycler1", channels, SimClock { acceleration: 1e7 }, 1),
            busy_with: None,
            busy_done: Mutex::new(Vec::new()),
            stops: Mutex::new(Vec::new()),
            fault_after: None,
            identity: None,
            gone: None,
        }
    }
}

#[async_trait]
impl Cycler for Scripted {
    fn name(&self) -> &str {
        self.sim.name()
    }
    fn channels(&self) -> Vec<ChannelId> {
        self.sim.channels()
    }
    async fn identify(&self) -> Result<Identity, DriverError> {
        match &self.identity {
            Some(i) => Ok(i.clone()),
            None => self.sim.identify().await,
        }
    }
    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError> {
        if self.busy_with.is_some() {
            let mut done = self.busy_done.lock().unwrap();
            if !done.contains(channel) {
                done.push(channel.clone());
                return Err(DriverError::Busy {
                    instrument: "cycler1".into(),
                    channel: channel.clone(),
                });
            }
        }
        self.sim.start(channel, test).await
    }
    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError> {
        self.stops.lock().unwrap().push(channel.clone());
        self.sim.stop(channel).await
    }
    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError> {
        self.sim.status(channel).await
    }
    async fn loaded_test(&self, channel: &ChannelId) -> Result<Option<LoadedTest>, DriverError> {
        Ok(self.busy_with.clone().map(|key| LoadedTest {
            key: key.replace("{channel}", labloop_drivers::wire_name(channel)),
            ended: false,
        }))
    }
    fn health(&self) -> Option<String> {
        self.gone.clone()
    }
    async fn records(
        &self,
        channel: &ChannelId,
        from_seq: u64,
    ) -> Result<RecordBatch, DriverError> {
        if self.gone.is_some() {
            std::future::pending::<()>().await;
        }
        let mut batch = self.sim.records(channel, from_seq).await?;
        if let Some((last, reason)) = &self.fault_after {
            batch.records.retain(|t| t.seq <= *last);
            if from_seq > *last || batch.records.last().is_some_and(|t| t.seq == *last) {
                batch.finished = true;
                batch.fault = Some(reason.clone());
            }
        }
        Ok(batch)
    }
}

fn short_clo(cells: u32) -> String {
    WORKFLOW
        .replace("batch_size: 48", &format!("batch_size: {cells}"))
        .replace("channels: 48", &format!("channels: {cells}"))
        .replace("max_rounds: 4", "max_rounds: 1")
        .replace("cycles: 100", "cycles: 30")
}

/// Defect 3: the instrument's own words reach the store, not only "ended after 57 of 100 cycles".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instruments_fault_reason_is_stored_with_the_failure() {
    let mut cycler = Scripted::new(2);
    cycler.fault_after = Some((17, "over-temperature: 61.2 °C".into()));
    let (result, store) = run_campaign(&short_clo(2), Arc::new(cycler), "fault-reason").await;
    assert!(result.is_err(), "every cell faulted: the round fails");
    let campaign = &store.campaigns().await.unwrap()[0].id;
    let experiments = store.experiments(campaign).await.unwrap();
    assert!(!experiments.is_empty());
    for e in experiments {
        assert_eq!(e.state, ExperimentState::Failed);
        let steps = store.step_states(&e.id).await.unwrap();
        let detail = steps.values().find_map(|s| s.detail.clone()).unwrap();
        assert!(
            detail.contains("ended after 17 of 30 cycles")
                && detail.contains("over-temperature: 61.2 °C"),
            "{detail}"
        );
    }
}

/// Defect 4: a channel busy with a test labloop did not start is never stopped; the step fails
/// naming the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_busy_with_someone_elses_test_is_left_alone() {
    let mut cycler = Scripted::new(2);
    cycler.busy_with = Some("another-lab-user/{channel}/long-test".into());
    let cycler = Arc::new(cycler);
    let text = short_clo(2);
    let store = fresh_store("busy-foreign").await;
    let result = runner(&text, cycler.clone(), &store).run().await;
    assert!(result.is_err());
    let campaign = &store.campaigns().await.unwrap()[0].id;
    for e in store.experiments(campaign).await.unwrap() {
        let steps = store.step_states(&e.id).await.unwrap();
        let detail = steps.values().find_map(|s| s.detail.clone()).unwrap();
        assert!(
            detail.contains("busy with test another-lab-user/")
                && detail.contains("labloop leaves it running"),
            "{detail}"
        );
    }
    // The foreign test was never stopped: not to make room, not to clean up after the failure.
    assert!(!cycler.busy_done.lock().unwrap().is_empty());
    assert_eq!(
        cycler.stops.lock().unwrap().clone(),
        Vec::<ChannelId>::new()
    );
}

/// Defect 4, the other side: a test the store shows to be this experiment's own earlier attempt is
/// stopped, and that is recorded rather than done silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_of_the_same_experiment_is_stopped_and_recorded() {
    let mut cycler = Scripted::new(1);
    // The engine's experiment ids are `<campaign>/r<round>/<slot>`: this is slot 0's first attempt.
    cycler.busy_with = Some("fast-charge-clo/r0/000/cycle/0".into());
    let text = short_clo(1);
    let (result, store) = run_campaign(&text, Arc::new(cycler), "busy-stale").await;
    let result = result.unwrap();
    assert_eq!(result.failed, 0);
    let campaign = &store.campaigns().await.unwrap()[0].id;
    let experiments = store.experiments(campaign).await.unwrap();
    assert_eq!(experiments[0].id, "fast-charge-clo/r0/000");
    assert_eq!(experiments[0].state, ExperimentState::Completed);
    let events = store.step_history(&experiments[0].id).await.unwrap();
    assert!(
        events.iter().any(|(_, _, state, detail)| *state == labloop_core::StepState::Note
            && detail.as_deref().is_some_and(|d| d.contains(
                "stopped test fast-charge-clo/r0/000/cycle/0 left on cycler1/ch01 by this experiment"
            ))),
        "{events:?}"
    );
}

/// Spec gap: a bridge announcing 2 channels under a workflow with 4 is refused before anything
/// starts (it used to fail mid-run); so is another protocol major.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrument_unlike_the_workflow_is_refused_before_anything_starts() {
    for (identity, expected) in [
        (
            Identity {
                model: "bridge".into(),
                protocol: "1.1".into(),
                channels: vec!["ch01".into(), "ch02".into()],
            },
            "cycler1 (bridge) announces channels [ch01, ch02], but the workflow gives it 4 (ch01, ch02, ch03, ch04): ch03, ch04 missing",
        ),
        (
            Identity {
                model: "bridge".into(),
                protocol: "2.7".into(),
                channels: (1..=4).map(|i| format!("ch{i:02}")).collect(),
            },
            "cycler1 (bridge) speaks protocol 2.7; labloop speaks 1.1 (major versions must match)",
        ),
    ] {
        let mut cycler = Scripted::new(4);
        cycler.identity = Some(identity);
        let store = fresh_store("identify").await;
        let err = runner(&short_clo(4), Arc::new(cycler), &store)
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Instrument(_)), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
        assert!(err.to_string().ends_with("nothing was started"), "{err}");
        assert!(store.campaigns().await.unwrap().is_empty());
    }
}

/// Defect 2: lives cut at `max_cycles` are lower bounds, shown as such; `mean_observed` holds only
/// lives observed to end of life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn censored_lives_are_shown_and_used_as_lower_bounds() {
    let text = short_clo(2).replace(
        "    - predict:\n        model: severson-variance\n",
        "    - predict:\n        model: severson-variance\n    - cycle_to_eol:\n        max_cycles: 60\n",
    );
    assert!(text.contains("max_cycles: 60"), "{text}");
    let cycler = Scripted::new(2);
    let (result, _store) = run_campaign(&text, Arc::new(cycler), "censored").await;
    let result = result.unwrap();
    let tested: Vec<_> = result.ranking.iter().filter(|r| r.cells > 0).collect();
    assert!(!tested.is_empty());
    for r in &tested {
        assert_eq!(r.mean_observed, None, "no cell reached end of life: {r:?}");
        assert_eq!(r.censored, r.cells, "{r:?}");
        assert_eq!(r.at_least, Some(60.0), "{r:?}");
        assert!(r.mean_predicted.is_some_and(|m| m > 60.0), "{r:?}");
        // The surrogate knows more than the bound: the lives are well past 60 cycles.
        assert!(r.predicted_life > 60.0, "{r:?}");
    }
}

/// A robot that keeps every order it gets.
struct RecordingRobot {
    sim: SimCellBuilder,
    orders: Mutex<Vec<CellOrder>>,
}

#[async_trait]
impl CellBuilder for RecordingRobot {
    fn name(&self) -> &str {
        self.sim.name()
    }
    async fn build(&self, order: CellOrder) -> Result<BuiltCell, DriverError> {
        self.orders.lock().unwrap().push(order.clone());
        self.sim.build(order).await
    }
}

/// Defect 1: the mixture goes out as fractions summing to 1, and `VC_wt_pct` as a named value in
/// its unit (never as a stock to dispense).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_carries_fractions_and_parameters_apart() {
    let text = r#"
instruments:
  - {name: cycler1, kind: cycler, driver: sim, channels: 2, clock_acceleration: 10000000}
  - {name: robot1, kind: cell_builder, driver: sim, channels: 1, clock_acceleration: 10000000}
campaign:
  name: vc-loading
  seed: 3
  objective: {name: cycle_life, direction: maximize}
  search_space:
    formulation:
      components:
        - {name: EC, min: 0.2, max: 0.5}
        - {name: EMC, min: 0.5, max: 0.8}
      parameters:
        - {name: VC_wt_pct, continuous: {min: 0.0, max: 3.0}, unit: "wt%"}
        - {name: salt, categorical: [LiPF6, LiFSI]}
      candidates: 50
optimizer: {kind: gaussian_process, batch_size: 2}
stopping: {max_rounds: 1}
experiment:
  steps:
    - build_cell: {robot: robot1, electrolyte_ul: 70}
      resources: [robot1]
    - cycle:
        cycles: 30
        discharge_c_rate: 1.0
        protocol: {c_rates: [4.0, 3.0], soc_end: 0.8, finish: {c_rate: 1.0, cv_voltage_v: 3.6}}
    - predict: {model: severson-variance}
"#;
    let (workflow, problems) = labloop_workflow::parse(text, "vc.yaml");
    assert!(problems.is_empty(), "{problems:?}");
    let robot = Arc::new(RecordingRobot {
        sim: SimCellBuilder::new("robot1", 1, SimClock { acceleration: 1e7 }),
        orders: Mutex::new(Vec::new()),
    });
    let mut model = resolve_model("severson-variance").unwrap();
    model.window = 30;
    let store = fresh_store("vc-order").await;
    let result = CampaignRunner::new(
        workflow.unwrap(),
        text.to_owned(),
        store,
        labloop_engine::Instruments {
            cyclers: vec![Arc::new(SimCycler::new(
                "cycler1",
                2,
                SimClock { acceleration: 1e7 },
                1,
            ))],
            builders: vec![robot.clone()],
            plugins: Default::default(),
        },
        Arc::new(model),
    )
    .run()
    .await
    .unwrap();
    assert_eq!(result.failed, 0);
    let orders = robot.orders.lock().unwrap().clone();
    assert_eq!(orders.len(), 2);
    for order in orders {
        let names: Vec<&str> = order.formulation.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["EC", "EMC"], "{order:?}");
        let sum: f64 = order.formulation.iter().map(|(_, x)| x).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{order:?}");
        let vc = &order.parameters[0];
        assert_eq!(vc.name, "VC_wt_pct");
        assert_eq!(vc.unit.as_deref(), Some("wt%"));
        assert_eq!((vc.min, vc.max), (Some(0.0), Some(3.0)));
        let v = vc.value.as_f64().unwrap();
        assert!((0.0..=3.0).contains(&v), "{order:?}");
        let salt = &order.parameters[1];
        assert!(
            matches!(salt.value.as_str(), Some("LiPF6" | "LiFSI")),
            "{order:?}"
        );
        // The wire form keeps them apart too.
        let wire = serde_json::to_value(&order).unwrap();
        assert_eq!(wire["parameters"][0]["unit"], "wt%");
        assert_eq!(wire["formulation"].as_array().unwrap().len(), 2);
    }
}

/// "timed out after 2s" alone said nothing; the driver's known cause now follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_timeout_names_what_the_driver_knows() {
    let mut cycler = Scripted::new(1);
    cycler.gone = Some("cycler1 is offline: it announced `offline` 3s ago".into());
    let text = real_time_clo(
        1,
        1,
        "    - cycle:\n        cycles: 30\n        discharge_c_rate: 4.0\n      timeout: 2s\n    - predict:\n        model: severson-variance\n",
    );
    let (result, store) = run_campaign(&text, Arc::new(cycler), "timeout-cause").await;
    assert!(result.is_err());
    let campaign = &store.campaigns().await.unwrap()[0].id;
    let e = &store.experiments(campaign).await.unwrap()[0];
    let steps = store.step_states(&e.id).await.unwrap();
    let detail = steps.values().find_map(|s| s.detail.clone()).unwrap();
    assert!(
        detail.contains("timed out after 2s: cycler1 is offline: it announced `offline`"),
        "{detail}"
    );
}
