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

/// Loads one split (`train`, `test1`): `<dir>/<split>/cellN.csv` with lives from
/// `<dir>/cycle_lives/<split>_cycle_lives.csv`, features over the first `window` cycles.
pub fn load_split(dir: &Path, split: &str, window: u32) -> Result<Vec<LabelledCell>, PredictError> {
    let lives = dir
        .join("cycle_lives")
        .join(format!("{split}_cycle_lives.csv"));
    Ok(load_labelled(&dir.join(split), &lives, window)?
        .into_iter()
        .map(|(_, cell)| cell)
        .collect())
}

/// Cells with known lives: `<cells>/cellN.csv` (`Qdlin` arrays) for N = 1 up to the number of lines
/// in `lives` (one cycle life per line, line N for `cellN.csv`). Each comes with its name (`cellN`).
pub fn load_labelled(
    cells: &Path,
    lives: &Path,
    window: u32,
) -> Result<Vec<(String, LabelledCell)>, PredictError> {
    let lives_rows = read_numbers_rows(lives)?;
    lives_rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let life = match row.as_slice() {
                [life] if life.is_finite() && *life > 0.0 => *life,
                _ => {
                    return Err(PredictError::DataFile {
                        path: lives.display().to_string(),
                        line: i + 1,
                        message: "expected one positive cycle life".to_owned(),
                    });
                }
            };
            let name = format!("cell{}", i + 1);
            let features = load_cell(&cells.join(format!("{name}.csv")), window)?;
            Ok((
                name,
                LabelledCell {
                    features,
                    cycle_life: life,
                },
            ))
        })
        .collect()
}

/// Every `cellN.csv` in `cells`, in N order, with its name and features.
pub fn load_unlabelled(
    cells: &Path,
    window: u32,
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
    numbered
        .into_iter()
        .map(|(_, stem)| {
            let features = load_cell(&cells.join(format!("{stem}.csv")), window)?;
            Ok((stem, features))
        })
        .collect()
}

/// One `Qdlin` array's features over the first `window` cycles.
pub fn load_cell(path: &Path, window: u32) -> Result<FeatureSet, PredictError> {
    let rows = read_numbers_rows(path)?;
    let data = early_data_from_qdlin(&rows, window).map_err(|e| PredictError::DataFile {
        path: path.display().to_string(),
        line: 1,
        message: e.to_string(),
    })?;
    Ok(data.features())
}

/// Early data from a `Qdlin` matrix (rows of 99 cycle columns). The discharge capacity of a cycle is
/// its value at 2.0 V (the last row); charge time, temperature and resistance are not in these arrays.
pub fn early_data_from_qdlin(rows: &[Vec<f64>], window: u32) -> Result<EarlyData, PredictError> {
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
            if c < FIRST_CYCLE {
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
