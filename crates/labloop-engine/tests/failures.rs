//! How the engine handles instrument faults: a failed experiment is recorded with its reason and the
//! campaign goes on; a round in which everything fails stops the campaign, marked failed.

mod common;

use async_trait::async_trait;
use common::{WORKFLOW, fresh_store, run_campaign};
use labloop_core::{ChannelId, ExperimentState};
use labloop_drivers::{ChannelStatus, Cycler, CyclingTest, DriverError, RecordBatch};
use labloop_engine::{CampaignRunner, EngineError, resolve_model};
use labloop_sim::{SimClock, SimCycler};
use labloop_store::Store;
use std::sync::Arc;

/// The simulator, with some channels that refuse to start (a fault injected at the trait boundary).
struct FaultyChannels {
    sim: SimCycler,
    broken: Vec<ChannelId>,
}

#[async_trait]
impl Cycler for FaultyChannels {
    fn name(&self) -> &str {
        self.sim.name()
    }
    fn channels(&self) -> Vec<ChannelId> {
        self.sim.channels()
    }
    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError> {
        if self.broken.contains(channel) {
            return Err(DriverError::Instrument {
                instrument: "cycler1".into(),
                message: format!("{channel}: contactor open"),
            });
        }
        self.sim.start(channel, test).await
    }
    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError> {
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
        self.sim.records(channel, from_seq).await
    }
}

async fn run(
    broken: &[&str],
    name: &str,
) -> (Result<labloop_engine::CampaignResult, EngineError>, Store) {
    let text = WORKFLOW
        .replace("batch_size: 48", "batch_size: 4")
        .replace("channels: 48", "channels: 2")
        .replace("max_rounds: 4", "max_rounds: 1")
        .replace("cycles: 100", "cycles: 30");
    let cycler = FaultyChannels {
        sim: SimCycler::new("cycler1", 2, SimClock { acceleration: 1e7 }, 1),
        broken: broken.iter().map(|c| ChannelId::from(*c)).collect(),
    };
    run_campaign(&text, Arc::new(cycler), name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_experiment_is_recorded_and_the_campaign_goes_on() {
    let (result, store) = run(&["cycler1/ch01"], "some").await;
    let result = result.unwrap();
    assert_eq!(result.cells, 4);
    assert!(
        result.failed >= 1 && result.failed < 4,
        "{} failed",
        result.failed
    );
    let experiments = store.experiments(&result.campaign).await.unwrap();
    let failed: Vec<_> = experiments
        .iter()
        .filter(|e| e.state == ExperimentState::Failed)
        .collect();
    assert_eq!(failed.len(), result.failed);
    assert!(
        failed
            .iter()
            .all(|e| e.channel_id.as_deref() == Some("cycler1/ch01"))
    );
    let completed = experiments
        .iter()
        .filter(|e| e.state == ExperimentState::Completed)
        .count();
    assert_eq!(completed + failed.len(), 4);
    assert_eq!(
        store.count_records(&result.campaign).await.unwrap(),
        completed as u64 * 30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_cycles_for_the_model_is_refused_before_anything_runs() {
    let (workflow, _) =
        labloop_workflow::parse(&WORKFLOW.replace("cycles: 100", "cycles: 50"), "test.yaml");
    let store = fresh_store("window").await;
    let sim = SimCycler::new("cycler1", 2, SimClock { acceleration: 1e7 }, 1);
    let model = resolve_model("severson-variance").unwrap();
    let runner = CampaignRunner::new(
        workflow.unwrap(),
        String::new(),
        store.clone(),
        labloop_engine::Instruments {
            cyclers: vec![Arc::new(sim) as Arc<dyn Cycler>],
            builders: Vec::new(),
            plugins: Default::default(),
        },
        Arc::new(model),
    );
    let err = runner.run().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "workflow: the cycle step runs 50 cycles but model `severson-variance` predicts from the first 100: cycle at least that many"
    );
    assert!(
        store.campaigns().await.unwrap().is_empty(),
        "nothing recorded for a campaign that cannot run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_where_everything_fails_stops_the_campaign() {
    let (result, store) = run(&["cycler1/ch01", "cycler1/ch02"], "all").await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::RoundFailed {
                round: 0,
                count: 4,
                ..
            }
        ),
        "{err}"
    );
    let campaign = &store.campaigns().await.unwrap()[0];
    assert_eq!(campaign.state, "failed");
}
