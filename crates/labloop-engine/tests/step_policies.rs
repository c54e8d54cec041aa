//! A step's policies as the workflow states them: a timeout ends an attempt, retries run with their
//! backoff and each attempt is an event in the store, then `on_failure` decides — `skip` goes on with
//! the next steps, `pause_campaign` pauses the campaign (resumable), `abort_experiment` fails the
//! experiment. The instruments' clock is real time here (clock_acceleration 1), so timeouts are exact.

mod common;

use common::{real_time_clo, run_campaign};
use labloop_core::ExperimentState;
use labloop_engine::{CampaignResult, EngineError};
use labloop_sim::{SimClock, SimCycler};
use labloop_store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The CLO workflow, two cells, with `soak` (a rest that outlasts its timeout) before cycling.
fn workflow(soak_policy: &str) -> String {
    real_time_clo(
        2,
        1,
        &format!(
            "    - id: soak
      rest: {{duration: 30s}}
      timeout: 200ms
{soak_policy}
    - cycle: {{cycles: 30, discharge_c_rate: 4.0}}
    - predict: {{model: severson-variance}}
"
        ),
    )
}

async fn run(text: &str, name: &str) -> (Result<CampaignResult, EngineError>, Store, Duration) {
    // The cycler itself runs fast; the workflow's clock (for timeouts and rests) is real time.
    let sim = SimCycler::new("cycler1", 2, SimClock { acceleration: 1e7 }, 1);
    let start = Instant::now();
    let (result, store) = run_campaign(text, Arc::new(sim), &format!("policies-{name}")).await;
    (result, store, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_attempts_are_retried_with_backoff_then_skipped() {
    let text = workflow("      retries: 2\n      backoff: 100ms\n      on_failure: skip");
    let (result, store, elapsed) = run(&text, "skip").await;
    let result = result.unwrap();
    assert_eq!(result.cells, 2);
    assert_eq!(
        result.failed, 0,
        "a skipped step does not fail the experiment"
    );
    // Three attempts of 200 ms with 100 ms and 200 ms between them; far less than the 30 s rest.
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(20),
        "{elapsed:?}"
    );
    for e in store.experiments(&result.campaign).await.unwrap() {
        assert_eq!(e.state, ExperimentState::Completed);
        let steps = store.step_states(&e.id).await.unwrap();
        assert_eq!(steps["soak"].state, "skipped");
        assert_eq!(steps["soak"].attempt, 3, "1 attempt + 2 retries");
        assert_eq!(steps["cycle"].state, "succeeded");
        assert_eq!(store.records(&e.id).await.unwrap().len(), 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_can_pause_the_campaign() {
    let text = workflow("      on_failure: pause_campaign");
    let (result, store, _) = run(&text, "pause").await;
    match result {
        Err(EngineError::Paused {
            campaign, reason, ..
        }) => {
            assert!(
                reason.contains("step `soak` attempt 1: timed out after 200ms"),
                "{reason}"
            );
            for e in store.experiments(&campaign).await.unwrap() {
                assert!(!e.state.is_terminal(), "{} is {:?}", e.id, e.state);
                assert!(store.records(&e.id).await.unwrap().is_empty());
            }
        }
        other => panic!("expected a pause, got {:?}", other.map(|r| r.stopped_by)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_aborts_its_experiment_by_default() {
    let text = workflow("      retries: 1\n      backoff: 50ms");
    let (result, store, _) = run(&text, "abort").await;
    // Every experiment of the only round failed: the campaign stops, marked failed.
    let err = result.unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");
    let campaign = store.campaigns().await.unwrap()[0].id.clone();
    for e in store.experiments(&campaign).await.unwrap() {
        assert_eq!(e.state, ExperimentState::Failed);
        let soak = &store.step_states(&e.id).await.unwrap()["soak"];
        assert_eq!((soak.state.as_str(), soak.attempt), ("failed", 2));
        assert!(
            soak.detail
                .as_deref()
                .is_some_and(|d| d.ends_with("timed out after 200ms")),
            "{soak:?}"
        );
    }
}
