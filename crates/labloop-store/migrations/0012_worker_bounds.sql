-- A worker token's registered capabilities (space-separated; empty: none), set when it is made:
-- a worker claims only jobs it was registered for.
ALTER TABLE api_tokens ADD COLUMN capabilities TEXT NOT NULL DEFAULT '';

-- Dashboard sessions: an opaque id (only its SHA-256 kept) for a token, with an expiry, so the
-- browser never holds the API token itself.
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES api_tokens (id),
    expires_at BIGINT NOT NULL
);
