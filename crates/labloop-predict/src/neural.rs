//! A small neural model on early-cycle features: an ensemble of one-hidden-layer perceptrons (tanh)
//! predicting standardised log₁₀ cycle life, trained full-batch with Adam in burn.
//!
//! With a few dozen training cells the network must be strongly regularised: the L2 penalty on the
//! weights is chosen by k-fold cross-validation on the training cells, and the model's σ combines
//! that cross-validated error with the spread of the ensemble. Weights are stored as plain numbers in
//! the model file, so one file predicts on any backend.

use crate::PredictError;
use crate::compute::Compute;
use crate::domain::{Domain, Trust};
use crate::features::{FEATURE_DEFINITION, FeatureSet};
use crate::model::{
    Prediction, Predictor, check_sigma, model_file_error, parse_versioned, prediction_from_log10,
};
use crate::train::{LabelledCell, design, folds, standardise};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Identifies the file format.
pub const NEURAL_FORMAT: &str = "labloop-neural-model/1";

/// One trained member of the ensemble: `tanh(x · w1 + b1) · w2 + b2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Input-to-hidden weights, row-major `[inputs][hidden]`.
    pub w1: Vec<f32>,
    /// Hidden biases.
    pub b1: Vec<f32>,
    /// Hidden-to-output weights.
    pub w2: Vec<f32>,
    /// Output bias.
    pub b2: f32,
}

/// A trained ensemble and everything needed to use it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuralModel {
    /// Always [`NEURAL_FORMAT`].
    pub format: String,
    /// Name, e.g. `neural`.
    pub name: String,
    /// Input feature names, in weight-row order.
    pub features: Vec<String>,
    /// Training mean of each input.
    pub feature_mean: Vec<f64>,
    /// Training standard deviation of each input.
    pub feature_std: Vec<f64>,
    /// Training mean of log₁₀ cycle life.
    pub target_mean: f64,
    /// Training standard deviation of log₁₀ cycle life.
    pub target_std: f64,
    /// Hidden units per member.
    pub hidden: usize,
    /// The ensemble.
    pub members: Vec<Member>,
    /// L2 penalty chosen by cross-validation.
    pub weight_decay: f64,
    /// Cross-validated RMSE in log₁₀ cycles: the out-of-sample part of σ.
    pub sigma_log10: f64,
    /// The early window in cycles.
    pub window: u32,
    /// Version of the feature definitions the inputs were computed with.
    pub feature_definition: String,
    /// Where the training data came from.
    pub trained_on: String,
    /// SHA-256 of the training data (features and lives), for provenance.
    pub training_data_sha256: String,
    /// Training domain, batch spread and adaptation (absent in files from before the field).
    #[serde(default)]
    pub trust: Option<Trust>,
    /// Which discharge capacities the model was trained on (absent in files from before the field:
    /// [`Predictor::capacities_trained_on`] then reads the provenance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacities: Option<crate::CapacitySource>,
}

/// How to train a [`NeuralModel`].
#[derive(Clone, Debug)]
pub struct NeuralOptions {
    /// The model's name.
    pub name: String,
    /// Input features.
    pub features: Vec<String>,
    /// Hidden units.
    pub hidden: usize,
    /// Members of the final ensemble.
    pub members: usize,
    /// Members trained per fold while cross-validating (fewer keeps training quick).
    pub cv_members: usize,
    /// Candidate L2 penalties (in units of the mean squared error of the standardised target).
    pub weight_decays: Vec<f64>,
    /// Cross-validation folds.
    pub folds: usize,
    /// Full-batch Adam steps per member.
    pub steps: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Seed of the weight initialisation.
    pub seed: u64,
    /// The early window the features were computed over.
    pub window: u32,
    /// Provenance of the training data.
    pub trained_on: String,
}

impl NeuralOptions {
    /// The defaults: 16 hidden units, 8 members, penalties 0.3 / 1 / 3, 5 folds, 1 500 steps.
    pub fn new(name: &str, features: &[&str], window: u32, trained_on: &str) -> Self {
        Self {
            name: name.to_owned(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            hidden: 16,
            members: 8,
            cv_members: 2,
            weight_decays: vec![0.3, 1.0, 3.0],
            folds: 5,
            steps: 1500,
            learning_rate: 1e-2,
            seed: 1,
            window,
            trained_on: trained_on.to_owned(),
        }
    }
}

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    output: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output.forward(self.hidden.forward(x).tanh())
    }
}

