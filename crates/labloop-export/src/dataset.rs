//! An imported dataset as JSON (`labloop export --dataset NAME --store URL`): its cells in the shape
//! of `labloop import --check --json`, each with its file, hash, format and reader version, so an
//! import's numbers can be compared with what the store gives back.

use crate::ExportError;
use labloop_store::Store;

/// The dataset `dataset` of the store at `url` as `{"dataset": NAME, "cells": [...]}`; each
/// cycle's discharge curve only with `curves`.
pub async fn dataset_json(
    url: &str,
    dataset: &str,
    curves: bool,
) -> Result<serde_json::Value, ExportError> {
    let store = Store::open(url).await?;
    let Some(cells) = store.dataset(dataset).await? else {
        return Err(ExportError::NoDataset {
            dataset: dataset.to_owned(),
            store: labloop_store::redact(url),
            known: store.dataset_names().await?,
        });
    };
    let cells: Vec<serde_json::Value> = cells
        .into_iter()
        .map(|mut c| {
            if !curves {
                for cycle in &mut c.cycles {
                    cycle.discharge_curve = None;
                }
            }
            serde_json::json!({
                "name": c.name,
                "file": c.file_name,
                "sha256": c.sha256,
                "format": c.format,
                "reader_version": c.reader_version,
                "points": c.points,
                "cycles": c.cycles,
            })
        })
        .collect();
    Ok(serde_json::json!({ "dataset": dataset, "cells": cells }))
}
