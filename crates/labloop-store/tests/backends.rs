//! The same store suite on SQLite (a temporary file) and on the real PostgreSQL named by
//! `LABLOOP_TEST_PG_URL`. Under `CI=true` a missing PostgreSQL fails the test instead of skipping it.

use labloop_core::{CycleRecord, DischargeCurve, ExperimentState, Telemetry};
use labloop_store::{Approval, NewExperiment, PredictionRow, Store, StoreError};
use std::time::{SystemTime, UNIX_EPOCH};

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

async fn sqlite() -> Store {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique("labloop_store")));
    Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

/// A fresh database on the test PostgreSQL (its name and the admin pool, to drop it after), or `None`
/// when none is configured outside CI.
async fn postgres() -> Option<(Store, String, sqlx::AnyPool)> {
    let Ok(base) = std::env::var("LABLOOP_TEST_PG_URL") else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true but LABLOOP_TEST_PG_URL is not set"
        );
        eprintln!("LABLOOP_TEST_PG_URL not set: skipping the PostgreSQL half");
        return None;
    };
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("PostgreSQL at LABLOOP_TEST_PG_URL is reachable");
    let name = unique("labloop_test");
    // `name` is ours (letters, digits, underscores), not user input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').expect("URL names a database");
    Some((
        Store::connect(&format!("{prefix}/{name}")).await.unwrap(),
        name,
        admin,
    ))
}

fn record(cycle: u32) -> CycleRecord {
    CycleRecord {
        cycle,
        charge_capacity_ah: 1.071,
        discharge_capacity_ah: 1.07 - 1e-4 * f64::from(cycle),
        internal_resistance_ohm: 0.0165,
        temperature_min_c: 30.0,
        temperature_avg_c: 33.5,
        temperature_max_c: 41.2,
        charge_time_s: 1620.0,
        voltage_max_v: cycle.is_multiple_of(3).then_some(3.6),
        voltage_min_v: cycle.is_multiple_of(3).then_some(2.0),
        current_max_a: cycle.is_multiple_of(3).then_some(6.16),
        discharge_curve: cycle.is_multiple_of(2).then(|| DischargeCurve {
            voltage_v: vec![3.4, 3.2, 2.0],
            capacity_ah: vec![0.0, 0.5, 1.06],
        }),
    }
}

