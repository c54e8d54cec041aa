//! Reader of the published Severson et al. arrays (as laid out in `shared/data/severson`): per cell a
//! 1000 × 99 `Qdlin` matrix (rows: voltage 3.6 → 2.0 V; columns: cycles 2..=100) and a list of cycle
//! lives.

use crate::PredictError;
use crate::features::{EarlyData, FeatureSet, REFERENCE_CYCLE, VOLTAGE_GRID_POINTS};
use crate::train::LabelledCell;
use std::path::Path;

/// Columns of a `Qdlin` matrix: cycles 2..=100.
const FIRST_CYCLE: u32 = 2;
const COLUMNS: usize = 99;

/// A labelled set of `Qdlin` arrays on disk: `<cells>/cellN.csv` for N = 1 up to the number of
/// lines in `lives` (one cycle life per line, line N for `cellN.csv`).
#[derive(Clone, Copy, Debug)]
pub struct ArraySet<'a> {
    /// Folder of `cellN.csv` arrays.
    pub cells: &'a Path,
    /// One cycle life per line.
    pub lives: &'a Path,
    /// The cycler's per-cycle discharge capacities (see [`read_capacities`]), one row per cell
    /// *used* (after `exclude`), in cell order. Without them a cycle's capacity is read off the
    /// array at 2.0 V, which misses the capacity of the constant-voltage tail at the end of
    /// discharge (about 14 mAh on these cells).
    pub capacities: Option<&'a Path>,
    /// Cells left out, by name (`cell22`).
    pub exclude: &'a [String],
}

