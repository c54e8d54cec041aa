-- Predictions re-made after the campaign's model was adapted to its observed lives: one per
-- experiment and adaptation (named by the SHA-256 of the cells it was adapted on). The first
-- prediction (table predictions) stays as it was made.
CREATE TABLE repredictions (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    adaptation TEXT NOT NULL,
    adapted_on TEXT NOT NULL,
    model TEXT NOT NULL,
    cycle_life DOUBLE PRECISION NOT NULL,
    sigma DOUBLE PRECISION NOT NULL,
    log10_life DOUBLE PRECISION NOT NULL,
    sigma_log10 DOUBLE PRECISION NOT NULL,
    out_of_domain TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (experiment_id, adaptation)
);