async fn suite(store: Store) {
    let campaign = store
        .create_campaign("clo", "campaign: {}\n")
        .await
        .unwrap();
    assert_eq!(campaign, "clo");
    assert_eq!(
        store.create_campaign("clo", "again").await.unwrap(),
        "clo-2"
    );
    store
        .record_round(&campaign, 0, "maximin-design", r#"{"picks":[3]}"#)
        .await
        .unwrap();
    store
        .record_round(&campaign, 0, "maximin-design", r#"{"picks":[3]}"#)
        .await
        .unwrap();
    assert_eq!(store.rounds(&campaign).await.unwrap().len(), 1);

    let e = NewExperiment {
        id: format!("{campaign}/r0/000"),
        campaign_id: campaign.clone(),
        round: 0,
        slot: 0,
        candidate_index: 3,
        parameters_json: "[4.8,5.2,5.2]".into(),
        protocol_json: "{}".into(),
        protocol_label: "4.8-5.2-5.2-4.16".into(),
        cell_id: "cell-0".into(),
    };
    store.add_experiment(&e).await.unwrap();
    store.add_experiment(&e).await.unwrap();
    assert_eq!(
        store.experiment_state(&e.id).await.unwrap(),
        Some(ExperimentState::Proposed)
    );
    for s in [
        ExperimentState::Queued,
        ExperimentState::Claimed,
        ExperimentState::Running,
        ExperimentState::Running,
    ] {
        store.transition(&e.id, s, None).await.unwrap();
    }
    let refused = store
        .transition(&e.id, ExperimentState::Proposed, None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Transition { .. }),
        "{refused}"
    );
    assert_eq!(
        refused.to_string(),
        format!(
            "experiment {}: experiment cannot go from running to proposed",
            e.id
        )
    );

    let batch: Vec<Telemetry> = (1..=10)
        .map(|c| Telemetry {
            seq: u64::from(c),
            record: record(c),
        })
        .collect();
    assert_eq!(store.append_records(&e.id, &batch).await.unwrap(), 10);
    // A replayed batch (driver retry) adds nothing.
    assert_eq!(store.append_records(&e.id, &batch[5..]).await.unwrap(), 0);
    let back = store.records(&e.id).await.unwrap();
    assert_eq!(back.len(), 10);
    assert_eq!(
        back[3].discharge_capacity_ah,
        record(4).discharge_capacity_ah
    );
    assert_eq!(back[3].discharge_curve.as_ref().unwrap().voltage_v.len(), 3);
    assert!(back[2].discharge_curve.is_none());
    // Every reading comes back exactly, optional ones (present or not) included; curves are stored
    // as f32 (checked above).
    for (stored, Telemetry { record: sent, .. }) in back.iter().zip(&batch) {
        let without_curve = |r: &CycleRecord| CycleRecord {
            discharge_curve: None,
            ..r.clone()
        };
        assert_eq!(without_curve(stored), without_curve(sent));
    }
    assert_eq!(store.count_records(&campaign).await.unwrap(), 10);
    // A cycler that measures neither resistance nor temperature (a vendor's without auxiliary
    // channels): the record is stored, and comes back without them.
    let unmeasured = CycleRecord {
        internal_resistance_ohm: f64::NAN,
        temperature_min_c: f64::NAN,
        temperature_avg_c: f64::NAN,
        temperature_max_c: f64::NAN,
        ..record(11)
    };
    assert_eq!(
        store
            .append_records(
                &e.id,
                &[Telemetry {
                    seq: 11,
                    record: unmeasured.clone(),
                }],
            )
            .await
            .unwrap(),
        1
    );
    let back = store.records_in(&e.id, 11, 11).await.unwrap();
    assert!(back[0].internal_resistance_ohm.is_nan() && back[0].temperature_max_c.is_nan());
    assert_eq!(
        back[0].discharge_capacity_ah,
        unmeasured.discharge_capacity_ah
    );

    let p = PredictionRow {
        model: "severson-variance".into(),
        cycle_life: 1012.0,
        sigma: 160.0,
        log10_life: 3.005,
        sigma_log10: 0.069,
        features_json: r#"{"log_var_dq":-4.1}"#.into(),
        out_of_domain: Some("log_var_dq = -1.0 outside [-4.7, -2.9] by 5.0 σ".into()),
    };
    store.record_prediction(&e.id, &p).await.unwrap();
    store
        .transition(&e.id, ExperimentState::Predicted, None)
        .await
        .unwrap();
    let obs = store.observations(&campaign).await.unwrap();
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].prediction, p);
    assert_eq!(obs[0].candidate_index, 3);
    let exps = store.experiments(&campaign).await.unwrap();
    assert_eq!(exps[0].state, ExperimentState::Predicted);

    // Steps waiting for a person: pending until answered; the first answer stands.
    for (step, question) in [("release", "release cell-0?"), ("check", "looks fine?")] {
        store
            .step_event(
                &e.id,
                step,
                1,
                labloop_core::StepState::Waiting,
                Some(question),
            )
            .await
            .unwrap();
    }
    let pending = store.pending_approvals(&campaign).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(store.approval(&e.id, "release").await.unwrap(), None);
    let rejection = Approval {
        by: "ana".into(),
        approved: false,
        note: Some("electrolyte leaked".into()),
    };
    store.approve(&e.id, "release", &rejection).await.unwrap();
    let late = Approval {
        by: "bo".into(),
        approved: true,
        note: None,
    };
    store.approve(&e.id, "release", &late).await.unwrap();
    assert_eq!(
        store.approval(&e.id, "release").await.unwrap(),
        Some(rejection)
    );
    // Answering by filter: a step that does not wait answers nothing; the waiting one is answered.
    let (none, waiting) = store
        .answer_waiting(&campaign, Some(&e.id), Some("release"), &late)
        .await
        .unwrap();
    assert_eq!((none.len(), waiting), (0, 1));
    let (answered, _) = store
        .answer_waiting(&campaign, None, Some("check"), &late)
        .await
        .unwrap();
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].message, "looks fine?");
    assert_eq!(store.approval(&e.id, "check").await.unwrap(), Some(late));
    assert!(store.pending_approvals(&campaign).await.unwrap().is_empty());
    let steps = store.step_states(&e.id).await.unwrap();
    assert_eq!(steps["release"].state, "waiting");
    assert_eq!(steps["release"].detail.as_deref(), Some("release cell-0?"));
    store
        .set_campaign_state(&campaign, labloop_core::CampaignState::Completed)
        .await
        .unwrap();
    let campaigns = store.campaigns().await.unwrap();
    assert!(
        campaigns
            .iter()
            .any(|c| c.id == campaign && c.state == "completed")
    );
}

