//! Reader of the published Severson et al. arrays (as laid out in `shared/data/severson`): per cell a
//! 1000 × 99 `Qdlin` matrix (rows: voltage 3.6 → 2.0 V; columns: cycles 2..=100) and a list of cycle
//! lives.

use crate::PredictError;
use crate::features::{EarlyData, REFERENCE_CYCLE, VOLTAGE_GRID_POINTS};
use crate::train::LabelledCell;
use std::path::Path;

/// Columns of a `Qdlin` matrix: cycles 2..=100.
const FIRST_CYCLE: u32 = 2;
const COLUMNS: usize = 99;

/// Loads one split (`train`, `test1`): `<dir>/<split>/cellN.csv` with lives from
/// `<dir>/cycle_lives/<split>_cycle_lives.csv`, features over the first `window` cycles.
pub fn load_split(dir: &Path, split: &str, window: u32) -> Result<Vec<LabelledCell>, PredictError> {
    let lives_path = dir
        .join("cycle_lives")
        .join(format!("{split}_cycle_lives.csv"));
    let lives = read_numbers_rows(&lives_path)?;
    let mut cells = Vec::with_capacity(lives.len());
    for (i, life) in lives.iter().enumerate() {
        let rows = read_numbers_rows(&dir.join(split).join(format!("cell{}.csv", i + 1)))?;
        let data = early_data_from_qdlin(&rows, window).map_err(|e| PredictError::DataFile {
            path: dir
                .join(split)
                .join(format!("cell{}.csv", i + 1))
                .display()
                .to_string(),
            line: 1,
            message: e.to_string(),
        })?;
        cells.push(LabelledCell {
            features: data.features(),
            cycle_life: life[0],
        });
    }
    Ok(cells)
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

fn read_numbers_rows(path: &Path) -> Result<Vec<Vec<f64>>, PredictError> {
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
