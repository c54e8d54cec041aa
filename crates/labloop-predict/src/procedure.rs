//! How `labloop predict train --model NAME` trains each model on labelled cells: the Severson et
//! al. elastic nets (variance, discharge, full) and the neural ensembles (on the discharge
//! features, or with the ΔQ curve's too). The by-batch split and adaptation measure these same
//! procedures.

use crate::train::{
    DISCHARGE_FEATURES, FULL_FEATURES, LabelledCell, TrainOptions, VARIANCE_FEATURES,
    fit_elastic_net,
};
use crate::{
    Backend, Compute, DQ_CURVE_FEATURES, ModelFile, NeuralOptions, PredictError, fit_neural,
};

/// How a model is trained, by the name `predict train --model` takes.
#[derive(Clone, Copy, Debug)]
pub struct Procedure<'a> {
    /// variance, discharge, full, neural or neural-curve.
    pub model: &'a str,
    /// The early window in cycles.
    pub window: u32,
    /// Where a neural model trains.
    pub backend: Backend,
    /// Seed of a neural model's initialisation.
    pub seed: u64,
}

impl Procedure<'_> {
    /// Fits the model on `cells`; `trained_on` is its provenance.
    pub fn fit(&self, cells: &[LabelledCell], trained_on: &str) -> Result<ModelFile, PredictError> {
        let linear = |name: &str, features: &[&str]| -> Result<ModelFile, PredictError> {
            let options = TrainOptions::severson(
                &format!("severson-{name}"),
                features,
                self.window,
                trained_on,
            );
            let fitted = fit_elastic_net(cells, &options).map_err(|e| {
                PredictError::Training(if name == "full" {
                    format!(
                        "the full model needs charge time, temperature and internal resistance, \
                         which Qdlin arrays do not carry: {e}"
                    )
                } else {
                    format!("training {name}: {e}")
                })
            })?;
            Ok(ModelFile::Linear(fitted))
        };
        let neural = |features: Vec<&str>| -> Result<ModelFile, PredictError> {
            let compute = Compute::select(self.backend).map_err(PredictError::Training)?;
            let mut options = NeuralOptions::new(self.model, &features, self.window, trained_on);
            options.seed = self.seed;
            Ok(ModelFile::Neural(fit_neural(cells, &options, &compute)?))
        };
        match self.model {
            "variance" => linear("variance", &VARIANCE_FEATURES),
            "discharge" => linear("discharge", &DISCHARGE_FEATURES),
            "full" => linear("full", &FULL_FEATURES),
            "neural" => neural(DISCHARGE_FEATURES.to_vec()),
            "neural-curve" => neural(
                DISCHARGE_FEATURES
                    .iter()
                    .chain(DQ_CURVE_FEATURES.iter())
                    .copied()
                    .collect(),
            ),
            other => Err(PredictError::Training(format!(
                "unknown model `{other}`: expected variance, discharge, full, neural or neural-curve"
            ))),
        }
    }

    /// [`Self::fit`] as the by-batch split calls it.
    pub fn fitter(&self) -> impl Fn(&[LabelledCell]) -> Result<ModelFile, PredictError> + '_ {
        move |cells| self.fit(cells, "by-batch split")
    }
}