impl ArraySet<'_> {
    /// Each cell used, with its name (`cellN`) and features over the first `window` cycles.
    pub fn load(&self, window: u32) -> Result<Vec<(String, LabelledCell)>, PredictError> {
        let lives = read_numbers_rows(self.lives)?
            .iter()
            .enumerate()
            .map(|(i, row)| match row.as_slice() {
                [life] if life.is_finite() && *life > 0.0 => Ok((format!("cell{}", i + 1), *life)),
                _ => Err(PredictError::DataFile {
                    path: self.lives.display().to_string(),
                    line: i + 1,
                    message: "expected one positive cycle life".to_owned(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<String> = lives.iter().map(|(n, _)| n.clone()).collect();
        let used = used_cells(names, self.exclude, self.lives)?;
        let features = load_used(self.cells, &used, self.capacities, window)?;
        Ok(lives
            .into_iter()
            .filter(|(name, _)| used.contains(name))
            .zip(features)
            .map(|((name, cycle_life), features)| {
                (
                    name,
                    LabelledCell {
                        features,
                        cycle_life,
                    },
                )
            })
            .collect())
    }
}

/// Loads one whole split (`train`, `test1`) with capacities at 2.0 V: `<dir>/<split>/cellN.csv`
/// with lives from `<dir>/cycle_lives/<split>_cycle_lives.csv`.
pub fn load_split(dir: &Path, split: &str, window: u32) -> Result<Vec<LabelledCell>, PredictError> {
    let lives = dir
        .join("cycle_lives")
        .join(format!("{split}_cycle_lives.csv"));
    let set = ArraySet {
        cells: &dir.join(split),
        lives: &lives,
        capacities: None,
        exclude: &[],
    };
    Ok(set
        .load(window)?
        .into_iter()
        .map(|(_, cell)| cell)
        .collect())
}

/// Per-cycle discharge capacities (Ah) as a cycler records them: one row per cell, column k =
/// cycle k (cycle 1 first), `NaN` where not measured; rows may be of different lengths (the layout
/// of `capacity_per_cycle_*.csv` in the Severson data).
pub fn read_capacities(path: &Path) -> Result<Vec<Vec<f64>>, PredictError> {
    read_numbers_rows(path)
}

/// `names` without the excluded ones; an excluded name that is not there is an error.
fn used_cells(
    names: Vec<String>,
    exclude: &[String],
    source: &Path,
) -> Result<Vec<String>, PredictError> {
    if let Some(missing) = exclude.iter().find(|e| !names.contains(e)) {
        return Err(PredictError::DataFile {
            path: source.display().to_string(),
            line: 0,
            message: format!("--exclude {missing}: no such cell ({} cells)", names.len()),
        });
    }
    Ok(names.into_iter().filter(|n| !exclude.contains(n)).collect())
}

/// One capacity row per used cell, or none at all.
fn capacity_rows(path: Option<&Path>, cells: usize) -> Result<Vec<Option<Vec<f64>>>, PredictError> {
    let Some(path) = path else {
        return Ok(vec![None; cells]);
    };
    let rows = read_capacities(path)?;
    if rows.len() != cells {
        return Err(PredictError::DataFile {
            path: path.display().to_string(),
            line: rows.len(),
            message: format!(
                "{} rows of capacities for {cells} cells: give one row per cell used, in cell \
                 order, after any --exclude",
                rows.len()
            ),
        });
    }
    Ok(rows.into_iter().map(Some).collect())
}

/// Every `cellN.csv` in `cells` but the excluded ones, in N order, with its name and features;
/// `capacities` as in [`ArraySet::capacities`].
pub fn load_unlabelled(
    cells: &Path,
    window: u32,
    capacities: Option<&Path>,
    exclude: &[String],
) -> Result<Vec<(String, FeatureSet)>, PredictError> {
    let listing = std::fs::read_dir(cells).map_err(|e| PredictError::DataFile {
        path: cells.display().to_string(),
        line: 0,
        message: e.to_string(),
    })?;
    let mut numbered: Vec<(u64, String)> = listing
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".csv")?.to_owned();
            let n = stem.strip_prefix("cell")?.parse().ok()?;
            Some((n, stem))
        })
        .collect();
    numbered.sort();
    if numbered.is_empty() {
        return Err(PredictError::DataFile {
            path: cells.display().to_string(),
            line: 0,
            message: "no cellN.csv files here".to_owned(),
        });
    }
    let used = used_cells(
        numbered.into_iter().map(|(_, s)| s).collect(),
        exclude,
        cells,
    )?;
    let features = load_used(cells, &used, capacities, window)?;
    Ok(used.into_iter().zip(features).collect())
}

/// Features of each used cell `<cells>/<name>.csv`, in order, each with its row of `capacities`
/// (one row per used cell) when given.
fn load_used(
    cells: &Path,
    used: &[String],
    capacities: Option<&Path>,
    window: u32,
) -> Result<Vec<FeatureSet>, PredictError> {
    let capacities = capacity_rows(capacities, used.len())?;
    used.iter()
        .zip(capacities)
        .map(|(name, capacities)| {
            load_cell(
                &cells.join(format!("{name}.csv")),
                window,
                capacities.as_deref(),
            )
        })
        .collect()
}

/// One `Qdlin` array's features over the first `window` cycles, with the cycler's per-cycle
/// discharge capacities (cycle 1 first) when known.
pub fn load_cell(
    path: &Path,
    window: u32,
    capacities: Option<&[f64]>,
) -> Result<FeatureSet, PredictError> {
    let rows = read_numbers_rows(path)?;
    let data =
        early_data_from_qdlin(&rows, window, capacities).map_err(|e| PredictError::DataFile {
            path: path.display().to_string(),
            line: 1,
            message: e.to_string(),
        })?;
    Ok(data.features())
}

/// Early data from a `Qdlin` matrix (rows of 99 cycle columns). The discharge capacity of a cycle is
/// the cycler's (`capacities`, cycle 1 first) when given, else the array's value at 2.0 V (the last
/// row); charge time, temperature and resistance are not in these arrays.
pub fn early_data_from_qdlin(
    rows: &[Vec<f64>],
    window: u32,
    capacities: Option<&[f64]>,
) -> Result<EarlyData, PredictError> {
    if rows.len() != VOLTAGE_GRID_POINTS || rows.iter().any(|r| r.len() != COLUMNS) {
        return Err(PredictError::MissingData(format!(
            "expected a {VOLTAGE_GRID_POINTS} × {COLUMNS} matrix"
        )));
    }
    if !(REFERENCE_CYCLE + 10..=FIRST_CYCLE + COLUMNS as u32 - 1).contains(&window) {
        return Err(PredictError::MissingData(format!(
            "window {window} is outside 20..=100"
        )));
    }
    let column = |cycle: u32| -> Vec<f64> {
        rows.iter()
            .map(|r| r[(cycle - FIRST_CYCLE) as usize])
            .collect()
    };
    let last_row = &rows[VOLTAGE_GRID_POINTS - 1];
    let discharge_capacity_ah = (1..=window)
        .map(|c| {
            if let Some(measured) = capacities {
                measured.get(c as usize - 1).copied().unwrap_or(f64::NAN)
            } else if c < FIRST_CYCLE {
                f64::NAN
            } else {
                last_row[(c - FIRST_CYCLE) as usize]
            }
        })
        .collect();
    Ok(EarlyData {
        window,
        discharge_capacity_ah,
        q_reference: column(REFERENCE_CYCLE),
        q_last: column(window),
        charge_time_s: None,
        temperature_avg_c: None,
        internal_resistance_ohm: None,
    })
}

fn read_text(path: &Path) -> Result<String, PredictError> {
    std::fs::read_to_string(path).map_err(|e| PredictError::DataFile {
        path: path.display().to_string(),
        line: 0,
        message: e.to_string(),
    })
}

/// A CSV file of numbers as rows (blank lines skipped); a field that is not a number is named with
/// its file and line.
pub fn read_numbers_rows(path: &Path) -> Result<Vec<Vec<f64>>, PredictError> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            line.split(',')
                .map(|field| {
                    field
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| PredictError::DataFile {
                            path: path.display().to_string(),
                            line: n + 1,
                            message: format!("`{}` is not a number", field.trim()),
                        })
                })
                .collect()
        })
        .collect()
}

