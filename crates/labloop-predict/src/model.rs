//! Trained models and the files they live in.

use crate::PredictError;
use crate::domain::Trust;
use crate::features::FeatureSet;
use serde::{Deserialize, Serialize};

/// A predicted cycle life with its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted cycle life (the median of the log-normal prediction), cycles.
    pub cycle_life: f64,
    /// One standard deviation of the prediction, in cycles (from the model's log-space σ).
    pub sigma: f64,
    /// Prediction in log₁₀ cycles.
    pub log10_life: f64,
    /// One standard deviation in log₁₀ cycles.
    pub sigma_log10: f64,
    /// The cell lies outside the model's training domain (see [`crate::domain`]): the prediction
    /// is an extrapolation and σ has been widened for it.
    #[serde(default)]
    pub out_of_domain: bool,
}

/// Anything that turns early features into predicted lives.
pub trait Predictor {
    /// The model's name, recorded as provenance with every prediction.
    fn name(&self) -> &str;

    /// The early window, in cycles, the model's features must be computed over.
    fn window(&self) -> u32;

    /// One prediction per cell.
    fn predict(&self, cells: &[FeatureSet]) -> Result<Vec<Prediction>, PredictError>;

    /// Where the model was trained and how far it trusts itself off there; `None` for a model
    /// file from before training domains were recorded.
    fn trust(&self) -> Option<&Trust>;

    /// The model as a file, to adapt or to save; `None` for predictors that are not one.
    fn model_file(&self) -> Option<ModelFile>;

    /// Which discharge capacities the model's capacity features (`qd_…`) were trained on; `None`
    /// when it reads none or does not say. A campaign's cyclers record their own
    /// ([`crate::CapacitySource::Cycler`]).
    fn capacities_trained_on(&self) -> Option<crate::CapacitySource> {
        None
    }
}

/// Identifies the file format.
pub const MODEL_FORMAT: &str = "labloop-linear-model/1";

/// A linear model on standardised features predicting log₁₀ cycle life; what the elastic net trains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Name, e.g. `severson-variance`.
    pub name: String,
    /// Feature names, in coefficient order.
    pub features: Vec<String>,
    /// Training mean of each feature.
    pub feature_mean: Vec<f64>,
    /// Training standard deviation of each feature.
    pub feature_std: Vec<f64>,
    /// Coefficient of each standardised feature.
    pub coefficients: Vec<f64>,
    /// Intercept (log₁₀ cycles).
    pub intercept: f64,
    /// Out-of-sample σ of log₁₀ cycle life (cross-validated on the training cells).
    pub sigma_log10: f64,
    /// Elastic-net penalty chosen by cross-validation.
    pub alpha: f64,
    /// Elastic-net L1 share chosen by cross-validation.
    pub l1_ratio: f64,
    /// The early window in cycles the features were computed over.
    pub window: u32,
    /// Where the training data came from.
    pub trained_on: String,
    /// Version of the feature definitions the model was trained on (empty in files from before
    /// the field existed).
    #[serde(default)]
    pub feature_definition: String,
    /// SHA-256 of the training data (features and lives), for provenance.
    #[serde(default)]
    pub training_data_sha256: String,
    /// Training domain, batch spread and adaptation (absent in files from before the field).
    #[serde(default)]
    pub trust: Option<Trust>,
    /// Which discharge capacities the model was trained on (absent in files from before the field:
    /// [`Predictor::capacities_trained_on`] then reads the provenance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacities: Option<crate::CapacitySource>,
}

/// A model file that does not hold together, naming the file.
pub(crate) fn model_file_error(path: &str, message: String) -> PredictError {
    PredictError::ModelFile {
        path: path.to_owned(),
        message,
    }
}

/// Parses a model file of one kind: JSON of type `T` whose `format` field is `expected`.
pub(crate) fn parse_versioned<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &str,
    expected: &str,
    format: fn(&T) -> &str,
) -> Result<T, PredictError> {
    let model: T = serde_json::from_str(text).map_err(|e| model_file_error(path, e.to_string()))?;
    if format(&model) != expected {
        return Err(model_file_error(
            path,
            format!("format is `{}`, expected `{expected}`", format(&model)),
        ));
    }
    Ok(model)
}

/// Every model's σ (log₁₀ cycles) must be a positive number.
pub(crate) fn check_sigma(path: &str, sigma_log10: f64) -> Result<(), PredictError> {
    if sigma_log10.is_finite() && sigma_log10 > 0.0 {
        Ok(())
    } else {
        Err(model_file_error(
            path,
            format!("sigma_log10 must be positive, got {sigma_log10}"),
        ))
    }
}

/// A model is only as good as the features it is fed: its file must name the feature definition
/// this build computes (the version before the colon: `severson-2019/3`).
pub(crate) fn check_definition(path: &str, definition: &str) -> Result<(), PredictError> {
    let version = |d: &str| d.split(':').next().unwrap_or_default().trim().to_owned();
    let (theirs, ours) = (version(definition), version(crate::FEATURE_DEFINITION));
    if theirs == ours {
        Ok(())
    } else {
        Err(model_file_error(
            path,
            format!(
                "trained on features `{theirs}`, but this labloop computes `{ours}`: retrain it \
                 with `labloop predict train`"
            ),
        ))
    }
}

