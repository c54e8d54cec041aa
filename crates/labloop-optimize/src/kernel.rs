//! Stationary kernels with automatic relevance determination.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Which covariance function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// Matérn ν = 5/2: twice differentiable, the usual default for physical responses.
    #[default]
    Matern52,
    /// Squared exponential (RBF): infinitely smooth.
    Rbf,
}

impl KernelKind {
    /// The correlation at scaled squared distance `r2 = Σ (Δx_d / ℓ_d)²`.
    pub fn correlation(self, r2: f64) -> f64 {
        match self {
            Self::Rbf => (-0.5 * r2).exp(),
            Self::Matern52 => {
                let s = (5.0 * r2).sqrt();
                (1.0 + s + 5.0 * r2 / 3.0) * (-s).exp()
            }
        }
    }

    /// `∂k/∂(log ℓ_d)` divided by `(Δx_d / ℓ_d)²`, which is the same for every dimension.
    pub fn length_scale_factor(self, r2: f64) -> f64 {
        match self {
            Self::Rbf => (-0.5 * r2).exp(),
            Self::Matern52 => {
                let s = (5.0 * r2).sqrt();
                5.0 / 3.0 * (1.0 + s) * (-s).exp()
            }
        }
    }
}

/// Scaled squared distance between two points.
pub fn scaled_distance2(a: &[f64], b: &[f64], length_scales: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(length_scales)
        .map(|((x, y), l)| ((x - y) / l).powi(2))
        .sum()
}

/// A linear trend's covariance between two points scaled to the unit box: `Σ_d (a_d − ½)(b_d − ½)`
/// scaled by `12 / d`, so that its variance averages 1 over the box. Added to a stationary kernel
/// (see [`crate::gp::HyperPrior::trend_share`]) it is a Gaussian prior on the slopes of a linear
/// mean: the posterior can follow a trend out to the box's edges where no point was measured.
pub fn linear_trend(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    12.0 / a.len() as f64
        * a.iter()
            .zip(b)
            .map(|(x, y)| (x - 0.5) * (y - 0.5))
            .sum::<f64>()
}

/// The Kumaraswamy CDF `1 − (1 − x^a)^b` of each coordinate of a point in the unit box, with one
/// `(a, b)` per input: a monotone warp of the inputs that lets a stationary kernel model a response
/// that changes faster at one end of an input's range (input warping, Snoek et al. 2014). Empty
/// `warp`: the point as it is, without a copy.
pub fn warp_point<'a>(point: &'a [f64], warp: &[(f64, f64)]) -> Cow<'a, [f64]> {
    if warp.is_empty() {
        return Cow::Borrowed(point);
    }
    point
        .iter()
        .zip(warp)
        .map(|(x, (a, b))| 1.0 - (1.0 - x.clamp(0.0, 1.0).powf(*a)).powf(*b))
        .collect()
}

/// [`warp_point`] of each point; unwarped (empty `warp`), the points as they are, without a copy.
pub fn warp_points<'a>(points: &'a [Vec<f64>], warp: &[(f64, f64)]) -> Cow<'a, [Vec<f64>]> {
    if warp.is_empty() {
        Cow::Borrowed(points)
    } else {
        points
            .iter()
            .map(|p| warp_point(p, warp).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warp_is_monotone_and_keeps_the_box() {
        // a = b = 1 is the identity; any shapes keep 0 and 1 and the order of points.
        let p = [0.0, 0.3, 1.0];
        let identity = warp_point(&p, &[(1.0, 1.0); 3]);
        assert!(identity.iter().zip(p).all(|(w, x)| (w - x).abs() < 1e-12));
        assert_eq!(
            warp_points(&[p.to_vec()], &[]).into_owned(),
            vec![p.to_vec()]
        );
        for shape in [(0.4, 2.5), (3.0, 0.5)] {
            let warped: Vec<f64> = (0..=10)
                .map(|i| warp_point(&[i as f64 / 10.0], &[shape])[0])
                .collect();
            assert!(warped[0].abs() < 1e-12 && (warped[10] - 1.0).abs() < 1e-12);
            assert!(
                warped.windows(2).all(|w| w[1] > w[0]),
                "{shape:?} {warped:?}"
            );
        }
    }

    #[test]
    fn correlation_is_one_at_zero_and_decays() {
        for k in [KernelKind::Rbf, KernelKind::Matern52] {
            assert!((k.correlation(0.0) - 1.0).abs() < 1e-12);
            assert!(k.correlation(1.0) < k.correlation(0.5));
            assert!(k.correlation(100.0) < 1e-3);
        }
    }

    #[test]
    fn length_scale_derivative_matches_finite_differences() {
        // k(r2(ℓ)) with r2 = (Δ/ℓ)²; d/d log ℓ by central differences.
        let delta: f64 = 0.7;
        for k in [KernelKind::Rbf, KernelKind::Matern52] {
            let f = |log_l: f64| k.correlation((delta / log_l.exp()).powi(2));
            let log_l = 0.3f64.ln();
            let h = 1e-6;
            let numeric = (f(log_l + h) - f(log_l - h)) / (2.0 * h);
            let r2 = (delta / 0.3).powi(2);
            let analytic = k.length_scale_factor(r2) * r2;
            assert!(
                (numeric - analytic).abs() < 1e-6,
                "{k:?} {numeric} {analytic}"
            );
        }
    }
}
