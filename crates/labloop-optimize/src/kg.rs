//! The knowledge gradient over a discrete candidate set (Frazier, Powell & Dayanik 2009): the
//! expected gain, from measuring one candidate once more, in the value of the recommendation made
//! afterwards. Measuring candidate `x` with noise variance `s²` moves every posterior mean along one
//! standard normal `Z`: `μᵢ' = μᵢ + bᵢ Z` with `bᵢ = Σᵢₓ / √(Σₓₓ + s²)`, and shrinks every variance
//! to `Σᵢᵢ − bᵢ²`, which does not depend on `Z`. The value after the measurement is the best
//! `μᵢ' − k σᵢ'` (`k` = [`crate::KNOWLEDGE_GRADIENT_SIGMAS`] in campaigns, the conservative rule of
//! [`crate::rank`]; `k = 0` is the textbook knowledge gradient), a maximum of lines in `Z` whose
//! expectation is exact.

use nalgebra::DMatrix;
use std::f64::consts::{PI, SQRT_2};

fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

fn cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / SQRT_2)
}

/// `E[maxᵢ (aᵢ + bᵢ Z)]` for a standard normal `Z`, exactly: the upper envelope of the lines, then
/// each segment's share of the normal.
pub fn expected_max_of_lines(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "one slope per intercept");
    let mut order: Vec<usize> = (0..a.len()).collect();
    order.sort_by(|&i, &j| b[i].total_cmp(&b[j]).then(a[i].total_cmp(&a[j])));
    // The envelope from Z = −∞ upwards: lines by increasing slope, each with the Z where it
    // becomes the maximum.
    let mut envelope: Vec<(usize, f64)> = Vec::with_capacity(a.len());
    for (position, &j) in order.iter().enumerate() {
        // Of equal slopes only the highest line matters: it comes last in the order.
        if order.get(position + 1).is_some_and(|&next| b[next] == b[j]) {
            continue;
        }
        loop {
            let Some(&(i, from)) = envelope.last() else {
                envelope.push((j, f64::NEG_INFINITY));
                break;
            };
            let crossing = (a[i] - a[j]) / (b[j] - b[i]);
            if crossing <= from {
                envelope.pop();
            } else {
                envelope.push((j, crossing));
                break;
            }
        }
    }
    envelope
        .iter()
        .enumerate()
        .map(|(k, &(i, from))| {
            let to = envelope.get(k + 1).map_or(f64::INFINITY, |&(_, c)| c);
            let mass = cdf(to) - cdf(from);
            let first_moment = pdf(from) - pdf(to);
            a[i] * mass + b[i] * first_moment
        })
        .sum()
}

/// The value of the recommendation, `maxᵢ μᵢ − k σᵢ` over the candidates `lines`, expected after
/// measuring candidate `x` once with noise variance `noise`, given the joint posterior
/// `(means, cov)`.
fn value_after_measuring(
    means: &[f64],
    cov: &DMatrix<f64>,
    x: usize,
    noise: f64,
    sigmas: f64,
    lines: &[usize],
) -> f64 {
    let scale = (cov[(x, x)].max(0.0) + noise.max(1e-12)).sqrt();
    let b: Vec<f64> = lines.iter().map(|&i| cov[(i, x)] / scale).collect();
    let a: Vec<f64> = lines
        .iter()
        .zip(&b)
        .map(|(&i, b)| means[i] - sigmas * (cov[(i, i)] - b * b).max(0.0).sqrt())
        .collect();
    expected_max_of_lines(&a, &b)
}

/// [`value_after_measuring`] for every candidate, weighing the [`contenders`] as the possible
/// recommendation.
pub fn values_after_measuring(
    means: &[f64],
    cov: &DMatrix<f64>,
    noise: f64,
    sigmas: f64,
) -> Vec<f64> {
    let lines = contenders(means, cov, sigmas);
    (0..means.len())
        .map(|x| value_after_measuring(means, cov, x, noise, sigmas, &lines))
        .collect()
}

