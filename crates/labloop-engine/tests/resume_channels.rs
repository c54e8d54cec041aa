//! After a restart, a channel is kept for the experiment that held it only while that experiment
//! still needs it. Here the only channel's cell has finished cycling and waits for a person when the
//! run stops; after `resume`, the next round's cell must get that channel (it once waited forever).

mod common;

use common::{fresh_store, real_time_clo};
use labloop_engine::{CampaignResult, CampaignRunner, EngineError};
use labloop_sim::{SimClock, SimCycler};
use labloop_store::{Approval, RequestAction, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One channel, one cell per round, two rounds; each cell cycles, then waits for approval.
fn workflow() -> String {
    real_time_clo(
        1,
        2,
        "    - cycle: {cycles: 30, discharge_c_rate: 4.0}
    - id: review
      approve: {message: look at the fade}
    - predict: {model: severson-variance}
",
    )
}

/// A runner of the campaign on a fresh simulated cycler with one channel.
fn runner(text: &str, store: &Store) -> CampaignRunner {
    let sim = SimCycler::new("cycler1", 1, SimClock { acceleration: 1e7 }, 1);
    common::runner(text, Arc::new(sim), store)
}

/// Waits (at most 20 s) until some experiment's `review` step waits, and returns that experiment.
async fn waiting_for_review(store: &Store, campaign: &str, known: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for e in store
            .experiments(campaign)
            .await
            .unwrap()
            .iter()
            .skip(known)
        {
            let steps = store.step_states(&e.id).await.unwrap();
            if steps.get("review").is_some_and(|s| s.state == "waiting") {
                return e.id.clone();
            }
        }
        assert!(Instant::now() < deadline, "no cell came to its review");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn approve(store: &Store, experiment: &str) {
    let answer = Approval {
        by: "ana".into(),
        approved: true,
        note: None,
    };
    store.approve(experiment, "review", &answer).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_cell_is_done_with_it_goes_to_the_next_round_after_resume() {
    let text = workflow();
    let store = fresh_store("resume-channels").await;

    // First run: the round-0 cell cycles on the only channel, then waits for its review; pause.
    let first = tokio::spawn(runner(&text, &store).run());
    let deadline = Instant::now() + Duration::from_secs(20);
    let campaign = loop {
        if let Some(c) = store.campaigns().await.unwrap().first() {
            break c.id.clone();
        }
        assert!(Instant::now() < deadline, "the campaign did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cell0 = waiting_for_review(&store, &campaign, 0).await;
    let held = store.experiments(&campaign).await.unwrap()[0]
        .channel_id
        .clone();
    assert!(held.is_some(), "the cell's channel is on record");
    store
        .request(&campaign, RequestAction::Pause, None, "ana")
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the pause ends the run")
        .unwrap();
    assert!(
        matches!(ended, Err(EngineError::Paused { .. })),
        "{:?}",
        ended.map(|r| r.stopped_by)
    );

    // Resume: approve the waiting cell; the round-1 cell needs the same channel.
    let resumed = tokio::spawn({
        let (runner, campaign) = (runner(&text, &store), campaign.clone());
        async move { runner.resume(&campaign).await }
    });
    approve(&store, &cell0).await;
    let cell1 = waiting_for_review(&store, &campaign, 1).await;
    approve(&store, &cell1).await;
    let result: CampaignResult = tokio::time::timeout(Duration::from_secs(30), resumed)
        .await
        .expect("the resumed campaign finishes: the channel is not kept for a cell done with it")
        .unwrap()
        .unwrap();
    assert_eq!(result.cells, 2);
    let experiments = store.experiments(&campaign).await.unwrap();
    assert_eq!(
        experiments[1].channel_id, held,
        "the next cell got the channel"
    );
    for e in &experiments {
        assert_eq!(store.records(&e.id).await.unwrap().len(), 30, "{}", e.id);
    }
    store.close().await;
}
