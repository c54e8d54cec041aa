//! What the engine's integration tests share: short versions of the CLO workflow, a fresh SQLite
//! store, and a runner on one cycler. Each test file uses only some of it.
#![allow(dead_code)]

use labloop_drivers::Cycler;
use labloop_engine::{CampaignResult, CampaignRunner, EngineError, resolve_model};
use labloop_store::Store;
use std::sync::Arc;

/// The example CLO workflow, as the tests cut it down.
pub const WORKFLOW: &str = include_str!("../../../../workflows/fast-charge-clo.yaml");

/// The CLO campaign with `cells` channels and cells per round, `rounds` rounds, the workflow's clock
/// in real time (so timeouts, rests and waits are exact), and the experiment `steps` given (YAML
/// list items under `steps:`).
pub fn real_time_clo(cells: u32, rounds: u32, steps: &str) -> String {
    let head = &WORKFLOW[..WORKFLOW.find("experiment:").unwrap()];
    head.replace("batch_size: 48", &format!("batch_size: {cells}"))
        .replace("channels: 48", &format!("channels: {cells}"))
        .replace("max_rounds: 4", &format!("max_rounds: {rounds}"))
        .replace("clock_acceleration: 100000", "clock_acceleration: 1")
        + "experiment:\n  steps:\n"
        + steps
}

/// An empty SQLite store in the temporary folder, named after `name` and this process.
pub async fn fresh_store(name: &str) -> Store {
    let db = std::env::temp_dir().join(format!(
        "labloop-engine-{name}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&db);
    Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}

/// A runner of the workflow `text` (which must be valid) on `cycler`, recording in `store`. The
/// model reads 30 early cycles, so tests can cycle briefly (predictions are beside the point here).
pub fn runner(text: &str, cycler: Arc<dyn Cycler>, store: &Store) -> CampaignRunner {
    let (workflow, problems) = labloop_workflow::parse(text, "test.yaml");
    assert!(problems.is_empty(), "{problems:?}");
    let mut model = resolve_model("severson-variance").unwrap();
    model.window = 30;
    CampaignRunner::new(
        workflow.unwrap(),
        text.to_owned(),
        store.clone(),
        labloop_engine::Instruments {
            cyclers: vec![cycler],
            builders: Vec::new(),
            plugins: Default::default(),
        },
        Arc::new(model),
    )
}

/// Runs the workflow `text` on `cycler` to its end, recording in a fresh store named after `name`.
pub async fn run_campaign(
    text: &str,
    cycler: Arc<dyn Cycler>,
    name: &str,
) -> (Result<CampaignResult, EngineError>, Store) {
    let store = fresh_store(name).await;
    (runner(text, cycler, &store).run().await, store)
}
