-- API tokens for people and workers. Only a SHA-256 of each secret is kept.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked BIGINT NOT NULL
);
