//! What `labloop predict` shows people: score tables, the by-batch table and adaptation curve,
//! one prediction as JSON, and the warnings for cells outside a model's training domain.

use crate::shift::{self, CurvePoint, Direction};
use crate::train::{LabelledCell, Metrics};
use crate::{FeatureSet, Prediction, Predictor};
use std::fmt::Write;

/// A model's scores as a two-line table, with the published RMSE when there is one.
pub fn metrics_table(name: &str, m: &Metrics, published: Option<f64>) -> String {
    format!(
        "{:<20} {:>5} {:>12} {:>8} {:>8} {:>8} {:>14}\n\
         {:<20} {:>5} {:>12.0} {:>8.1} {:>7.0}% {:>7.0}% {:>14}\n",
        "model",
        "cells",
        "RMSE cycles",
        "MAPE %",
        "in ±1σ",
        "in ±2σ",
        "paper RMSE",
        name,
        m.cells,
        m.rmse_cycles,
        m.mape_percent,
        100.0 * m.within_1_sigma,
        100.0 * m.within_2_sigma,
        published.map_or("-".to_owned(), |r| format!("{r:.0}"))
    )
}

/// One row per held-out batch (scores, offset, share out of domain) and the batch σ they imply.
pub fn directions_table(model: &str, directions: &[Direction]) -> String {
    let mut out = format!(
        "{:<12} {:<12} {:>6} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8}\n",
        "model", "scored on", "train", "cells", "RMSE", "MAPE %", "in ±1σ", "in ±2σ", "offset"
    );
    for d in directions {
        let m = &d.metrics;
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:>6} {:>6} {:>7.0} {:>7.1} {:>6.0}% {:>7.0}% {:>+8.3}   {:.0} % out of domain",
            model,
            d.scored_on,
            d.trained_cells,
            m.cells,
            m.rmse_cycles,
            m.mape_percent,
            100.0 * m.within_1_sigma,
            100.0 * m.within_2_sigma,
            d.bias_log10,
            100.0 * d.out_of_domain
        );
    }
    let _ = writeln!(
        out,
        "batch σ (root mean square of the offsets): {:.3} log10 cycles",
        shift::batch_sigma(directions)
    );
    out
}

/// The adaptation curve: scores after adapting to k labelled cells of the held-out batch.
pub fn curve_text(curve: &[CurvePoint]) -> String {
    let mut out = format!(
        "adapted to k labelled cells of the held-out batch (mean over batches and {} draws):\n",
        shift::CURVE_DRAWS
    );
    for p in curve {
        let _ = writeln!(
            out,
            "  k = {:>2}: RMSE {:>5.0} cycles, in ±1σ {:>3.0} %, in ±2σ {:>3.0} %",
            p.labelled,
            p.rmse_cycles,
            100.0 * p.within_1_sigma,
            100.0 * p.within_2_sigma
        );
    }
    out
}

/// One cell's prediction as `--json` prints it; an out-of-domain cell carries its domain check
/// (`domain`: the Mahalanobis distance and its limit, each feature outside its range and by how
/// many training σ).
pub fn prediction_json(
    model: &dyn Predictor,
    cell: &str,
    features: &FeatureSet,
    p: &Prediction,
) -> serde_json::Value {
    let mut row = serde_json::json!({
        "cell": cell,
        "cycle_life": p.cycle_life,
        "sigma": p.sigma,
        "log10_life": p.log10_life,
        "sigma_log10": p.sigma_log10,
        "out_of_domain": p.out_of_domain,
    });
    if let (true, Some(trust)) = (p.out_of_domain, model.trust()) {
        row["domain"] = serde_json::json!(trust.domain.check(features));
    }
    row
}

/// `predict run --json`: the model's name and each named cell's prediction.
pub fn predictions_json(
    model: &dyn Predictor,
    cells: &[(String, FeatureSet)],
    predictions: &[Prediction],
) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = cells
        .iter()
        .zip(predictions)
        .map(|((name, features), p)| prediction_json(model, name, features, p))
        .collect();
    serde_json::json!({ "model": model.name(), "predictions": rows })
}

