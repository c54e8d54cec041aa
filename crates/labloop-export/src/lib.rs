//! A campaign's data as two tables that pandas reads as they are (`pd.read_parquet`,
//! `pd.read_csv`), for `labloop export CAMPAIGN --store URL --out DIR [--format parquet|csv]`:
//!
//! - `experiments`: one row per cell — `experiment_id`, `round`, `candidate_index`, `protocol`,
//!   `cell_id`, `channel_id`, `state`, `predicted_life`, `predicted_sigma`, `prediction_model`,
//!   `prediction_out_of_domain` (why the cell was outside the model's training domain, if it was),
//!   `remade_life`, `remade_sigma`, `remade_adapted_on` (the latest prediction re-made after the
//!   campaign's model was adapted to its observed lives, and what it was adapted on),
//!   `observed_life`, `observed_censored`;
//! - `cycles`: one row per cycle record — `experiment_id`, `cycle`, `charge_capacity_ah`,
//!   `discharge_capacity_ah`, `internal_resistance_ohm`, `temperature_min_c`, `temperature_avg_c`,
//!   `temperature_max_c`, `charge_time_s`, `voltage_max_v`, `voltage_min_v`, `current_max_a`.
//!
//! Missing values are nulls (empty in CSV). Units are SI, as in the store. An imported dataset
//! comes out as JSON instead ([`dataset_json`]).
//!
//! The only crate that knows Arrow and Parquet.

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use labloop_store::{Store, StoreError};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;

mod dataset;
pub use dataset::dataset_json;

/// What can go wrong exporting, with where.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds no such campaign.
    #[error("no campaign `{campaign}` in {store}; `labloop status --store ...` lists them")]
    NoCampaign {
        /// The campaign asked for.
        campaign: String,
        /// The store (redacted).
        store: String,
    },
    /// The store holds no such dataset.
    #[error("no dataset {dataset} in {store} (datasets: {known})")]
    NoDataset {
        /// The dataset asked for.
        dataset: String,
        /// The store (redacted).
        store: String,
        /// The datasets it holds.
        known: String,
    },
    /// Writing a file failed.
    #[error("writing {path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// How a table is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet, snappy-compressed (as pandas writes it).
    Parquet,
    /// Comma-separated text with a header row.
    Csv,
}

impl Format {
    /// Parses `parquet` or `csv`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "parquet" => Some(Self::Parquet),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
        }
    }
}

/// A column being filled.
enum Column {
    Text(Vec<Option<String>>),
    Float(Vec<Option<f64>>),
    Count(Vec<Option<u32>>),
    Flag(Vec<Option<bool>>),
}

impl Column {
    fn array(self) -> ArrayRef {
        match self {
            Column::Text(v) => Arc::new(StringArray::from(v)),
            Column::Float(v) => Arc::new(Float64Array::from(v)),
            Column::Count(v) => Arc::new(UInt32Array::from(v)),
            Column::Flag(v) => Arc::new(BooleanArray::from(v)),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Column::Text(_) => DataType::Utf8,
            Column::Float(_) => DataType::Float64,
            Column::Count(_) => DataType::UInt32,
            Column::Flag(_) => DataType::Boolean,
        }
    }

    fn cell(&self, row: usize) -> String {
        match self {
            Column::Text(v) => v[row].as_deref().map(csv_text).unwrap_or_default(),
            Column::Float(v) => v[row].map(|x| x.to_string()).unwrap_or_default(),
            Column::Count(v) => v[row].map(|x| x.to_string()).unwrap_or_default(),
            Column::Flag(v) => v[row].map(|x| x.to_string()).unwrap_or_default(),
        }
    }
}

