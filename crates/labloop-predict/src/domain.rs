//! Where a model may be trusted: its training domain, the spread a new batch of cells adds, and
//! what it learnt from a few labelled cells of a new batch.
//!
//! Every model file carries a [`Trust`]. A prediction then
//! - is checked against the training [`Domain`] (each feature's range, and the Mahalanobis distance
//!   of the standardised features against the largest among the training cells): a cell outside it
//!   is flagged [`Prediction::out_of_domain`](crate::Prediction);
//! - has its σ widened, in log₁₀ cycles, as σ² = σ_model² + σ_batch² + σ_extrapolation², where
//!   σ_batch is the spread of a batch's offset measured by training on one batch and scoring another
//!   ([`crate::shift`]), and σ_extrapolation is how far the prediction moves between the cell and its
//!   features clamped to the training ranges: the part of the answer the training data never
//!   checked, taken as wholly uncertain;
//! - once the model is adapted to a batch ([`Adaptation`]), is shifted by that batch's offset and
//!   σ_batch is replaced by what the labelled cells leave of it.

use crate::PredictError;
use crate::features::FeatureSet;
use crate::model::{Prediction, prediction_from_log10};
use serde::{Deserialize, Serialize};

/// A feature further than this many training standard deviations beyond its training range puts
/// a cell out of domain (a cell just past the edge is not yet extrapolating).
pub const RANGE_MARGIN_STD: f64 = 0.25;
/// A cell whose Mahalanobis distance exceeds the largest training cell's by this factor is out of
/// domain even when each feature alone is in range (the features' combination is new).
pub const DISTANCE_MARGIN: f64 = 1.25;
/// σ of a new batch's offset (log₁₀ cycles) when the training cells could not measure it (one
/// batch only): the largest of the built-in procedures' batch σ measured on the Severson et al.
/// cells' two batches (`labloop predict eval --split by-batch --severson DIR`: variance 0.125,
/// discharge 0.143, neural 0.156), rounded up.
pub const DEFAULT_BATCH_SIGMA_LOG10: f64 = 0.16;

/// The training domain of a model: each feature's range, and the distance of the standardised
/// features from the training mean.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    /// Feature names, in the order of every list here.
    pub features: Vec<String>,
    /// Smallest training value of each feature.
    pub min: Vec<f64>,
    /// Largest training value of each feature.
    pub max: Vec<f64>,
    /// Training mean of each feature.
    pub mean: Vec<f64>,
    /// Training standard deviation of each feature.
    pub std: Vec<f64>,
    /// Inverse of the standardised features' correlation matrix (lightly regularised), row-major.
    pub inverse_correlation: Vec<f64>,
    /// The largest Mahalanobis distance of a training cell.
    pub max_training_distance: f64,
    /// How many cells it was measured on.
    pub cells: usize,
}

/// A feature outside its training range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutsideRange {
    /// The feature.
    pub feature: String,
    /// This cell's value.
    pub value: f64,
    /// Training minimum.
    pub min: f64,
    /// Training maximum.
    pub max: f64,
    /// How far out, in training standard deviations.
    pub by_std: f64,
}

/// One cell against a model's training domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainCheck {
    /// Mahalanobis distance of the cell's standardised features.
    pub distance: f64,
    /// The distance beyond which a cell is out of domain.
    pub distance_limit: f64,
    /// Features beyond their range by more than [`RANGE_MARGIN_STD`].
    pub outside: Vec<OutsideRange>,
}

impl DomainCheck {
    /// Whether the cell is outside the training domain.
    pub fn out_of_domain(&self) -> bool {
        !self.outside.is_empty() || self.distance > self.distance_limit
    }

