-- Datasets of cells imported from vendor cycler files (`labloop import`), with provenance.
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- One row per file imported into a dataset; a file is imported once (by its SHA-256).
CREATE TABLE dataset_files (
    dataset TEXT NOT NULL REFERENCES datasets (name),
    sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    format TEXT NOT NULL,
    reader_version TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    PRIMARY KEY (dataset, sha256)
);

CREATE TABLE dataset_cells (
    dataset TEXT NOT NULL REFERENCES datasets (name),
    cell TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    points BIGINT NOT NULL,
    PRIMARY KEY (dataset, cell)
);

-- A cycle's summary as JSON (labloop_import::CycleSummary without its curve), the discharge
-- curve in the store's compact encoding.
CREATE TABLE dataset_cycles (
    dataset TEXT NOT NULL,
    cell TEXT NOT NULL,
    cycle BIGINT NOT NULL,
    summary TEXT NOT NULL,
    discharge_curve BYTEA,
    PRIMARY KEY (dataset, cell, cycle)
);
