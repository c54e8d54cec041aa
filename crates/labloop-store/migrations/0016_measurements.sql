-- Objectives beyond cycle life: a step's output (a plugin's measurement: ionic conductivity, a
-- defect count, capacity retention) recorded per experiment and name, with its σ where the step
-- gives one and where it came from. Written once; a repeated write after a crash is a no-op.
CREATE TABLE measurements (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    name TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    sigma DOUBLE PRECISION,
    unit TEXT,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (experiment_id, name)
);
