//! Fitting a Gaussian process's hyperparameters: the observations pooled by distinct input, the
//! log marginal likelihood with its gradient under the priors, and L-BFGS over it.

use super::*;
use std::borrow::Cow;

/// Observations scaled for fitting, replicates pooled: observations at the same inputs collapse to one
/// point with their precision-weighted mean and pooled variance. That is exact — the likelihood
/// factors into the pooled point's and a term of the within-group scatter (`log C_g` below) — and
/// makes the cost depend on the number of distinct inputs, not of observations.
pub(super) struct Data {
    pub(super) kernel: KernelKind,
    pub(super) d: usize,
    /// Distinct inputs, scaled to the unit box.
    pub(super) x: Vec<Vec<f64>>,
    /// Per distinct input: (standardised y, standardised known noise variance) of each observation.
    pub(super) members: Vec<Vec<(f64, f64)>>,
    pub(super) y_mean: f64,
    pub(super) y_std: f64,
    /// [`HyperPrior::trend_share`].
    pub(super) trend_share: f64,
}

/// Replicates pooled for one value of the homoscedastic noise.
pub(super) struct Pooled {
    pub(super) y: DVector<f64>,
    pub(super) var: Vec<f64>,
    /// Σ_g log C_g: the within-group part of the log likelihood.
    pub(super) log_within: f64,
}

impl Data {
    pub(super) fn new(
        observations: &[Observation],
        options: &FitOptions,
    ) -> Result<Self, OptimizeError> {
        let d = options.bounds.len();
        for (index, o) in observations.iter().enumerate() {
            o.check(index, d)?;
        }
        let n = observations.len().max(1) as f64;
        let y_mean = observations.iter().map(|o| o.y).sum::<f64>() / n;
        let var = observations
            .iter()
            .map(|o| (o.y - y_mean).powi(2))
            .sum::<f64>()
            / n;
        let y_std = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
        let mut index: std::collections::HashMap<Vec<u64>, usize> =
            std::collections::HashMap::new();
        let mut x = Vec::new();
        let mut members: Vec<Vec<(f64, f64)>> = Vec::new();
        for o in observations {
            let key: Vec<u64> = o.x.iter().map(|v| v.to_bits()).collect();
            let g = *index.entry(key).or_insert_with(|| {
                x.push(scale(&o.x, &options.bounds));
                members.push(Vec::new());
                x.len() - 1
            });
            members[g].push(o.standardised(y_mean, y_std));
        }
        Ok(Self {
            kernel: options.kernel,
            d,
            x,
            members,
            y_mean,
            y_std,
            trend_share: options.prior.trend_share,
        })
    }

    pub(super) fn n(&self) -> usize {
        self.x.len()
    }

