//! Gaussian-process regression with per-observation noise and fitted hyperparameters.

use crate::OptimizeError;
use crate::kernel::{KernelKind, linear_trend, scaled_distance2, warp_point, warp_points};
use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// One measured point: inputs in the space's own units, the objective, and the variance of its
/// measurement noise (e.g. the predictor's σ², in objective units squared; 0 when exact).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Inputs.
    pub x: Vec<f64>,
    /// Observed objective.
    pub y: f64,
    /// Known noise variance of this observation.
    pub noise_var: f64,
}

/// How to fit.
#[derive(Clone, Debug, PartialEq)]
pub struct FitOptions {
    /// The kernel.
    pub kernel: KernelKind,
    /// Bounds of each input; inputs are scaled to the unit box with them.
    pub bounds: Vec<(f64, f64)>,
    /// L-BFGS starts (the first at the prior's centre, the rest drawn around it).
    pub restarts: usize,
    /// Seed for the random starts.
    pub seed: u64,
    /// Priors on the log hyperparameters (MAP fit).
    pub prior: HyperPrior,
}

/// Log-normal priors (centre, spread of the log) on the hyperparameters, in the scaled space
/// (inputs in the unit box, outputs standardised): the fit maximises likelihood × prior.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HyperPrior {
    /// Each length scale's.
    pub log_length: (f64, f64),
    /// The signal variance's.
    pub log_signal: (f64, f64),
    /// The fitted noise variance's (added to each observation's own).
    pub log_noise: (f64, f64),
    /// When set, the signal-variance prior is centred on the share of the observations' variance
    /// that their stated noise does not explain (at least this floor) instead of on all of it:
    /// [`HyperPrior::for_data`], [`SIGNAL_EXCESS_FLOOR`].
    pub signal_excess_floor: Option<f64>,
    /// The variance of a linear trend added to the kernel, as a share of the signal variance (0:
    /// none, a constant mean): [`TREND_SHARE`].
    #[serde(default)]
    pub trend_share: f64,
    /// Whether to fit a Kumaraswamy warp of each input ([`crate::kernel::warp_point`]), its two
    /// log shapes under a normal prior (centre 0, spread √0.75): [`INPUT_WARPING`].
    #[serde(default)]
    pub input_warping: bool,
}

/// [`HyperPrior::input_warping`] in campaigns: off. On the development half of `labloop bench
/// optimize --suite` (50 seeds) warping gave a mean normalised regret after rounds 1–4 of 0.338 /
/// 0.284 / 0.263 / 0.255 against 0.345 / 0.281 / 0.259 / 0.249, with three simulator variants more
/// than 2 s.e. below random against none, and took the suite 4.8× as long (the warp's shapes are
/// fitted by central differences); `--set input_warping=on` reproduces it.
pub const INPUT_WARPING: bool = false;

/// The prior (centre, spread) of each log shape of an input warp.
const LOG_WARP_PRIOR: (f64, f64) = (0.0, 0.866);

/// [`HyperPrior::trend_share`] of the batches' surrogate in campaigns: none (the recommendation's
/// is [`crate::RECOMMENDATION_TREND_SHARE`], none as well). On the development half of `labloop bench
/// optimize --suite` (50 seeds) a share of 0.25 in both gave a mean normalised regret after rounds 1–4 of
/// 0.333 / 0.293 / 0.279 / 0.269 against 0.345 / 0.281 / 0.259 / 0.249, with four landscapes more
/// than 2 s.e. below random (random batches recommended through the same fit improve with it, to
/// 0.399 / 0.342 / 0.300 / 0.293); `--set trend_share=0.25` (both surrogates) reproduces it.
pub const TREND_SHARE: f64 = 0.0;