    /// One line for a person: which features, how far out.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .outside
            .iter()
            .map(|o| {
                format!(
                    "{} = {:.4} outside [{:.4}, {:.4}] by {:.1} σ",
                    o.feature, o.value, o.min, o.max, o.by_std
                )
            })
            .collect();
        if self.distance > self.distance_limit {
            parts.push(format!(
                "Mahalanobis distance {:.1} beyond {:.1}",
                self.distance, self.distance_limit
            ));
        }
        parts.join("; ")
    }
}

impl Domain {
    /// The domain of training rows `x` (one row per cell, columns in `features` order).
    pub fn of(features: &[String], x: &[Vec<f64>]) -> Self {
        let p = features.len();
        let (z, mean, std) = crate::train::standardise(x);
        let column = |j: usize| x.iter().map(move |r| r[j]);
        let min = (0..p)
            .map(|j| column(j).fold(f64::INFINITY, f64::min))
            .collect();
        let max = (0..p)
            .map(|j| column(j).fold(f64::NEG_INFINITY, f64::max))
            .collect();
        let n = z.len().max(1) as f64;
        let correlation = nalgebra::DMatrix::from_fn(p, p, |a, b| {
            let c = z.iter().map(|r| r[a] * r[b]).sum::<f64>() / n;
            if a == b { c + 1e-3 } else { c }
        });
        let inverse = correlation
            .try_inverse()
            .unwrap_or_else(|| nalgebra::DMatrix::identity(p, p));
        let mut domain = Self {
            features: features.to_vec(),
            min,
            max,
            mean,
            std,
            inverse_correlation: inverse.transpose().as_slice().to_vec(),
            max_training_distance: 0.0,
            cells: x.len(),
        };
        domain.max_training_distance = x.iter().map(|r| domain.distance(r)).fold(0.0, f64::max);
        domain
    }

    /// Checks that the lists agree in length; `path` names the file in the error.
    pub(crate) fn validate(&self, path: &str) -> Result<(), PredictError> {
        let p = self.features.len();
        let lists = [&self.min, &self.max, &self.mean, &self.std];
        if lists.iter().any(|l| l.len() != p) || self.inverse_correlation.len() != p * p {
            return Err(crate::model::model_file_error(
                path,
                format!("the training domain's lists do not fit its {p} features"),
            ));
        }
        Ok(())
    }

    fn values(&self, cell: &FeatureSet) -> Vec<f64> {
        self.features
            .iter()
            .map(|f| cell.get(f).unwrap_or(f64::NAN))
            .collect()
    }

    fn distance(&self, values: &[f64]) -> f64 {
        let p = self.features.len();
        let z: Vec<f64> = (0..p)
            .map(|j| (values[j] - self.mean[j]) / self.std[j])
            .collect();
        let mut d2 = 0.0;
        for a in 0..p {
            for b in 0..p {
                d2 += z[a] * self.inverse_correlation[a * p + b] * z[b];
            }
        }
        d2.max(0.0).sqrt()
    }

    /// One cell against the domain.
    pub fn check(&self, cell: &FeatureSet) -> DomainCheck {
        let values = self.values(cell);
        let outside = self
            .features
            .iter()
            .enumerate()
            .filter_map(|(j, feature)| {
                let v = values[j];
                let beyond = (self.min[j] - v).max(v - self.max[j]).max(0.0) / self.std[j];
                (beyond > RANGE_MARGIN_STD).then(|| OutsideRange {
                    feature: feature.clone(),
                    value: v,
                    min: self.min[j],
                    max: self.max[j],
                    by_std: beyond,
                })
            })
            .collect();
        DomainCheck {
            distance: self.distance(&values),
            distance_limit: DISTANCE_MARGIN * self.max_training_distance,
            outside,
        }
    }

    /// The cell with each of the domain's features clamped to its training range: the nearest
    /// point, feature by feature, where the model was checked.
    pub fn clamp(&self, cell: &FeatureSet) -> FeatureSet {
        let mut clamped = FeatureSet::default();
        for (name, value) in cell.iter() {
            let v = match self.features.iter().position(|f| f == name) {
                Some(j) if value.is_finite() => value.clamp(self.min[j], self.max[j]),
                _ => value,
            };
            clamped.push(name, v);
        }
        clamped
    }
}

