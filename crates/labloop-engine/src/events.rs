//! What the engine reports as it goes ([`EngineEvent`]), what a campaign returns
//! ([`CampaignResult`]), and the knobs that are not in the workflow ([`RunnerOptions`]).

use serde::Serialize;
use std::time::Duration;

/// What the engine reports as it goes (for progress bars, logs, live dashboards).
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// The campaign is recorded and about to start.
    CampaignStarted {
        /// Its id in the store.
        campaign: String,
        /// Candidates in the space.
        candidates: usize,
        /// Rounds planned.
        rounds: u32,
    },
    /// A round's experiments are queued.
    RoundStarted {
        /// The round (from 0).
        round: u32,
        /// Experiments in it.
        experiments: usize,
        /// Cycles each runs.
        cycles_per_experiment: u32,
        /// How the batch was chosen.
        method: String,
    },
    /// Records were stored.
    CycleRecorded {
        /// The experiment.
        experiment: String,
        /// How many.
        records: usize,
    },
    /// An experiment's life was predicted.
    ExperimentPredicted {
        /// The experiment.
        experiment: String,
        /// Its protocol.
        protocol: String,
        /// Predicted life.
        cycle_life: f64,
        /// Its σ.
        sigma: f64,
        /// Why the cell is outside the model's training domain, when it is.
        out_of_domain: Option<String>,
    },
    /// An experiment failed (the campaign goes on).
    ExperimentFailed {
        /// The experiment.
        experiment: String,
        /// Why.
        reason: String,
    },
    /// A step waits for a person (`labloop approve`).
    ApprovalWaiting {
        /// The experiment.
        experiment: String,
        /// The step.
        step: String,
        /// What the person is asked.
        message: String,
    },
    /// A round is done.
    RoundFinished {
        /// The round.
        round: u32,
        /// The current recommendation.
        best: RankedProtocol,
        /// Posterior probability that it is the best.
        best_probability: f64,
    },
}

/// A protocol in the final ranking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankedProtocol {
    /// 1 = recommended.
    pub rank: usize,
    /// Index into the campaign's candidates.
    pub candidate_index: usize,
    /// As people name it, e.g. `4.8-5.2-5.2-4.16`.
    pub protocol: String,
    /// Every step's C-rate.
    pub c_rates: Vec<f64>,
    /// The surrogate's estimate of the mean cycle life (of the measured objective, for a
    /// campaign whose objective is a step's output).
    pub predicted_life: f64,
    /// Its standard deviation.
    pub sigma: f64,
    /// Cells tested under this protocol.
    pub cells: usize,
    /// Mean of their early predictions (measurements, for a measured objective), if any.
    pub mean_predicted: Option<f64>,
    /// Mean of the lives observed to end of life, if any cell reached it (censored ones excluded).
    pub mean_observed: Option<f64>,
    /// Cells still alive when their test stopped: their lives are only lower bounds.
    pub censored: usize,
    /// The smallest of those bounds: every censored cell lived at least this long.
    pub at_least: Option<f64>,
}

/// What a finished campaign returns.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignResult {
    /// Its id in the store.
    pub campaign: String,
    /// Rounds run.
    pub rounds: u32,
    /// Cells (experiments) run.
    pub cells: usize,
    /// Of which failed.
    pub failed: usize,
    /// Cycle records stored.
    pub records: u64,
    /// Candidates, best first (all of them).
    pub ranking: Vec<RankedProtocol>,
    /// The lifetime model used.
    pub model: String,
    /// Wall time of the campaign in this process, seconds.
    pub wall_time_s: f64,
    /// Why the campaign stopped: `max_rounds`, `max_cells`, `max_days`, `best_probability`.
    pub stopped_by: String,
    /// Posterior probability that the recommendation is the best.
    pub best_probability: f64,
}

/// Knobs that are not in the workflow.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// An experiment fails when its channel sends no record for this long.
    pub record_timeout: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            record_timeout: Duration::from_secs(600),
        }
    }
}