/// [`HyperPrior::signal_excess_floor`] in campaigns: none, the signal prior is centred on all of
/// the outputs' variance. The alternative was meant for flat landscapes under noise, where the
/// stated noise explains most of what observations vary by and a fit on a few points may take
/// noise for signal (the simulator's batch-8 variants, whose recommendation worsens from round to
/// round). On the development half of `labloop bench optimize --suite` (50 seeds) a floor of 0.1
/// gave a mean normalised regret after rounds 1–4 of 0.349 / 0.286 / 0.275 / 0.259 against
/// 0.345 / 0.281 / 0.259 / 0.249, with four landscapes more than 2 s.e. below random against none
/// (simulator/6 worsened too: 0.60 / 0.81 / 1.04 / 0.96), so it stays off; `--set
/// signal_excess_floor=0.1` reproduces it.
pub const SIGNAL_EXCESS_FLOOR: Option<f64> = None;

impl Default for HyperPrior {
    /// Weak priors: they keep the fit sane with few points without pinning it when data are
    /// plentiful.
    fn default() -> Self {
        Self {
            log_length: (-0.7, 1.0),
            log_signal: (0.0, 1.5),
            log_noise: (-3.0, 2.0),
            signal_excess_floor: SIGNAL_EXCESS_FLOOR,
            trend_share: TREND_SHARE,
            input_warping: INPUT_WARPING,
        }
    }
}

impl HyperPrior {
    /// This prior for `data`: with [`HyperPrior::signal_excess_floor`], the signal variance's
    /// centre moves by the log of the share of the standardised outputs' variance (1) that the
    /// observations' stated noise does not explain, `max(1 − mean stated noise variance, floor)`.
    fn for_data(&self, data: &Data) -> Self {
        let Some(floor) = self.signal_excess_floor else {
            return *self;
        };
        let (sum, count) = data
            .members
            .iter()
            .flatten()
            .fold((0.0, 0usize), |(s, c), (_, noise)| (s + noise, c + 1));
        let stated = if count > 0 { sum / count as f64 } else { 0.0 };
        let share = (1.0 - stated).max(floor).min(1.0);
        Self {
            log_signal: (self.log_signal.0 + share.ln(), self.log_signal.1),
            ..*self
        }
    }
}

/// The smallest box holding every point: per input, (lowest, highest). Use it as
/// [`FitOptions::bounds`] for a discrete candidate set.
pub fn bounds_of(points: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let d = points.first().map_or(0, Vec::len);
    (0..d)
        .map(|k| {
            points
                .iter()
                .map(|p| p[k])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                })
        })
        .collect()
}

/// Fitted hyperparameters, in the scaled space (inputs in the unit box, outputs standardised).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    /// One length scale per input.
    pub length_scales: Vec<f64>,
    /// Signal variance.
    pub signal_var: f64,
    /// Noise variance added to every observation's own.
    pub noise_var: f64,
    /// A linear trend's variance as a share of the signal variance ([`HyperPrior::trend_share`]).
    #[serde(default)]
    pub trend_share: f64,
    /// Each input's warp `(a, b)` ([`crate::kernel::warp_point`]); empty when not warped.
    #[serde(default)]
    pub warp: Vec<(f64, f64)>,
    /// Log marginal likelihood at these values.
    pub log_marginal_likelihood: f64,
}

impl Hyperparameters {
    /// The log hyperparameters the fit works in: log length scales, log signal and noise variance.
    fn log_theta(&self) -> Vec<f64> {
        self.length_scales
            .iter()
            .map(|l| l.ln())
            .chain([self.signal_var.ln(), self.noise_var.ln()])
            .chain(self.warp.iter().flat_map(|(a, b)| [a.ln(), b.ln()]))
            .collect()
    }
}

impl Observation {
    /// Refuses an observation (the `index`-th) of the wrong dimension or with a value that is not a
    /// finite number.
    pub(crate) fn check(&self, index: usize, d: usize) -> Result<(), OptimizeError> {
        if self.x.len() != d {
            return Err(OptimizeError::Dimension {
                index,
                got: self.x.len(),
                expected: d,
            });
        }
        if self.x.iter().any(|v| !v.is_finite()) {
            return Err(OptimizeError::NotFinite { index, what: "x" });
        }
        if !self.y.is_finite() {
            return Err(OptimizeError::NotFinite { index, what: "y" });
        }
        if !(self.noise_var.is_finite() && self.noise_var >= 0.0) {
            return Err(OptimizeError::NotFinite {
                index,
                what: "noise variance",
            });
        }
        Ok(())
    }

