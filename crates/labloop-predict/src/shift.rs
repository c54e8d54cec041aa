//! Batch shift, measured and adapted to: train on some batches of cells and score another
//! ([`by_batch`]), the batch σ that follows from it ([`batch_sigma`]), and the update of a model
//! from a few labelled cells of a new batch ([`adapt`], [`adaptation_curve`]).

use crate::PredictError;
use crate::domain::{Adaptation, Trust};
use crate::features::FeatureSet;
use crate::model::{ModelFile, Prediction};
use crate::train::{LabelledCell, Metrics, score, training_hash};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Prior σ of a batch's change of slope (see [`Adaptation::slope`]). Chosen on the Severson
/// cells' by-batch adaptation curve among 0, 0.3, 0.6 and 1.0: mean RMSE over the three built-in
/// procedures with 5 / 10 labelled cells 162 / 158, 154 / 143, 146 / 134, 145 / 132 cycles; 0.6 is
/// the smallest that gets nearly all of the gain and is no worse than none for any model.
pub const SLOPE_PRIOR_SIGMA: f64 = 0.6;

/// Prior weight, in cells, of the model's own σ when the labelled cells' scatter recalibrates it.
pub const SIGMA_PRIOR_CELLS: f64 = 4.0;

/// A labelled cell and the batch it came from.
#[derive(Clone, Debug)]
pub struct BatchCell {
    /// Its name (`cell7`).
    pub name: String,
    /// Its batch (a production lot, a batch date).
    pub batch: String,
    /// Features and life.
    pub cell: LabelledCell,
}

/// One direction of a by-batch evaluation: trained on every batch but one, scored on that one.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Direction {
    /// The batch scored.
    pub scored_on: String,
    /// Cells trained on.
    pub trained_cells: usize,
    /// Scores on the held-out batch.
    pub metrics: Metrics,
    /// Mean of log₁₀(observed) − log₁₀(predicted) on the held-out batch: the batch's offset.
    pub bias_log10: f64,
    /// Share of the held-out cells flagged out of domain.
    pub out_of_domain: f64,
}

/// The batches present, in order of first appearance.
pub fn batches(cells: &[BatchCell]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for c in cells {
        if !seen.contains(&c.batch) {
            seen.push(c.batch.clone());
        }
    }
    seen
}

fn labelled(cells: &[&BatchCell]) -> Vec<LabelledCell> {
    cells.iter().map(|c| c.cell.clone()).collect()
}

/// Predictions of `model` for `cells`.
pub fn predict_cells(
    model: &ModelFile,
    cells: &[LabelledCell],
) -> Result<Vec<Prediction>, PredictError> {
    let features: Vec<FeatureSet> = cells.iter().map(|c| c.features.clone()).collect();
    model.clone().into_predictor().predict(&features)
}

/// One batch held out: the model fitted on every other batch, and the held-out batch's cells.
#[derive(Clone, Debug)]
pub struct HeldOut {
    /// The batch held out.
    pub batch: String,
    /// Cells the model was trained on.
    pub trained_cells: usize,
    /// The model, trained without the batch.
    pub model: ModelFile,
    /// The batch's cells.
    pub cells: Vec<LabelledCell>,
}

/// For each batch in turn, fits `fit` on all the others. Needs at least two batches.
pub fn hold_out_each_batch(
    cells: &[BatchCell],
    fit: &dyn Fn(&[LabelledCell]) -> Result<ModelFile, PredictError>,
) -> Result<Vec<HeldOut>, PredictError> {
    let names = batches(cells);
    if names.len() < 2 {
        return Err(PredictError::Training(format!(
            "a by-batch split needs cells of at least two batches, these are all of `{}`",
            names.first().map_or("", String::as_str)
        )));
    }
    names
        .into_iter()
        .map(|batch| {
            let (test, train): (Vec<&BatchCell>, Vec<&BatchCell>) =
                cells.iter().partition(|c| c.batch == batch);
            Ok(HeldOut {
                model: fit(&labelled(&train))?,
                trained_cells: train.len(),
                cells: labelled(&test),
                batch,
            })
        })
        .collect()
}

/// Trains with `fit` on all batches but one and scores the held-out one, for each batch in turn.
/// Needs at least two batches.
pub fn by_batch(
    cells: &[BatchCell],
    fit: &dyn Fn(&[LabelledCell]) -> Result<ModelFile, PredictError>,
) -> Result<Vec<Direction>, PredictError> {
    directions(&hold_out_each_batch(cells, fit)?)
}

