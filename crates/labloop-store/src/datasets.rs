//! Datasets: cells imported from vendor cycler files, each with the file it came from (name,
//! SHA-256, format, reader version). A file is imported into a dataset once: importing it again
//! adds nothing. A file's cells and cycles are written in one transaction, so a failed import
//! leaves no half of a cell behind.

use crate::codec::{decode_curve, encode_curve};
use crate::{Store, StoreError, db, now};
use labloop_import::{CycleSummary, ImportedFile};
use sqlx::Row;

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The file's cells were added, under these names.
    Added {
        /// The cells' names in the dataset (a name another file already uses gets the file's
        /// hash appended).
        cells: Vec<String>,
    },
    /// The dataset already holds this file (same SHA-256): nothing was written.
    AlreadyImported,
}

/// A dataset and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSummary {
    /// Its name.
    pub name: String,
    /// Files imported.
    pub files: u64,
    /// Cells.
    pub cells: u64,
    /// Cycles, all cells together.
    pub cycles: u64,
}

/// One cell of a dataset with its provenance and its cycles.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetCell {
    /// The cell's name in the dataset.
    pub name: String,
    /// The file it came from, as named when imported.
    pub file_name: String,
    /// The file's SHA-256.
    pub sha256: String,
    /// The format it was read as and the reader's version.
    pub format: String,
    /// The reader's version.
    pub reader_version: String,
    /// Data rows read for the cell.
    pub points: u64,
    /// Its cycles, by cycle number, with their discharge curves.
    pub cycles: Vec<CycleSummary>,
}

impl Store {
    /// Imports a file's cells into `dataset` (created if new), unless the dataset already holds
    /// a file with the same SHA-256.
    pub async fn import_file(
        &self,
        dataset: &str,
        file: &ImportedFile,
    ) -> Result<ImportOutcome, StoreError> {
        let at = now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO datasets (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(dataset)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(db(format!("creating dataset {dataset}")))?;
        let added = sqlx::query(
            "INSERT INTO dataset_files (dataset, sha256, file_name, bytes, format, reader_version, imported_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dataset, sha256) DO NOTHING",
        )
        .bind(dataset)
        .bind(&file.sha256)
        .bind(&file.file)
        .bind(file.bytes as i64)
        .bind(&file.format)
        .bind(&file.reader_version)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(db(format!("recording {} in {dataset}", file.file)))?;
        if added.rows_affected() == 0 {
            tx.rollback()
                .await
                .map_err(db("ending an import that added nothing"))?;
            return Ok(ImportOutcome::AlreadyImported);
        }
        let mut names = Vec::new();
        for cell in &file.cells {
            let taken: Option<i64> =
                sqlx::query("SELECT 1 FROM dataset_cells WHERE dataset = $1 AND cell = $2")
                    .bind(dataset)
                    .bind(&cell.name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db(format!("looking up cell {}", cell.name)))?
                    .map(|r| r.get(0));
            let name = if taken.is_some() {
                format!("{}-{}", cell.name, &file.sha256[..8])
            } else {
                cell.name.clone()
            };
            sqlx::query(
                "INSERT INTO dataset_cells (dataset, cell, sha256, points) VALUES ($1, $2, $3, $4)",
            )
            .bind(dataset)
            .bind(&name)
            .bind(&file.sha256)
            .bind(cell.points as i64)
            .execute(&mut *tx)
            .await
            .map_err(db(format!("storing cell {name} in {dataset}")))?;
            for cycle in &cell.cycles {
                let curve = cycle.discharge_curve.as_ref().map(encode_curve);
                let summary = CycleSummary {
                    discharge_curve: None,
                    ..cycle.clone()
                };
                let json = serde_json::to_string(&summary).map_err(|e| StoreError::Corrupt {
                    table: "dataset_cycles",
                    message: format!("cycle {} of {name} does not encode: {e}", cycle.cycle),
                })?;
                sqlx::query(
                    "INSERT INTO dataset_cycles (dataset, cell, cycle, summary, discharge_curve) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(dataset)
                .bind(&name)
                .bind(i64::from(cycle.cycle))
                .bind(json)
                .bind(curve)
                .execute(&mut *tx)
                .await
                .map_err(db(format!("storing cycle {} of {name}", cycle.cycle)))?;
            }
            names.push(name);
        }
        tx.commit()
            .await
            .map_err(db(format!("committing the import of {}", file.file)))?;
        Ok(ImportOutcome::Added { cells: names })
    }

    /// Every dataset with its counts, by name.
    pub async fn datasets(&self) -> Result<Vec<DatasetSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.name, \
             (SELECT COUNT(*) FROM dataset_files f WHERE f.dataset = d.name), \
             (SELECT COUNT(*) FROM dataset_cells c WHERE c.dataset = d.name), \
             (SELECT COUNT(*) FROM dataset_cycles y WHERE y.dataset = d.name) \
             FROM datasets d ORDER BY d.name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db("listing datasets"))?;
        Ok(rows
            .iter()
            .map(|r| DatasetSummary {
                name: r.get(0),
                files: r.get::<i64, _>(1) as u64,
                cells: r.get::<i64, _>(2) as u64,
                cycles: r.get::<i64, _>(3) as u64,
            })
            .collect())
    }