/// A CSV field, quoted when it must be.
fn csv_text(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A table: named columns of equal length.
pub struct Table {
    columns: Vec<(&'static str, Column)>,
    /// Rows in it.
    pub rows: usize,
}

impl Table {
    /// Writes the table to `path` in `format`.
    pub fn write(self, path: &Path, format: Format) -> Result<(), ExportError> {
        let failed = |message: String| ExportError::Write {
            path: path.display().to_string(),
            message,
        };
        self.write_as(path, format).map_err(failed)
    }

    fn write_as(self, path: &Path, format: Format) -> Result<(), String> {
        let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
        if format == Format::Csv {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(file);
            let header: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
            let io = |e: std::io::Error| e.to_string();
            writeln!(out, "{}", header.join(",")).map_err(io)?;
            for row in 0..self.rows {
                let cells: Vec<String> = self.columns.iter().map(|(_, c)| c.cell(row)).collect();
                writeln!(out, "{}", cells.join(",")).map_err(io)?;
            }
            return out.flush().map_err(io);
        }
        let schema = Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(name, c)| Field::new(*name, c.data_type(), true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = self.columns.into_iter().map(|(_, c)| c.array()).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let parquet = |e: parquet::errors::ParquetError| e.to_string();
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(parquet)?;
        writer.write(&batch).map_err(parquet)?;
        writer.close().map_err(parquet)?;
        Ok(())
    }
}

/// The campaign's two tables, `experiments` and `cycles`, read from the store at `url`.
pub async fn campaign_tables(url: &str, campaign: &str) -> Result<(Table, Table), ExportError> {
    let store = Store::open(url).await?;
    if store.campaign(campaign).await?.is_none() {
        return Err(ExportError::NoCampaign {
            campaign: campaign.to_owned(),
            store: labloop_store::redact(url),
        });
    }
    let rows = store.experiments(campaign).await?;
    let observations = store.observations(campaign).await?;
    let observed = |id: &str| observations.iter().find(|o| o.experiment_id == id);
    let mut remade = Vec::with_capacity(rows.len());
    for r in &rows {
        remade.push(store.repredictions(&r.id).await?.pop());
    }
    let text = |f: &dyn Fn(usize) -> Option<String>| Column::Text((0..rows.len()).map(f).collect());
    let float = |f: &dyn Fn(usize) -> Option<f64>| Column::Float((0..rows.len()).map(f).collect());
    let experiments = Table {
        rows: rows.len(),
        columns: vec![
            ("experiment_id", text(&|i| Some(rows[i].id.clone()))),
            (
                "round",
                Column::Count(rows.iter().map(|r| Some(r.round)).collect()),
            ),
            (
                "candidate_index",
                Column::Count(
                    rows.iter()
                        .map(|r| Some(r.candidate_index as u32))
                        .collect(),
                ),
            ),
            ("protocol", text(&|i| Some(rows[i].protocol_label.clone()))),
            ("cell_id", text(&|i| Some(rows[i].cell_id.clone()))),
            ("channel_id", text(&|i| rows[i].channel_id.clone())),
            ("state", text(&|i| Some(rows[i].state.as_str().to_owned()))),
            (
                "predicted_life",
                float(&|i| observed(&rows[i].id).map(|o| o.prediction.cycle_life)),
            ),
            (
                "predicted_sigma",
                float(&|i| observed(&rows[i].id).map(|o| o.prediction.sigma)),
            ),
            (
                "prediction_model",
                text(&|i| observed(&rows[i].id).map(|o| o.prediction.model.clone())),
            ),
            (
                "prediction_out_of_domain",
                text(&|i| observed(&rows[i].id).and_then(|o| o.prediction.out_of_domain.clone())),
            ),
            ("remade_life", float(&|i| remade[i].as_ref().map(|r| r.1))),
            ("remade_sigma", float(&|i| remade[i].as_ref().map(|r| r.2))),
            (
                "remade_adapted_on",
                text(&|i| remade[i].as_ref().map(|r| r.0.clone())),
            ),
            (
                "observed_life",
                float(&|i| observed(&rows[i].id).and_then(|o| o.observed.map(|(life, _)| life))),
            ),
            (
                "observed_censored",
                Column::Flag(
                    rows.iter()
                        .map(|r| observed(&r.id).and_then(|o| o.observed.map(|(_, c)| c)))
                        .collect(),
                ),
            ),
        ],
    };
    let mut ids = Vec::new();
    let mut records = Vec::new();
    for r in &rows {
        for record in store.records(&r.id).await? {
            ids.push(r.id.clone());
            records.push(record);
        }
    }
    store.close().await;
    let n = records.len();
    let col = |f: &dyn Fn(&labloop_core::CycleRecord) -> Option<f64>| {
        Column::Float(records.iter().map(f).collect())
    };
    let cycles = Table {
        rows: n,
        columns: vec![
            (
                "experiment_id",
                Column::Text(ids.into_iter().map(Some).collect()),
            ),
            (
                "cycle",
                Column::Count(records.iter().map(|r| Some(r.cycle)).collect()),
            ),
            ("charge_capacity_ah", col(&|r| Some(r.charge_capacity_ah))),
            (
                "discharge_capacity_ah",
                col(&|r| Some(r.discharge_capacity_ah)),
            ),
            (
                "internal_resistance_ohm",
                col(&|r| Some(r.internal_resistance_ohm)),
            ),
            ("temperature_min_c", col(&|r| Some(r.temperature_min_c))),
            ("temperature_avg_c", col(&|r| Some(r.temperature_avg_c))),
            ("temperature_max_c", col(&|r| Some(r.temperature_max_c))),
            ("charge_time_s", col(&|r| Some(r.charge_time_s))),
            ("voltage_max_v", col(&|r| r.voltage_max_v)),
            ("voltage_min_v", col(&|r| r.voltage_min_v)),
            ("current_max_a", col(&|r| r.current_max_a)),
        ],
    };
    Ok((experiments, cycles))
}
