//! What the optimizer observes of each experiment: its objective and σ, from the early
//! prediction, the observed (or censored) life, or the measurement, with the part of a model's σ
//! every cell of the campaign shares left out.

use labloop_optimize::Observation;
use labloop_predict::Predictor;
use labloop_store::ObservationRow;

/// The part of a model's σ that every cell of one campaign shares: its batch's offset (the batch
/// σ, or what is left of it once the model is adapted), in log₁₀ cycles. A common factor on every
/// predicted life moves none of them relative to another, so the optimizer, which compares
/// protocols, is given each prediction's σ without it.
pub(crate) struct SharedOffset {
    model: String,
    sigma_log10: f64,
}

impl SharedOffset {
    /// No shared part (a measured objective).
    pub fn none() -> Self {
        Self {
            model: String::new(),
            sigma_log10: 0.0,
        }
    }

    pub fn of(predictor: &(dyn Predictor + Send + Sync)) -> Self {
        let sigma_log10 = predictor.trust().map_or(0.0, |t| match &t.adaptation {
            Some(a) => a.offset_sigma_log10,
            None => t.batch_sigma_log10,
        });
        Self {
            model: predictor.name().to_owned(),
            sigma_log10,
        }
    }

    /// A prediction's σ in cycles without the shared part (only for the model it describes).
    fn without(&self, p: &labloop_store::PredictionRow) -> f64 {
        if p.model != self.model || self.sigma_log10 <= 0.0 {
            return p.sigma;
        }
        let own = (p.sigma_log10.powi(2) - self.sigma_log10.powi(2))
            .max(0.0)
            .sqrt();
        p.cycle_life * std::f64::consts::LN_10 * own
    }
}

/// Least σ of a censored life, as a fraction of its bound: the early prediction it is drawn from
/// was wrong enough to need the bound, so it is not trusted to place the life closer than this.
const CENSORED_SIGMA_FRACTION: f64 = 0.15;

/// An experiment's objective and its σ: the life observed by cycling to end of life where there is
/// one (only the measurement error remains, ≈2 % of life); for a censored life (alive at the bound
/// when its test stopped) the early prediction cut below the bound
/// ([`labloop_optimize::censored::lower_bounded`]), its σ at least
/// [`CENSORED_SIGMA_FRACTION`] of the bound; the early prediction otherwise (without its
/// campaign-wide part, [`SharedOffset`]).
fn objective_of(o: &ObservationRow, shared: &SharedOffset) -> (f64, f64) {
    if let Some(measured) = o.measurement {
        return measured;
    }
    let predicted = (o.prediction.cycle_life, shared.without(&o.prediction));
    match o.observed {
        Some((life, false)) => (life, life * 0.02),
        Some((bound, true)) => {
            let (mean, sd) =
                labloop_optimize::censored::lower_bounded(predicted.0, predicted.1, bound);
            (mean, sd.max(CENSORED_SIGMA_FRACTION * bound))
        }
        None => predicted,
    }
}

pub(crate) fn to_observation(
    o: &ObservationRow,
    inputs: &[Vec<f64>],
    sign: f64,
    shared: &SharedOffset,
) -> Observation {
    let (y, sd) = objective_of(o, shared);
    Observation {
        x: inputs[o.candidate_index].clone(),
        y: sign * y,
        noise_var: sd.powi(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labloop_store::PredictionRow;

    fn row(observed: Option<(f64, bool)>) -> ObservationRow {
        ObservationRow {
            experiment_id: "c-r0-e0".into(),
            round: 0,
            candidate_index: 1,
            protocol_label: "4.8-5.2-4.8-4.46".into(),
            prediction: PredictionRow {
                model: "severson-variance".into(),
                cycle_life: 900.0,
                sigma: 120.0,
                log10_life: 900f64.log10(),
                sigma_log10: 0.06,
                features_json: "{}".into(),
                out_of_domain: None,
            },
            observed,
            measurement: None,
        }
    }

    /// Multi-fidelity: the early prediction is an observation with its σ until the cell's own end of
    /// life arrives and replaces it (a censored life stays less certain); a minimised objective flips
    /// sign, never σ.
    #[test]
    fn an_observed_life_replaces_the_prediction() {
        let inputs = vec![vec![3.6], vec![4.8]];
        let none = SharedOffset {
            model: "severson-variance".into(),
            sigma_log10: 0.0,
        };
        let to_observation = |o: &ObservationRow, inputs: &[Vec<f64>], sign: f64| {
            to_observation(o, inputs, sign, &none)
        };
        let predicted = to_observation(&row(None), &inputs, 1.0);
        assert_eq!((predicted.x, predicted.y), (vec![4.8], 900.0));
        assert!((predicted.noise_var - 120.0 * 120.0).abs() < 1e-9);
        let observed = to_observation(&row(Some((1000.0, false))), &inputs, 1.0);
        assert_eq!(observed.y, 1000.0);
        assert!((observed.noise_var - 20.0 * 20.0).abs() < 1e-9);
        let censored = to_observation(&row(Some((1000.0, true))), &inputs, -1.0);
        assert!(censored.y < -1000.0, "{}", censored.y);
        assert!((censored.noise_var - 150.0 * 150.0).abs() < 1e-9);
        assert!(observed.noise_var < predicted.noise_var);
        assert!(observed.noise_var < censored.noise_var);
    }

    /// A censored life is a lower bound, never a measurement at the bound: a cell predicted at 900
    /// and still alive at 400 keeps (about) its prediction; one predicted at 900 and alive at 1000
    /// lives longer than 1000 by what the prediction's tail says.
    #[test]
    fn a_censored_life_is_a_lower_bound() {
        let none = SharedOffset {
            model: "severson-variance".into(),
            sigma_log10: 0.0,
        };
        let (early_cut, sd) = objective_of(&row(Some((400.0, true))), &none);
        assert!((early_cut - 900.0).abs() < 1.0, "{early_cut}");
        assert!((sd - 120.0).abs() < 1.0, "{sd}");
        let (late_cut, sd) = objective_of(&row(Some((1000.0, true))), &none);
        assert!(late_cut > 1050.0 && late_cut < 1200.0, "{late_cut}");
        assert!((sd - 150.0).abs() < 1e-9, "{sd}");
    }

    /// The batch offset every cell of a campaign shares is left out of the optimizer's noise: of
    /// σ = 0.06 log₁₀ with a shared 0.036, 0.048 remains; another model's predictions keep theirs.
    #[test]
    fn the_shared_batch_offset_is_not_noise_to_the_optimizer() {
        let shared = SharedOffset {
            model: "severson-variance".into(),
            sigma_log10: 0.036,
        };
        let inputs = vec![vec![3.6], vec![4.8]];
        let o = to_observation(&row(None), &inputs, 1.0, &shared);
        let expected = 900.0 * std::f64::consts::LN_10 * 0.048;
        assert!(
            (o.noise_var.sqrt() - expected).abs() < 1e-9,
            "{}",
            o.noise_var.sqrt()
        );
        let mut other = row(None);
        other.prediction.model = "my-model".into();
        let o = to_observation(&other, &inputs, 1.0, &shared);
        assert!((o.noise_var - 120.0 * 120.0).abs() < 1e-9);
    }
}