    /// The datasets' names for a message (`a, b`, or `none`), e.g. when one asked for is missing.
    pub async fn dataset_names(&self) -> Result<String, StoreError> {
        let names: Vec<String> = self.datasets().await?.into_iter().map(|d| d.name).collect();
        Ok(if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        })
    }

    /// A dataset's cells with their cycles, by cell name; `None` when there is no such dataset.
    pub async fn dataset(&self, name: &str) -> Result<Option<Vec<DatasetCell>>, StoreError> {
        let exists = sqlx::query("SELECT name FROM datasets WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db(format!("reading dataset {name}")))?;
        if exists.is_none() {
            return Ok(None);
        }
        let cells = sqlx::query(
            "SELECT c.cell, f.file_name, c.sha256, f.format, f.reader_version, c.points \
             FROM dataset_cells c JOIN dataset_files f ON f.dataset = c.dataset AND f.sha256 = c.sha256 \
             WHERE c.dataset = $1 ORDER BY c.cell",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading the cells of {name}")))?;
        // Every cycle of the dataset in one read, then dealt out to the cells.
        let cycles = sqlx::query(
            "SELECT cell, summary, discharge_curve FROM dataset_cycles \
             WHERE dataset = $1 ORDER BY cell, cycle",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .map_err(db(format!("reading the cycles of {name}")))?;
        let corrupt = |message: String| StoreError::Corrupt {
            table: "dataset_cycles",
            message,
        };
        let mut by_cell: std::collections::HashMap<String, Vec<CycleSummary>> =
            std::collections::HashMap::new();
        for r in &cycles {
            let cell: String = r.get(0);
            let json: String = r.get(1);
            let mut summary: CycleSummary =
                serde_json::from_str(&json).map_err(|e| corrupt(format!("{cell}: {e}")))?;
            let curve: Option<Vec<u8>> = r.get(2);
            summary.discharge_curve = curve
                .map(|b| decode_curve(&b))
                .transpose()
                .map_err(|e| corrupt(format!("{cell} cycle {}: {e}", summary.cycle)))?;
            by_cell.entry(cell).or_default().push(summary);
        }
        let out = cells
            .iter()
            .map(|row| {
                let cell: String = row.get(0);
                DatasetCell {
                    cycles: by_cell.remove(&cell).unwrap_or_default(),
                    name: cell,
                    file_name: row.get(1),
                    sha256: row.get(2),
                    format: row.get(3),
                    reader_version: row.get(4),
                    points: row.get::<i64, _>(5) as u64,
                }
            })
            .collect();
        Ok(Some(out))
    }
}