/// Trains on `cells`: inputs and target standardised, the penalty chosen by cross-validation, then
/// `members` networks refit on all cells from different initialisations.
pub fn fit_neural(
    cells: &[LabelledCell],
    options: &NeuralOptions,
    compute: &Compute,
) -> Result<NeuralModel, PredictError> {
    if cells.len() < options.folds.max(2) * 2 {
        return Err(PredictError::Training(format!(
            "{} cells are too few for {}-fold cross-validation",
            cells.len(),
            options.folds
        )));
    }
    let x = design(cells, &options.features)?;
    let (z, feature_mean, feature_std) = standardise(&x);
    let y: Vec<f64> = cells.iter().map(|c| c.cycle_life.log10()).collect();
    let target_mean = y.iter().sum::<f64>() / y.len() as f64;
    let target_std = (y.iter().map(|v| (v - target_mean).powi(2)).sum::<f64>() / y.len() as f64)
        .sqrt()
        .max(1e-9);
    let t: Vec<f64> = y.iter().map(|v| (v - target_mean) / target_std).collect();
    let device = compute.device.clone().autodiff();

    let mut best: Option<(f64, f64)> = None;
    for &decay in &options.weight_decays {
        let mut squared = 0.0;
        for (fold, (train, test)) in folds(cells.len(), options.folds).into_iter().enumerate() {
            let members: Vec<Member> = (0..options.cv_members)
                .map(|m| {
                    let seed = options.seed + 1000 * (fold as u64 + 1) + m as u64;
                    train_member(
                        &rows(&z, &train),
                        &rows(&t, &train),
                        decay,
                        seed,
                        options,
                        &device,
                    )
                })
                .collect();
            let predicted = forward_members(&members, &rows(&z, &test), options.hidden);
            for (i, p) in test.iter().zip(mean_rows(&predicted)) {
                squared += ((p - t[*i]) * target_std).powi(2);
            }
        }
        let rmse = (squared / cells.len() as f64).sqrt();
        if best.is_none_or(|(r, _)| rmse < r - 1e-12) {
            best = Some((rmse, decay));
        }
    }
    let (cv_rmse, weight_decay) = best
        .ok_or_else(|| PredictError::Training("no candidate weight decay was given".to_owned()))?;
    let members = (0..options.members)
        .map(|m| {
            train_member(
                &z,
                &t,
                weight_decay,
                options.seed + m as u64,
                options,
                &device,
            )
        })
        .collect();
    Ok(NeuralModel {
        format: NEURAL_FORMAT.to_owned(),
        name: options.name.clone(),
        features: options.features.clone(),
        feature_mean,
        feature_std,
        target_mean,
        target_std,
        hidden: options.hidden,
        members,
        weight_decay,
        sigma_log10: cv_rmse,
        window: options.window,
        feature_definition: FEATURE_DEFINITION.to_owned(),
        trained_on: options.trained_on.clone(),
        training_data_sha256: crate::train::training_hash(cells, &options.features),
        trust: Some(Trust::new(Domain::of(&options.features, &x))),
        capacities: None,
    })
}

fn rows<T: Clone>(all: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| all[i].clone()).collect()
}

