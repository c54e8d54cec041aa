//! How sure the surrogate is of its recommendation: the posterior probability that the recommended
//! candidate (the first of [`crate::rank`]) is truly the best, estimated from joint posterior
//! draws. Campaigns stop on it ("stop once the best is known with 95 % confidence").

use crate::gp::GaussianProcess;
use crate::rank::lower_bound;
use nalgebra::DVector;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

/// Candidates considered as rivals: the best by an optimistic bound (mean + 3 sd).
const RIVALS: usize = 64;

/// The recommended candidate (the best two-σ lower bound, as [`crate::rank`] orders them; larger is
/// better) and the fraction of `draws` joint posterior samples in which it is the best of the
/// rivals.
pub fn best_probability(
    gp: &GaussianProcess,
    candidates: &[Vec<f64>],
    draws: usize,
    seed: u64,
) -> (usize, f64) {
    if candidates.is_empty() {
        return (0, 0.0);
    }
    let marginals = gp.predict(candidates);
    let lower = |i: usize| lower_bound(marginals[i].0, marginals[i].1.max(0.0).sqrt());
    let best = (0..candidates.len())
        .max_by(|&a, &b| lower(a).total_cmp(&lower(b)).then(b.cmp(&a)))
        .expect("not empty");
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let ucb = |i: usize| marginals[i].0 + 3.0 * marginals[i].1.max(0.0).sqrt();
        ucb(b).total_cmp(&ucb(a))
    });
    order.retain(|&i| i != best);
    order.truncate(RIVALS - 1);
    order.insert(0, best);
    let points: Vec<Vec<f64>> = order.iter().map(|&i| candidates[i].clone()).collect();
    let (mean, mut cov) = gp.posterior(&points);
    let scale = cov.diagonal().max().max(1e-12);
    let mut factor = None;
    for jitter in [1e-10, 1e-8, 1e-6, 1e-4] {
        let mut c = cov.clone();
        for i in 0..c.nrows() {
            c[(i, i)] += jitter * scale;
        }
        if let Some(ch) = c.cholesky() {
            factor = Some(ch.l());
            break;
        }
    }
    let Some(l) = factor else {
        cov.fill(0.0);
        return (best, 0.0);
    };
    let mean = DVector::from_vec(mean);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut wins = 0usize;
    for _ in 0..draws.max(1) {
        let z = DVector::from_fn(points.len(), |_, _| StandardNormal.sample(&mut rng));
        let sample = &mean + &l * z;
        if sample.argmax().0 == 0 {
            wins += 1;
        }
    }
    (best, wins as f64 / draws.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HyperPrior;
    use crate::{FitOptions, KernelKind, Observation};

    fn fit(noise_var: f64, replicates: usize) -> (GaussianProcess, Vec<Vec<f64>>) {
        let candidates: Vec<Vec<f64>> = (0..11).map(|i| vec![i as f64 / 10.0]).collect();
        let mut obs = Vec::new();
        for _ in 0..replicates {
            for x in &candidates {
                obs.push(Observation {
                    x: x.clone(),
                    y: -(x[0] - 0.7).powi(2) * 10.0,
                    noise_var,
                });
            }
        }
        let options = FitOptions {
            kernel: KernelKind::Matern52,
            bounds: vec![(0.0, 1.0)],
            restarts: 2,
            seed: 1,
            prior: HyperPrior::default(),
        };
        (GaussianProcess::fit(&obs, &options).unwrap(), candidates)
    }

    #[test]
    fn more_data_makes_the_best_more_certain() {
        let (vague, candidates) = fit(4.0, 1);
        let (sharp, _) = fit(1e-4, 4);
        let (best_vague, p_vague) = best_probability(&vague, &candidates, 2000, 3);
        let (best_sharp, p_sharp) = best_probability(&sharp, &candidates, 2000, 3);
        assert_eq!(best_sharp, 7);
        assert!(p_sharp > 0.9, "{p_sharp}");
        assert!(p_vague < p_sharp, "{p_vague} vs {p_sharp}");
        let _ = best_vague;
    }
}