/// The adaptation curve's labelled-cell counts, draws per count and seed, as
/// [`shift_report`] draws it (`labloop predict eval --split by-batch`).
pub const CURVE_SIZES: [usize; 5] = [0, 1, 2, 5, 10];
/// See [`CURVE_SIZES`].
pub const CURVE_DRAWS: usize = 20;
/// See [`CURVE_SIZES`].
pub const CURVE_SEED: u64 = 7;

/// One training procedure under batch shift: each batch held out and scored, the batch σ that
/// follows, and the adaptation curve.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShiftReport {
    /// The procedure's name.
    pub model: String,
    /// Cells in all batches.
    pub cells: usize,
    /// Each held-out batch scored.
    pub directions: Vec<Direction>,
    /// The batch σ ([`batch_sigma`]).
    pub batch_sigma_log10: f64,
    /// Adapted to k labelled cells of the held-out batch ([`adaptation_curve`]).
    pub adaptation: Vec<CurvePoint>,
}

/// The by-batch evaluation of the procedure `model` (fitted by `fit`) on `cells`.
pub fn shift_report(
    model: &str,
    cells: &[BatchCell],
    fit: &dyn Fn(&[LabelledCell]) -> Result<ModelFile, PredictError>,
) -> Result<ShiftReport, PredictError> {
    let held_out = hold_out_each_batch(cells, fit)?;
    let directions = directions(&held_out)?;
    Ok(ShiftReport {
        model: model.to_owned(),
        cells: cells.len(),
        batch_sigma_log10: batch_sigma(&directions),
        adaptation: adaptation_curve(&held_out, &CURVE_SIZES, CURVE_DRAWS, CURVE_SEED)?,
        directions,
    })
}