/// `predict eval --json`: [`predictions_json`] with each cell's observed life, the scores and
/// the published RMSE when there is one.
pub fn scores_json(
    model: &dyn Predictor,
    cells: &[(String, LabelledCell)],
    predictions: &[Prediction],
    m: &Metrics,
    published: Option<f64>,
) -> serde_json::Value {
    let named: Vec<(String, FeatureSet)> = cells
        .iter()
        .map(|(name, c)| (name.clone(), c.features.clone()))
        .collect();
    let mut out = predictions_json(model, &named, predictions);
    if let Some(rows) = out["predictions"].as_array_mut() {
        for (row, (_, cell)) in rows.iter_mut().zip(cells) {
            row["observed"] = serde_json::json!(cell.cycle_life);
        }
    }
    out["cells"] = serde_json::json!(m.cells);
    out["rmse_cycles"] = serde_json::json!(m.rmse_cycles);
    out["mape_percent"] = serde_json::json!(m.mape_percent);
    out["within_1_sigma"] = serde_json::json!(m.within_1_sigma);
    out["within_2_sigma"] = serde_json::json!(m.within_2_sigma);
    out["published_rmse_cycles"] = serde_json::json!(published);
    out
}

/// The warnings for named cells outside the model's training domain (by which features, how far,
/// and the σ they were given) with a count at the end; or the one warning that the model cannot
/// tell (a file without a domain). Empty when every cell is inside.
pub fn domain_warnings(
    model: &dyn Predictor,
    cells: &[(String, FeatureSet)],
    predictions: &[Prediction],
) -> Vec<String> {
    if model.trust().is_none() {
        return vec![format!(
            "warning: {} records no training domain (an old model file): it cannot tell an \
             extrapolation; retrain it with `labloop predict train`",
            model.name()
        )];
    }
    let mut warnings: Vec<String> = cells
        .iter()
        .zip(predictions)
        .filter_map(|((name, features), p)| {
            crate::out_of_domain_reason(model, features, p).map(|why| {
                format!(
                    "warning: {name} is outside {}'s training domain ({why}): predicted {:.0} ± \
                     {:.0} cycles, σ widened for the extrapolation",
                    model.name(),
                    p.cycle_life,
                    p.sigma
                )
            })
        })
        .collect();
    if !warnings.is_empty() {
        warnings.push(format!(
            "warning: {} of {} cells are out of {}'s domain",
            warnings.len(),
            cells.len(),
            model.name()
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelFile;

    #[test]
    fn only_cells_outside_the_domain_are_warned_with_a_count() {
        let model = ModelFile::resolve("severson-variance")
            .unwrap()
            .into_predictor();
        let cell = |log_var_dq: f64| FeatureSet::from_named([("log_var_dq", log_var_dq)]);
        let cells = vec![
            ("typical".to_owned(), cell(-4.5)),
            ("far".to_owned(), cell(2.0)),
        ];
        let features: Vec<FeatureSet> = cells.iter().map(|(_, f)| f.clone()).collect();
        let predictions = model.predict(&features).unwrap();
        assert!(!predictions[0].out_of_domain && predictions[1].out_of_domain);
        let warnings = domain_warnings(model.as_ref(), &cells, &predictions);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("far is outside") && warnings[0].contains("log_var_dq"));
        assert!(warnings[1].contains("1 of 2 cells"), "{}", warnings[1]);
        // JSON: the far cell carries its domain check, the typical one none.
        let json = predictions_json(model.as_ref(), &cells, &predictions);
        assert!(json["predictions"][0].get("domain").is_none());
        assert_eq!(json["predictions"][1]["out_of_domain"], true);
        assert!(json["predictions"][1]["domain"].is_object(), "{json}");
    }
}
