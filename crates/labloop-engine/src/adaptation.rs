//! A campaign's model learns its own batch: once cells have been cycled to end of life (a
//! `cycle_to_eol` step), the model is adapted to their observed lives (`labloop_predict::shift`),
//! and the predictions of the cells still waiting for their end of life are re-made with it and
//! recorded with what it was adapted on. The optimizer plans the next round on the re-made values.

use crate::EngineError;
use labloop_predict::train::LabelledCell;
use labloop_predict::{FeatureSet, Predictor, shift};
use labloop_store::{ObservationRow, PredictionRow, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The features a prediction was made from, as stored with it.
fn stored_features(row: &PredictionRow) -> FeatureSet {
    let named: BTreeMap<String, Option<f64>> =
        serde_json::from_str(&row.features_json).unwrap_or_default();
    FeatureSet::from_named(
        named
            .iter()
            .filter_map(|(name, value)| value.map(|v| (name.as_str(), v))),
    )
}

/// Adapts `predictor` to the lives observed in `rows` (a campaign's observations) and re-makes
/// the predictions of the rows whose life is not observed yet, in place; each re-made prediction
/// is recorded. Returns the predictor the rows now come from: `predictor` itself when there is
/// nothing to adapt to (no observed life yet, or a model that cannot be adapted).
pub(crate) async fn adapt_to_observed(
    store: &Store,
    predictor: &Arc<dyn Predictor + Send + Sync>,
    campaign: &str,
    rows: &mut [ObservationRow],
) -> Result<Arc<dyn Predictor + Send + Sync>, EngineError> {
    let ours = |o: &ObservationRow| o.prediction.model == predictor.name();
    let labelled: Vec<LabelledCell> = rows
        .iter()
        .filter(|o| ours(o))
        .filter_map(|o| match o.observed {
            Some((life, false)) => Some(LabelledCell {
                features: stored_features(&o.prediction),
                cycle_life: life,
            }),
            _ => None,
        })
        .collect();
    let adapted_on = format!(
        "{} cells of campaign {campaign} cycled to end of life",
        labelled.len()
    );
    let (adapted, adaptation) = match shift::adapted_predictor(
        predictor.as_ref(),
        &labelled,
        &adapted_on,
    ) {
        Ok(Some(adapted)) => adapted,
        Ok(None) => return Ok(Arc::clone(predictor)),
        Err(e) => {
            tracing::warn!(%campaign, error = %e, "the model could not be adapted to the observed lives");
            return Ok(Arc::clone(predictor));
        }
    };
    for o in rows.iter_mut().filter(|o| o.observed.is_none() && ours(o)) {
        let features = stored_features(&o.prediction);
        let Ok(made) = adapted.predict(std::slice::from_ref(&features)) else {
            continue;
        };
        let remade = crate::steps::prediction_row(
            adapted.as_ref(),
            &features,
            &made[0],
            o.prediction.features_json.clone(),
        );
        store
            .record_reprediction(
                &o.experiment_id,
                &adaptation.cells_sha256,
                &adaptation.adapted_on,
                &remade,
            )
            .await?;
        o.prediction = remade;
    }
    Ok(adapted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use labloop_store::NewExperiment;

    /// Six cells predicted by the shipped variance model; four lived 70 % of their prediction.
    /// Adapting to them moves the other two's predictions down by about that much, records the
    /// re-made predictions with their provenance, and leaves the first predictions as they were.
    #[tokio::test]
    async fn observed_lives_adapt_the_model_and_remake_the_pending_predictions() {
        let db = std::env::temp_dir().join(format!("labloop-adapt-{}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&db);
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let campaign = store
            .create_campaign("adapt", "campaign: {}\n")
            .await
            .unwrap();
        let model = labloop_predict::ModelFile::builtin("severson-variance").unwrap();
        let predictor = model.into_predictor();
        for i in 0..6 {
            let id = format!("{campaign}/r0/{i:03}");
            store
                .add_experiment(&NewExperiment {
                    id: id.clone(),
                    campaign_id: campaign.clone(),
                    round: 0,
                    slot: i,
                    candidate_index: i as usize,
                    parameters_json: "[]".into(),
                    protocol_json: "{}".into(),
                    protocol_label: format!("p{i}"),
                    cell_id: format!("cell-{i}"),
                })
                .await
                .unwrap();
            let log_var = -4.4 + 0.25 * f64::from(i);
            let features = FeatureSet::from_named([("log_var_dq", log_var)]);
            let p = predictor.predict(&[features]).unwrap()[0];
            store
                .record_prediction(
                    &id,
                    &PredictionRow {
                        model: predictor.name().to_owned(),
                        cycle_life: p.cycle_life,
                        sigma: p.sigma,
                        log10_life: p.log10_life,
                        sigma_log10: p.sigma_log10,
                        features_json: format!(r#"{{"log_var_dq":{log_var},"other":null}}"#),
                        out_of_domain: None,
                    },
                )
                .await
                .unwrap();
            if i < 4 {
                store
                    .record_observed_life(&id, 0.7 * p.cycle_life, false)
                    .await
                    .unwrap();
            }
        }
        let before = store.observations(&campaign).await.unwrap();
        let mut rows = before.clone();
        let adapted = adapt_to_observed(&store, &predictor, &campaign, &mut rows)
            .await
            .unwrap();
        let adaptation = adapted.trust().unwrap().adaptation.clone().unwrap();
        assert_eq!(adaptation.cells, 4);
        assert!(adaptation.adapted_on.contains("4 cells of campaign adapt"));
        for (b, a) in before.iter().zip(&rows) {
            if b.observed.is_some() {
                assert_eq!(a.prediction, b.prediction);
                continue;
            }
            let ratio = a.prediction.cycle_life / b.prediction.cycle_life;
            assert!((0.7..0.85).contains(&ratio), "{ratio}");
            assert!(a.prediction.sigma_log10 < b.prediction.sigma_log10);
            let remade = store.repredictions(&b.experiment_id).await.unwrap();
            assert_eq!(remade.len(), 1);
            assert_eq!(remade[0].0, adaptation.adapted_on);
            assert_eq!(remade[0].1, a.prediction.cycle_life);
        }
        // The first predictions stand in the store; adapting again records nothing new.
        assert_eq!(store.observations(&campaign).await.unwrap(), before);
        let mut again = before.clone();
        adapt_to_observed(&store, &predictor, &campaign, &mut again)
            .await
            .unwrap();
        assert_eq!(
            store
                .repredictions(&before[5].experiment_id)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