/// Each held-out batch scored by the model trained without it.
pub fn directions(held_out: &[HeldOut]) -> Result<Vec<Direction>, PredictError> {
    held_out
        .iter()
        .map(|h| {
            let predictions = predict_cells(&h.model, &h.cells)?;
            Ok(Direction {
                scored_on: h.batch.clone(),
                trained_cells: h.trained_cells,
                metrics: score(&h.cells, &predictions),
                bias_log10: mean(
                    h.cells
                        .iter()
                        .zip(&predictions)
                        .map(|(c, p)| c.cycle_life.log10() - p.log10_life),
                ),
                out_of_domain: mean(
                    predictions
                        .iter()
                        .map(|p| f64::from(u8::from(p.out_of_domain))),
                ),
            })
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// The σ of a new batch's offset from a by-batch evaluation: the root mean square of the held-out
/// batches' offsets. Each is the difference between two batches' offsets, so this errs wide, as
/// a σ for a batch nobody has seen should.
pub fn batch_sigma(directions: &[Direction]) -> f64 {
    mean(directions.iter().map(|d| d.bias_log10.powi(2))).sqrt()
}

/// Adapts `model` to the batch of `cells` (labelled cells of one new batch): the batch's offset
/// and change of slope (a Gaussian posterior; priors the batch σ and [`SLOPE_PRIOR_SIGMA`]) and a
/// recalibrated σ (the cells' scatter around
/// the offset, shrunk towards the model's own with a weight of [`SIGMA_PRIOR_CELLS`] cells).
/// Replaces any earlier adaptation: give all the batch's labelled cells each time.
pub fn adapt(
    model: &mut ModelFile,
    cells: &[LabelledCell],
    adapted_on: &str,
) -> Result<Adaptation, PredictError> {
    if cells.is_empty() {
        return Err(PredictError::Training(
            "adapting needs at least one cell with a known life".to_owned(),
        ));
    }
    let Some(trust) = model.trust_mut().as_mut() else {
        return Err(PredictError::Training(
            "this model file has no training domain (it predates them): retrain it with \
             `labloop predict train` before adapting it"
                .to_owned(),
        ));
    };
    trust.adaptation = None;
    let batch_variance = trust.batch_sigma_log10.powi(2);
    let predictions = predict_cells(model, cells)?;
    // Each cell's residual and its variance without the batch's part.
    let residuals: Vec<(f64, f64)> = cells
        .iter()
        .zip(&predictions)
        .map(|(c, p)| {
            let own = (p.sigma_log10.powi(2) - batch_variance).max(1e-8);
            (c.cycle_life.log10() - p.log10_life, own)
        })
        .collect();
    // Offset b and slope c by Bayesian linear regression of the residuals on u = prediction −
    // the cells' mean prediction: prior b ~ N(0, batch σ²), c ~ N(0, SLOPE_PRIOR_SIGMA²).
    let reference = mean(predictions.iter().map(|p| p.log10_life));
    let u: Vec<f64> = predictions
        .iter()
        .map(|p| p.log10_life - reference)
        .collect();
    let slope_prior = SLOPE_PRIOR_SIGMA;
    let (mut a11, mut a12, mut a22) = (1.0 / batch_variance, 0.0, 1.0 / slope_prior.powi(2));
    let (mut y1, mut y2) = (0.0, 0.0);
    for ((r, v), u) in residuals.iter().zip(&u) {
        a11 += 1.0 / v;
        a12 += u / v;
        a22 += u * u / v;
        y1 += r / v;
        y2 += r * u / v;
    }
    let det = a11 * a22 - a12 * a12;
    let (s11, s12, s22) = (a22 / det, -a12 / det, a11 / det);
    let offset = s11 * y1 + s12 * y2;
    let slope = s12 * y1 + s22 * y2;
    let scatter: f64 = residuals
        .iter()
        .zip(&u)
        .map(|((r, v), u)| (r - offset - slope * u).powi(2) / v)
        .sum();
    let sigma_scale =
        ((SIGMA_PRIOR_CELLS + scatter) / (SIGMA_PRIOR_CELLS + cells.len() as f64 - 1.0)).sqrt();
    let adaptation = Adaptation {
        cells: cells.len(),
        offset_log10: offset,
        offset_sigma_log10: s11.sqrt(),
        sigma_scale,
        slope,
        reference_log10: reference,
        slope_sigma: s22.sqrt(),
        adapted_on: adapted_on.to_owned(),
        cells_sha256: training_hash(cells, model.features()),
    };
    if let Some(trust) = model.trust_mut().as_mut() {
        trust.adaptation = Some(adaptation.clone());
    }
    Ok(adaptation)
}

/// A predictor shared between tasks.
pub type SharedPredictor = std::sync::Arc<dyn crate::Predictor + Send + Sync>;

/// A campaign's predictor adapted to the cells whose lives it has observed (all of them, each
/// time): the adapted predictor and its adaptation, or `None` when there is nothing to adapt (no
/// labelled cells, or a predictor that is no model file or has no trust).
pub fn adapted_predictor(
    predictor: &dyn crate::Predictor,
    cells: &[LabelledCell],
    adapted_on: &str,
) -> Result<Option<(SharedPredictor, Adaptation)>, PredictError> {
    let Some(mut file) = predictor.model_file() else {
        return Ok(None);
    };
    if cells.is_empty() || file.trust_mut().is_none() {
        return Ok(None);
    }
    let adaptation = adapt(&mut file, cells, adapted_on)?;
    Ok(Some((file.into_predictor(), adaptation)))
}

/// One point of an adaptation curve: scores on a held-out batch after adapting to `labelled`
/// of its cells (mean over the draws and directions).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CurvePoint {
    /// Labelled cells of the new batch.
    pub labelled: usize,
    /// RMSE in cycles on the batch's other cells.
    pub rmse_cycles: f64,
    /// Share inside ±1σ.
    pub within_1_sigma: f64,
    /// Share inside ±2σ.
    pub within_2_sigma: f64,
}

/// Leave-one-batch-out adaptation: for each held-out batch ([`hold_out_each_batch`]), adapt the
/// model trained without it to `k` of its cells drawn at random (`draws` times, seeded) for each
/// `k` in `sizes`, and score its remaining cells. `k = 0` is the unadapted model.
pub fn adaptation_curve(
    held_out: &[HeldOut],
    sizes: &[usize],
    draws: usize,
    seed: u64,
) -> Result<Vec<CurvePoint>, PredictError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sums = vec![(0.0, 0.0, 0.0, 0usize); sizes.len()];
    for HeldOut {
        model, cells: test, ..
    } in held_out
    {
        for (slot, &k) in sizes.iter().enumerate() {
            if k >= test.len() {
                continue;
            }
            for _ in 0..if k == 0 { 1 } else { draws } {
                let mut order: Vec<usize> = (0..test.len()).collect();
                order.shuffle(&mut rng);
                let (known, rest) = order.split_at(k);
                let mut adapted = model.clone();
                if k > 0 {
                    let known: Vec<LabelledCell> = known.iter().map(|&i| test[i].clone()).collect();
                    adapt(&mut adapted, &known, "adaptation curve")?;
                }
                let rest: Vec<LabelledCell> = rest.iter().map(|&i| test[i].clone()).collect();
                let m = score(&rest, &predict_cells(&adapted, &rest)?);
                let s = &mut sums[slot];
                *s = (
                    s.0 + m.rmse_cycles,
                    s.1 + m.within_1_sigma,
                    s.2 + m.within_2_sigma,
                    s.3 + 1,
                );
            }
        }
    }
    Ok(sizes
        .iter()
        .zip(sums)
        .filter(|(_, s)| s.3 > 0)
        .map(|(&k, (rmse, in1, in2, n))| {
            let n = n as f64;
            CurvePoint {
                labelled: k,
                rmse_cycles: rmse / n,
                within_1_sigma: in1 / n,
                within_2_sigma: in2 / n,
            }
        })
        .collect())
}

/// Measures the batch σ of `model`'s training procedure `fit` on its own training cells, by batch
/// ([`by_batch`]), and records it in the model's trust. Returns the directions.
pub fn measure_batch_sigma(
    model: &mut ModelFile,
    cells: &[BatchCell],
    fit: &dyn Fn(&[LabelledCell]) -> Result<ModelFile, PredictError>,
) -> Result<Vec<Direction>, PredictError> {
    let directions = by_batch(cells, fit)?;
    if let Some(trust) = model.trust_mut().as_mut() {
        set_batch_sigma(trust, &directions);
    }
    Ok(directions)
}

/// Sets `trust`'s batch σ from a by-batch evaluation of the same training procedure.
fn set_batch_sigma(trust: &mut Trust, directions: &[Direction]) {
    trust.batch_sigma_log10 = batch_sigma(directions).max(1e-3);
    trust.batch_sigma_source = format!(
        "by-batch split of the training cells: offsets {} (log10 cycles)",
        directions
            .iter()
            .map(|d| format!("{:+.3} on batch {}", d.bias_log10, d.scored_on))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{TrainOptions, fit_elastic_net};

    /// Two batches with the same law but an offset of 0.15 log₁₀ cycles, one feature.
    fn two_batches() -> Vec<BatchCell> {
        (0..60)
            .map(|i| {
                let batch = i % 2;
                let x = -4.0 + (i / 2) as f64 / 30.0 + 0.002 * ((i * 13 % 7) as f64 - 3.0);
                let life = 10f64
                    .powf(2.0 - 0.25 * x - 0.15 * batch as f64 + 0.01 * ((i * 7 % 5) as f64 - 2.0));
                let mut features = FeatureSet::default();
                features.push("log_var_dq", x);
                BatchCell {
                    name: format!("cell{i}"),
                    batch: format!("b{batch}"),
                    cell: LabelledCell {
                        features,
                        cycle_life: life,
                    },
                }
            })
            .collect()
    }

    fn fit(cells: &[LabelledCell]) -> Result<ModelFile, PredictError> {
        let options = TrainOptions::severson("t", &["log_var_dq"], 100, "synthetic");
        fit_elastic_net(cells, &options).map(ModelFile::Linear)
    }

    #[test]
    fn by_batch_finds_the_offset_and_adapting_removes_it() {
        let cells = two_batches();
        let directions = by_batch(&cells, &fit).unwrap();
        assert_eq!(directions.len(), 2);
        for d in &directions {
            assert!((d.bias_log10.abs() - 0.15).abs() < 0.03, "{d:?}");
        }
        assert!((batch_sigma(&directions) - 0.15).abs() < 0.03);

        // Trained on b0, adapted with 3 cells of b1: the other b1 cells are predicted much
        // better, and the model records what it was adapted on.
        let b0: Vec<LabelledCell> = cells
            .iter()
            .filter(|c| c.batch == "b0")
            .map(|c| c.cell.clone())
            .collect();
        let b1: Vec<LabelledCell> = cells
            .iter()
            .filter(|c| c.batch == "b1")
            .map(|c| c.cell.clone())
            .collect();
        let mut model = fit(&b0).unwrap();
        let before = score(&b1[3..], &predict_cells(&model, &b1[3..]).unwrap());
        let a = adapt(&mut model, &b1[..3], "three cells of b1").unwrap();
        assert!((a.offset_log10 + 0.15).abs() < 0.05, "{a:?}");
        assert!(a.offset_sigma_log10 < 0.05);
        let after = score(&b1[3..], &predict_cells(&model, &b1[3..]).unwrap());
        assert!(
            after.rmse_cycles < 0.5 * before.rmse_cycles,
            "{before:?} → {after:?}"
        );
        assert!(after.within_2_sigma >= 0.9, "{after:?}");
        let text = model.to_json();
        let back = ModelFile::from_json(&text, "adapted.json").unwrap();
        let trust = match &back {
            ModelFile::Linear(m) => m.trust.clone().unwrap(),
            ModelFile::Neural(_) => unreachable!(),
        };
        assert_eq!(trust.adaptation.unwrap().adapted_on, "three cells of b1");
    }

    #[test]
    fn one_batch_cannot_be_split_by_batch() {
        let cells: Vec<BatchCell> = two_batches()
            .into_iter()
            .filter(|c| c.batch == "b0")
            .collect();
        let err = by_batch(&cells, &fit).unwrap_err();
        assert!(err.to_string().contains("at least two batches"), "{err}");
    }
}
