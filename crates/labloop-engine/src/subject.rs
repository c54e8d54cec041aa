//! The experiment a step works on (its cell, its candidate, the campaign's shared context), what
//! its steps have produced so far, and one attempt of one step with how it can end. The steps
//! (`steps.rs`, `plugin_steps.rs`) read these; `experiment.rs` drives them.

use crate::channels::Channel;
use crate::context::Context;
use labloop_core::ChargeProtocol;
use labloop_drivers::DriverError;
use labloop_store::StoreError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::oneshot;

/// What one experiment runs.
pub(crate) struct ExperimentRun {
    pub id: String,
    pub cell_id: String,
    pub label: String,
    pub protocol: ChargeProtocol,
    pub formulation: Vec<(String, f64)>,
    pub parameters: Vec<labloop_drivers::DesignParameter>,
    pub ctx: Arc<Context>,
    /// Told once the experiment has its objective (predicted, observed) or has ended.
    pub observed: Option<oneshot::Sender<()>>,
    /// The channel it held before a restart, if any.
    pub channel_hint: Option<String>,
}

/// What the steps of the running experiment have produced, by step id.
pub(crate) type Outputs = BTreeMap<String, serde_json::Value>;

/// A step's outputs (JSON object), offered to later steps as `steps.<id>.outputs.<name>`.
pub(crate) struct StepOutcome(pub Value);

/// Why a step attempt did not succeed.
pub(crate) enum StepFailure {
    /// The attempt failed; the step's policy decides what follows.
    Failed(String),
    /// A safety interlock tripped: the cell is suspect, so the step is never retried on it.
    Unsafe(String),
    /// The campaign is pausing.
    Paused,
    /// The store failed: the engine cannot go on safely.
    Store(StoreError),
}

impl From<DriverError> for StepFailure {
    fn from(e: DriverError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// One attempt of one step.
pub(crate) struct StepCall<'a> {
    pub run: &'a ExperimentRun,
    pub step_id: &'a str,
    pub attempt: u32,
    /// The attempt was under way when labloop last stopped (this is a resume of it).
    pub resumed_in_flight: bool,
    pub channel: Option<&'a Channel>,
    pub outputs: &'a Outputs,
}

impl StepCall<'_> {
    /// The idempotency key of this attempt: `<experiment>/<step>/<attempt>` ([`experiment_of`]
    /// reads it back).
    pub(crate) fn key(&self) -> String {
        format!("{}/{}/{}", self.run.id, self.step_id, self.attempt)
    }

    /// The cell: built by a `build_cell` step, or the experiment's own.
    pub(crate) fn cell_id(&self) -> String {
        self.outputs
            .values()
            .find_map(|v| v.get("cell_id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| self.run.cell_id.clone())
    }
}