/// A prediction from a mean and σ in log₁₀ cycles: the life is the median of the log-normal, σ in
/// cycles its first-order spread.
pub fn prediction_from_log10(log10_life: f64, sigma_log10: f64) -> Prediction {
    let cycle_life = 10f64.powf(log10_life);
    Prediction {
        cycle_life,
        sigma: cycle_life * std::f64::consts::LN_10 * sigma_log10,
        log10_life,
        sigma_log10,
        out_of_domain: false,
    }
}

impl LinearModel {
    /// Reads a model from JSON text; `path` only names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Self, PredictError> {
        let model: Self = parse_versioned(text, path, MODEL_FORMAT, |m: &Self| &m.format)?;
        let n = model.features.len();
        if model.feature_mean.len() != n
            || model.feature_std.len() != n
            || model.coefficients.len() != n
        {
            return Err(model_file_error(
                path,
                format!("{n} features but the mean, std and coefficient lists differ in length"),
            ));
        }
        check_sigma(path, model.sigma_log10)?;
        check_definition(path, &model.feature_definition)?;
        if let Some(trust) = &model.trust {
            trust.validate(path)?;
        }
        Ok(model)
    }

    /// The model as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model always serialises")
    }

    /// log₁₀ life predicted for one cell.
    pub fn predict_log10(&self, cell: &FeatureSet) -> Result<f64, PredictError> {
        let mut y = self.intercept;
        for (i, name) in self.features.iter().enumerate() {
            let x = cell.get(name).filter(|v| v.is_finite()).ok_or_else(|| {
                PredictError::MissingFeature {
                    model: self.name.clone(),
                    feature: name.clone(),
                }
            })?;
            y += self.coefficients[i] * (x - self.feature_mean[i]) / self.feature_std[i];
        }
        Ok(y)
    }
}

impl Predictor for LinearModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn window(&self) -> u32 {
        self.window
    }

    fn predict(&self, cells: &[FeatureSet]) -> Result<Vec<Prediction>, PredictError> {
        crate::domain::predict_trusted(self.trust.as_ref(), cells, |cells| {
            cells
                .iter()
                .map(|cell| {
                    Ok(prediction_from_log10(
                        self.predict_log10(cell)?,
                        self.sigma_log10,
                    ))
                })
                .collect()
        })
    }

    fn trust(&self) -> Option<&Trust> {
        self.trust.as_ref()
    }

    fn model_file(&self) -> Option<ModelFile> {
        Some(ModelFile::Linear(self.clone()))
    }

    fn capacities_trained_on(&self) -> Option<crate::CapacitySource> {
        crate::capacity::trained_on(&self.features, self.capacities, &self.trained_on)
    }
}

/// The models that ship with labloop, trained on the Severson et al. training cells by
/// `labloop predict train` (see `models/README.md`).
pub fn builtin_model(name: &str) -> Option<LinearModel> {
    let text = match name {
        "severson-variance" => include_str!("../models/severson-variance.json"),
        "severson-discharge" => include_str!("../models/severson-discharge.json"),
        _ => return None,
    };
    Some(LinearModel::from_json(text, name).expect("built-in models are valid"))
}

/// Names of the built-in models.
pub const BUILTIN_MODELS: [&str; 3] =
    ["severson-variance", "severson-discharge", "severson-neural"];

/// Any model file labloop reads, told apart by its `format` field.
#[derive(Clone, Debug)]
pub enum ModelFile {
    /// An elastic net ([`MODEL_FORMAT`]).
    Linear(LinearModel),
    /// A neural ensemble ([`crate::NEURAL_FORMAT`]).
    Neural(crate::NeuralModel),
}

