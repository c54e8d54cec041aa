-- What people ask of a campaign from outside its engine (the dashboard, the HTTP API): pause it,
-- resume it, abort it, or abort one experiment. The engine that runs the campaign polls for requests
-- it has not handled yet and acts on them; every request stays as an audit trail (who, when, when
-- handled). Times are RFC 3339 text.
CREATE TABLE campaign_requests (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    action TEXT NOT NULL,
    experiment_id TEXT,
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    handled_at TEXT
);
CREATE INDEX campaign_requests_open ON campaign_requests (campaign_id, handled_at);