/// What a few labelled cells of a new batch taught a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adaptation {
    /// How many labelled cells.
    pub cells: usize,
    /// The batch's offset (posterior mean), added to every prediction, log₁₀ cycles.
    pub offset_log10: f64,
    /// The offset's posterior σ, log₁₀ cycles: it replaces the batch σ.
    pub offset_sigma_log10: f64,
    /// The model's own σ is multiplied by this (the labelled cells' scatter around the offset,
    /// shrunk towards the model's σ).
    pub sigma_scale: f64,
    /// The batch's change of slope: a prediction `p` (log₁₀) becomes
    /// `p + offset + slope · (p − reference_log10)`.
    #[serde(default)]
    pub slope: f64,
    /// The prediction the slope turns about: the labelled cells' mean prediction, log₁₀ cycles.
    #[serde(default)]
    pub reference_log10: f64,
    /// The slope's posterior σ.
    #[serde(default)]
    pub slope_sigma: f64,
    /// Where the labelled cells came from.
    pub adapted_on: String,
    /// SHA-256 of the labelled cells' features and lives.
    pub cells_sha256: String,
}

/// A model's training domain, the batch spread it assumes and any adaptation; see the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trust {
    /// The training domain.
    pub domain: Domain,
    /// σ of a new batch's offset, log₁₀ cycles.
    pub batch_sigma_log10: f64,
    /// How `batch_sigma_log10` was found.
    pub batch_sigma_source: String,
    /// The adaptation to one batch, if any.
    #[serde(default)]
    pub adaptation: Option<Adaptation>,
}

impl Trust {
    /// A fresh model's trust: its domain, and the default batch σ.
    pub fn new(domain: Domain) -> Self {
        Self {
            domain,
            batch_sigma_log10: DEFAULT_BATCH_SIGMA_LOG10,
            batch_sigma_source: "labloop's default, measured on the Severson et al. batches"
                .to_owned(),
            adaptation: None,
        }
    }

    pub(crate) fn validate(&self, path: &str) -> Result<(), PredictError> {
        self.domain.validate(path)?;
        crate::model::check_sigma(path, self.batch_sigma_log10)
    }

    /// The final prediction for `cell` from the model's own prediction of it (`raw`) and of its
    /// features clamped to the domain (`at_edge`); see the module docs.
    pub fn apply(&self, cell: &FeatureSet, raw: &Prediction, at_edge: &Prediction) -> Prediction {
        let extrapolation = raw.log10_life - at_edge.log10_life;
        let (offset, batch_sigma, scale) = match &self.adaptation {
            Some(a) => {
                let u = raw.log10_life - a.reference_log10;
                (
                    a.offset_log10 + a.slope * u,
                    (a.offset_sigma_log10.powi(2) + (a.slope_sigma * u).powi(2)).sqrt(),
                    a.sigma_scale,
                )
            }
            None => (0.0, self.batch_sigma_log10, 1.0),
        };
        let sigma =
            ((raw.sigma_log10 * scale).powi(2) + batch_sigma.powi(2) + extrapolation.powi(2))
                .sqrt();
        let mut prediction = prediction_from_log10(raw.log10_life + offset, sigma);
        prediction.out_of_domain = self.domain.check(cell).out_of_domain();
        prediction
    }
}

/// Why `prediction` of `cell` by `predictor` is out of domain (which features, how far out), or
/// `None` when it is not: what the CLI, a campaign's store and its events all report.
pub fn out_of_domain_reason(
    predictor: &dyn crate::Predictor,
    cell: &FeatureSet,
    prediction: &Prediction,
) -> Option<String> {
    prediction.out_of_domain.then(|| {
        predictor.trust().map_or_else(
            || "outside the training domain".to_owned(),
            |t| t.domain.check(cell).describe(),
        )
    })
}