    /// A seeded subset of `size` distinct inputs with all their observations.
    pub(super) fn subset(&self, size: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7375_6273_6574);
        let keep = rand::seq::index::sample(&mut rng, self.n(), size.min(self.n()));
        Self {
            kernel: self.kernel,
            d: self.d,
            x: keep.iter().map(|i| self.x[i].clone()).collect(),
            members: keep.iter().map(|i| self.members[i].clone()).collect(),
            y_mean: self.y_mean,
            y_std: self.y_std,
            trend_share: self.trend_share,
        }
    }

    pub(super) fn pooled(&self, sn2: f64) -> Pooled {
        let two_pi = 2.0 * std::f64::consts::PI;
        let mut y = Vec::with_capacity(self.n());
        let mut var = Vec::with_capacity(self.n());
        let mut log_within = 0.0;
        for group in &self.members {
            let weights: Vec<f64> = group.iter().map(|(_, v)| 1.0 / (v + sn2)).collect();
            let pooled_var = 1.0 / weights.iter().sum::<f64>();
            let mean = pooled_var
                * group
                    .iter()
                    .zip(&weights)
                    .map(|((yi, _), w)| w * yi)
                    .sum::<f64>();
            if group.len() > 1 {
                log_within += group
                    .iter()
                    .zip(&weights)
                    .map(|((yi, _), w)| -0.5 * w * (yi - mean).powi(2) - 0.5 * (two_pi / w).ln())
                    .sum::<f64>()
                    + 0.5 * (two_pi * pooled_var).ln();
            }
            y.push(mean);
            var.push(pooled_var);
        }
        Pooled {
            y: DVector::from_vec(y),
            var,
            log_within,
        }
    }

    /// The inputs as the kernel sees them: warped when the fit warps them.
    pub(super) fn warped(&self, warp: &[(f64, f64)]) -> Cow<'_, [Vec<f64>]> {
        warp_points(&self.x, warp)
    }

    pub(super) fn covariance(
        &self,
        x: &[Vec<f64>],
        ell: &[f64],
        sf2: f64,
        pooled_var: &[f64],
    ) -> DMatrix<f64> {
        let n = self.n();
        DMatrix::from_fn(n, n, |i, j| {
            let k = signal_kernel(self.kernel, &x[i], &x[j], ell, sf2, self.trend_share);
            if i == j { k + pooled_var[i] } else { k }
        })
    }

    /// The factorised covariance, α = K⁻¹ȳ and the log marginal likelihood of all observations.
    pub(super) fn fit_at(
        &self,
        ell: &[f64],
        sf2: f64,
        sn2: f64,
        warp: &[(f64, f64)],
    ) -> Option<(Cholesky<f64, Dyn>, DVector<f64>, f64)> {
        let pooled = self.pooled(sn2);
        let x = self.warped(warp);
        let chol = robust_cholesky(self.covariance(&x, ell, sf2, &pooled.var)).ok()?;
        let alpha = chol.solve(&pooled.y);
        let lml = -0.5 * pooled.y.dot(&alpha)
            - log_det_half(&chol)
            - 0.5 * self.n() as f64 * (2.0 * std::f64::consts::PI).ln()
            + pooled.log_within;
        Some((chol, alpha, lml))
    }

    pub(super) fn log_prior(theta: &[f64], d: usize, prior: &HyperPrior) -> (f64, Vec<f64>) {
        let mut value = 0.0;
        let mut grad = vec![0.0; theta.len()];
        for (k, t) in theta.iter().enumerate() {
            let (centre, spread) = if k < d {
                prior.log_length
            } else if k == d {
                prior.log_signal
            } else if k == d + 1 {
                prior.log_noise
            } else {
                LOG_WARP_PRIOR
            };
            value -= 0.5 * ((t - centre) / spread).powi(2);
            grad[k] -= (t - centre) / (spread * spread);
        }
        (value, grad)
    }

    /// Negative log posterior of the log hyperparameters, and its gradient: analytic for the kernel's
    /// parameters, central differences for the noise (which also moves the pooled data) and for
    /// the inputs' warps.
    pub(super) fn cost_and_gradient(
        &self,
        theta: &[f64],
        prior: &HyperPrior,
    ) -> Option<(f64, Vec<f64>)> {
        let (ell, sf2, sn2) = split(theta, self.d);
        let warp = split_warp(theta, self.d);
        let x = self.warped(&warp);
        let n = self.n();
        let (chol, alpha, lml) = self.fit_at(&ell, sf2, sn2, &warp)?;
        let mut w = chol.inverse();
        w -= &alpha * alpha.transpose();
        let mut grad = vec![0.0; theta.len()];
        for i in 0..n {
            for j in 0..n {
                let r2 = scaled_distance2(&x[i], &x[j], &ell);
                let wij = w[(i, j)];
                // Both the stationary part and the trend scale with the signal variance.
                let trend = self.trend_share * linear_trend(&x[i], &x[j]);
                grad[self.d] += 0.5 * wij * sf2 * (self.kernel.correlation(r2) + trend);
                let factor = 0.5 * wij * sf2 * self.kernel.length_scale_factor(r2);
                for (dim, g) in grad.iter_mut().take(self.d).enumerate() {
                    *g += factor * ((x[i][dim] - x[j][dim]) / ell[dim]).powi(2);
                }
            }
        }
        if self.members.iter().all(|m| m.len() == 1) {
            // Nothing pooled: ∂K/∂log σn² = σn² I.
            grad[self.d + 1] = 0.5 * sn2 * w.diagonal().sum();
        } else {
            let h = 1e-5;
            let noise_lml = |t: f64| {
                self.fit_at(&ell, sf2, split_noise(t), &warp)
                    .map(|(_, _, l)| l)
            };
            grad[self.d + 1] = -(noise_lml(theta[self.d + 1] + h)?
                - noise_lml(theta[self.d + 1] - h)?)
                / (2.0 * h);
        }
        for k in self.d + 2..theta.len() {
            let h = 1e-5;
            let warped_lml = |t: f64| {
                let mut moved = theta.to_vec();
                moved[k] = t;
                self.fit_at(&ell, sf2, sn2, &split_warp(&moved, self.d))
                    .map(|(_, _, l)| l)
            };
            grad[k] = -(warped_lml(theta[k] + h)? - warped_lml(theta[k] - h)?) / (2.0 * h);
        }
        let (log_prior, prior_grad) = Self::log_prior(theta, self.d, prior);
        for (g, p) in grad.iter_mut().zip(prior_grad) {
            *g -= p;
        }
        let cost = -lml - log_prior;
        cost.is_finite().then_some((cost, grad))
    }
}

