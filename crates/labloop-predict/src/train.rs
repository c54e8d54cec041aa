//! Training elastic nets on log₁₀ cycle life by cross-validation (smartcore), and scoring them.

use crate::PredictError;
use crate::domain::{Domain, Trust};
use crate::features::{FEATURE_DEFINITION, FeatureSet};
use crate::model::{LinearModel, MODEL_FORMAT, Predictor};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::elastic_net::{ElasticNet, ElasticNetParameters};

/// The "variance" model of Severson et al.: log variance of ΔQ₁₀₀₋₁₀(V) alone.
pub const VARIANCE_FEATURES: [&str; 1] = ["log_var_dq"];
/// The "discharge" model: ΔQ(V) statistics and discharge capacities.
pub const DISCHARGE_FEATURES: [&str; 6] = [
    "log_var_dq",
    "log_abs_min_dq",
    "log_abs_skew_dq",
    "log_abs_kurt_dq",
    "qd_cycle2",
    "qd_max_minus_cycle2",
];

/// The "full" model: ΔQ(V) variance and minimum, the capacity-fade line, capacity at cycle 2, and
/// the charge-time, temperature and internal-resistance features (which need a cycler that reports
/// them: the published `Qdlin` arrays do not carry them).
pub const FULL_FEATURES: [&str; 9] = [
    "log_var_dq",
    "log_abs_min_dq",
    "fade_slope",
    "fade_intercept",
    "qd_cycle2",
    "charge_time_first5",
    "temperature_integral",
    "ir_min",
    "ir_last_minus_cycle2",
];

/// A cell with known cycle life.
#[derive(Clone, Debug)]
pub struct LabelledCell {
    /// Its early features.
    pub features: FeatureSet,
    /// Its observed cycle life.
    pub cycle_life: f64,
}

/// Named cells' features and lives as CSV, one row per cell: `cell`, every feature any cell has
/// (in the order first met), `cycle_life`; a feature a cell lacks, or a value that is not finite,
/// is an empty field. What `labloop predict features` writes for a model of one's own.
pub fn features_csv(cells: &[(String, LabelledCell)]) -> (String, Vec<&'static str>) {
    let mut names: Vec<&'static str> = Vec::new();
    for (_, cell) in cells {
        for (name, _) in cell.features.iter() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut text = format!("cell,{},cycle_life\n", names.join(","));
    for (cell_name, cell) in cells {
        let row: Vec<String> = names
            .iter()
            .map(|n| {
                cell.features
                    .get(n)
                    .filter(|v| v.is_finite())
                    .map_or(String::new(), |v| format!("{v}"))
            })
            .collect();
        text.push_str(&format!(
            "{cell_name},{},{}\n",
            row.join(","),
            cell.cycle_life
        ));
    }
    (text, names)
}

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The model's name.
    pub name: String,
    /// The features it uses.
    pub features: Vec<String>,
    /// Cross-validation folds.
    pub folds: usize,
    /// How many times the cells are shuffled into folds (Monte Carlo cross-validation); the
    /// penalty with the least error over all repeats wins.
    pub repeats: usize,
    /// Seed of the shuffles, so a training run is reproducible.
    pub seed: u64,
    /// The early window the features were computed over.
    pub window: u32,
    /// Provenance of the training data.
    pub trained_on: String,
}

