//! Training from a store reads the cycles the engine predicted from (issue 19): with formation
//! cycles before the cycle step, `labloop_engine::early::early_records` (what `labloop predict
//! train --store` reads) gives each experiment's cycle-step cycles counted from 1, and the
//! features computed from them are the features its prediction was made from.

mod common;

use common::{real_time_clo, run_campaign};
use labloop_sim::{SimClock, SimCycler};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_reads_the_cycles_predictions_were_made_from() {
    let steps = "    - id: formation\n      formation: {cycles: 3, c_rate: 0.1}\n\
                 \x20   - id: cycle\n      cycle: {cycles: 30, discharge_c_rate: 4.0}\n\
                 \x20   - id: predict\n      predict: {model: severson-variance}\n";
    let text = real_time_clo(2, 1, steps)
        .replace("clock_acceleration: 1\n", "clock_acceleration: 1000000\n");
    let sim = SimCycler::new("cycler1", 2, SimClock { acceleration: 1e6 }, 3);
    let (result, store) = run_campaign(&text, Arc::new(sim), "early-window").await;
    result.unwrap();
    let observations = store.observations("fast-charge-clo").await.unwrap();
    assert_eq!(observations.len(), 2);
    for o in observations {
        let all = store.records(&o.experiment_id).await.unwrap();
        assert_eq!(all.len(), 33, "3 formation cycles, then 30");
        let early = labloop_engine::early::early_records(&store, &o.experiment_id)
            .await
            .unwrap()
            .expect("a cycle step ran");
        assert_eq!(early.len(), 30);
        assert_eq!(early[0].cycle, 1);
        // Cycle 1 of the window is the experiment's cycle 4: the formation cycles are left out.
        assert_eq!(early[0].discharge_capacity_ah, all[3].discharge_capacity_ah);
        let features = labloop_predict::EarlyData::from_records(&early, 30)
            .unwrap()
            .features();
        let predicted: std::collections::BTreeMap<String, f64> =
            serde_json::from_str(&o.prediction.features_json).unwrap();
        for (name, value) in features.iter() {
            let stored = predicted[name];
            assert!(
                (value - stored).abs() <= 1e-9 * stored.abs().max(1.0),
                "{name}: trained on {value}, predicted from {stored}"
            );
        }
    }
}