/// A table of cells and their batches: a CSV file with a header row naming a `cell` column and a
/// `batch_date` or `batch` column (the layout of the Severson data's `train_cells.csv`). Returns
/// (cell, batch) in file order.
pub fn read_batch_table(path: &Path) -> Result<Vec<(String, String)>, PredictError> {
    let text = read_text(path)?;
    let error = |line: usize, message: String| PredictError::DataFile {
        path: path.display().to_string(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(error(
            1,
            "empty: expected a header with `cell` and `batch_date`".to_owned(),
        ));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |names: &[&str]| columns.iter().position(|c| names.contains(c));
    let (Some(cell), Some(batch)) = (find(&["cell"]), find(&["batch_date", "batch"])) else {
        return Err(error(
            1,
            format!("the header `{header}` names no `cell` and `batch_date` (or `batch`) columns"),
        ));
    };
    lines
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            match (fields.get(cell), fields.get(batch)) {
                (Some(c), Some(b)) if !c.is_empty() && !b.is_empty() => {
                    Ok(((*c).to_owned(), (*b).to_owned()))
                }
                _ => Err(error(n + 1, format!("expected {} fields", columns.len()))),
            }
        })
        .collect()
}

/// Labels each cell with its batch from `table` ([`read_batch_table`]); a cell the table does
/// not name is an error naming the table.
pub fn with_batches(
    cells: Vec<(String, LabelledCell)>,
    table: &Path,
) -> Result<Vec<crate::shift::BatchCell>, PredictError> {
    let batches = read_batch_table(table)?;
    cells
        .into_iter()
        .map(|(name, cell)| {
            let batch = batches
                .iter()
                .find(|(c, _)| *c == name)
                .map(|(_, b)| b.clone())
                .ok_or_else(|| PredictError::DataFile {
                    path: table.display().to_string(),
                    line: 0,
                    message: format!("no batch for {name}"),
                })?;
            Ok(crate::shift::BatchCell { name, batch, cell })
        })
        .collect()
}

/// Every cell of the Severson data in `dir` (training and primary test sets) with its batch, named
/// `train/cellN` and `test1/cellN`. With `cycler_capacities` the capacity features are the
/// cycler's, and the primary test set's cell 22 (for which the data has none) is left out;
/// without, capacities are read off the arrays at 2.0 V.
pub fn load_batches(
    dir: &Path,
    cycler_capacities: bool,
    window: u32,
) -> Result<Vec<crate::shift::BatchCell>, PredictError> {
    let mut all = Vec::new();
    for (split, capacities, exclude) in [
        ("train", "capacity_per_cycle_train.csv", vec![]),
        (
            "test1",
            "capacity_per_cycle_test1_no_outlier.csv",
            vec!["cell22".to_owned()],
        ),
    ] {
        let lives = dir.join(format!("cycle_lives/{split}_cycle_lives.csv"));
        let capacities = dir.join(capacities);
        let set = ArraySet {
            cells: &dir.join(split),
            lives: &lives,
            capacities: cycler_capacities.then_some(capacities.as_path()),
            exclude: if cycler_capacities { &exclude } else { &[] },
        };
        let cells = with_batches(set.load(window)?, &dir.join(format!("{split}_cells.csv")))?;
        all.extend(cells.into_iter().map(|mut c| {
            c.name = format!("{split}/{}", c.name);
            c
        }));
    }
    Ok(all)
}

/// Published primary-test RMSE (Severson et al. 2019, Table 1): without the outlier cell when the
/// evaluation leaves cells out (`--exclude cell22`), else with it.
pub fn published_rmse(model: &str, outlier_left_out: bool) -> Option<f64> {
    match (model, outlier_left_out) {
        ("severson-variance", _) => Some(138.0),
        ("severson-discharge", true) => Some(86.0),
        ("severson-discharge", false) => Some(91.0),
        ("severson-full", true) => Some(100.0),
        ("severson-full", false) => Some(118.0),
        // The best published figure on this split we know of (Nature Machine Intelligence 2025).
        ("severson-neural" | "neural", true) => Some(63.0),
        _ => None,
    }
}
