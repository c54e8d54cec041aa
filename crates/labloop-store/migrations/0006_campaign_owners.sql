-- Which engine runs a campaign: one at a time, under a lease it renews; another engine may take the
-- campaign over once the lease has run out (its engine died). Times are Unix milliseconds.
CREATE TABLE campaign_owners (
    campaign_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
