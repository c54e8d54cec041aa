//! The same store suite on SQLite (a temporary file) and on the real PostgreSQL named by
//! `LABLOOP_TEST_PG_URL`. Under `CI=true` a missing PostgreSQL fails the test instead of skipping it.

use labloop_core::{CycleRecord, DischargeCurve, ExperimentState};
use labloop_store::{NewExperiment, PredictionRow, Store, StoreError};
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

    let batch: Vec<(u64, CycleRecord)> = (1..=10).map(|c| (u64::from(c), record(c))).collect();
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
    assert_eq!(store.count_records(&campaign).await.unwrap(), 10);

    let p = PredictionRow {
        model: "severson-variance".into(),
        cycle_life: 1012.0,
        sigma: 160.0,
        log10_life: 3.005,
        sigma_log10: 0.069,
        features_json: r#"{"log_var_dq":-4.1}"#.into(),
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
    store
        .set_campaign_state(&campaign, "completed")
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