/// At most this many candidates are weighed as the possible recommendation.
const MAX_CONTENDERS: usize = 64;

/// The candidates that can plausibly be recommended after one more measurement: those whose
/// `mean + 4σ` reaches the best `mean − kσ` now (a measurement moves a mean by `σ Z` at most, so the
/// others could only overtake for `|Z| > 4`), and of them the [`MAX_CONTENDERS`] with the highest
/// `mean + 4σ`: with little data nearly every candidate passes, and the expectation is decided
/// by the top lines (each pick then costs O(n · m log m) for n candidates and m contenders).
fn contenders(means: &[f64], cov: &DMatrix<f64>, sigmas: f64) -> Vec<usize> {
    let sd = |i: usize| cov[(i, i)].max(0.0).sqrt();
    let best = (0..means.len())
        .map(|i| means[i] - sigmas * sd(i))
        .fold(f64::NEG_INFINITY, f64::max);
    let mut reach: Vec<(usize, f64)> = (0..means.len())
        .map(|i| (i, means[i] + 4.0 * sd(i)))
        .filter(|&(_, top)| top >= best)
        .collect();
    reach.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    reach.truncate(MAX_CONTENDERS);
    reach.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expectation on a fixed grid of Z (midpoint rule on the normal quantiles).
    fn by_quadrature(a: &[f64], b: &[f64]) -> f64 {
        let n = 20_000;
        (0..n)
            .map(|k| {
                let u = (k as f64 + 0.5) / n as f64;
                let z = quantile(u);
                a.iter()
                    .zip(b)
                    .map(|(a, b)| a + b * z)
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .sum::<f64>()
            / n as f64
    }

    /// The standard normal quantile by bisection on the cdf (tests only).
    fn quantile(u: f64) -> f64 {
        let (mut lo, mut hi) = (-40.0, 40.0);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if cdf(mid) < u { lo = mid } else { hi = mid }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn one_line_is_its_intercept() {
        assert!((expected_max_of_lines(&[3.0], &[2.0]) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn two_crossing_lines_give_the_folded_normal() {
        // max(0, Z) has mean φ(0) = 1/√(2π) ≈ 0.398942.
        let v = expected_max_of_lines(&[0.0, 0.0], &[0.0, 1.0]);
        assert!((v - 0.398_942_280_401_432_7).abs() < 1e-12, "{v}");
        // max(−Z, Z) = |Z| has mean √(2/π) ≈ 0.797885.
        let v = expected_max_of_lines(&[0.0, 0.0], &[-1.0, 1.0]);
        assert!((v - 0.797_884_560_802_865_4).abs() < 1e-12, "{v}");
    }

    #[test]
    fn dominated_and_equal_slope_lines_are_ignored_and_many_lines_match_quadrature() {
        let a = [1.0, 0.5, 2.0, -1.0, 0.3, 1.9, 0.0];
        let b = [0.2, 0.2, -0.5, 1.5, 0.0, 0.9, -2.0];
        let exact = expected_max_of_lines(&a, &b);
        let numeric = by_quadrature(&a, &b);
        assert!((exact - numeric).abs() < 1e-3, "{exact} vs {numeric}");
        // A line below another of the same slope changes nothing.
        let mut a2 = a.to_vec();
        let mut b2 = b.to_vec();
        a2.push(1.5);
        b2.push(0.9);
        assert!((expected_max_of_lines(&a2, &b2) - exact).abs() < 1e-12);
    }

    #[test]
    fn measuring_an_uncertain_contender_is_worth_more_than_a_settled_one() {
        // Two independent candidates with equal means; only the second is uncertain.
        let means = [1.0, 1.0];
        let cov = DMatrix::from_row_slice(2, 2, &[0.01, 0.0, 0.0, 1.0]);
        let settled = value_after_measuring(&means, &cov, 0, 0.1, 0.0, &[0, 1]);
        let open = value_after_measuring(&means, &cov, 1, 0.1, 0.0, &[0, 1]);
        assert!(open > settled + 0.1, "{open} vs {settled}");
    }
}
