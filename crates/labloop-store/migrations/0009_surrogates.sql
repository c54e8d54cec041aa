-- What the optimizer believed after each round: its posterior mean and standard deviation over every
-- candidate (JSON), for people to look at (the dashboard's map of the space). The engine's own
-- decisions never read it back: they refit from the observations.
CREATE TABLE surrogates (
    campaign_id TEXT NOT NULL,
    round BIGINT NOT NULL,
    snapshot TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (campaign_id, round)
);
