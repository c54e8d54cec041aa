//! The campaign engine: runs the closed loop — suggest a batch, cycle the cells, predict their lives
//! from early cycles, feed the predictions back — on tokio, many experiments at once.
//!
//! The store is the engine's memory: every state change is written as an event before the engine
//! acts on it, every cycle record is stored before the engine asks the instrument for the next one,
//! and the optimizer reads its observations back from the store each round. The engine holds no
//! state that the store does not.
//!
//! The engine knows instruments only through [`labloop_drivers::Cycler`], lifetimes only through
//! [`labloop_predict::Predictor`], and suggestions only through [`labloop_optimize`].

// Layers, each using only those above it: what is shared (events, halt, context, subject),
// what one experiment does (steps, plugin_steps, experiment), what a round needs (objective,
// planning, adaptation), the loop (checks, remote: people's requests, runner), and a campaign from
// its workflow to its end (launch). No module uses one below it.
mod adaptation;
pub mod agent;
mod channels;
mod checks;
mod context;
mod design;
pub mod early;
mod events;
mod experiment;
mod halt;
pub mod instruments;
pub mod launch;
mod models;
mod objective;
pub mod optimizer_settings;
mod ownership;
mod planning;
mod plugin_steps;
pub mod prior;
mod queue_builder;
mod remote;
mod runner;
pub mod safety;
mod steps;
mod subject;
pub mod summary;
pub mod training;

pub use checks::PLUGIN_HEALTH_PATIENCE;
pub use design::Candidates;
pub use events::{CampaignResult, EngineEvent, RankedProtocol, RunnerOptions};
pub use instruments::Instruments;
pub use launch::{PauseNotice, RunOutcome, run_until_over, wait_for_resume};
pub use models::{load_predictor, resolve_model, workflow_predictor};
pub use ownership::{Ownership, this_process};
pub use queue_builder::QueueCellBuilder;
pub use remote::POLL as REQUEST_POLL;
pub use runner::CampaignRunner;

/// What can stop a campaign, saying where.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] labloop_store::StoreError),
    /// The optimizer refused its input.
    #[error("optimizer: {0}")]
    Optimize(#[from] labloop_optimize::OptimizeError),
    /// The workflow asks for something this engine cannot do.
    #[error("workflow: {0}")]
    Workflow(String),
    /// An instrument is not what the workflow says, or not there (found before anything started).
    #[error("instruments: {0}")]
    Instrument(String),
    /// What the engine was given could not be read or used: a workflow file, a campaign not in
    /// the store, cells with known lives (a training, evaluation or adaptation set).
    #[error("{0}")]
    Input(String),
    /// The predictor failed (its model could not be loaded).
    #[error("predictor: {0}")]
    Predict(#[from] labloop_predict::PredictError),
    /// A task of the engine itself failed (a bug: please report it with the campaign's store).
    #[error("internal: {0}")]
    Internal(String),
    /// The campaign paused (Ctrl-C, or a step's `on_failure: pause_campaign`); `labloop resume`
    /// continues it.
    #[error("campaign {campaign} paused: {reason}; `labloop resume {campaign}` continues it")]
    Paused {
        /// The campaign.
        campaign: String,
        /// Why.
        reason: String,
        /// Whether a person asked for it through the store (the dashboard, the API): a resume
        /// request may continue it.
        by_request: bool,
    },
    /// A person aborted the campaign (the API); it does not resume.
    #[error("campaign {campaign} aborted: {reason}")]
    Aborted {
        /// The campaign.
        campaign: String,
        /// Who and which request.
        reason: String,
    },
    /// Another engine runs the campaign.
    #[error(
        "campaign {campaign} is run by engine {owner} (lease until {until_ms} ms after the epoch); wait for it with --wait"
    )]
    Owned {
        /// The campaign.
        campaign: String,
        /// The engine holding it.
        owner: String,
        /// When its lease runs out unless renewed (Unix ms).
        until_ms: i64,
    },
    /// This engine lost the campaign to another (its lease ran out): it stopped starting steps.
    #[error("campaign {campaign}: another engine took it over; this one stopped")]
    OwnershipLost {
        /// The campaign.
        campaign: String,
    },
    /// Every experiment of a round failed, so the loop has nothing to learn from.
    #[error("round {round}: all {count} experiments failed; first: {first}")]
    RoundFailed {
        /// The round.
        round: u32,
        /// How many failed.
        count: usize,
        /// The first failure.
        first: String,
    },
}