/// A model's predictions of `cells` with its trust applied: `raw` predicts a batch of cells as
/// the model alone does; it is called on the cells and, when there is a trust, on the cells
/// clamped to the training domain. The one path every kind of model predicts through.
pub(crate) fn predict_trusted(
    trust: Option<&Trust>,
    cells: &[FeatureSet],
    raw: impl Fn(&[FeatureSet]) -> Result<Vec<Prediction>, PredictError>,
) -> Result<Vec<Prediction>, PredictError> {
    let own = raw(cells)?;
    let Some(trust) = trust else {
        return Ok(own);
    };
    let clamped: Vec<FeatureSet> = cells.iter().map(|c| trust.domain.clamp(c)).collect();
    let at_edge = raw(&clamped)?;
    Ok(cells
        .iter()
        .zip(own.iter().zip(&at_edge))
        .map(|(cell, (own, edge))| trust.apply(cell, own, edge))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(a: f64, b: f64) -> FeatureSet {
        let mut f = FeatureSet::default();
        f.push("log_var_dq", a);
        f.push("qd_cycle2", b);
        f
    }

    fn domain() -> Domain {
        let x: Vec<Vec<f64>> = (0..40)
            .map(|i| {
                let t = i as f64 / 39.0;
                // Correlated features: b rises with a, with a little scatter.
                vec![
                    -4.0 + t,
                    1.06 + 0.02 * t + 0.001 * ((i * 7 % 5) as f64 - 2.0),
                ]
            })
            .collect();
        Domain::of(&["log_var_dq".to_owned(), "qd_cycle2".to_owned()], &x)
    }

    #[test]
    fn cells_inside_pass_and_cells_outside_are_named() {
        let d = domain();
        assert!(!d.check(&cell(-3.5, 1.07)).out_of_domain());
        let far = d.check(&cell(-3.5, 1.03));
        assert!(far.out_of_domain());
        assert_eq!(far.outside.len(), 1);
        assert_eq!(far.outside[0].feature, "qd_cycle2");
        assert!(far.outside[0].by_std > 3.0, "{far:?}");
        assert!(far.describe().contains("qd_cycle2"), "{}", far.describe());
        // Each feature in range, but against their correlation: out by distance alone.
        let odd = d.check(&cell(-3.95, 1.079));
        assert!(odd.outside.is_empty() && odd.out_of_domain(), "{odd:?}");
        assert!(odd.describe().contains("Mahalanobis"));
    }

    #[test]
    fn clamping_moves_only_the_domains_features_into_range() {
        let d = domain();
        let mut c = cell(-6.0, 1.2);
        c.push("other", 42.0);
        let clamped = d.clamp(&c);
        assert_eq!(clamped.get("log_var_dq"), Some(-4.0));
        assert!((clamped.get("qd_cycle2").unwrap() - d.max[1]).abs() < 1e-12);
        assert_eq!(clamped.get("other"), Some(42.0));
    }

    #[test]
    fn sigma_grows_with_the_batch_spread_and_the_extrapolation() {
        let trust = Trust::new(domain());
        let inside = cell(-3.5, 1.07);
        let raw = prediction_from_log10(3.0, 0.05);
        let p = trust.apply(&inside, &raw, &raw);
        let expected = (0.05f64.powi(2) + DEFAULT_BATCH_SIGMA_LOG10.powi(2)).sqrt();
        assert!((p.sigma_log10 - expected).abs() < 1e-12);
        assert!(!p.out_of_domain);
        // Out of range: the prediction moved 0.4 beyond the edge, and σ carries it.
        let edge = prediction_from_log10(2.6, 0.05);
        let q = trust.apply(&cell(-3.5, 1.0), &raw, &edge);
        assert!(q.out_of_domain && q.sigma_log10 > 0.4, "{q:?}");
        assert_eq!(q.log10_life, 3.0);
    }
}
