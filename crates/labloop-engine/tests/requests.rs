//! People act on a running campaign through the store (the dashboard and the HTTP API write the
//! requests): aborting one experiment stops it at once and frees its channel; pausing stops new steps
//! and ends the run as paused-by-request (resumable); aborting the campaign ends it for good.

mod common;

use common::{fresh_store, real_time_clo, runner};
use labloop_core::ExperimentState;
use labloop_engine::{CampaignResult, EngineError};
use labloop_sim::{SimClock, SimCycler};
use labloop_store::{RequestAction, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Three cells that rest a minute (real time) before cycling: in flight long enough to act on.
fn workflow() -> String {
    real_time_clo(
        3,
        1,
        "    - id: soak
      rest: {duration: 60s}
    - cycle: {cycles: 30, discharge_c_rate: 4.0}
    - predict: {model: severson-variance}
",
    )
}

async fn start(
    name: &str,
) -> (
    tokio::task::JoinHandle<Result<CampaignResult, EngineError>>,
    Store,
    String,
    Vec<String>,
) {
    let store = fresh_store(&format!("requests-{name}")).await;
    let sim = SimCycler::new("cycler1", 3, SimClock { acceleration: 1e7 }, 1);
    let runner = runner(&workflow(), Arc::new(sim), &store);
    let task = tokio::spawn(runner.run());
    // Wait until the round is planned and every cell is resting.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let campaigns = store.campaigns().await.unwrap();
        if let Some(c) = campaigns.first() {
            let exps = store.experiments(&c.id).await.unwrap();
            if exps.len() == 3 {
                let mut resting = 0;
                for e in &exps {
                    let steps = store.step_states(&e.id).await.unwrap();
                    resting += usize::from(steps.get("soak").is_some_and(|s| s.state == "started"));
                }
                if resting == 3 {
                    let ids = exps.into_iter().map(|e| e.id).collect();
                    return (task, store, c.id.clone(), ids);
                }
            }
        }
        assert!(Instant::now() < deadline, "the campaign did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_experiment_stops_and_a_pause_ends_the_run_resumably() {
    let (task, store, campaign, ids) = start("pause").await;
    store
        .request(
            &campaign,
            RequestAction::AbortExperiment,
            Some(&ids[0]),
            "ana (tok_a)",
        )
        .await
        .unwrap();
    wait_until("the experiment to be aborted", async || {
        store.experiment_state(&ids[0]).await.unwrap() == Some(ExperimentState::Aborted)
    })
    .await;
    // The others rest on.
    for id in &ids[1..] {
        assert!(
            !store
                .experiment_state(id)
                .await
                .unwrap()
                .unwrap()
                .is_terminal()
        );
    }
    let asked = Instant::now();
    store
        .request(&campaign, RequestAction::Pause, None, "ana (tok_a)")
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the pause ends the run within seconds, not after the minute's rest")
        .unwrap();
    match ended {
        Err(EngineError::Paused {
            by_request: true,
            reason,
            ..
        }) => assert!(reason.starts_with("paused by ana (tok_a)"), "{reason}"),
        other => panic!("expected a pause by request, got {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_eq!(
        store.campaign(&campaign).await.unwrap().unwrap().state,
        "paused"
    );
    let requests = store.requests(&campaign, false).await.unwrap();
    assert_eq!(requests.len(), 2);
    assert!(
        requests.iter().all(|r| r.handled_at.is_some()),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_campaign_ends_for_good() {
    let (task, store, campaign, _) = start("abort").await;
    store
        .request(&campaign, RequestAction::Abort, None, "bo (tok_b)")
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the abort ends the run")
        .unwrap();
    assert!(
        matches!(&ended, Err(EngineError::Aborted { reason, .. }) if reason.starts_with("aborted by bo")),
        "{ended:?}"
    );
    assert_eq!(
        store.campaign(&campaign).await.unwrap().unwrap().state,
        "aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_asked_for_waits_for_a_resume_request_and_the_run_goes_on() {
    let store = fresh_store("requests-resume").await;
    let sim: Arc<SimCycler> = Arc::new(SimCycler::new(
        "cycler1",
        2,
        SimClock { acceleration: 1e7 },
        1,
    ));
    let text = real_time_clo(
        2,
        1,
        "    - id: soak
      rest: {duration: 4s}
    - cycle: {cycles: 30, discharge_c_rate: 4.0}
    - predict: {model: severson-variance}
",
    );
    let (_quit_tx, quit) = tokio::sync::watch::channel(false);
    let notices = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let task = {
        let (store, notices, quit) = (store.clone(), Arc::clone(&notices), quit.clone());
        let pause = quit.clone();
        tokio::spawn(async move {
            labloop_engine::run_until_over(
                || runner(&text, sim.clone(), &store).with_pause(pause.clone()),
                &store,
                None,
                quit,
                |notice| notices.lock().unwrap().push(format!("{notice:?}")),
            )
            .await
        })
    };
    wait_until("the campaign to start", async || {
        !store.campaigns().await.unwrap().is_empty()
    })
    .await;
    let campaign = store.campaigns().await.unwrap()[0].id.clone();
    store
        .request(&campaign, RequestAction::Pause, None, "ana (tok_a)")
        .await
        .unwrap();
    wait_until("the campaign to pause", async || {
        store.campaign(&campaign).await.unwrap().unwrap().state == "paused"
    })
    .await;
    wait_until("the run to wait for a resume request", async || {
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("Waiting"))
    })
    .await;
    assert!(
        !task.is_finished(),
        "a pause asked for does not end the run"
    );
    store
        .request(&campaign, RequestAction::Resume, None, "ana (tok_a)")
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the resumed campaign ends")
        .unwrap()
        .unwrap();
    match ended {
        labloop_engine::RunOutcome::Finished(result) => assert_eq!(result.cells, 2),
        other => panic!("expected the campaign to finish, got {other:?}"),
    }
    let notices = notices.lock().unwrap().clone();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[0].contains("paused by ana"), "{notices:?}");
    assert!(notices[1].contains("Resumed"), "{notices:?}");
    assert_eq!(
        store.campaign(&campaign).await.unwrap().unwrap().state,
        "completed"
    );
}
