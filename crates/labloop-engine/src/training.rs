//! Training sets from a store: a campaign's cells whose end of life was observed, or an imported
//! dataset's cells, each with the features of its early window — read the way the engine reads
//! them when it predicts ([`crate::early`]), so a model is trained on what it will be fed.

use crate::EngineError;
use labloop_core::CycleRecord;
use labloop_predict::life::{EndOfLife, observed_life};
use labloop_predict::{CapacitySource, EarlyData, severson, train::LabelledCell};
use labloop_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;

/// Where cells with known lives come from: `predict train|eval|adapt|features` take any of them.
#[derive(Clone, Debug)]
pub enum CellSource {
    /// A folder of `cellN.csv` Qdlin arrays, one life per line, and optionally the cycler's
    /// per-cycle capacities (else read off the arrays at 2.0 V).
    Arrays {
        /// The folder of arrays.
        cells: PathBuf,
        /// One cycle life per line; line N belongs to `cellN.csv`.
        lives: PathBuf,
        /// The cycler's capacities (see [`severson::ArraySet::capacities`]).
        capacities: Option<PathBuf>,
    },
    /// A campaign's cells whose end of life was observed (a `cycle_to_eol` step).
    Campaign {
        /// The store's URL.
        store: String,
        /// The campaign.
        campaign: String,
    },
    /// An imported dataset's cells.
    Dataset {
        /// The store's URL.
        store: String,
        /// The dataset.
        dataset: String,
        /// Their lives, and how they were given (for the provenance: `observed, end of life 0.8`
        /// or the file's path).
        lives: Lives,
        /// How the lives were given, for the provenance.
        lives_described: String,
    },
}

/// Provenance wording for cells from a campaign (their capacities are the cycler's, per record).
const FROM_CAMPAIGN: &str = "observed ends of life";

impl CellSource {
    /// Which capacities these cells carry: the cycler's from a store or with `capacities`, else
    /// read off the arrays' curves at 2.0 V.
    pub fn capacity_source(&self) -> CapacitySource {
        match self {
            Self::Arrays {
                capacities: None, ..
            } => CapacitySource::Curve,
            _ => CapacitySource::Cycler,
        }
    }

    /// Where the cells came from, for a model's provenance (read back by
    /// [`CapacitySource::of_provenance`]), with the cells left out by name.
    pub fn describe(&self, exclude: &[String]) -> String {
        let source = match self {
            Self::Dataset {
                store,
                dataset,
                lives_described,
                ..
            } => format!(
                "dataset {dataset} in {} ({}, lives {lives_described})",
                labloop_store::redact(store),
                CapacitySource::Cycler.describe(),
            ),
            Self::Campaign { store, campaign } => format!(
                "campaign {campaign} in {} ({FROM_CAMPAIGN})",
                labloop_store::redact(store)
            ),
            Self::Arrays {
                cells,
                lives,
                capacities,
            } => {
                let capacities = capacities.as_ref().map_or_else(
                    || CapacitySource::Curve.describe().to_owned(),
                    |c| format!("{} {}", CapacitySource::Cycler.describe(), c.display()),
                );
                format!(
                    "{} (lives {}, {capacities})",
                    cells.display(),
                    lives.display()
                )
            }
        };
        if exclude.is_empty() {
            source
        } else {
            format!("{source}, without {}", exclude.join(", "))
        }
    }

    /// The cells, named (`cellN`, experiment id or dataset cell name), with the features of their
    /// first `window` cycles, less those in `exclude` (each of which must be one of them). Cells
    /// that cannot be used are counted in the set's `left_out`; none at all is an error.
    pub async fn load(&self, window: u32, exclude: &[String]) -> Result<TrainingSet, EngineError> {
        let refused = EngineError::Input;
        let mut set = match self {
            Self::Arrays {
                cells,
                lives,
                capacities,
            } => {
                // Exclusions are applied while loading: capacity rows follow the cells used.
                let cells = severson::ArraySet {
                    cells,
                    lives,
                    capacities: capacities.as_deref(),
                    exclude,
                }
                .load(window)?;
                return Ok(TrainingSet {
                    cells,
                    left_out: Vec::new(),
                });
            }
            Self::Campaign { store, campaign } => {
                let opened = Store::open(store).await?;
                let set = campaign_cells(&opened, campaign, window).await;
                opened.close().await;
                let set = set?;
                if set.cells.is_empty() {
                    return Err(refused(format!(
                        "campaign {campaign} has no cell with an observed end of life (a \
                         cycle_to_eol step records them)"
                    )));
                }
                set
            }
            Self::Dataset {
                store,
                dataset,
                lives,
                ..
            } => {
                let opened = Store::open(store).await?;
                let set = dataset_cells(&opened, dataset, lives, window).await;
                opened.close().await;
                let Some(set) = set? else {
                    return Err(refused(format!(
                        "no dataset {dataset} in {}",
                        labloop_store::redact(store)
                    )));
                };
                if set.cells.is_empty() {
                    return Err(refused(format!(
                        "dataset {dataset} has no cell to train on"
                    )));
                }
                set
            }
        };
        for name in exclude {
            if !set.cells.iter().any(|(n, _)| n == name) {
                return Err(refused(format!(
                    "--exclude {name}: no such cell in {} ({} cells)",
                    self.describe(&[]),
                    set.cells.len()
                )));
            }
        }
        set.cells.retain(|(name, _)| !exclude.contains(name));
        Ok(set)
    }
}

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
            .map_err(|e| EngineError::Input(format!("reading {}: {e}", path.display())))?;
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
                    return Err(EngineError::Input(format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each provenance `describe` writes is read back as the capacities the cells carry
    /// (`capacity_source`), for model files from before the typed field.
    #[test]
    fn every_provenance_reads_back_as_its_capacities() {
        let arrays = |capacities: Option<&str>| CellSource::Arrays {
            cells: "cells".into(),
            lives: "lives.txt".into(),
            capacities: capacities.map(PathBuf::from),
        };
        let sources = [
            arrays(Some("caps.csv")),
            arrays(None),
            CellSource::Campaign {
                store: "sqlite:///x.sqlite".into(),
                campaign: "clo".into(),
            },
            CellSource::Dataset {
                store: "sqlite:///x.sqlite".into(),
                dataset: "arbin".into(),
                lives: Lives::Given(HashMap::new()),
                lives_described: "lives.csv".into(),
            },
        ];
        for source in sources {
            let described = source.describe(&["cell22".to_owned()]);
            assert_eq!(
                CapacitySource::of_provenance(&described),
                Some(source.capacity_source()),
                "{described}"
            );
        }
    }
}
