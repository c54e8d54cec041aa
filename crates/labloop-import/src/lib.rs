//! Vendor cycler files into labloop's cycle records.
//!
//! A lab that adopts labloop has years of cycling data in the files its cyclers' software wrote.
//! This crate reads them: each format is a [`Reader`] that names itself and its version, turns a
//! file's bytes into one time series per cell ([`Sample`]s in labloop's units and sign
//! convention), and the core ([`series::cycles`]) turns any time series into per-cycle summaries
//! ([`CycleSummary`]: capacities with the CV tail, energies, voltages, temperatures, resistance,
//! the discharge Q(V) on the predictor's grid). The live vendor adapters feed the same core.
//!
//! [`import`] picks the format by content (never by extension) unless told, and opens gzip
//! archives (`.bdf.gz`, `.csv.gz`) first; a file that is not
//! what it claims, truncated, or malformed is refused with its name and the line (or byte offset)
//! and column, never half-read. Pure: no I/O here beyond the bytes handed in.
//!
//! ```
//! let csv = "Data_Point,Test_Time(s),Step_Index,Cycle_Index,Current(A),Voltage(V),\
//! Charge_Capacity(Ah),Discharge_Capacity(Ah)\n\
//! 1,0,1,1,1.0,3.0,0,0\n2,3600,1,1,1.0,3.6,1.0,0\n\
//! 3,3601,2,1,-1.0,3.5,1.0,0\n4,7200,2,1,-1.0,2.5,1.0,0.99\n";
//! let file = labloop_import::import(csv.as_bytes(), "cell1.csv", None).unwrap();
//! assert_eq!(file.format, "arbin-csv");
//! let cycle = &file.cells[0].cycles[0];
//! assert!((cycle.charge_capacity_ah - 1.0).abs() < 1e-9);
//! assert!((cycle.discharge_capacity_ah - 0.99).abs() < 1e-9);
//! ```

mod biologic_mpr;
mod columns;
mod error;
mod excel;
mod formats;
mod neware;
pub mod series;
mod summary;
mod text;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use error::{ImportError, Located, Place};
pub use series::{Counter, CycleSummary, Sample};

/// A format labloop reads.
pub trait Reader: Sync {
    /// The format's name, as `--format` takes it (`arbin-csv`).
    fn format(&self) -> &'static str;
    /// The reader's version, recorded with every import (a changed reading rule changes it).
    fn version(&self) -> &'static str;
    /// What the format is, for people (`Arbin MITS Pro CSV export`).
    fn title(&self) -> &'static str;
    /// Whether these bytes are this format, judged by content; else why not.
    fn recognise(&self, bytes: &[u8]) -> Result<(), String>;
    /// The file's cells, each a time series in file order.
    fn read(&self, bytes: &[u8]) -> Result<Vec<CellSeries>, Located>;
}

/// One cell's time series as a reader found it.
#[derive(Clone, Debug, Default)]
pub struct CellSeries {
    /// The cell's name where the file gives one (a channel, a barcode); else the file's name is
    /// used.
    pub name: Option<String>,
    /// Rows in file order.
    pub samples: Vec<Sample>,
}

/// Every reader, most specific first (detection takes the first that recognises a file).
pub fn readers() -> &'static [&'static dyn Reader] {
    formats::READERS
}

/// The reader of a format by name.
pub fn reader(format: &str) -> Option<&'static dyn Reader> {
    readers().iter().copied().find(|r| r.format() == format)
}

/// A file read: its provenance and its cells.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportedFile {
    /// The file's name as given.
    pub file: String,
    /// SHA-256 of its bytes (hex): an import is idempotent by it.
    pub sha256: String,
    /// Its size (bytes).
    pub bytes: u64,
    /// The format it was read as.
    pub format: String,
    /// The reader's version.
    pub reader_version: String,
    /// Its cells.
    pub cells: Vec<ImportedCell>,
}

/// One cell of a file, cycle by cycle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportedCell {
    /// The cell's name (the file's stem unless the file names its cells).
    pub name: String,
    /// Data rows read for it.
    pub points: u64,
    /// Its cycles.
    pub cycles: Vec<CycleSummary>,
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a file's bytes as `format` (or the format its content shows), named `file` in errors.
/// A file with no data rows is refused: an import that adds nothing would look like success.
pub fn import(bytes: &[u8], file: &str, format: Option<&str>) -> Result<ImportedFile, ImportError> {
    let fail = |located: Located| ImportError::in_file(file, located);
    if bytes.is_empty() {
        return Err(fail(Located::file("the file is empty")));
    }
    let original = bytes;
    let inflated;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        inflated = gunzip(bytes).map_err(fail)?;
        &inflated[..]
    } else {
        bytes
    };
    if bytes.starts_with(b"\0\x01\0\0Standard Jet DB") {
        return Err(fail(Located::file(
            "an MS Access database (Arbin's .res): export it as CSV or XLSX from Arbin's software",
        )));
    }
    let reader = match format {
        Some(name) => {
            let reader = reader(name).ok_or_else(|| {
                fail(Located::file(format!(
                    "unknown format `{name}` (labloop reads: {})",
                    format_names()
                )))
            })?;
            reader.recognise(bytes).map_err(|why| {
                fail(Located::file(format!(
                    "not a {} file: {why}",
                    reader.title()
                )))
            })?;
            reader
        }
        None => detect(bytes).ok_or_else(|| {
            fail(Located::file(format!(
                "not a format labloop reads ({}); it starts {:?}",
                format_names(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
            )))
        })?,
    };
    let series = reader.read(bytes).map_err(fail)?;
    let stem = file_stem(file);
    let many = series.len() > 1;
    let mut cells = Vec::new();
    for (k, cell) in series.into_iter().enumerate() {
        if cell.samples.is_empty() {
            continue;
        }
        let name = cell.name.clone().unwrap_or_else(|| {
            if many {
                format!("{stem}-{}", k + 1)
            } else {
                stem.clone()
            }
        });
        cells.push(ImportedCell {
            name,
            points: cell.samples.len() as u64,
            cycles: series::cycles(&cell.samples),
        });
    }
    if cells.is_empty() {
        return Err(fail(Located::file(format!(
            "no data rows (read as {})",
            reader.title()
        ))));
    }
    Ok(ImportedFile {
        file: file.to_string(),
        sha256: sha256_hex(original),
        bytes: original.len() as u64,
        format: reader.format().to_string(),
        reader_version: reader.version().to_string(),
        cells,
    })
}

/// The largest file a gzip archive may expand to (bytes).
pub const MAX_INFLATED_BYTES: u64 = 4 << 30;

/// A gzip file's content, refused past [`MAX_INFLATED_BYTES`] or where the archive is damaged.
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, Located> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Located::file(format!("a damaged gzip archive: {e}")))?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(Located::file(format!(
            "a gzip archive that expands past {MAX_INFLATED_BYTES} bytes"
        )));
    }
    Ok(out)
}

/// The first reader that recognises the bytes.
pub fn detect(bytes: &[u8]) -> Option<&'static dyn Reader> {
    readers()
        .iter()
        .copied()
        .find(|r| r.recognise(bytes).is_ok())
}

fn format_names() -> String {
    readers()
        .iter()
        .map(|r| r.format())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file's name without folders and its last extension (`a/b/cell7.csv` → `cell7`).
fn file_stem(file: &str) -> String {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let base = base.strip_suffix(".gz").unwrap_or(base);
    match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => base.to_string(),
    }
}