    /// (y, known noise variance) in the standardised output units of a fit.
    pub(crate) fn standardised(&self, y_mean: f64, y_std: f64) -> (f64, f64) {
        ((self.y - y_mean) / y_std, self.noise_var / (y_std * y_std))
    }
}

/// A Gaussian process conditioned on observations.
#[derive(Clone, Debug)]
pub struct GaussianProcess {
    pub(crate) kernel: KernelKind,
    pub(crate) bounds: Vec<(f64, f64)>,
    /// Distinct inputs, scaled to the unit box.
    pub(crate) x: Vec<Vec<f64>>,
    /// Per distinct input: (standardised y, standardised known noise variance) of each observation.
    pub(crate) members: Vec<Vec<(f64, f64)>>,
    pub(crate) y_mean: f64,
    pub(crate) y_std: f64,
    pub(crate) hyper: Hyperparameters,
    pub(crate) chol: Cholesky<f64, Dyn>,
    pub(crate) alpha: DVector<f64>,
}

/// Distinct inputs the hyperparameters are fitted on at most (see [`GaussianProcess::fit`]).
pub const MAX_FIT_POINTS: usize = 64;

impl GaussianProcess {
    /// Fits hyperparameters by maximising the log marginal likelihood (plus priors), then conditions.
    ///
    /// With more than [`MAX_FIT_POINTS`] distinct inputs, the hyperparameters are fitted on a seeded
    /// subset of that many (their estimates need far fewer points than the posterior does); the
    /// posterior is always conditioned on every observation.
    pub fn fit(observations: &[Observation], options: &FitOptions) -> Result<Self, OptimizeError> {
        let data = Data::new(observations, options)?;
        let subset = (data.n() > MAX_FIT_POINTS).then(|| data.subset(MAX_FIT_POINTS, options.seed));
        let fit_data = subset.as_ref().unwrap_or(&data);
        let d = options.bounds.len();
        let prior = &options.prior.for_data(&data);
        let warp_shapes = if prior.input_warping { 2 * d } else { 0 };
        let prior_centre: Vec<f64> = std::iter::repeat_n(prior.log_length.0, d)
            .chain([prior.log_signal.0, prior.log_noise.0])
            .chain(std::iter::repeat_n(LOG_WARP_PRIOR.0, warp_shapes))
            .collect();
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut best: Option<(f64, Vec<f64>)> = None;
        for start in 0..options.restarts.max(1) {
            let init: Vec<f64> = if start == 0 {
                prior_centre.clone()
            } else {
                prior_centre
                    .iter()
                    .map(|c| c + rng.random_range(-1.0..1.0))
                    .collect()
            };
            let candidate = minimise(fit_data, prior, init.clone()).unwrap_or(init);
            if let Some(cost) = fit_data
                .cost_and_gradient(&candidate, prior)
                .map(|(c, _)| c)
                && best.as_ref().is_none_or(|(b, _)| cost < *b)
            {
                best = Some((cost, candidate));
            }
        }
        let theta = best.map(|(_, t)| t).unwrap_or(prior_centre);
        Self::condition(data, options, &theta)
    }

    /// Conditions on observations with given hyperparameters, without refitting them (for one
    /// observation added to a fitted process, [`GaussianProcess::updated`] is cheaper).
    pub fn with_hyperparameters(
        observations: &[Observation],
        options: &FitOptions,
        hyper: &Hyperparameters,
    ) -> Result<Self, OptimizeError> {
        let data = Data {
            trend_share: hyper.trend_share,
            ..Data::new(observations, options)?
        };
        Self::condition(data, options, &hyper.log_theta())
    }