fn matrix(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
    let width = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().map(|v| *v as f32).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// One network, trained full-batch: loss = ½·mean squared error + decay/(2n)·Σ w² (weights only,
/// not biases), minimised with Adam.
fn train_member(
    x: &[Vec<f64>],
    t: &[f64],
    decay: f64,
    seed: u64,
    options: &NeuralOptions,
    device: &Device,
) -> Member {
    device.seed(seed);
    let inputs = x.first().map_or(0, Vec::len);
    let xs = matrix(x, device);
    let target = Tensor::<1>::from_data(
        TensorData::new(t.iter().map(|v| *v as f32).collect(), [t.len()]),
        device,
    )
    .reshape([t.len(), 1]);
    let mut model = Mlp {
        hidden: LinearConfig::new(inputs, options.hidden).init(device),
        output: LinearConfig::new(options.hidden, 1).init(device),
    };
    let mut adam = AdamConfig::new().init();
    let penalty = (decay / (2.0 * t.len() as f64)) as f32;
    for _ in 0..options.steps {
        let error = model.forward(xs.clone()) - target.clone();
        let weights = model.hidden.weight.val().powf_scalar(2.0).sum()
            + model.output.weight.val().powf_scalar(2.0).sum();
        let loss = error.powf_scalar(2.0).mean().mul_scalar(0.5) + weights.mul_scalar(penalty);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = adam.step(options.learning_rate, model, grads);
    }
    let model = model.valid();
    let values =
        |t: Tensor<2>| -> Vec<f32> { t.into_data().try_into_vec::<f32>().unwrap_or_default() };
    let bias = |l: &Linear| -> Vec<f32> {
        l.bias
            .as_ref()
            .map(|b| {
                b.val()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    Member {
        w1: values(model.hidden.weight.val()),
        b1: bias(&model.hidden),
        w2: values(model.output.weight.val()),
        b2: bias(&model.output).first().copied().unwrap_or(0.0),
    }
}

/// Each member's standardised output for each row, `[member][row]`, computed on the CPU in f64 (used
/// while cross-validating, where the inputs are already standardised).
fn forward_members(members: &[Member], z: &[Vec<f64>], hidden: usize) -> Vec<Vec<f64>> {
    members
        .iter()
        .map(|m| {
            z.iter()
                .map(|row| {
                    let mut out = f64::from(m.b2);
                    for h in 0..hidden {
                        let mut a = f64::from(m.b1[h]);
                        for (i, x) in row.iter().enumerate() {
                            a += x * f64::from(m.w1[i * hidden + h]);
                        }
                        out += a.tanh() * f64::from(m.w2[h]);
                    }
                    out
                })
                .collect()
        })
        .collect()
}

/// Mean over members for each row.
fn mean_rows(per_member: &[Vec<f64>]) -> Vec<f64> {
    let n = per_member.first().map_or(0, Vec::len);
    (0..n)
        .map(|r| per_member.iter().map(|m| m[r]).sum::<f64>() / per_member.len() as f64)
        .collect()
}

impl NeuralModel {
    /// Reads a model from JSON text; `path` only names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Self, PredictError> {
        let model: Self = parse_versioned(text, path, NEURAL_FORMAT, |m: &Self| &m.format)?;
        crate::model::check_definition(path, &model.feature_definition)?;
        let bad = |message: String| Err(model_file_error(path, message));
        let (n, h) = (model.features.len(), model.hidden);
        if model.feature_mean.len() != n || model.feature_std.len() != n {
            return bad(format!(
                "{n} features but the mean and std lists differ in length"
            ));
        }
        if model.members.is_empty() {
            return bad("the ensemble has no members".to_owned());
        }
        for (i, m) in model.members.iter().enumerate() {
            if m.w1.len() != n * h || m.b1.len() != h || m.w2.len() != h {
                return bad(format!(
                    "member {i}: weights do not fit {n} inputs and {h} hidden units"
                ));
            }
        }
        check_sigma(path, model.sigma_log10)?;
        if let Some(trust) = &model.trust {
            trust.validate(path)?;
        }
        Ok(model)
    }

    /// The model as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model always serialises")
    }

    /// Predicts on `compute`'s device: all members in one pass of batched tensor operations.
    /// σ² = the cross-validated error² + the ensemble's variance (both in log₁₀ space).
    /// The model's trust (see [`crate::domain`]) is applied.
    pub fn predict_on(
        &self,
        cells: &[FeatureSet],
        compute: &Compute,
    ) -> Result<Vec<Prediction>, PredictError> {
        crate::domain::predict_trusted(self.trust.as_ref(), cells, |cells| {
            self.raw_on(cells, compute)
        })
    }

    /// [`Self::predict_on`] without the trust.
    fn raw_on(
        &self,
        cells: &[FeatureSet],
        compute: &Compute,
    ) -> Result<Vec<Prediction>, PredictError> {
        if cells.is_empty() {
            return Ok(Vec::new());
        }
        let device = &compute.device;
        let z = self.standardised_inputs(cells)?;
        let (n, inputs, h, k) = (
            cells.len(),
            self.features.len(),
            self.hidden,
            self.members.len(),
        );
        let x = matrix(&z, device);
        let flat = |f: &dyn Fn(&Member) -> Vec<f32>| -> Vec<f32> {
            self.members.iter().flat_map(f).collect()
        };
        // Members side by side: hidden layer [inputs, k·h], output as a block-diagonal product.
        let w1 = Tensor::<3>::from_data(
            TensorData::new(flat(&|m| m.w1.clone()), [k, inputs, h]),
            device,
        )
        .swap_dims(0, 1)
        .reshape([inputs, k * h]);
        let b1 = Tensor::<1>::from_data(TensorData::new(flat(&|m| m.b1.clone()), [k * h]), device)
            .reshape([1, k * h]);
        let w2 =
            Tensor::<3>::from_data(TensorData::new(flat(&|m| m.w2.clone()), [k, h, 1]), device);
        let b2 = Tensor::<1>::from_data(
            TensorData::new(self.members.iter().map(|m| m.b2).collect(), [k]),
            device,
        )
        .reshape([1, k]);
        let hidden = (x.matmul(w1) + b1)
            .tanh()
            .reshape([n, k, h])
            .swap_dims(0, 1);
        let out = hidden.matmul(w2).reshape([k, n]).transpose() + b2;
        let values = out
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| PredictError::Training(format!("reading the result back: {e:?}")))?;
        Ok((0..n)
            .map(|r| self.combine((0..k).map(|m| f64::from(values[r * k + m]))))
            .collect())
    }

    /// The same predictions computed member by member in f64 on the CPU, without burn: the
    /// reference the tensor path is checked against on every backend.
    pub fn predict_reference(&self, cells: &[FeatureSet]) -> Result<Vec<Prediction>, PredictError> {
        crate::domain::predict_trusted(self.trust.as_ref(), cells, |cells| {
            let z = self.standardised_inputs(cells)?;
            let per_member = forward_members(&self.members, &z, self.hidden);
            Ok((0..z.len())
                .map(|r| self.combine(per_member.iter().map(|m| m[r])))
                .collect())
        })
    }

    /// One cell's prediction from its members' standardised outputs: the mean in log₁₀ space, and
    /// σ² = the cross-validated error² + the ensemble's variance.
    fn combine(&self, outputs: impl Iterator<Item = f64>) -> Prediction {
        let logs: Vec<f64> = outputs
            .map(|o| self.target_mean + self.target_std * o)
            .collect();
        let k = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / k;
        let spread = logs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / k;
        prediction_from_log10(mean, (self.sigma_log10.powi(2) + spread).sqrt())
    }

    /// Each cell's inputs, standardised as in training; a missing feature is named.
    fn standardised_inputs(&self, cells: &[FeatureSet]) -> Result<Vec<Vec<f64>>, PredictError> {
        cells
            .iter()
            .map(|cell| {
                self.features
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        cell.get(name)
                            .filter(|v| v.is_finite())
                            .map(|v| (v - self.feature_mean[i]) / self.feature_std[i])
                            .ok_or_else(|| PredictError::MissingFeature {
                                model: self.name.clone(),
                                feature: name.clone(),
                            })
                    })
                    .collect()
            })
            .collect()
    }
}

