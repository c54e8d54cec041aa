//! The first batch's spread design, before any observation.

use crate::batch::{BatchRequest, argmax_free, capped_batch, taken_by_pending};
use crate::gp::scale;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A representative first batch (greedy k-medoids, i.e. facility location): each pick is the
/// candidate that most shortens the distance (in the unit box) from every candidate to its nearest
/// chosen or pending one. Unlike maximin it does not crowd the corners, so the first fit learns the
/// interior where optima usually lie. Large sets are scored on a seeded sample of 2 000 candidates.
/// With a [`BatchRequest::design_spread`] above 0 each pick is drawn (seeded by `fit.seed`) among
/// the free candidates whose gain is within that fraction of the best gain, so campaigns with
/// other seeds get other, still representative, designs.
pub(crate) fn medoid_design(request: &BatchRequest<'_>) -> Vec<usize> {
    const SCORED: usize = 2000;
    let mut spread_rng = StdRng::seed_from_u64(request.fit.seed ^ 0x6465_7369_676e);
    let scaled: Vec<Vec<f64>> = request
        .candidates
        .iter()
        .map(|c| scale(c, &request.fit.bounds))
        .collect();
    let dist = |a: usize, b: usize| -> f64 {
        scaled[a]
            .iter()
            .zip(&scaled[b])
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let scored: Vec<usize> = if scaled.len() > SCORED {
        let mut rng = StdRng::seed_from_u64(request.fit.seed);
        rand::seq::index::sample(&mut rng, scaled.len(), SCORED).into_vec()
    } else {
        (0..scaled.len()).collect()
    };
    // Before any pick, every candidate is as far as the box's diagonal from the design.
    let diagonal = (request.fit.bounds.len() as f64).sqrt() + 1.0;
    let mut nearest: Vec<f64> = scored
        .iter()
        .map(|&i| {
            request
                .pending
                .iter()
                .map(|&p| dist(i, p))
                .fold(diagonal, f64::min)
        })
        .collect();
    let mut taken = taken_by_pending(request);
    let mut picks = Vec::with_capacity(request.batch_size);
    for _ in 0..capped_batch(request, &taken) {
        let gain = |c: usize| -> f64 {
            scored
                .iter()
                .zip(&nearest)
                .map(|(&i, n)| (n - dist(i, c)).max(0.0))
                .sum()
        };
        let next = if request.design_spread > 0.0 {
            let gains: Vec<f64> = (0..scaled.len()).map(gain).collect();
            let best = gains[argmax_free(gains.iter().copied(), &taken)];
            let near: Vec<usize> = (0..scaled.len())
                .filter(|&c| !taken[c] && gains[c] >= (1.0 - request.design_spread) * best)
                .collect();
            near[spread_rng.random_range(0..near.len())]
        } else {
            argmax_free((0..scaled.len()).map(gain), &taken)
        };
        for (n, &i) in nearest.iter_mut().zip(&scored) {
            *n = n.min(dist(i, next));
        }
        taken[next] = true;
        picks.push(next);
    }
    picks
}