    fn condition(data: Data, options: &FitOptions, theta: &[f64]) -> Result<Self, OptimizeError> {
        let (ell, sf2, sn2) = split(theta, data.d);
        let warp = split_warp(theta, data.d);
        let (chol, alpha, lml) = data
            .fit_at(&ell, sf2, sn2, &warp)
            .ok_or(OptimizeError::NotPositiveDefinite)?;
        Ok(Self {
            kernel: options.kernel,
            bounds: options.bounds.clone(),
            x: data.x,
            members: data.members,
            y_mean: data.y_mean,
            y_std: data.y_std,
            hyper: Hyperparameters {
                length_scales: ell,
                signal_var: sf2,
                noise_var: sn2,
                trend_share: data.trend_share,
                warp,
                log_marginal_likelihood: lml,
            },
            chol,
            alpha,
        })
    }

    /// This process's data (inputs, members, normalisation), as fitting sees them.
    fn data(&self) -> Data {
        Data {
            kernel: self.kernel,
            d: self.bounds.len(),
            x: self.x.clone(),
            members: self.members.clone(),
            y_mean: self.y_mean,
            y_std: self.y_std,
            trend_share: self.hyper.trend_share,
        }
    }

    /// Conditions again on this process's data with its hyperparameters: after its data changed in
    /// place.
    pub(crate) fn reconditioned(&self) -> Result<Self, OptimizeError> {
        let options = FitOptions {
            kernel: self.kernel,
            bounds: self.bounds.clone(),
            restarts: 0,
            seed: 0,
            prior: HyperPrior::default(),
        };
        Self::condition(self.data(), &options, &self.hyper.log_theta())
    }

    /// Each distinct input's pooled standardised value: what `alpha` solves for.
    pub(crate) fn pooled_values(&self) -> DVector<f64> {
        self.data().pooled(self.hyper.noise_var).y
    }

    /// The log marginal likelihood of this process's data under its hyperparameters, given its
    /// factor and weights (replicates' within-group part included).
    pub(crate) fn log_marginal_likelihood_now(&self) -> f64 {
        let pooled = self.data().pooled(self.hyper.noise_var);
        -0.5 * pooled.y.dot(&self.alpha)
            - log_det_half(&self.chol)
            - 0.5 * self.x.len() as f64 * (2.0 * std::f64::consts::PI).ln()
            + pooled.log_within
    }

    /// The fitted hyperparameters.
    pub fn hyperparameters(&self) -> &Hyperparameters {
        &self.hyper
    }

    /// Number of distinct inputs conditioned on (replicates are pooled).
    pub fn observations(&self) -> usize {
        self.x.len()
    }

    /// Signal covariance between two sets of points already scaled to the unit box.
    pub(crate) fn signal_covariance(&self, a: &[Vec<f64>], b: &[Vec<f64>]) -> DMatrix<f64> {
        let h = &self.hyper;
        let (a, b) = (warp_points(a, &h.warp), warp_points(b, &h.warp));
        DMatrix::from_fn(a.len(), b.len(), |i, j| {
            signal_kernel(
                self.kernel,
                &a[i],
                &b[j],
                &h.length_scales,
                h.signal_var,
                h.trend_share,
            )
        })
    }

    /// The signal's prior variance at a scaled point (standardised units).
    pub(crate) fn prior_variance(&self, x: &[f64]) -> f64 {
        let h = &self.hyper;
        let w = warp_point(x, &h.warp);
        signal_kernel(
            self.kernel,
            &w,
            &w,
            &h.length_scales,
            h.signal_var,
            h.trend_share,
        )
    }

    /// The points scaled, the standardised posterior mean there, and `L⁻¹ K(X, points)`.
    fn condition_on(&self, points: &[Vec<f64>]) -> (Vec<Vec<f64>>, DVector<f64>, DMatrix<f64>) {
        let scaled: Vec<Vec<f64>> = points.iter().map(|p| scale(p, &self.bounds)).collect();
        let ks = self.signal_covariance(&self.x, &scaled);
        let mean = ks.transpose() * &self.alpha;
        let v = self
            .chol
            .l()
            .solve_lower_triangular(&ks)
            .expect("L is invertible");
        (scaled, mean, v)
    }

