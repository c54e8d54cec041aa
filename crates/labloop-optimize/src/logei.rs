//! Expected improvement in log form (Ament et al., NeurIPS 2023, "Unexpected improvements to
//! expected improvement"): `log EI = log σ + log h(z)` with `h(z) = φ(z) + zΦ(z)`, computed so it
//! stays finite and keeps its order far below the incumbent, where plain EI underflows to zero and
//! every candidate ties.

use std::f64::consts::{PI, SQRT_2};

/// `log h(z)`, accurate for every finite z.
pub fn log_h(z: f64) -> f64 {
    if z > -10.0 {
        let pdf = (-0.5 * z * z).exp() / (2.0 * PI).sqrt();
        let cdf = 0.5 * libm::erfc(-z / SQRT_2);
        (pdf + z * cdf).ln()
    } else {
        // h(z) = φ(z)(1 − tR(t)), t = −z, with the asymptotic series of 1 − tR(t) (Mills ratio R),
        // accurate to ~1e-8 for t ≥ 10.
        let t2 = z * z;
        let series = 1.0 / t2 - 3.0 / t2.powi(2) + 15.0 / t2.powi(3) - 105.0 / t2.powi(4)
            + 945.0 / t2.powi(5);
        -0.5 * t2 - 0.5 * (2.0 * PI).ln() + series.ln()
    }
}

/// `log EI` of a point with posterior `mean` and standard deviation `sd` over the incumbent `best`
/// (maximising).
pub fn log_expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    if sd <= 0.0 {
        return if mean > best {
            (mean - best).ln()
        } else {
            f64::NEG_INFINITY
        };
    }
    sd.ln() + log_h((mean - best) / sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_closed_form_where_that_is_safe() {
        // h(0) = φ(0) = 1/√(2π); h(1) = φ(1) + Φ(1) = 0.24197072451914337 + 0.8413447460685429.
        assert!((log_h(0.0) - (1.0 / (2.0 * PI).sqrt()).ln()).abs() < 1e-12);
        assert!((log_h(1.0) - (0.24197072451914337f64 + 0.8413447460685429).ln()).abs() < 1e-12);
    }

    #[test]
    fn is_continuous_where_the_method_changes_and_finite_far_below() {
        let (below, above) = (log_h(-10.0 - 1e-9), log_h(-10.0 + 1e-9));
        assert!((below - above).abs() < 1e-6, "{below} vs {above}");
        let mut last = f64::INFINITY;
        for z in [-5.0, -20.0, -40.0, -100.0, -1000.0] {
            let v = log_h(z);
            assert!(v.is_finite() && v < last, "z = {z}: {v}");
            last = v;
        }
        // Plain EI underflows here; its log does not.
        let plain = (-0.5f64 * 40.0 * 40.0).exp();
        assert_eq!(plain, 0.0);
    }

    #[test]
    fn prefers_higher_means_and_wider_uncertainty() {
        assert!(log_expected_improvement(10.0, 1.0, 0.0) > log_expected_improvement(5.0, 1.0, 0.0));
        assert!(
            log_expected_improvement(-50.0, 2.0, 0.0) > log_expected_improvement(-50.0, 1.0, 0.0)
        );
        assert_eq!(log_expected_improvement(-1.0, 0.0, 0.0), f64::NEG_INFINITY);
    }
}
