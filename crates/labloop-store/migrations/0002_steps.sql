-- The steps of each experiment (append-only events, like experiment_events), approvals given by
-- people, and lives observed by cycling to end of life (which replace predictions for the optimizer).

CREATE TABLE step_events (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    step TEXT NOT NULL,
    version BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (experiment_id, step, version)
);

CREATE TABLE approvals (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    step TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    note TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (experiment_id, step)
);

CREATE TABLE observed_lives (
    experiment_id TEXT PRIMARY KEY REFERENCES experiments (id),
    cycle_life DOUBLE PRECISION NOT NULL,
    censored BIGINT NOT NULL,
    at TEXT NOT NULL
);