    /// Posterior mean and variance of the latent objective at each point, in objective units.
    pub fn predict(&self, points: &[Vec<f64>]) -> Vec<(f64, f64)> {
        let (scaled, mean, v) = self.condition_on(points);
        (0..points.len())
            .map(|j| {
                let prior = self.prior_variance(&scaled[j]);
                let var = (prior - v.column(j).norm_squared()).max(0.0);
                (
                    self.y_mean + self.y_std * mean[j],
                    var * self.y_std * self.y_std,
                )
            })
            .collect()
    }

    /// Posterior means and the full posterior covariance at the points, in objective units.
    pub fn posterior(&self, points: &[Vec<f64>]) -> (Vec<f64>, DMatrix<f64>) {
        let (scaled, mean, v) = self.condition_on(points);
        let cov = (self.signal_covariance(&scaled, &scaled) - v.transpose() * v)
            * (self.y_std * self.y_std);
        (
            mean.iter().map(|m| self.y_mean + self.y_std * m).collect(),
            cov,
        )
    }
}

mod fit;

use fit::{Data, minimise, split, split_warp};

/// A point scaled to the unit box of `bounds` (a degenerate bound maps to 0).
pub(crate) fn scale(x: &[f64], bounds: &[(f64, f64)]) -> Vec<f64> {
    x.iter()
        .zip(bounds)
        .map(|(v, (lo, hi))| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 })
        .collect()
}

/// The signal's covariance between two scaled points: the stationary kernel plus the linear trend,
/// both scaled by the signal variance.
pub(crate) fn signal_kernel(
    kernel: KernelKind,
    a: &[f64],
    b: &[f64],
    length_scales: &[f64],
    signal_var: f64,
    trend_share: f64,
) -> f64 {
    let stationary = kernel.correlation(scaled_distance2(a, b, length_scales));
    let trend = if trend_share > 0.0 {
        trend_share * linear_trend(a, b)
    } else {
        0.0
    };
    signal_var * (stationary + trend)
}

fn log_det_half(chol: &Cholesky<f64, Dyn>) -> f64 {
    chol.l_dirty().diagonal().iter().map(|v| v.ln()).sum()
}