pub(super) fn minimise(data: &Data, prior: &HyperPrior, init: Vec<f64>) -> Option<Vec<f64>> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7);
    let objective = Objective {
        data,
        prior,
        last: RefCell::new(None),
    };
    let result = Executor::new(objective, solver)
        .configure(|s| s.param(init).max_iters(60))
        .run()
        .ok()?;
    result.state().best_param.clone()
}

/// The fit's objective for argmin. The line search asks for the cost and then the gradient at the
/// same point, and both come from one factorisation: the last point's pair is kept.
pub(super) struct Objective<'a> {
    data: &'a Data,
    prior: &'a HyperPrior,
    #[allow(clippy::type_complexity)]
    last: RefCell<Option<(Vec<f64>, Option<(f64, Vec<f64>)>)>>,
}

impl Objective<'_> {
    pub(super) fn at(&self, theta: &[f64]) -> Option<(f64, Vec<f64>)> {
        let mut last = self.last.borrow_mut();
        if let Some((at, value)) = last.as_ref()
            && at.as_slice() == theta
        {
            return value.clone();
        }
        let value = self.data.cost_and_gradient(theta, self.prior);
        *last = Some((theta.to_vec(), value.clone()));
        value
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Vec<f64>) -> Result<f64, ArgminError> {
        // An unfactorisable covariance is a wall the line search backs away from.
        Ok(self.at(theta).map_or(1e300, |(c, _)| c))
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, ArgminError> {
        Ok(self
            .at(theta)
            .map_or_else(|| vec![0.0; theta.len()], |(_, g)| g))
    }
}

pub(super) fn split_noise(t: f64) -> f64 {
    t.clamp(-16.0, 3.0).exp()
}

/// The inputs' warps, `(a, b)` per input, from the log shapes after the noise (none when the fit
/// does not warp); clamped like the rest.
pub(super) fn split_warp(theta: &[f64], d: usize) -> Vec<(f64, f64)> {
    theta
        .get(d + 2..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|s| (s[0].clamp(-3.0, 3.0).exp(), s[1].clamp(-3.0, 3.0).exp()))
        .collect()
}

/// Log hyperparameters are clamped to a wide box so a wild line-search step cannot overflow.
pub(super) fn split(theta: &[f64], d: usize) -> (Vec<f64>, f64, f64) {
    let ell = theta[..d]
        .iter()
        .map(|t| t.clamp(-7.0, 5.0).exp())
        .collect();
    (
        ell,
        theta[d].clamp(-10.0, 6.0).exp(),
        split_noise(theta[d + 1]),
    )
}
