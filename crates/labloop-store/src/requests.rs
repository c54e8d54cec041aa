//! Requests from outside a campaign's engine (the dashboard, the HTTP API): pause, resume, abort the
//! campaign, or abort one experiment. They are written here and the engine running the campaign
//! polls for them, so a person needs neither shell access nor the engine's process.

use crate::{Store, StoreError, db, now};
use sqlx::Row;

/// What a person may ask of a running campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestAction {
    /// Start no new step; tests already running go on.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Stop the campaign for good: no new step, and it is marked `aborted`.
    Abort,
    /// Stop one experiment: it is marked `aborted` and its channel freed.
    AbortExperiment,
}

impl RequestAction {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
            Self::AbortExperiment => "abort_experiment",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        [
            Self::Pause,
            Self::Resume,
            Self::Abort,
            Self::AbortExperiment,
        ]
        .into_iter()
        .find(|a| a.as_str() == word)
    }
}

/// A request as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignRequest {
    /// Its id (`req_…`).
    pub id: String,
    /// The campaign.
    pub campaign_id: String,
    /// What was asked.
    pub action: RequestAction,
    /// The experiment, for [`RequestAction::AbortExperiment`].
    pub experiment_id: Option<String>,
    /// Who asked (a token's name and id; never its secret).
    pub requested_by: String,
    /// When (RFC 3339).
    pub requested_at: String,
    /// When the engine acted on it, if it has.
    pub handled_at: Option<String>,
}

impl Store {
    /// Records a request; returns its id. The engine acts on it at its next poll.
    pub async fn request(
        &self,
        campaign: &str,
        action: RequestAction,
        experiment: Option<&str>,
        requested_by: &str,
    ) -> Result<String, StoreError> {
        let id = format!(
            "req_{}_{:016x}",
            now().replace([':', '-', '.'], ""),
            crate::queue::rand_suffix()
        );
        sqlx::query(
            "INSERT INTO campaign_requests (id, campaign_id, action, experiment_id, requested_by, requested_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(campaign)
        .bind(action.as_str())
        .bind(experiment)
        .bind(requested_by)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(db(format!("recording a {} request for {campaign}", action.as_str())))?;
        Ok(id)
    }

    /// A campaign's requests, oldest first; only those not yet handled when `open_only`.
    pub async fn requests(
        &self,
        campaign: &str,
        open_only: bool,
    ) -> Result<Vec<CampaignRequest>, StoreError> {
        let sql = if open_only {
            "SELECT id, campaign_id, action, experiment_id, requested_by, requested_at, handled_at \
             FROM campaign_requests WHERE campaign_id = $1 AND handled_at IS NULL ORDER BY requested_at, id"
        } else {
            "SELECT id, campaign_id, action, experiment_id, requested_by, requested_at, handled_at \
             FROM campaign_requests WHERE campaign_id = $1 ORDER BY requested_at, id"
        };
        let rows = sqlx::query(sql)
            .bind(campaign)
            .fetch_all(self.pool())
            .await
            .map_err(db(format!("reading requests for {campaign}")))?;
        rows.iter()
            .map(|r| {
                let get = |i: usize| -> Result<Option<String>, StoreError> {
                    r.try_get(i).map_err(db("reading campaign_requests"))
                };
                let word = get(2)?.unwrap_or_default();
                Ok(CampaignRequest {
                    id: get(0)?.unwrap_or_default(),
                    campaign_id: get(1)?.unwrap_or_default(),
                    action: RequestAction::parse(&word).ok_or_else(|| StoreError::Corrupt {
                        table: "campaign_requests",
                        message: format!("unknown action `{word}`"),
                    })?,
                    experiment_id: get(3)?,
                    requested_by: get(4)?.unwrap_or_default(),
                    requested_at: get(5)?.unwrap_or_default(),
                    handled_at: get(6)?,
                })
            })
            .collect()
    }

    /// Marks a request handled (idempotent).
    pub async fn handled(&self, request: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE campaign_requests SET handled_at = $1 WHERE id = $2 AND handled_at IS NULL",
        )
        .bind(now())
        .bind(request)
        .execute(self.pool())
        .await
        .map_err(db(format!("marking request {request} handled")))?;
        Ok(())
    }
}
