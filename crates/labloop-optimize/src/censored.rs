//! A censored observation: a cell still alive when its test stopped has a life of *at least* the
//! cycles it ran. With an estimate `N(μ, σ²)` of its life (its early prediction), what is known is that
//! estimate cut below the bound: a normal truncated to `[bound, ∞)`, whose mean and standard deviation
//! stand in for the missing measurement.

use std::f64::consts::{PI, SQRT_2};

/// Mean and standard deviation of `N(mean, sd²)` truncated to `[bound, ∞)`. Exact for moderate
/// `α = (bound − mean)/sd`; for `α > 8`, where the normal's tail underflows, the inverse Mills ratio
/// takes its asymptotic form. A zero `sd` gives `max(mean, bound)` with no spread.
pub fn lower_bounded(mean: f64, sd: f64, bound: f64) -> (f64, f64) {
    if sd.is_nan() || sd <= 0.0 {
        return (mean.max(bound), 0.0);
    }
    let alpha = (bound - mean) / sd;
    // λ(α) = φ(α) / (1 − Φ(α)), the inverse Mills ratio.
    let lambda = if alpha > 8.0 {
        alpha + 1.0 / alpha - 2.0 / alpha.powi(3)
    } else {
        let tail = 0.5 * libm::erfc(alpha / SQRT_2);
        (-0.5 * alpha * alpha).exp() / (2.0 * PI).sqrt() / tail
    };
    let variance = sd * sd * (1.0 + alpha * lambda - lambda * lambda);
    ((mean + sd * lambda).max(bound), variance.max(0.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_below_the_bound_changes_nothing() {
        let (m, s) = lower_bounded(1000.0, 50.0, 400.0);
        assert!(
            (m - 1000.0).abs() < 1e-6 && (s - 50.0).abs() < 1e-6,
            "{m} {s}"
        );
    }

    #[test]
    fn at_the_bound_the_half_normal() {
        let (m, s) = lower_bounded(400.0, 100.0, 400.0);
        assert!(
            (m - (400.0 + 100.0 * (2.0 / PI).sqrt())).abs() < 1e-9,
            "{m}"
        );
        assert!((s - 100.0 * (1.0 - 2.0 / PI).sqrt()).abs() < 1e-9, "{s}");
    }

    #[test]
    fn an_estimate_far_under_the_bound_lands_just_above_it() {
        for alpha in [7.9, 8.1, 20.0, 1e3] {
            let (m, s) = lower_bounded(400.0 - alpha * 10.0, 10.0, 400.0);
            assert!(
                m >= 400.0 && m < 400.0 + 10.0 / alpha * 1.1 + 1e-9,
                "{alpha}: {m}"
            );
            assert!(
                s.is_finite() && s < 10.0 / alpha * 1.1 + 1e-9,
                "{alpha}: {s}"
            );
        }
    }
}