impl Predictor for NeuralModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn window(&self) -> u32 {
        self.window
    }

    fn predict(&self, cells: &[FeatureSet]) -> Result<Vec<Prediction>, PredictError> {
        self.predict_on(cells, Compute::default_device())
    }

    fn trust(&self) -> Option<&Trust> {
        self.trust.as_ref()
    }

    fn model_file(&self) -> Option<crate::ModelFile> {
        Some(crate::ModelFile::Neural(self.clone()))
    }

    fn capacities_trained_on(&self) -> Option<crate::CapacitySource> {
        crate::capacity::trained_on(&self.features, self.capacities, &self.trained_on)
    }
}

/// A neural model bound to the device a user chose (`--backend`), instead of the process default
/// ([`Compute::default_device`]) a plain [`NeuralModel`] computes on.
pub struct NeuralOnDevice {
    /// The model.
    pub model: NeuralModel,
    /// Where it computes.
    pub compute: Compute,
}

impl Predictor for NeuralOnDevice {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn window(&self) -> u32 {
        self.model.window()
    }

    fn predict(&self, cells: &[FeatureSet]) -> Result<Vec<Prediction>, PredictError> {
        self.model.predict_on(cells, &self.compute)
    }

    fn trust(&self) -> Option<&Trust> {
        self.model.trust()
    }

    fn model_file(&self) -> Option<crate::ModelFile> {
        self.model.model_file()
    }

