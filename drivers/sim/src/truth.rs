//! Where the simulator's ground truth puts a campaign's answer: the recommended protocol's true
//! mean life and rank among every candidate, and how the early predictions compare with each
//! simulated cell's own life. Only a simulator can say this; `labloop run` prints it.

use crate::{SimCycler, expected_life};
use labloop_core::ChargeProtocol;
use serde::Serialize;

/// The campaign's answer against the simulator's truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulatorTruth {
    /// True mean life of the recommended protocol.
    pub recommended_true_life: f64,
    /// Its rank among all candidates by true mean life (1 = best).
    pub recommended_true_rank: usize,
    /// The best protocol by the simulator's truth and its mean life.
    pub best_protocol: String,
    /// The best protocol's true mean life.
    pub best_true_life: f64,
    /// Candidates ranked.
    pub candidates: usize,
    /// RMSE of the early predictions against each simulated cell's true life (cycles).
    pub prediction_rmse_cycles: f64,
    /// Their MAPE (%).
    pub prediction_mape_percent: f64,
}

impl SimulatorTruth {
    /// Scores the protocol at `recommended` of `space` and the `predictions` (cell id, predicted
    /// life) against the cells the simulated cyclers `sims` drew.
    pub fn score(
        space: &[ChargeProtocol],
        recommended: usize,
        sims: &[SimCycler],
        predictions: &[(String, f64)],
    ) -> Self {
        let recommended_true_life = expected_life(&space[recommended]);
        let cell_lives: std::collections::HashMap<String, f64> = sims
            .iter()
            .flat_map(SimCycler::cells)
            .map(|c| (c.cell_id, c.life))
            .collect();
        let errors: Vec<(f64, f64)> = predictions
            .iter()
            .filter_map(|(cell, p)| cell_lives.get(cell).map(|life| (p - life, *life)))
            .collect();
        let n = errors.len().max(1) as f64;
        let mut lives: Vec<(f64, String)> = space
            .iter()
            .map(|p| (expected_life(p), p.to_string()))
            .collect();
        lives.sort_by(|a, b| b.0.total_cmp(&a.0));
        SimulatorTruth {
            recommended_true_life,
            recommended_true_rank: 1 + lives
                .iter()
                .filter(|(l, _)| *l > recommended_true_life)
                .count(),
            best_protocol: lives[0].1.clone(),
            best_true_life: lives[0].0,
            candidates: lives.len(),
            prediction_rmse_cycles: (errors.iter().map(|(e, _)| e * e).sum::<f64>() / n).sqrt(),
            prediction_mape_percent: 100.0 * errors.iter().map(|(e, l)| (e / l).abs()).sum::<f64>()
                / n,
        }
    }
}
