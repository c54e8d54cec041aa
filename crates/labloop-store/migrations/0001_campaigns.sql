-- One schema for SQLite and PostgreSQL: portable types only (TEXT, BIGINT, DOUBLE PRECISION, BYTEA,
-- which SQLite stores as given), `$N` placeholders in the queries, timestamps as RFC 3339 text (UTC).

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    workflow_yaml TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row per round of suggestions, with how they were made (provenance).
CREATE TABLE rounds (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    round BIGINT NOT NULL,
    method TEXT NOT NULL,
    suggestion TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (campaign_id, round)
);

CREATE TABLE experiments (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    round BIGINT NOT NULL,
    slot BIGINT NOT NULL,
    candidate_index BIGINT NOT NULL,
    parameters TEXT NOT NULL,
    protocol TEXT NOT NULL,
    protocol_label TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    channel_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX experiments_by_campaign ON experiments (campaign_id, round);

-- Append-only state transitions; an experiment's state is that of its highest version.
CREATE TABLE experiment_events (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (experiment_id, version)
);

CREATE TABLE cycle_records (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    cycle BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    charge_capacity_ah DOUBLE PRECISION NOT NULL,
    discharge_capacity_ah DOUBLE PRECISION NOT NULL,
    internal_resistance_ohm DOUBLE PRECISION NOT NULL,
    temperature_min_c DOUBLE PRECISION NOT NULL,
    temperature_avg_c DOUBLE PRECISION NOT NULL,
    temperature_max_c DOUBLE PRECISION NOT NULL,
    charge_time_s DOUBLE PRECISION NOT NULL,
    discharge_curve BYTEA,
    PRIMARY KEY (experiment_id, cycle)
);

CREATE TABLE predictions (
    experiment_id TEXT PRIMARY KEY REFERENCES experiments (id),
    model TEXT NOT NULL,
    cycle_life DOUBLE PRECISION NOT NULL,
    sigma DOUBLE PRECISION NOT NULL,
    log10_life DOUBLE PRECISION NOT NULL,
    sigma_log10 DOUBLE PRECISION NOT NULL,
    features TEXT NOT NULL,
    created_at TEXT NOT NULL
);