impl TrainOptions {
    /// Severson et al.'s procedure: four-fold cross-validation, repeated over shuffles of the cells
    /// (ten, seeded).
    pub fn severson(name: &str, features: &[&str], window: u32, trained_on: &str) -> Self {
        Self {
            name: name.to_owned(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            folds: 4,
            repeats: 10,
            seed: 2019,
            window,
            trained_on: trained_on.to_owned(),
        }
    }
}

const ALPHAS: [f64; 13] = [
    1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0,
];
const L1_RATIOS: [f64; 4] = [0.1, 0.5, 0.9, 1.0];

/// Fits an elastic net on log₁₀ cycle life: features standardised, penalty and L1 share chosen by
/// k-fold cross-validation repeated over seeded shuffles of the cells (as Severson et al. chose
/// theirs: four folds and Monte Carlo sampling), then refit on all cells. The model's σ is the
/// cross-validated RMSE in log₁₀ space.
pub fn fit_elastic_net(
    cells: &[LabelledCell],
    options: &TrainOptions,
) -> Result<LinearModel, PredictError> {
    let x = design(cells, &options.features)?;
    let y: Vec<f64> = cells.iter().map(|c| c.cycle_life.log10()).collect();
    if cells.len() < options.folds.max(2) * 2 {
        return Err(PredictError::Training(format!(
            "{} cells are too few for {}-fold cross-validation",
            cells.len(),
            options.folds
        )));
    }
    let splits = shuffled_folds(
        cells.len(),
        options.folds,
        options.repeats.max(1),
        options.seed,
    );
    let mut best: Option<(f64, f64, f64)> = None;
    for &alpha in &ALPHAS {
        for &l1_ratio in &L1_RATIOS {
            let (mut squared, mut scored) = (0.0, 0usize);
            for (train, test) in &splits {
                let model = fit_once(&pick(&x, train), &pick(&y, train), alpha, l1_ratio, options)?;
                for &i in test {
                    let err = model.predict_log10(&cells[i].features)? - y[i];
                    squared += err * err;
                    scored += 1;
                }
            }
            let rmse = (squared / scored as f64).sqrt();
            if best.is_none_or(|(r, _, _)| rmse < r - 1e-12) {
                best = Some((rmse, alpha, l1_ratio));
            }
        }
    }
    let (cv_rmse, alpha, l1_ratio) = best.expect("the grid is not empty");
    let mut model = fit_once(&x, &y, alpha, l1_ratio, options)?;
    model.sigma_log10 = cv_rmse;
    model.training_data_sha256 = training_hash(cells, &options.features);
    model.trust = Some(Trust::new(Domain::of(&options.features, &x)));
    Ok(model)
}

fn pick<T: Clone>(rows: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| rows[i].clone()).collect()
}

/// k-fold splits of `n` cells, `(train, test)` index lists: fold `f` tests the cells whose index is
/// `f` modulo `k`, so the split is reproducible and interleaves the data's order.
pub(crate) fn folds(n: usize, k: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    (0..k)
        .map(|fold| (0..n).partition(|i| i % k != fold))
        .collect()
}

/// `repeats` rounds of k-fold splits of `n` cells, `(train, test)` index lists, each round over a
/// fresh seeded shuffle: every cell is tested once per round.
pub(crate) fn shuffled_folds(
    n: usize,
    k: usize,
    repeats: usize,
    seed: u64,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut splits = Vec::with_capacity(repeats * k);
    for _ in 0..repeats {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for (train, test) in folds(n, k) {
            splits.push((
                train.iter().map(|&i| order[i]).collect(),
                test.iter().map(|&i| order[i]).collect(),
            ));
        }
    }
    splits
}

/// Each column standardised to mean 0, standard deviation 1 (population), with the means and
/// standard deviations used.
pub(crate) fn standardise(x: &[Vec<f64>]) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let p = x.first().map_or(0, Vec::len);
    let n = x.len() as f64;
    let mean: Vec<f64> = (0..p)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let std: Vec<f64> = (0..p)
        .map(|j| {
            (x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n)
                .sqrt()
                .max(1e-12)
        })
        .collect();
    let z = x
        .iter()
        .map(|r| (0..p).map(|j| (r[j] - mean[j]) / std[j]).collect())
        .collect();
    (z, mean, std)
}

/// SHA-256 (hex) of the training data a model saw: each cell's features (in the model's order) and
/// life, as exact bit patterns, so the same data always gives the same hash.
pub fn training_hash(cells: &[LabelledCell], features: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for f in features {
        hasher.update(f.as_bytes());
        hasher.update([0]);
    }
    for cell in cells {
        for f in features {
            let v = cell.features.get(f).unwrap_or(f64::NAN);
            hasher.update(v.to_bits().to_le_bytes());
        }
        hasher.update(cell.cycle_life.to_bits().to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn design(
    cells: &[LabelledCell],
    features: &[String],
) -> Result<Vec<Vec<f64>>, PredictError> {
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            features
                .iter()
                .map(|f| {
                    cell.features
                        .get(f)
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            PredictError::Training(format!(
                                "cell {i} has no finite value for feature `{f}`"
                            ))
                        })
                })
                .collect()
        })
        .collect()
}

