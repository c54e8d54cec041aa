//! Training sets from a store: a campaign's cells whose end of life was observed, or an imported
//! dataset's cells, each with the features of its early window — read the way the engine reads
//! them when it predicts ([`crate::early`]), so a model is trained on what it will be fed.

use crate::EngineError;
use labloop_core::CycleRecord;
use labloop_predict::life::{EndOfLife, observed_life};
use labloop_predict::{EarlyData, train::LabelledCell};
use labloop_store::Store;
use std::collections::HashMap;

/// Named cells to train on, and how many were left out and why.
#[derive(Debug, Default)]
pub struct TrainingSet {
    /// (experiment id or dataset cell name, cell).
    pub cells: Vec<(String, LabelledCell)>,
    /// (count, why) of the cells left out.
    pub left_out: Vec<(usize, &'static str)>,
}

/// Where a dataset's lives come from.
#[derive(Clone, Debug)]
pub enum Lives {
    /// Read off each cell's fade.
    Observed(EndOfLife),
    /// Given per cell name.
    Given(HashMap<String, f64>),
}

impl Lives {
    /// Lives given in a `cell,life` CSV (a header row allowed); a row whose life is not a
    /// positive number is refused with its line.
    pub fn read_csv(path: &std::path::Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Workflow(format!("reading {}: {e}", path.display())))?;
        let mut lives = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let Some((cell, life)) = line.split_once(',') else {
                continue;
            };
            match life.trim().parse::<f64>() {
                Ok(l) if l > 0.0 => {
                    lives.insert(cell.trim().to_owned(), l);
                }
                _ if n == 0 => {} // a header
                _ => {
                    return Err(EngineError::Workflow(format!(
                        "{}:{}: `{}` is not a cycle life",
                        path.display(),
                        n + 1,
                        life.trim()
                    )));
                }
            }
        }
        Ok(Self::Given(lives))
    }
}

/// A campaign's cells with an observed (not censored) end of life, by experiment id, with the
/// features of their early window.
pub async fn campaign_cells(
    store: &Store,
    campaign: &str,
    window: u32,
) -> Result<TrainingSet, EngineError> {
    let mut set = TrainingSet::default();
    let mut short = 0;
    for o in store.observations(campaign).await? {
        let Some((life, false)) = o.observed else {
            continue;
        };
        let records = crate::early::early_records(store, &o.experiment_id)
            .await?
            .unwrap_or_default();
        match EarlyData::from_records(&records, window) {
            Ok(early) => set.cells.push((
                o.experiment_id,
                LabelledCell {
                    features: early.features(),
                    cycle_life: life,
                },
            )),
            Err(_) => short += 1,
        }
    }
    set.left_out.push((short, "without a full early window"));
    Ok(set)
}

/// An imported dataset's cells with their lives and the features of their first `window`
/// cycles; `None` when the store has no such dataset.
pub async fn dataset_cells(
    store: &Store,
    dataset: &str,
    lives: &Lives,
    window: u32,
) -> Result<Option<TrainingSet>, EngineError> {
    let Some(cells) = store.dataset(dataset).await? else {
        return Ok(None);
    };
    let mut set = TrainingSet::default();
    let (mut alive, mut short, mut unlabelled) = (0, 0, 0);
    for cell in cells {
        let records: Vec<CycleRecord> = cell.cycles.iter().map(|c| c.to_record()).collect();
        let life = match lives {
            Lives::Given(map) => match map.get(&cell.name) {
                Some(&l) => l,
                None => {
                    unlabelled += 1;
                    continue;
                }
            },
            Lives::Observed(end) => match observed_life(&records, *end) {
                Some(l) => f64::from(l),
                None => {
                    alive += 1;
                    continue;
                }
            },
        };
        match EarlyData::from_records(&records, window) {
            Ok(early) => set.cells.push((
                cell.name,
                LabelledCell {
                    features: early.features(),
                    cycle_life: life,
                },
            )),
            Err(_) => short += 1,
        }
    }
    set.left_out = vec![
        (alive, "not yet at end of life"),
        (short, "without a full early window"),
        (unlabelled, "without a life in --lives"),
    ];
    Ok(Some(set))
}
