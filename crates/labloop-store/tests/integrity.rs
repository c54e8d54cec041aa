//! A store file that is damaged never passes as healthy (issue 18): bytes flipped in it fail the
//! integrity check on open, a file truncated to nothing is refused instead of being migrated into
//! a new empty store, and a store that must exist (status, report, serve) is not created.

use labloop_core::{CycleRecord, Telemetry};
use labloop_store::{NewExperiment, Store, StoreError};

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
        voltage_max_v: None,
        voltage_min_v: None,
        current_max_a: None,
        discharge_curve: None,
    }
}

/// A store of 96 cells × 100 records, closed (its WAL folded into the file).
async fn filled(path: &std::path::Path) -> String {
    let _ = std::fs::remove_file(path);
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.unwrap();
    let campaign = store
        .create_campaign("clo", "campaign: {}\n")
        .await
        .unwrap();
    for slot in 0..96u32 {
        let id = format!("clo/r0/{slot:03}");
        store
            .add_experiment(&NewExperiment {
                id: id.clone(),
                campaign_id: campaign.clone(),
                round: 0,
                slot,
                candidate_index: slot as usize,
                parameters_json: "[]".into(),
                protocol_json: "{}".into(),
                protocol_label: format!("p{slot}"),
                cell_id: format!("cell{slot}"),
            })
            .await
            .unwrap();
        let batch: Vec<Telemetry> = (1..=100)
            .map(|c| Telemetry {
                seq: u64::from(c),
                record: record(c),
            })
            .collect();
        store.append_records(&id, &batch).await.unwrap();
    }
    assert_eq!(store.count_records(&campaign).await.unwrap(), 9600);
    store.close().await;
    url
}

#[tokio::test]
async fn flipped_bytes_and_truncation_are_found_on_open() {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("labloop-integrity-{}.sqlite", std::process::id()));
    let url = filled(&path).await;
    // Healthy: opens.
    Store::open(&url).await.unwrap().close().await;

    // 300 bytes flipped, spread over the file past its header (seeded positions).
    let mut bytes = std::fs::read(&path).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = 4096 + (x as usize) % (bytes.len() - 4096);
        bytes[at] ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    let refused = Store::open(&url).await.unwrap_err();
    eprintln!("flipped: {refused}");
    assert!(
        matches!(
            refused,
            StoreError::Corrupt { .. } | StoreError::Database { .. }
        ),
        "{refused}"
    );
    assert!(Store::connect(&url).await.is_err(), "connect checks too");

    // Truncated to nothing: refused, not migrated into a new empty store.
    std::fs::write(&path, b"").unwrap();
    let refused = Store::connect(&url).await.unwrap_err();
    assert!(
        refused.to_string().contains("the file is empty"),
        "{refused}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as found");

    // A store that must exist is not created.
    std::fs::remove_file(&path).unwrap();
    let refused = Store::open(&url).await.unwrap_err();
    assert!(refused.to_string().contains("no store there"), "{refused}");
    assert!(!path.exists());
}