    fn capacities_trained_on(&self) -> Option<crate::CapacitySource> {
        self.model.capacities_trained_on()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureSet;

    /// Cells whose log life is a smooth, non-linear function of two features, plus a little noise.
    fn synthetic(n: usize, seed: u64) -> Vec<LabelledCell> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        (0..n)
            .map(|_| {
                let (a, b) = (2.0 * next(), 2.0 * next());
                let mut features = FeatureSet::default();
                features.push("log_var_dq", a);
                features.push("qd_cycle2", b);
                let log_life = 3.0 + 0.3 * a - 0.2 * (2.0 * b).tanh() + 0.01 * next();
                LabelledCell {
                    features,
                    cycle_life: 10f64.powf(log_life),
                }
            })
            .collect()
    }

    fn quick_options() -> NeuralOptions {
        let mut options = NeuralOptions::new("t", &["log_var_dq", "qd_cycle2"], 100, "synthetic");
        options.steps = 400;
        options.members = 3;
        options.cv_members = 1;
        options.weight_decays = vec![0.01, 1.0];
        options
    }

    #[test]
    fn learns_a_nonlinear_signal_and_round_trips_through_its_file() {
        let cells = synthetic(60, 7);
        let model = fit_neural(&cells, &quick_options(), &Compute::cpu()).unwrap();
        let test = synthetic(40, 99);
        let features: Vec<FeatureSet> = test.iter().map(|c| c.features.clone()).collect();
        let predictions = model.predict_on(&features, &Compute::cpu()).unwrap();
        let logs: Vec<f64> = test.iter().map(|c| c.cycle_life.log10()).collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let constant = (logs.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / 40.0).sqrt();
        let rmse = (predictions
            .iter()
            .zip(&logs)
            .map(|(p, y)| (p.log10_life - y).powi(2))
            .sum::<f64>()
            / 40.0)
            .sqrt();
        assert!(rmse < 0.3 * constant, "rmse {rmse} vs constant {constant}");
        assert!(model.sigma_log10 > 0.0 && model.sigma_log10 < 0.3 * constant);
        assert_eq!(model.training_data_sha256.len(), 64);
        let again = NeuralModel::from_json(&model.to_json(), "mem").unwrap();
        assert_eq!(again, model);
        assert_eq!(
            again.predict_on(&features, &Compute::cpu()).unwrap(),
            predictions
        );
    }

    #[test]
    fn the_tensor_path_matches_the_plain_reference() {
        let cells = synthetic(30, 3);
        let model = fit_neural(&cells, &quick_options(), &Compute::cpu()).unwrap();
        let features: Vec<FeatureSet> = cells.iter().map(|c| c.features.clone()).collect();
        let on_cpu = model.predict_on(&features, &Compute::cpu()).unwrap();
        let reference = model.predict_reference(&features).unwrap();
        for (a, b) in on_cpu.iter().zip(&reference) {
            assert!((a.log10_life - b.log10_life).abs() < 1e-5, "{a:?} {b:?}");
            assert!((a.sigma_log10 - b.sigma_log10).abs() < 1e-5);
        }
    }

    /// Runs where wgpu finds an adapter (a GPU, or Mesa's lavapipe in CI): the same model file
    /// predicts the same on the GPU as on the CPU.
    #[cfg(feature = "gpu")]
    #[test]
    fn gpu_predictions_match_the_cpu() {
        let gpu = Compute::select(crate::Backend::Gpu).expect("a wgpu adapter (install lavapipe)");
        let cells = synthetic(20, 5);
        let mut options = quick_options();
        options.steps = 50;
        let model = fit_neural(&cells, &options, &Compute::cpu()).unwrap();
        let features: Vec<FeatureSet> = cells.iter().map(|c| c.features.clone()).collect();
        let on_gpu = model.predict_on(&features, &gpu).unwrap();
        let reference = model.predict_reference(&features).unwrap();
        for (a, b) in on_gpu.iter().zip(&reference) {
            assert!((a.log10_life - b.log10_life).abs() < 1e-4, "{a:?} {b:?}");
        }
    }

    #[test]
    fn malformed_files_are_named() {
        let cells = synthetic(20, 1);
        let mut options = quick_options();
        options.steps = 10;
        let mut model = fit_neural(&cells, &options, &Compute::cpu()).unwrap();
        model.members[0].w2.pop();
        let err = NeuralModel::from_json(&model.to_json(), "m.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "model file m.json: member 0: weights do not fit 2 inputs and 16 hidden units"
        );
    }
}