#[tokio::test]
async fn sqlite_backend() {
    suite(sqlite().await).await;
}

#[tokio::test]
async fn postgres_backend() {
    if let Some((store, name, admin)) = postgres().await {
        suite(store.clone()).await;
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn concurrent_transitions_keep_one_history() {
    let store = sqlite().await;
    let campaign = store.create_campaign("race", "").await.unwrap();
    let e = NewExperiment {
        id: "race/r0/000".into(),
        campaign_id: campaign,
        round: 0,
        slot: 0,
        candidate_index: 0,
        parameters_json: "[]".into(),
        protocol_json: "{}".into(),
        protocol_label: "x".into(),
        cell_id: "c".into(),
    };
    store.add_experiment(&e).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .transition("race/r0/000", ExperimentState::Queued, None)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        store.experiment_state("race/r0/000").await.unwrap(),
        Some(ExperimentState::Queued)
    );
}

#[tokio::test]
async fn bad_urls_are_named() {
    let err = Store::connect("mysql://x").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported store URL `mysql://x`: expected sqlite://PATH or postgres://..."
    );
}

/// The job queue, on either backend.
async fn queue_suite(store: Store) {
    use labloop_store::{Completion, NewJob, QueueError};
    use std::time::Duration;
    let job = |id: &str, capability: &str, max_attempts: u32| NewJob {
        id: id.into(),
        campaign: Some("q".into()),
        kind: "build_cell".into(),
        capability: capability.into(),
        payload: format!(r#"{{"order": "{id}"}}"#),
        max_attempts,
    };
    assert!(store.enqueue(&job("j1", "robot", 3)).await.unwrap());
    assert!(
        !store.enqueue(&job("j1", "robot", 3)).await.unwrap(),
        "idempotent by id"
    );
    assert!(store.enqueue(&job("j2", "oven", 1)).await.unwrap());
    assert!(store.enqueue(&job("j3", "robot", 2)).await.unwrap());
    assert_eq!(
        store.queue_depth().await.unwrap(),
        vec![("oven".to_owned(), 1), ("robot".to_owned(), 2)]
    );
    let long = Duration::from_secs(60);

    // Capabilities route jobs; the oldest goes first.
    assert!(
        store
            .claim("w0", &["pipette"], long)
            .await
            .unwrap()
            .is_none()
    );
    let a = store.claim("w1", &["robot"], long).await.unwrap().unwrap();
    assert_eq!(
        (a.id.as_str(), a.attempt, a.kind.as_str()),
        ("j1", 1, "build_cell")
    );
    assert_eq!(a.payload, r#"{"order": "j1"}"#);
    store
        .heartbeat(&a.id, &a.worker, &a.lease_token, long)
        .await
        .unwrap();
    assert_eq!(
        store
            .complete(&a.id, &a.worker, &a.lease_token, r#"{"cell_id": "c1"}"#)
            .await
            .unwrap(),
        Completion::Completed
    );
    // A completion repeated by the same claim (its reply was lost) stores nothing new.
    assert_eq!(
        store
            .complete(&a.id, &a.worker, &a.lease_token, r#"{"cell_id": "other"}"#)
            .await
            .unwrap(),
        Completion::AlreadyCompleted
    );
    let row = store.job("j1").await.unwrap().unwrap();
    assert_eq!(row.state, "completed");
    assert_eq!(row.result.as_deref(), Some(r#"{"cell_id": "c1"}"#));
    assert!(matches!(
        store.heartbeat("j1", &a.worker, &a.lease_token, long).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.complete("nope", "w1", "t", "{}").await,
        Err(QueueError::Unknown(_))
    ));

    // A lease that runs out returns the job; the old claim can no longer touch it.
    let b = store
        .claim("w2", &["robot", "oven"], Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.id, "j2");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // j2 allowed one attempt: its lapsed lease fails it. j3 is next.
    let c = store
        .claim("w3", &["robot", "oven"], Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.id, "j3");
    let failed = store.job("j2").await.unwrap().unwrap();
    assert_eq!(failed.state, "failed");
    assert!(
        failed.error.unwrap().contains("lease ran out"),
        "why it failed"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let d = store.claim("w4", &["robot"], long).await.unwrap().unwrap();
    assert_eq!(
        (d.id.as_str(), d.attempt),
        ("j3", 2),
        "taken over after the lease ran out"
    );
    let refused = store
        .complete(&c.id, &c.worker, &c.lease_token, "{}")
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "job j3: the lease is no longer this claim's (held under another claim)",
        "never who holds it"
    );
    // A lease token binds to the worker that claimed: another naming it is refused.
    assert!(matches!(
        store.complete(&d.id, "w1", &d.lease_token, "{}").await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.heartbeat(&d.id, "w1", &d.lease_token, long).await,
        Err(QueueError::LeaseLost { .. })
    ));
    // A claim names a bounded list of capabilities (30 000 once held the write lock for seconds).
    let many: Vec<String> = (0..30_000).map(|i| format!("cap-{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let refused = store.claim("w9", &many, long).await.unwrap_err();
    assert!(refused.to_string().contains("at most 32"), "{refused}");
    assert!(matches!(
        store.claim("w9", &["robot; DROP TABLE jobs"], long).await,
        Err(labloop_store::StoreError::Limit(_))
    ));
    // A failure with retry left: back to the queue; then out of attempts: failed for good.
    store
        .fail(&d.id, &d.worker, &d.lease_token, "gripper jammed", true)
        .await
        .unwrap();
    let row = store.job("j3").await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.error.as_deref()),
        ("failed", Some("gripper jammed"))
    );
    assert!(store.enqueue(&job("j4", "robot", 3)).await.unwrap());
    let e = store.claim("w5", &["robot"], long).await.unwrap().unwrap();
    store
        .fail(&e.id, &e.worker, &e.lease_token, "no cells left", true)
        .await
        .unwrap();
    assert_eq!(store.job("j4").await.unwrap().unwrap().state, "queued");
    let f = store.claim("w6", &["robot"], long).await.unwrap().unwrap();
    assert_eq!((f.id.as_str(), f.attempt), ("j4", 2));
    store
        .fail(&f.id, &f.worker, &f.lease_token, "broken", false)
        .await
        .unwrap();
    assert_eq!(store.job("j4").await.unwrap().unwrap().state, "failed");
    assert!(
        store
            .claim("w7", &["robot", "oven"], long)
            .await
            .unwrap()
            .is_none()
    );
    let states: Vec<(String, String)> = store
        .jobs("q")
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.id, j.state))
        .collect();
    assert_eq!(states.len(), 4);
    assert!(store.queue_depth().await.unwrap().is_empty());

    // One worker cannot take the whole queue: it holds at most MAX_HELD_JOBS at once.
    for i in 0..6 {
        store
            .enqueue(&job(&format!("h{i}"), "arm", 3))
            .await
            .unwrap();
    }
    let held: Vec<_> = claim_all_as_hoarder(&store, long).await;
    assert_eq!(held.len(), labloop_core::limits::MAX_HELD_JOBS as usize);
    assert!(matches!(
        store.claim("hoarder", &["arm"], long).await,
        Err(labloop_store::StoreError::TooManyHeld { held: 4, limit: 4 })
    ));
    assert!(
        store
            .claim("other", &["arm"], long)
            .await
            .unwrap()
            .is_some()
    );
    store
        .complete(&held[0].id, "hoarder", &held[0].lease_token, "{}")
        .await
        .unwrap();
    assert!(
        store
            .claim("hoarder", &["arm"], long)
            .await
            .unwrap()
            .is_some()
    );
}

async fn claim_all_as_hoarder(
    store: &Store,
    lease: std::time::Duration,
) -> Vec<labloop_store::ClaimedJob> {
    let mut held = Vec::new();
    while let Ok(Some(job)) = store.claim("hoarder", &["arm"], lease).await {
        held.push(job);
    }
    held
}

#[tokio::test]
async fn sqlite_queue() {
    queue_suite(sqlite().await).await;
}

#[tokio::test]
async fn postgres_queue() {
    if let Some((store, name, admin)) = postgres().await {
        queue_suite(store.clone()).await;
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
    }
}

/// Campaign ownership, on either backend.
async fn ownership_suite(store: Store) {
    use std::time::Duration;
    let long = Duration::from_secs(60);
    assert!(
        store
            .acquire_campaign("c", "engine-a", long, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_campaign("c", "engine-a", long, None)
            .await
            .unwrap(),
        "re-entrant"
    );
    assert!(
        !store
            .acquire_campaign("c", "engine-b", long, None)
            .await
            .unwrap(),
        "held"
    );
    assert_eq!(
        store.campaign_owner("c").await.unwrap().unwrap().owner,
        "engine-a"
    );
    assert!(
        store
            .renew_campaign("c", "engine-a", Duration::from_millis(1))
            .await
            .unwrap()
    );
    assert!(!store.renew_campaign("c", "engine-b", long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The lease ran out: another engine takes over, and the first can no longer renew.
    assert!(
        store
            .acquire_campaign("c", "engine-b", long, None)
            .await
            .unwrap()
    );
    assert!(!store.renew_campaign("c", "engine-a", long).await.unwrap());
    // An engine known to be dead is displaced at once.
    assert!(
        store
            .acquire_campaign("c", "engine-c", long, Some("engine-b"))
            .await
            .unwrap()
    );
    store.release_campaign("c", "engine-b").await.unwrap();
    assert_eq!(
        store.campaign_owner("c").await.unwrap().unwrap().owner,
        "engine-c"
    );
    store.release_campaign("c", "engine-c").await.unwrap();
    assert!(store.campaign_owner("c").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_ownership() {
    ownership_suite(sqlite().await).await;
}

#[tokio::test]
async fn postgres_ownership() {
    if let Some((store, name, admin)) = postgres().await {
        ownership_suite(store.clone()).await;
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
    }
}

async fn requests_suite(store: Store) {
    use labloop_store::RequestAction;
    let c = store
        .create_campaign("req", "campaign: {}\n")
        .await
        .unwrap();
    let pause = store
        .request(&c, RequestAction::Pause, None, "ana (tok_1)")
        .await
        .unwrap();
    let abort = store
        .request(
            &c,
            RequestAction::AbortExperiment,
            Some("req/r0/001"),
            "ana (tok_1)",
        )
        .await
        .unwrap();
    assert_ne!(pause, abort);
    let open = store.requests(&c, true).await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].action, RequestAction::Pause);
    assert_eq!(open[1].experiment_id.as_deref(), Some("req/r0/001"));
    store.handled(&pause).await.unwrap();
    store.handled(&pause).await.unwrap();
    let open = store.requests(&c, true).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, abort);
    let all = store.requests(&c, false).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].handled_at.is_some() && all[1].handled_at.is_none());
    assert!(store.requests("other", false).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_requests() {
    requests_suite(sqlite().await).await;
}

#[tokio::test]
async fn postgres_requests() {
    if let Some((store, name, admin)) = postgres().await {
        requests_suite(store.clone()).await;
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
    }
}

/// An Arbin-style CSV of one cell: `cycles` cycles of a 1 h charge and a 1 h discharge.
fn arbin_csv(cycles: u32, capacity: f64) -> String {
    let mut out = String::from(
        "Data_Point,Test_Time(s),Step_Index,Cycle_Index,Current(A),Voltage(V),Charge_Capacity(Ah),Discharge_Capacity(Ah)\n",
    );
    let mut point = 1;
    for c in 1..=cycles {
        for k in 0..=20 {
            let t = f64::from(c - 1) * 7300.0 + f64::from(k) * 180.0;
            let q = capacity * f64::from(k) / 20.0;
            out += &format!(
                "{point},{t},1,{c},1.0,{},{q},0\n",
                3.0 + 0.03 * f64::from(k)
            );
            point += 1;
        }
        for k in 1..=20 {
            let t = f64::from(c - 1) * 7300.0 + 3650.0 + f64::from(k) * 180.0;
            let q = capacity * f64::from(k) / 20.0;
            out += &format!(
                "{point},{t},2,{c},-1.0,{},{capacity},{q}\n",
                3.5 - 0.07 * f64::from(k)
            );
            point += 1;
        }
    }
    out
}

async fn datasets_suite(store: Store) {
    let csv = arbin_csv(3, 1.05);
    let file = labloop_import::import(csv.as_bytes(), "lab/cell7.csv", None).unwrap();
    let added = store.import_file("legacy", &file).await.unwrap();
    assert_eq!(
        added,
        labloop_store::ImportOutcome::Added {
            cells: vec!["cell7".into()]
        }
    );
    // The same bytes again add nothing.
    assert_eq!(
        store.import_file("legacy", &file).await.unwrap(),
        labloop_store::ImportOutcome::AlreadyImported
    );
    // Another file whose cell has the same name keeps both, the second named by its hash.
    let other =
        labloop_import::import(arbin_csv(2, 1.0).as_bytes(), "old/cell7.csv", None).unwrap();
    let labloop_store::ImportOutcome::Added { cells } =
        store.import_file("legacy", &other).await.unwrap()
    else {
        panic!("a new file is added");
    };
    assert_eq!(cells, vec![format!("cell7-{}", &other.sha256[..8])]);
    let listed = store.datasets().await.unwrap();
    assert_eq!(
        listed,
        vec![labloop_store::DatasetSummary {
            name: "legacy".into(),
            files: 2,
            cells: 2,
            cycles: 5
        }]
    );
    let cells = store.dataset("legacy").await.unwrap().expect("the dataset");
    let cell7 = cells.iter().find(|c| c.name == "cell7").unwrap();
    assert_eq!(cell7.sha256, file.sha256);
    assert_eq!(cell7.format, "arbin-csv");
    assert_eq!(cell7.file_name, "lab/cell7.csv");
    // What comes back is what went in: summaries exactly, curves to the store's f32.
    for (stored, read) in cell7.cycles.iter().zip(&file.cells[0].cycles) {
        let (a, b) = (stored.discharge_curve.clone(), read.discharge_curve.clone());
        assert_eq!(
            labloop_import::CycleSummary {
                discharge_curve: None,
                ..stored.clone()
            },
            labloop_import::CycleSummary {
                discharge_curve: None,
                ..read.clone()
            }
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.voltage_v.len(), b.voltage_v.len());
        for (x, y) in a.capacity_ah.iter().zip(&b.capacity_ah) {
            assert!((x - y).abs() < 1e-6);
        }
    }
    assert!((cell7.cycles[0].discharge_capacity_ah - 1.05).abs() < 1e-9);
    assert!(store.dataset("nothing").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_datasets() {
    datasets_suite(sqlite().await).await;
}

#[tokio::test]
async fn postgres_datasets() {
    if let Some((store, name, admin)) = postgres().await {
        datasets_suite(store.clone()).await;
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
    }
}
