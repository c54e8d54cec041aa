//! The early window: the cycles of an experiment's `cycle` step, which the predictor reads
//! counted from 1 (formation and earlier steps' cycles before them left out). One path for every
//! reader: the predict step, `cycle_to_eol`, and training from a store (`labloop predict train
//! --store`), so that a model is trained on the same cycles the engine predicts from.

use labloop_core::CycleRecord;
use labloop_store::{Store, StoreError};
use serde_json::Value;

/// The cycles the `cycle` step ran: the first (in the experiment's own numbering) and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EarlyWindow {
    /// The experiment's number of the step's first cycle.
    pub first_cycle: u32,
    /// How many cycles the step ran.
    pub cycles: u32,
}

impl EarlyWindow {
    /// The window a step's outputs describe (`first_cycle` and `cycles`, as the cycle step writes
    /// them), if they are a cycle step's.
    pub fn of_outputs(outputs: &Value) -> Option<Self> {
        Some(Self {
            first_cycle: u32::try_from(outputs.get("first_cycle")?.as_u64()?).ok()?,
            cycles: u32::try_from(outputs.get("cycles")?.as_u64()?).ok()?,
        })
    }

    /// The experiment's records of the window, in its own numbering (one ranged read).
    pub async fn records(
        &self,
        store: &Store,
        experiment: &str,
    ) -> Result<Vec<CycleRecord>, StoreError> {
        if self.cycles == 0 {
            return Ok(Vec::new());
        }
        store
            .records_in(
                experiment,
                self.first_cycle,
                self.first_cycle + self.cycles - 1,
            )
            .await
    }

    /// The window's records counted from 1, as the predictor reads them.
    pub fn renumbered(&self, records: Vec<CycleRecord>) -> Vec<CycleRecord> {
        records
            .into_iter()
            .map(|mut r| {
                r.cycle = r.cycle + 1 - self.first_cycle;
                r
            })
            .collect()
    }
}

/// An experiment's early records as the predictor reads them, from the store alone (the window its
/// cycle step recorded), or `None` when no cycle step of it has finished.
pub async fn early_records(
    store: &Store,
    experiment: &str,
) -> Result<Option<Vec<CycleRecord>>, StoreError> {
    let window = store
        .step_states(experiment)
        .await?
        .into_values()
        .filter(|s| s.state == labloop_core::StepState::Succeeded)
        .find_map(|s| {
            let outputs: Value = serde_json::from_str(s.detail.as_deref()?).ok()?;
            EarlyWindow::of_outputs(&outputs)
        });
    let Some(window) = window else {
        return Ok(None);
    };
    let records = window.records(store, experiment).await?;
    Ok(Some(window.renumbered(records)))
}
