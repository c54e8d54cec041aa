//! Prior observations: cells measured before the campaign, in datasets imported with `labloop
//! import` (`campaign.prior_data`), each matched to the search-space candidate the workflow says
//! it ran. Read from the store before the campaign starts (a cell the dataset lacks, a candidate
//! the space lacks or a life that cannot be read is refused then, naming the workflow's place),
//! and given to the optimizer with every round's observations, as observed lives are.

use crate::EngineError;
use crate::design::Candidates;
use labloop_predict::life::{EndOfLife, observed_life};
use labloop_store::Store;
use labloop_workflow::Workflow;

/// One prior cell's life on a candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct PriorObservation {
    /// The candidate it ran.
    pub candidate_index: usize,
    /// Its cycle life.
    pub life: f64,
    /// Where it came from (`dataset/cell`), for messages.
    pub source: String,
}

/// The σ of a prior life as a fraction of it: the measurement error of an observed life (the one
/// the campaign's own observed lives get).
pub const PRIOR_SIGMA_FRACTION: f64 = 0.02;

/// The workflow's prior cells, read from the store.
pub async fn load(
    store: &Store,
    workflow: &Workflow,
    candidates: &Candidates,
) -> Result<Vec<PriorObservation>, EngineError> {
    let mut out = Vec::new();
    for (k, prior) in workflow.campaign.prior_data.iter().enumerate() {
        let place = format!("campaign.prior_data[{k}]");
        let Some(cells) = store.dataset(&prior.dataset).await? else {
            let known = store.dataset_names().await?;
            return Err(EngineError::Workflow(format!(
                "{place}.dataset: no dataset `{}` in the store (it has: {}); `labloop import FILE... --dataset {}` adds one",
                prior.dataset, known, prior.dataset
            )));
        };
        for (name, spec) in &prior.cells {
            let place = format!("{place}.cells.{name}");
            let cell = cells.iter().find(|c| c.name == *name).ok_or_else(|| {
                EngineError::Workflow(format!(
                    "{place}: dataset `{}` has no cell `{name}`",
                    prior.dataset
                ))
            })?;
            let candidate_index = candidates
                .labels
                .iter()
                .position(|l| *l == spec.candidate)
                .ok_or_else(|| {
                    EngineError::Workflow(format!(
                        "{place}.candidate: `{}` is not a candidate of the search space (e.g. `{}`)",
                        spec.candidate,
                        candidates.labels.first().map_or("", String::as_str)
                    ))
                })?;
            let life = match spec.life {
                Some(life) => life,
                None => {
                    let records: Vec<labloop_core::CycleRecord> =
                        cell.cycles.iter().map(|c| c.to_record()).collect();
                    let end = EndOfLife::Fraction(prior.end_of_life_fraction);
                    f64::from(observed_life(&records, end).ok_or_else(|| {
                        EngineError::Workflow(format!(
                            "{place}: the cell never falls below {} of its initial capacity in its {} cycles (still alive: give its `life`, or leave it out)",
                            prior.end_of_life_fraction,
                            cell.cycles.len()
                        ))
                    })?)
                }
            };
            out.push(PriorObservation {
                candidate_index,
                life,
                source: format!("{}/{name}", prior.dataset),
            });
        }
    }
    Ok(out)
}
