//! The published closed-loop algorithm, kept as a reference to compare against: BayesGap (Hoffman,
//! Shahriari & de Freitas, AISTATS 2014) over a GP as Attia et al. (Nature 2020, Methods) used it —
//! RBF kernel `exp(-γ‖x − x'‖²)` with γ = 1 on raw C-rates, prior mean 947 and prior and noise
//! σ = 164 cycles, fixed (no fitting); β₀ = 5 shrinking by ε = 0.5 each round; the arms of a round
//! chosen one at a time, each pick's variance reduction hallucinated before the next.

use crate::gp::Observation;
use nalgebra::{DMatrix, DVector};

/// The reference's settings, defaulting to the published ones.
#[derive(Clone, Debug, PartialEq)]
pub struct BayesGapSettings {
    /// Kernel bandwidth γ in `exp(-γ‖x − x'‖²)`.
    pub gamma: f64,
    /// Prior mean of the objective.
    pub prior_mean: f64,
    /// Prior standard deviation.
    pub prior_sd: f64,
    /// Observation noise standard deviation.
    pub noise_sd: f64,
    /// Exploration weight in round 0.
    pub beta0: f64,
    /// Factor applied to β each round.
    pub epsilon: f64,
}

impl Default for BayesGapSettings {
    fn default() -> Self {
        Self {
            gamma: 1.0,
            prior_mean: 947.0,
            prior_sd: 164.0,
            noise_sd: 164.0,
            beta0: 5.0,
            epsilon: 0.5,
        }
    }
}

/// Posterior mean and covariance over the arms under the fixed GP.
fn posterior(
    arms: &[Vec<f64>],
    observations: &[Observation],
    s: &BayesGapSettings,
) -> (Vec<f64>, DMatrix<f64>) {
    let k = |a: &[f64], b: &[f64]| {
        let d2: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        s.prior_sd * s.prior_sd * (-s.gamma * d2).exp()
    };
    let prior = DMatrix::from_fn(arms.len(), arms.len(), |i, j| k(&arms[i], &arms[j]));
    if observations.is_empty() {
        return (vec![s.prior_mean; arms.len()], prior);
    }
    let n = observations.len();
    let mut knn = DMatrix::from_fn(n, n, |i, j| k(&observations[i].x, &observations[j].x));
    for i in 0..n {
        knn[(i, i)] += s.noise_sd * s.noise_sd;
    }
    let chol = knn
        .cholesky()
        .expect("kernel plus noise is positive definite");
    let kan = DMatrix::from_fn(arms.len(), n, |i, j| k(&arms[i], &observations[j].x));
    let resid = DVector::from_iterator(n, observations.iter().map(|o| o.y - s.prior_mean));
    let mean = &kan * chol.solve(&resid);
    let v = chol
        .l()
        .solve_lower_triangular(&kan.transpose())
        .expect("L is invertible");
    let cov = prior - v.transpose() * v;
    (mean.iter().map(|m| s.prior_mean + m).collect(), cov)
}

/// BayesGap's gap index of each arm: `B_k = max_{i≠k} U_i − L_k`.
fn gaps(mean: &[f64], cov: &DMatrix<f64>, beta: f64) -> (Vec<f64>, Vec<f64>) {
    let sd: Vec<f64> = (0..mean.len())
        .map(|i| cov[(i, i)].max(0.0).sqrt())
        .collect();
    let upper: Vec<f64> = mean.iter().zip(&sd).map(|(m, s)| m + beta * s).collect();
    // The largest and second-largest upper bounds give max over i ≠ k in one pass.
    let (mut first, mut second) = ((f64::NEG_INFINITY, usize::MAX), f64::NEG_INFINITY);
    for (i, &u) in upper.iter().enumerate() {
        if u > first.0 {
            second = first.0;
            first = (u, i);
        } else if u > second {
            second = u;
        }
    }
    let b = (0..mean.len())
        .map(|k| if k == first.1 { second } else { first.0 } - (mean[k] - beta * sd[k]))
        .collect();
    (b, upper)
}

fn argmin(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("arms are not empty")
}

/// One round's batch: arms picked one at a time by the BayesGap rule.
pub fn bayesgap_batch(
    arms: &[Vec<f64>],
    observations: &[Observation],
    batch: usize,
    round: u32,
    s: &BayesGapSettings,
) -> Vec<usize> {
    let beta = s.beta0 * s.epsilon.powi(round as i32);
    let (mean, mut cov) = posterior(arms, observations, s);
    let noise = s.noise_sd * s.noise_sd;
    (0..batch)
        .map(|_| {
            let (b, upper) = gaps(&mean, &cov, beta);
            let big_j = argmin(&b);
            let small_j = (0..arms.len())
                .filter(|&k| k != big_j)
                .max_by(|&x, &y| upper[x].total_cmp(&upper[y]))
                .unwrap_or(big_j);
            let pick = if cov[(small_j, small_j)] > cov[(big_j, big_j)] {
                small_j
            } else {
                big_j
            };
            let col = cov.column(pick).clone_owned();
            let denom = col[pick] + noise;
            cov -= (&col * col.transpose()) / denom;
            pick
        })
        .collect()
}

/// The reference's recommendation: the arm with the smallest gap index under the final posterior.
pub fn bayesgap_recommend(
    arms: &[Vec<f64>],
    observations: &[Observation],
    round: u32,
    s: &BayesGapSettings,
) -> usize {
    let beta = s.beta0 * s.epsilon.powi(round as i32);
    let (mean, cov) = posterior(arms, observations, s);
    argmin(&gaps(&mean, &cov, beta).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posterior_matches_a_hand_solved_case() {
        // One arm observed once at its own position: mean = m + σ²/(σ² + σn²)(y − m), var = σ²σn²/(σ² + σn²).
        let s = BayesGapSettings::default();
        let arms = vec![vec![0.0]];
        let obs = vec![Observation {
            x: vec![0.0],
            y: 1111.0,
            noise_var: 0.0,
        }];
        let (mean, cov) = posterior(&arms, &obs, &s);
        assert!((mean[0] - (947.0 + 0.5 * 164.0)).abs() < 1e-9);
        assert!((cov[(0, 0)] - 164.0 * 164.0 / 2.0).abs() < 1e-6);
    }

    #[test]
    fn gap_index_uses_the_best_other_arm() {
        let cov = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 1.0, 1.0]));
        let (b, upper) = gaps(&[10.0, 5.0, 0.0], &cov, 1.0);
        assert_eq!(upper, vec![11.0, 6.0, 1.0]);
        assert_eq!(b, vec![6.0 - 9.0, 11.0 - 4.0, 11.0 + 1.0]);
    }

    #[test]
    fn finds_the_best_arm_of_a_noisy_line() {
        let arms: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64 * 0.25]).collect();
        let truth = |x: f64| 947.0 + 150.0 * (-(x - 3.0).powi(2)).exp();
        let s = BayesGapSettings::default();
        let mut obs = Vec::new();
        for round in 0..4 {
            for (k, a) in bayesgap_batch(&arms, &obs, 10, round, &s)
                .into_iter()
                .enumerate()
            {
                let wiggle = if k % 2 == 0 { 20.0 } else { -20.0 };
                obs.push(Observation {
                    x: arms[a].clone(),
                    y: truth(arms[a][0]) + wiggle,
                    noise_var: 0.0,
                });
            }
        }
        let best = bayesgap_recommend(&arms, &obs, 3, &s);
        assert!(
            (arms[best][0] - 3.0).abs() <= 0.5,
            "recommended {}",
            arms[best][0]
        );
    }
}
