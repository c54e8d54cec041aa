//! Conditioning a fitted Gaussian process on one more observation without refitting: the cheap step
//! between two fits, when one cell's result arrives.

use crate::OptimizeError;
use crate::gp::{GaussianProcess, Observation, scale};
use nalgebra::DVector;

impl GaussianProcess {
    /// The posterior after one more observation, keeping the hyperparameters and the output
    /// normalisation. An input not seen before grows the Cholesky factor by one row and column,
    /// O(n²) in the distinct inputs instead of the O(n³) of conditioning afresh; a replicate of an
    /// observed input changes that input's pooled value and variance, so the factor is recomputed.
    /// Refit ([`GaussianProcess::fit`]) when a round's data are in: hyperparameters drift.
    pub fn updated(&self, observation: &Observation) -> Result<Self, OptimizeError> {
        observation.check(self.members.iter().map(Vec::len).sum(), self.bounds.len())?;
        let x = scale(&observation.x, &self.bounds);
        let member = observation.standardised(self.y_mean, self.y_std);
        if let Some(g) = self.x.iter().position(|seen| *seen == x) {
            let mut next = self.clone();
            next.members[g].push(member);
            return next.reconditioned();
        }
        let h = &self.hyper;
        let n = self.x.len();
        let cross = self.signal_covariance(&self.x, std::slice::from_ref(&x));
        let column = DVector::from_iterator(
            n + 1,
            cross
                .iter()
                .copied()
                .chain([self.prior_variance(&x) + member.1 + h.noise_var]),
        );
        let chol = self.chol.insert_column(n, column);
        let d = chol.l_dirty()[(n, n)];
        let targets = DVector::from_iterator(
            n + 1,
            self.pooled_values().iter().copied().chain([member.0]),
        );
        let mut next = Self {
            kernel: self.kernel,
            bounds: self.bounds.clone(),
            x: self.x.iter().cloned().chain([x]).collect(),
            members: self.members.iter().cloned().chain([vec![member]]).collect(),
            y_mean: self.y_mean,
            y_std: self.y_std,
            hyper: self.hyper.clone(),
            alpha: chol.solve(&targets),
            chol,
        };
        if !(d.is_finite() && d > 0.0) {
            // The new point is numerically a copy of the data: factor afresh, with jitter.
            return next.reconditioned();
        }
        next.hyper.log_marginal_likelihood = next.log_marginal_likelihood_now();
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use crate::{FitOptions, GaussianProcess, HyperPrior, KernelKind, Observation};

    fn observation(x: f64, z: f64, y: f64) -> Observation {
        Observation {
            x: vec![x, z],
            y,
            noise_var: 400.0,
        }
    }

    fn data() -> Vec<Observation> {
        (0..30)
            .map(|i| {
                let (x, z) = ((i % 6) as f64 / 5.0, (i / 6) as f64 / 4.0);
                observation(x, z, 900.0 + 200.0 * (3.0 * x).sin() - 80.0 * z * z)
            })
            .collect()
    }

    fn options() -> FitOptions {
        FitOptions {
            kernel: KernelKind::Matern52,
            bounds: vec![(0.0, 1.0); 2],
            restarts: 2,
            seed: 4,
            prior: HyperPrior::default(),
        }
    }

    /// The grown factor gives what conditioning afresh (same hyperparameters, same normalisation)
    /// gives: new inputs by the O(n²) path, a replicate by re-pooling.
    #[test]
    fn an_update_equals_conditioning_afresh() {
        let gp = GaussianProcess::fit(&data(), &options()).unwrap();
        let arrivals = [
            observation(0.55, 0.35, 1010.0),
            observation(0.9, 0.1, 870.0),
            observation(0.0, 0.0, 925.0), // a replicate of the first observation's input
        ];
        let mut updated = gp.clone();
        let mut reference = gp.clone();
        for o in &arrivals {
            updated = updated.updated(o).unwrap();
            let x = crate::gp::scale(&o.x, &reference.bounds);
            let member = o.standardised(reference.y_mean, reference.y_std);
            match reference.x.iter().position(|seen| *seen == x) {
                Some(g) => reference.members[g].push(member),
                None => {
                    reference.x.push(x);
                    reference.members.push(vec![member]);
                }
            }
            reference = reference.reconditioned().unwrap();
        }
        assert_eq!(updated.observations(), 32);
        let probes: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![i as f64 / 19.0, (i % 5) as f64 / 4.0])
            .collect();
        for ((m1, v1), (m2, v2)) in updated
            .predict(&probes)
            .iter()
            .zip(reference.predict(&probes))
        {
            assert!((m1 - m2).abs() < 1e-6, "{m1} vs {m2}");
            assert!((v1 - v2).abs() < 1e-6 * v2.max(1.0), "{v1} vs {v2}");
        }
        let (a, b) = (
            updated.hyperparameters().log_marginal_likelihood,
            reference.hyperparameters().log_marginal_likelihood,
        );
        assert!((a - b).abs() < 1e-6 * b.abs(), "{a} vs {b}");
        // The new point moved the posterior towards its value.
        let there = vec![vec![0.55, 0.35]];
        let (before, after) = (gp.predict(&there)[0], updated.predict(&there)[0]);
        assert!(after.1 < before.1, "variance shrinks where it was measured");
    }

    #[test]
    fn a_bad_arrival_is_named() {
        let gp = GaussianProcess::fit(&data(), &options()).unwrap();
        let err = gp.updated(&observation(0.5, f64::NAN, 1.0)).unwrap_err();
        assert_eq!(err.to_string(), "observation 30: x is not finite");
        let err = gp
            .updated(&Observation {
                x: vec![0.5],
                y: 1.0,
                noise_var: 1.0,
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "observation 30 has 1 inputs, expected 2");
        let err = gp
            .updated(&Observation {
                x: vec![0.5, 0.5],
                y: f64::INFINITY,
                noise_var: 1.0,
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "observation 30: y is not finite");
    }
}
