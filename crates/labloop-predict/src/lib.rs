//! Early-cycle lifetime prediction: from the first ~100 cycles of a cell, its cycle life with an
//! uncertainty, as in Severson et al., Nature Energy 2019.
//!
//! - [`features`] computes the paper's features from cycle records (or from the paper's own `Qdlin`
//!   arrays): the variance and shape of ΔQ₁₀₀₋₁₀(V), the capacity-fade line, capacities;
//! - [`LinearModel`] is a trained elastic net on log₁₀ cycle life, stored as a small JSON model file
//!   that carries its own σ (cross-validated, so it is an out-of-sample error);
//! - [`train`] fits one by cross-validation with smartcore; [`severson`] reads the published arrays;
//! - [`NeuralModel`] is an ensemble of small perceptrons trained with burn ([`neural`]), computing on
//!   burn's `flex` CPU backend or, with the `gpu` feature, on wgpu ([`compute`]).
//!
//! Pure computation: no async, no database, no network. The only file access is [`severson`]'s
//! reader of the published data, used when training.

pub mod capacity;
pub mod compute;
pub mod domain;
pub mod features;
pub mod life;
mod model;
pub mod neural;
pub mod procedure;
pub mod report;
pub mod severson;
pub mod shift;
pub mod train;

pub use capacity::CapacitySource;
pub use compute::{Backend, Compute};
pub use domain::{Adaptation, Domain, DomainCheck, Trust, out_of_domain_reason};
pub use features::{
    DQ_CURVE_FEATURES, EarlyData, FEATURE_DEFINITION, FeatureSet, VOLTAGE_GRID_POINTS,
    needs_recorded, voltage_grid,
};
pub use model::{
    BUILTIN_MODELS, LinearModel, MODEL_FORMAT, ModelFile, Prediction, Predictor, builtin_model,
    prediction_from_log10,
};
pub use neural::{NEURAL_FORMAT, NeuralModel, NeuralOptions, fit_neural};

/// What can go wrong when predicting or training, with where.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The early data lacks something a feature needs.
    #[error("not enough early data: {0}")]
    MissingData(String),
    /// The model asks for a feature the data cannot provide.
    #[error("model `{model}` needs feature `{feature}`, which this cell's data does not provide")]
    MissingFeature {
        /// The model's name.
        model: String,
        /// The feature.
        feature: String,
    },
    /// A model file that does not parse or does not hold together.
    #[error("model file {path}: {message}")]
    ModelFile {
        /// Where it came from.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A data file that does not parse.
    #[error("{path}:{line}: {message}")]
    DataFile {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The fit failed.
    #[error("training failed: {0}")]
    Training(String),
    /// The compute backend asked for cannot start (`--backend gpu` without a GPU).
    #[error("{0}")]
    Backend(String),
}