/// Cholesky with growing jitter on the diagonal when the matrix is numerically indefinite.
fn robust_cholesky(k: DMatrix<f64>) -> Result<Cholesky<f64, Dyn>, OptimizeError> {
    let scale = k.diagonal().mean().max(1e-12);
    for jitter in [0.0, 1e-10, 1e-8, 1e-6, 1e-4] {
        let mut m = k.clone();
        for i in 0..m.nrows() {
            m[(i, i)] += jitter * scale;
        }
        if let Some(c) = m.cholesky() {
            return Ok(c);
        }
    }
    Err(OptimizeError::NotPositiveDefinite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(d: usize) -> FitOptions {
        FitOptions {
            kernel: KernelKind::Matern52,
            bounds: vec![(0.0, 1.0); d],
            restarts: 3,
            seed: 1,
            prior: HyperPrior::default(),
        }
    }

    /// One-input hyperparameters, for conditioning without a fit.
    fn fixed(length_scale: f64, signal_var: f64, noise_var: f64) -> Hyperparameters {
        Hyperparameters {
            length_scales: vec![length_scale],
            signal_var,
            noise_var,
            trend_share: 0.0,
            warp: Vec::new(),
            log_marginal_likelihood: 0.0,
        }
    }

    fn obs(x: f64, y: f64, noise_var: f64) -> Observation {
        Observation {
            x: vec![x],
            y,
            noise_var,
        }
    }

    #[test]
    fn a_trend_carries_a_slope_beyond_the_data() {
        // A line measured on [0, 0.5] of the box [0, 1]: with a trend in the kernel the posterior
        // holds up towards x = 1; a constant mean pulls the far edge back towards the average.
        let data: Vec<Observation> = (0..6)
            .map(|i| {
                let x = 0.1 * i as f64;
                obs(x, 1000.0 + 400.0 * x, 1.0)
            })
            .collect();
        let far_edge = |trend_share: f64| {
            let hyper = Hyperparameters {
                trend_share,
                ..fixed(0.2, 1.0, 1e-6)
            };
            let gp = GaussianProcess::with_hyperparameters(&data, &options(1), &hyper).unwrap();
            assert_eq!(gp.hyperparameters().trend_share, trend_share);
            gp.predict(&[vec![1.0]])[0]
        };
        let (flat, flat_var) = far_edge(0.0);
        let (trend, trend_var) = far_edge(1.0);
        // (Measured: 1108 and 1190, the line's last point 1200 and its extension 1400.)
        assert!(flat < 1150.0, "constant mean {flat}");
        assert!(
            trend > 1150.0 && trend > flat + 50.0,
            "with a trend {trend}"
        );
        // The trend's own variance adds to the prior variance out there.
        assert!(trend_var > flat_var, "{trend_var} {flat_var}");
    }

    #[test]
    fn interpolates_a_smooth_function() {
        let f = |x: f64| (6.0 * x).sin() * 100.0 + 900.0;
        let data: Vec<Observation> = (0..15)
            .map(|i| i as f64 / 14.0)
            .map(|x| obs(x, f(x), 1.0))
            .collect();
        let gp = GaussianProcess::fit(&data, &options(1)).unwrap();
        for x in [0.13, 0.51, 0.77] {
            let (m, v) = gp.predict(&[vec![x]])[0];
            assert!((m - f(x)).abs() < 5.0, "at {x}: {m} vs {}", f(x));
            assert!(v.sqrt() < 10.0);
        }
        // Far outside the data the uncertainty returns towards the prior.
        let (_, far) = gp.predict(&[vec![3.0]])[0];
        assert!(far.sqrt() > 30.0);
    }

    #[test]
    fn the_signal_prior_can_follow_what_the_stated_noise_leaves_unexplained() {
        // Outputs spread by ±100 around 1 000, each stated with σ 90: the noise explains 81 % of
        // their variance, so the signal prior's centre moves down by ln 0.19; a floor holds it.
        let data: Vec<Observation> = (0..8)
            .map(|i| {
                obs(
                    i as f64 / 7.0,
                    1000.0 + if i % 2 == 0 { 100.0 } else { -100.0 },
                    8100.0,
                )
            })
            .collect();
        let shifted = |floor: Option<f64>| {
            let prior = HyperPrior {
                signal_excess_floor: floor,
                ..HyperPrior::default()
            };
            let fit = FitOptions {
                prior,
                ..options(1)
            };
            prior
                .for_data(&Data::new(&data, &fit).unwrap())
                .log_signal
                .0
                - prior.log_signal.0
        };
        assert_eq!(shifted(None), 0.0);
        assert!((shifted(Some(0.1)) - 0.19f64.ln()).abs() < 1e-9);
        assert!((shifted(Some(0.5)) - 0.5f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn noisy_observations_count_for_less() {
        // Two conflicting observations at one point: the precise one dominates.
        let data = vec![
            obs(0.5, 1000.0, 1.0),
            obs(0.5, 600.0, 10_000.0),
            obs(0.0, 800.0, 100.0),
            obs(1.0, 800.0, 100.0),
        ];
        let hyper = fixed(0.3, 1.0, 1e-6);
        let gp = GaussianProcess::with_hyperparameters(&data, &options(1), &hyper).unwrap();
        let (m, _) = gp.predict(&[vec![0.5]])[0];
        assert!(m > 950.0, "{m}");
    }

    #[test]
    fn a_less_certain_prediction_moves_the_posterior_less() {
        // The predictor's σ becomes the observation's noise: the same predicted life, once with a
        // tight σ and once with a loose one, pulls the posterior mean towards it by less when loose.
        let prior = [obs(0.0, 800.0, 100.0), obs(1.0, 800.0, 100.0)];
        let hyper = fixed(0.3, 1.0, 1e-6);
        let mean_at_half = |extra: Option<Observation>| {
            let data: Vec<Observation> = prior.iter().cloned().chain(extra).collect();
            let gp = GaussianProcess::with_hyperparameters(&data, &options(1), &hyper).unwrap();
            gp.predict(&[vec![0.5]])[0].0
        };
        let before = mean_at_half(None);
        let certain = mean_at_half(Some(obs(0.5, 1200.0, 30.0f64.powi(2)))) - before;
        let uncertain = mean_at_half(Some(obs(0.5, 1200.0, 400.0f64.powi(2)))) - before;
        assert!(certain > 0.0 && uncertain > 0.0, "{certain} {uncertain}");
        assert!(
            uncertain < 0.5 * certain,
            "σ 400 moved {uncertain}, σ 30 moved {certain}"
        );
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let data: Vec<Observation> = (0..8)
            .map(|i| Observation {
                x: vec![i as f64 / 7.0, (i * 3 % 8) as f64 / 7.0],
                y: (i as f64).sin(),
                noise_var: 0.01,
            })
            .collect();
        // Without replicates (analytic noise gradient) and with (pooled, noise by central difference).
        let mut replicated = data.clone();
        replicated.extend(data[..3].iter().map(|o| Observation {
            y: o.y + 0.3,
            noise_var: 0.02,
            ..o.clone()
        }));
        // And with a linear trend in the kernel, which scales with the signal variance, and with
        // the inputs warped (two log shapes per input after the noise).
        let plain = vec![-0.5, -1.0, 0.2, -3.0];
        let warped = [plain.clone(), vec![0.3, -0.2, 0.1, 0.4]].concat();
        for data in [data, replicated] {
            for trend_share in [0.0, 0.5] {
                check_gradient(&data, trend_share, &plain);
            }
            check_gradient(&data, 0.0, &warped);
        }
    }

    fn check_gradient(data: &[Observation], trend_share: f64, theta: &[f64]) {
        let d = Data {
            trend_share,
            ..Data::new(data, &options(2)).unwrap()
        };
        let theta = theta.to_vec();
        let prior = HyperPrior::default();
        let (_, grad) = d.cost_and_gradient(&theta, &prior).unwrap();
        for k in 0..theta.len() {
            let h = 1e-5;
            let mut up = theta.clone();
            up[k] += h;
            let mut down = theta.clone();
            down[k] -= h;
            let numeric = (d.cost_and_gradient(&up, &prior).unwrap().0
                - d.cost_and_gradient(&down, &prior).unwrap().0)
                / (2.0 * h);
            assert!(
                (numeric - grad[k]).abs() < 1e-4 * (1.0 + numeric.abs()),
                "dim {k}: {numeric} vs {}",
                grad[k]
            );
        }
    }

    #[test]
    fn fitting_beats_the_starting_point() {
        let data: Vec<Observation> = (0..20)
            .map(|i| i as f64 / 19.0)
            .map(|x| obs(x, (20.0 * x).sin(), 1e-4))
            .collect();
        let opts = options(1);
        let fitted = GaussianProcess::fit(&data, &opts).unwrap();
        let start = Hyperparameters {
            length_scales: vec![0.5],
            signal_var: 1.0,
            noise_var: 0.05,
            trend_share: 0.0,
            warp: Vec::new(),
            log_marginal_likelihood: 0.0,
        };
        let unfitted = GaussianProcess::with_hyperparameters(&data, &opts, &start).unwrap();
        assert!(
            fitted.hyperparameters().log_marginal_likelihood
                > unfitted.hyperparameters().log_marginal_likelihood
        );
        // A wiggly function needs a short length scale.
        assert!(fitted.hyperparameters().length_scales[0] < 0.3);
    }

    #[test]
    fn matches_an_independent_numpy_computation() {
        // numpy, same pipeline (y standardised by its mean and population sd, noise scaled alike):
        //   x = [.1 .5 .9], y = [1 3 2], noise = [.1 .2 .1]; Matérn-5/2, ℓ = 0.3, σf² = 1, σn² = 0.01
        //   K = k(X, X) + diag(σn² + noise / sd²); mean(0.3) = ȳ + sd k*ᵀ K⁻¹ (y − ȳ)/sd
        //   → mean 1.9321034322637338, variance 0.21923484364852897, LML −4.73422576306424
        let data = vec![obs(0.1, 1.0, 0.1), obs(0.5, 3.0, 0.2), obs(0.9, 2.0, 0.1)];
        let hyper = fixed(0.3, 1.0, 0.01);
        let gp = GaussianProcess::with_hyperparameters(&data, &options(1), &hyper).unwrap();
        let (mean, var) = gp.predict(&[vec![0.3]])[0];
        assert!((mean - 1.9321034322637338).abs() < 1e-10, "{mean}");
        assert!((var - 0.21923484364852897).abs() < 1e-10, "{var}");
        assert!((gp.hyperparameters().log_marginal_likelihood - -4.73422576306424).abs() < 1e-9);
    }

    #[test]
    fn pooling_replicates_is_exact() {
        // numpy on all five observations, no pooling (same pipeline as above):
        //   x = [.1 .1 .5 .9 .9], y = [1 1.4 3 2 2.2], noise = [.1 .3 .2 .1 .1]
        //   → mean(0.3) 1.9197877771460914, variance 0.16594907363503372, LML −6.658179430028643
        let data = vec![
            obs(0.1, 1.0, 0.1),
            obs(0.1, 1.4, 0.3),
            obs(0.5, 3.0, 0.2),
            obs(0.9, 2.0, 0.1),
            obs(0.9, 2.2, 0.1),
        ];
        let hyper = fixed(0.3, 1.0, 0.01);
        let gp = GaussianProcess::with_hyperparameters(&data, &options(1), &hyper).unwrap();
        assert_eq!(gp.observations(), 3, "three distinct inputs");
        let (mean, var) = gp.predict(&[vec![0.3]])[0];
        assert!((mean - 1.9197877771460914).abs() < 1e-10, "{mean}");
        assert!((var - 0.16594907363503372).abs() < 1e-10, "{var}");
        assert!((gp.hyperparameters().log_marginal_likelihood - -6.658179430028643).abs() < 1e-9);
    }

    #[test]
    fn bounds_hold_every_point() {
        assert_eq!(
            bounds_of(&[vec![1.0, 5.0], vec![3.0, 2.0], vec![2.0, 4.0]]),
            vec![(1.0, 3.0), (2.0, 5.0)]
        );
        assert!(bounds_of(&[]).is_empty());
    }

    #[test]
    fn wrong_dimensions_are_named() {
        let err = GaussianProcess::fit(
            &[Observation {
                x: vec![1.0, 2.0],
                y: 1.0,
                noise_var: 0.0,
            }],
            &options(1),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "observation 0 has 2 inputs, expected 1");
    }

    #[test]
    fn posterior_covariance_agrees_with_pointwise_variance() {
        let data: Vec<Observation> = (0..6)
            .map(|i| obs(i as f64 / 5.0, i as f64, 0.01))
            .collect();
        let gp = GaussianProcess::fit(&data, &options(1)).unwrap();
        let pts = vec![vec![0.1], vec![0.45], vec![0.9]];
        let (means, cov) = gp.posterior(&pts);
        for (j, (m, v)) in gp.predict(&pts).into_iter().enumerate() {
            assert!((means[j] - m).abs() < 1e-9);
            assert!((cov[(j, j)] - v).abs() < 1e-9);
        }
    }
}