fn fit_once(
    x: &[Vec<f64>],
    y: &[f64],
    alpha: f64,
    l1_ratio: f64,
    options: &TrainOptions,
) -> Result<LinearModel, PredictError> {
    let p = options.features.len();
    let (z, mean, std) = standardise(x);
    let matrix = DenseMatrix::from_2d_vec(&z).map_err(|e| PredictError::Training(e.to_string()))?;
    let params = ElasticNetParameters::default()
        .with_alpha(alpha)
        .with_l1_ratio(l1_ratio)
        .with_normalize(false)
        .with_tol(1e-6)
        .with_max_iter(1000);
    let fitted: ElasticNet<f64, f64, DenseMatrix<f64>, Vec<f64>> =
        ElasticNet::fit(&matrix, &y.to_vec(), params)
            .map_err(|e| PredictError::Training(e.to_string()))?;
    let coefficients: Vec<f64> = (0..p).map(|j| *fitted.coefficients().get((j, 0))).collect();
    Ok(LinearModel {
        format: MODEL_FORMAT.to_owned(),
        name: options.name.clone(),
        features: options.features.clone(),
        feature_mean: mean,
        feature_std: std,
        coefficients,
        intercept: *fitted.intercept(),
        sigma_log10: f64::NAN,
        alpha,
        l1_ratio,
        window: options.window,
        trained_on: options.trained_on.clone(),
        feature_definition: FEATURE_DEFINITION.to_owned(),
        training_data_sha256: String::new(),
        trust: None,
        capacities: None,
    })
}

/// How well a model predicts cells with known lives.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// Cells scored.
    pub cells: usize,
    /// Root-mean-square error in cycles.
    pub rmse_cycles: f64,
    /// Mean absolute percentage error.
    pub mape_percent: f64,
    /// Share of true lives within ±1σ of the prediction (≈ 0.68 when σ is calibrated).
    pub within_1_sigma: f64,
    /// Share within ±2σ (≈ 0.95 when calibrated).
    pub within_2_sigma: f64,
}

/// Scores `predictor` on `cells`. The σ bands are taken in log space, where the model's error is
/// Gaussian.
pub fn evaluate(
    predictor: &dyn Predictor,
    cells: &[LabelledCell],
) -> Result<Metrics, PredictError> {
    let features: Vec<FeatureSet> = cells.iter().map(|c| c.features.clone()).collect();
    Ok(score(cells, &predictor.predict(&features)?))
}

/// Scores predictions already made for `cells` (in the same order), as [`evaluate`] does.
pub fn score(cells: &[LabelledCell], predictions: &[crate::Prediction]) -> Metrics {
    let n = cells.len() as f64;
    let mut sq = 0.0;
    let mut ape = 0.0;
    let (mut in1, mut in2) = (0.0, 0.0);
    for (cell, p) in cells.iter().zip(predictions) {
        let err = p.cycle_life - cell.cycle_life;
        sq += err * err;
        ape += (err / cell.cycle_life).abs();
        let z = (cell.cycle_life.log10() - p.log10_life).abs() / p.sigma_log10;
        in1 += f64::from(u8::from(z <= 1.0));
        in2 += f64::from(u8::from(z <= 2.0));
    }
    Metrics {
        cells: cells.len(),
        rmse_cycles: (sq / n).sqrt(),
        mape_percent: 100.0 * ape / n,
        within_1_sigma: in1 / n,
        within_2_sigma: in2 / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_csv_has_a_column_per_feature_and_leaves_missing_ones_empty() {
        let cell = |named: &[(&str, f64)], life: f64| LabelledCell {
            features: FeatureSet::from_named(named.iter().copied()),
            cycle_life: life,
        };
        let cells = vec![
            (
                "cell1".to_owned(),
                cell(&[("log_var_dq", -4.5), ("qd_cycle2", 1.07)], 900.0),
            ),
            (
                "cell2".to_owned(),
                cell(
                    &[("log_var_dq", f64::NAN), ("qd_max_minus_cycle2", 0.004)],
                    450.0,
                ),
            ),
        ];
        let (text, names) = features_csv(&cells);
        assert_eq!(names, ["log_var_dq", "qd_cycle2", "qd_max_minus_cycle2"]);
        assert_eq!(
            text,
            "cell,log_var_dq,qd_cycle2,qd_max_minus_cycle2,cycle_life\n\
             cell1,-4.5,1.07,,900\n\
             cell2,,,0.004,450\n"
        );
    }
}
