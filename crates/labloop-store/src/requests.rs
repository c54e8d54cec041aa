//! What passes between a campaign's engine and the people watching it through the store: requests
//! from outside (the dashboard, the HTTP API: pause, resume, abort the campaign or one experiment),
//! which the engine polls for, so a person needs neither shell access nor the engine's process; and
//! the optimizer's posterior after each round, for the dashboard's map of the space.

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
    /// Records a request; returns its id. The engine acts on it at its next poll. The same request
    /// (action and experiment) asked again while one is still waiting is that one: a hundred
    /// clicks on Abort queue one abort.
    pub async fn request(
        &self,
        campaign: &str,
        action: RequestAction,
        experiment: Option<&str>,
        requested_by: &str,
    ) -> Result<String, StoreError> {
        let waiting = self
            .requests(campaign, true)
            .await?
            .into_iter()
            .find(|r| r.action == action && r.experiment_id.as_deref() == experiment);
        if let Some(same) = waiting {
            return Ok(same.id);
        }
        let id = format!(
            "req_{}_{}",
            now().replace([':', '-', '.'], ""),
            &crate::tokens::random_hex()[..16]
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

impl Store {
    /// Records the optimizer's posterior over the candidates after `round` (JSON); a repeat (a
    /// resumed round) replaces it.
    pub async fn record_surrogate(
        &self,
        campaign: &str,
        round: u32,
        snapshot: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO surrogates (campaign_id, round, snapshot, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (campaign_id, round) DO UPDATE SET snapshot = excluded.snapshot, created_at = excluded.created_at",
        )
        .bind(campaign)
        .bind(i64::from(round))
        .bind(snapshot)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(db(format!("recording the surrogate of {campaign} round {round}")))?;
        Ok(())
    }

    /// The latest round with a posterior snapshot (cheap: for watchers).
    pub async fn surrogate_round(&self, campaign: &str) -> Result<Option<u32>, StoreError> {
        let row = sqlx::query("SELECT MAX(round) FROM surrogates WHERE campaign_id = $1")
            .bind(campaign)
            .fetch_one(self.pool())
            .await
            .map_err(db(format!("reading the surrogate round of {campaign}")))?;
        Ok(row
            .try_get::<Option<i64>, _>(0)
            .map_err(db("reading surrogates"))?
            .map(|r| r as u32))
    }

    /// The latest round's posterior snapshot, if any round has finished.
    pub async fn latest_surrogate(
        &self,
        campaign: &str,
    ) -> Result<Option<(u32, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT round, snapshot FROM surrogates WHERE campaign_id = $1 ORDER BY round DESC LIMIT 1",
        )
        .bind(campaign)
        .fetch_optional(self.pool())
        .await
        .map_err(db(format!("reading the surrogate of {campaign}")))?;
        row.map(|r| {
            Ok((
                r.try_get::<i64, _>(0).map_err(db("reading surrogates"))? as u32,
                r.try_get(1).map_err(db("reading surrogates"))?,
            ))
        })
        .transpose()
    }
}
