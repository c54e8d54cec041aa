//! The whole loop end to end on the embedded default: the CLO workflow with its own budget (4 rounds
//! of 48 cells, fewer than the 224 cells of the published campaign) on the
//! simulated cycler and an SQLite store. The protocol ranked first must be in the simulator's true
//! top 10 %, and every simulated cycle must be in the store, exactly once.

use labloop_core::ExperimentState;
use labloop_drivers::Cycler;
use labloop_engine::{CampaignRunner, EngineEvent, resolve_model};
use labloop_sim::{SimClock, SimCycler, expected_life};
use labloop_store::Store;
use labloop_tests::repo_root;
use std::sync::Arc;

async fn run_campaign(
    seed: u64,
    rounds: u32,
) -> (
    labloop_engine::CampaignResult,
    Store,
    SimCycler,
    labloop_workflow::Workflow,
) {
    let path = repo_root().join("workflows/fast-charge-clo.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut workflow = labloop_workflow::load(&path).unwrap();
    workflow.campaign.seed = seed;
    workflow.stopping.max_rounds = rounds;
    let inst = &workflow.instruments[0];
    let sim = SimCycler::new(
        &inst.name,
        inst.channels,
        SimClock { acceleration: 1e6 },
        seed,
    );
    let db = std::env::temp_dir().join(format!("labloop-e2e-{}-{seed}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let model = resolve_model(&workflow.predict_step().unwrap().model).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = CampaignRunner::new(
        workflow.clone(),
        text,
        store.clone(),
        labloop_engine::Instruments {
            cyclers: vec![Arc::new(sim.clone()) as Arc<dyn Cycler>],
            builders: Vec::new(),
            plugins: Default::default(),
        },
        Arc::new(model),
    )
    .with_events(tx);
    let result = runner.run().await.unwrap();
    let mut rounds_finished = 0;
    while let Ok(event) = rx.try_recv() {
        rounds_finished += usize::from(matches!(event, EngineEvent::RoundFinished { .. }));
    }
    assert_eq!(rounds_finished, rounds as usize);
    (result, store, sim, workflow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_finds_a_top_protocol_and_stores_every_cycle() {
    let (result, store, sim, workflow) = run_campaign(2020, 4).await;
    let space = workflow
        .protocol_space()
        .expect("a charge-protocol campaign")
        .enumerate();

    // Ground truth: rank of the recommended protocol among all 224 by true mean life.
    let mut lives: Vec<f64> = space.iter().map(expected_life).collect();
    lives.sort_by(|a, b| b.total_cmp(a));
    let recommended = expected_life(&space[result.ranking[0].candidate_index]);
    let rank = 1 + lives.iter().filter(|l| **l > recommended).count();
    println!(
        "recommended {} (true life {recommended:.0}, rank {rank} of {}); best {:.0}",
        result.ranking[0].protocol,
        space.len(),
        lives[0]
    );
    assert!(
        rank <= space.len() / 10,
        "recommended protocol has true rank {rank}"
    );

    // Every simulated cycle is in the store, once.
    let cycles = workflow.cycle_step().unwrap().cycles as u64;
    let cells = sim.cells();
    assert_eq!(cells.len(), result.cells);
    assert_eq!(result.cells, 192);
    assert_eq!(
        store.count_records(&result.campaign).await.unwrap(),
        cells.len() as u64 * cycles
    );
    let experiments = store.experiments(&result.campaign).await.unwrap();
    assert_eq!(experiments.len(), 192);
    for e in &experiments {
        assert_eq!(e.state, ExperimentState::Completed, "{}", e.id);
        let records = store.records(&e.id).await.unwrap();
        let numbers: Vec<u32> = records.iter().map(|r| r.cycle).collect();
        assert_eq!(numbers, (1..=cycles as u32).collect::<Vec<_>>(), "{}", e.id);
    }
    // Each round records how its batch was chosen.
    let rounds = store.rounds(&result.campaign).await.unwrap();
    assert_eq!(
        rounds.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["medoid-design", "gp-kg", "gp-kg", "gp-kg"]
    );
    assert!(
        rounds[1].2.contains("\"hyperparameters\"") && rounds[1].2.contains("severson-variance")
    );
    assert_eq!(
        store.observations(&result.campaign).await.unwrap().len(),
        192
    );
}

/// A model whose training domain the lab's cells fall outside: every prediction of the campaign is
/// recorded as an extrapolation, with the feature that makes it one, reported in the engine's
/// events, and given a wider σ than the same model in domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_outside_the_models_domain_are_recorded_and_reported() {
    let path = repo_root().join("workflows/fast-charge-clo.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut workflow = labloop_workflow::load(&path).unwrap();
    workflow.stopping.max_rounds = 1;
    let inst = &workflow.instruments[0];
    let sim = SimCycler::new(
        &inst.name,
        inst.channels,
        SimClock { acceleration: 1e6 },
        11,
    );
    let db = std::env::temp_dir().join(format!("labloop-ood-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    // The shipped variance model, told it was trained only on cells of much lower ΔQ variance.
    let mut model = resolve_model("severson-variance").unwrap();
    let in_domain_sigma = {
        let trust = model.trust.as_mut().unwrap();
        let sigma = (model.sigma_log10.powi(2) + trust.batch_sigma_log10.powi(2)).sqrt();
        trust.domain.min = vec![-9.0];
        trust.domain.max = vec![-8.5];
        sigma
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = CampaignRunner::new(
        workflow,
        text,
        store.clone(),
        labloop_engine::Instruments {
            cyclers: vec![Arc::new(sim) as Arc<dyn Cycler>],
            builders: Vec::new(),
            plugins: Default::default(),
        },
        Arc::new(model),
    )
    .with_events(tx);
    let result = runner.run().await.unwrap();
    let observations = store.observations(&result.campaign).await.unwrap();
    assert!(!observations.is_empty());
    for o in &observations {
        let why = o.prediction.out_of_domain.as_deref().unwrap_or_default();
        assert!(
            why.contains("log_var_dq") && why.contains("outside"),
            "{o:?}"
        );
        assert!(o.prediction.sigma_log10 > in_domain_sigma, "{o:?}");
    }
    let mut reported = 0;
    while let Ok(event) = rx.try_recv() {
        if let EngineEvent::ExperimentPredicted {
            out_of_domain: Some(_),
            ..
        } = event
        {
            reported += 1;
        }
    }
    assert_eq!(reported, observations.len());
}
