-- The job queue: experiment steps done by external workers (robots, stations, people's benches).
-- Times are Unix milliseconds so leases compare as numbers on both backends.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    campaign_id TEXT,
    kind TEXT NOT NULL,
    capability TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    worker TEXT,
    lease_token TEXT,
    lease_until BIGINT,
    result TEXT,
    error TEXT,
    enqueued_at BIGINT NOT NULL,
    claimed_at BIGINT,
    finished_at BIGINT
);

CREATE INDEX jobs_ready ON jobs (state, capability, enqueued_at);