impl ModelFile {
    /// Parses a model file of either kind; `path` only names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Self, PredictError> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
        }
        let header: Header = serde_json::from_str(text).map_err(|e| PredictError::ModelFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if header.format == crate::NEURAL_FORMAT {
            crate::NeuralModel::from_json(text, path).map(Self::Neural)
        } else {
            LinearModel::from_json(text, path).map(Self::Linear)
        }
    }

    /// A built-in model of either kind, by name.
    pub fn builtin(name: &str) -> Option<Self> {
        if let Some(linear) = builtin_model(name) {
            return Some(Self::Linear(linear));
        }
        let text = match name {
            "severson-neural" => include_str!("../models/severson-neural.json"),
            _ => return None,
        };
        Some(Self::from_json(text, name).expect("built-in models are valid"))
    }

    /// What a workflow's or command's `model` names: a built-in model, else a model file.
    pub fn resolve(name: &str) -> Result<Self, PredictError> {
        if let Some(model) = Self::builtin(name) {
            return Ok(model);
        }
        let path = std::path::Path::new(name);
        if !path.is_file() {
            return Err(PredictError::ModelFile {
                path: name.to_owned(),
                message: format!(
                    "neither a built-in model ({}) nor a readable file",
                    BUILTIN_MODELS.join(", ")
                ),
            });
        }
        Self::read(path)
    }

    /// Reads a model file from disk.
    pub fn read(path: &std::path::Path) -> Result<Self, PredictError> {
        let text = std::fs::read_to_string(path).map_err(|e| PredictError::ModelFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// The model as a shareable predictor.
    pub fn into_predictor(self) -> std::sync::Arc<dyn Predictor + Send + Sync> {
        match self {
            Self::Linear(m) => std::sync::Arc::new(m),
            Self::Neural(m) => std::sync::Arc::new(m),
        }
    }

    /// The model as a predictor that computes on `backend` (a neural model; a linear one computes
    /// anywhere), with why the CPU is used where the GPU was asked for and is not there.
    pub fn into_predictor_on(
        self,
        backend: crate::Backend,
    ) -> Result<(Box<dyn Predictor>, Option<String>), crate::PredictError> {
        Ok(match self {
            Self::Linear(m) => (Box::new(m), None),
            Self::Neural(model) => {
                let compute =
                    crate::Compute::select(backend).map_err(crate::PredictError::Backend)?;
                let fallback = compute.fallback.clone();
                (
                    Box::new(crate::neural::NeuralOnDevice { model, compute }),
                    fallback,
                )
            }
        })
    }

    /// Version of the feature definitions the model was trained on.
    pub fn feature_definition(&self) -> &str {
        match self {
            Self::Linear(m) => &m.feature_definition,
            Self::Neural(m) => &m.feature_definition,
        }
    }

    /// Which discharge capacities the model's capacity features were trained on, to record.
    pub fn capacities_mut(&mut self) -> &mut Option<crate::CapacitySource> {
        match self {
            Self::Linear(m) => &mut m.capacities,
            Self::Neural(m) => &mut m.capacities,
        }
    }

    /// The model's trust, to read or to adapt.
    pub fn trust_mut(&mut self) -> &mut Option<Trust> {
        match self {
            Self::Linear(m) => &mut m.trust,
            Self::Neural(m) => &mut m.trust,
        }
    }

    /// The model as pretty JSON, whichever its kind.
    pub fn to_json(&self) -> String {
        match self {
            Self::Linear(m) => m.to_json(),
            Self::Neural(m) => m.to_json(),
        }
    }

    /// The model's input features, in order.
    pub fn features(&self) -> &[String] {
        match self {
            Self::Linear(m) => &m.features,
            Self::Neural(m) => &m.features,
        }
    }

    /// The early window, in cycles, its features are computed over.
    pub fn window(&self) -> u32 {
        match self {
            Self::Linear(m) => m.window,
            Self::Neural(m) => m.window,
        }
    }

    /// SHA-256 of the training data.
    pub fn training_data_sha256(&self) -> &str {
        match self {
            Self::Linear(m) => &m.training_data_sha256,
            Self::Neural(m) => &m.training_data_sha256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_trained_on_other_feature_definitions_is_refused() {
        let shipped = builtin_model("severson-variance").unwrap();
        let mut old = shipped.clone();
        old.feature_definition = "severson-2019/2: kurtosis was excess".to_owned();
        let err = LinearModel::from_json(&old.to_json(), "old.json").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("old.json"), "{text}");
        assert!(
            text.contains("severson-2019/2") && text.contains("retrain"),
            "{text}"
        );
        // The current definition loads.
        LinearModel::from_json(&shipped.to_json(), "new.json").unwrap();
    }

    #[test]
    fn a_model_bound_to_the_cpu_predicts_as_the_model_does() {
        let cell = crate::FeatureSet::from_named([
            ("log_var_dq", -4.5),
            ("log_abs_min_dq", -1.8),
            ("log_abs_skew_dq", -0.4),
            ("log_abs_kurt_dq", 0.3),
            ("qd_cycle2", 1.07),
            ("qd_max_minus_cycle2", 0.004),
        ]);
        for name in ["severson-neural", "severson-variance"] {
            let file = ModelFile::resolve(name).unwrap();
            let plain = file
                .clone()
                .into_predictor()
                .predict(std::slice::from_ref(&cell))
                .unwrap();
            let (bound, fallback) = file.into_predictor_on(crate::Backend::Cpu).unwrap();
            assert_eq!(fallback, None, "{name}: the CPU is always there");
            assert_eq!(bound.name(), name);
            assert!(bound.model_file().is_some(), "{name}");
            let on_cpu = bound.predict(std::slice::from_ref(&cell)).unwrap();
            assert_eq!(on_cpu.len(), 1);
            let (a, b) = (&plain[0], &on_cpu[0]);
            assert!(
                (a.cycle_life - b.cycle_life).abs() < 1e-6 * a.cycle_life && a.cycle_life > 0.0,
                "{name}: {} vs {}",
                a.cycle_life,
                b.cycle_life
            );
        }
    }
}
