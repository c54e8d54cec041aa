//! What the engine's integration tests share: a short campaign on one cycler and a fresh SQLite store.

use labloop_drivers::Cycler;
use labloop_engine::{CampaignResult, CampaignRunner, EngineError, resolve_model};
use labloop_store::Store;
use std::sync::Arc;

/// Runs the workflow `text` (which must be valid) on `cycler`, recording in a fresh store named after
/// `name`. The model reads 30 early cycles, so tests can cycle briefly (predictions are beside the
/// point here).
pub async fn run_campaign(
    text: &str,
    cycler: Arc<dyn Cycler>,
    name: &str,
) -> (Result<CampaignResult, EngineError>, Store) {
    let (workflow, problems) = labloop_workflow::parse(text, "test.yaml");
    assert!(problems.is_empty(), "{problems:?}");
    let workflow = workflow.unwrap();
    let db = std::env::temp_dir().join(format!(
        "labloop-engine-{name}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&db);
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut model = resolve_model("severson-variance").unwrap();
    model.window = 30;
    let runner = CampaignRunner::new(
        workflow,
        text.to_owned(),
        store.clone(),
        labloop_engine::Instruments {
            cyclers: vec![cycler],
            builders: Vec::new(),
        },
        Arc::new(model),
    );
    (runner.run().await, store)
}
