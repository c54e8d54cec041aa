//! The job queue: steps of experiments that external workers do (a coin-cell robot, a glovebox arm,
//! a technician's bench). A worker claims a job with a lease, keeps it alive with heartbeats, and
//! completes or fails it; a lease that runs out returns the job to the queue (or fails it once its
//! attempts are spent), so a worker that dies loses nothing.
//!
//! Claims are safe under any concurrency: on PostgreSQL a claim picks its row with
//! `FOR UPDATE SKIP LOCKED` (claimers never wait on each other's rows); on SQLite the claim is one
//! `BEGIN IMMEDIATE` transaction, which the database file's lock serialises across processes. Every
//! change names the claim's lease token, so a worker whose lease was taken over cannot complete,
//! fail or extend the job any more; a completion repeated by the same claim (a retry after a lost
//! reply) is acknowledged again and stores nothing new. A lease token is 256 random bits and binds
//! to the worker that claimed: another worker naming it is refused like a stale claim. Claims name
//! at most [`MAX_CAPABILITIES`] capabilities and leases last at most [`MAX_LEASE_S`], so no worker
//! can hold the database's write lock or a job for long.

use crate::{Backend, Store, StoreError, db, now_ms};
use labloop_core::limits::{MAX_CAPABILITIES, MAX_HELD_JOBS, MAX_LEASE_S, is_capability};
use sqlx::Row;
use std::time::Duration;

fn lease_ms(lease: Duration) -> i64 {
    lease.as_millis().clamp(1, (MAX_LEASE_S * 1000.0) as u128) as i64
}

/// Checks a claim's capabilities against the bounds.
fn check_capabilities(capabilities: &[&str]) -> Result<(), StoreError> {
    if capabilities.len() > MAX_CAPABILITIES {
        return Err(StoreError::Limit(format!(
            "a claim names {} capabilities: at most {MAX_CAPABILITIES}",
            capabilities.len()
        )));
    }
    match capabilities.iter().find(|c| !is_capability(c)) {
        Some(bad) => Err(StoreError::Limit(format!(
            "capability `{}`: expected 1 to 64 letters, digits, `_`, `-` or `.`",
            bad.chars().take(80).collect::<String>()
        ))),
        None => Ok(()),
    }
}

/// A job to enqueue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// Its id, also its idempotency key: enqueuing an id that exists does nothing.
    pub id: String,
    /// The campaign it belongs to, if any.
    pub campaign: Option<String>,
    /// What to do (e.g. `build_cell`).
    pub kind: String,
    /// The capability a worker must have to take it (e.g. `coin-cell-robot`).
    pub capability: String,
    /// What the worker needs to know (JSON).
    pub payload: String,
    /// Claims it may have before it fails (a lease that runs out spends one).
    pub max_attempts: u32,
}

/// A job a worker holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedJob {
    /// The job's id.
    pub id: String,
    /// What to do.
    pub kind: String,
    /// The capability it needed.
    pub capability: String,
    /// Its payload (JSON).
    pub payload: String,
    /// This claim's number (1 for the first).
    pub attempt: u32,
    /// The token that proves this claim; heartbeats, completion and failure name it (with the
    /// worker).
    pub lease_token: String,
    /// The worker that claimed.
    pub worker: String,
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRow {
    /// Its id.
    pub id: String,
    /// What to do.
    pub kind: String,
    /// `queued`, `claimed`, `completed` or `failed`.
    pub state: String,
    /// Claims so far.
    pub attempts: u32,
    /// The worker holding (or that last held) it.
    pub worker: Option<String>,
    /// The result of a completion (JSON).
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What a completion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The result is stored.
    Completed,
    /// This claim had completed the job already; nothing changed.
    AlreadyCompleted,
}

/// Why a worker's change to a job was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The claim named is not the job's current one (its lease ran out and another worker took the
    /// job, or the job ended): the worker must drop the job.
    #[error("job {job}: the lease is no longer this claim's ({state})")]
    LeaseLost {
        /// The job.
        job: String,
        /// Where the job stands now.
        state: String,
    },
    /// No such job.
    #[error("no job {0}")]
    Unknown(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Enqueues a job; returns whether it is new (an id already queued, held or done is left as it is).
    pub async fn enqueue(&self, job: &NewJob) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO jobs (id, campaign_id, kind, capability, payload, state, attempts, max_attempts, enqueued_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&job.id)
        .bind(job.campaign.as_deref())
        .bind(&job.kind)
        .bind(&job.capability)
        .bind(&job.payload)
        .bind(i64::from(job.max_attempts.max(1)))
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(db(format!("enqueuing job {}", job.id)))?;
        Ok(result.rows_affected() == 1)
    }

    /// Claims the oldest job that one of `capabilities` can do — queued, or held under a lease that
    /// has run out — for `worker`, with a lease of `lease` (at most [`MAX_LEASE_S`]). `None` when
    /// there is nothing to do; [`StoreError::Limit`] for more than [`MAX_CAPABILITIES`],
    /// [`StoreError::TooManyHeld`] while `worker` holds [`MAX_HELD_JOBS`] under live leases.
    pub async fn claim(
        &self,
        worker: &str,
        capabilities: &[&str],
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        check_capabilities(capabilities)?;
        if capabilities.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        // Jobs whose last lease ran out with no attempts left fail instead of going round again
        // (on its own, before the claim's transaction, so claims never wait on each other's sweeps).
        sqlx::query(
            "UPDATE jobs SET state = 'failed', finished_at = $1, \
             error = 'its lease ran out on every attempt (' || worker || ' last)' \
             WHERE state = 'claimed' AND lease_until < $1 AND attempts >= max_attempts",
        )
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(db("failing jobs out of attempts"))?;
        let mut tx = self.begin_write().await?;
        let held: i64 = sqlx::query(
            "SELECT COUNT(*) FROM jobs WHERE worker = $1 AND state = 'claimed' AND lease_until >= $2",
        )
        .bind(worker)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db("counting a worker's jobs"))?;
        if held as u64 >= MAX_HELD_JOBS {
            tx.commit().await.map_err(db("committing a claim"))?;
            return Err(StoreError::TooManyHeld {
                held: held as u64,
                limit: MAX_HELD_JOBS,
            });
        }
        let placeholders: Vec<String> = (0..capabilities.len())
            .map(|i| format!("${}", i + 2))
            .collect();
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT id FROM jobs WHERE (state = 'queued' OR (state = 'claimed' AND lease_until < $1)) \
             AND capability IN ({}) ORDER BY enqueued_at, id LIMIT 1{lock}",
            placeholders.join(", ")
        );
        let mut pick = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for capability in capabilities {
            pick = pick.bind(*capability);
        }
        let Some(row) = pick
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("picking a job"))?
        else {
            tx.commit().await.map_err(db("committing a claim"))?;
            return Ok(None);
        };
        let id: String = row.try_get(0).map_err(db("reading a job id"))?;
        let token = format!("lease_{}", crate::tokens::random_hex());
        let row = sqlx::query(
            "UPDATE jobs SET state = 'claimed', worker = $1, lease_token = $2, lease_until = $3, \
             claimed_at = $4, attempts = attempts + 1 WHERE id = $5 \
             RETURNING kind, capability, payload, attempts",
        )
        .bind(worker)
        .bind(&token)
        .bind(now + lease_ms(lease))
        .bind(now)
        .bind(&id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db(format!("claiming job {id}")))?;
        tx.commit()
            .await
            .map_err(db(format!("committing the claim of {id}")))?;
        let get = |i: usize| -> Result<String, StoreError> {
            row.try_get(i).map_err(db(format!("reading job {id}")))
        };
        Ok(Some(ClaimedJob {
            kind: get(0)?,
            capability: get(1)?,
            payload: get(2)?,
            attempt: row
                .try_get::<i64, _>(3)
                .map_err(db(format!("reading job {id}")))? as u32,
            id,
            lease_token: token,
            worker: worker.to_owned(),
        }))
    }

    /// Extends the lease of a job `worker` claimed by `lease` from now (at most [`MAX_LEASE_S`]).
    pub async fn heartbeat(
        &self,
        job: &str,
        worker: &str,
        lease_token: &str,
        lease: Duration,
    ) -> Result<(), QueueError> {
        let result = sqlx::query(
            "UPDATE jobs SET lease_until = $1 \
             WHERE id = $2 AND lease_token = $3 AND worker = $4 AND state = 'claimed'",
        )
        .bind(now_ms() + lease_ms(lease))
        .bind(job)
        .bind(lease_token)
        .bind(worker)
        .execute(self.pool())
        .await
        .map_err(db(format!("extending the lease of job {job}")))?;
        if result.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.refusal(job).await)
        }
    }

    /// Completes a job `worker` claimed with its result (JSON). Idempotent for the claim that did it.
    pub async fn complete(
        &self,
        job: &str,
        worker: &str,
        lease_token: &str,
        result: &str,
    ) -> Result<Completion, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'completed', result = $1, finished_at = $2 \
             WHERE id = $3 AND lease_token = $4 AND worker = $5 AND state = 'claimed'",
        )
        .bind(result)
        .bind(now_ms())
        .bind(job)
        .bind(lease_token)
        .bind(worker)
        .execute(self.pool())
        .await
        .map_err(db(format!("completing job {job}")))?;
        if done.rows_affected() == 1 {
            return Ok(Completion::Completed);
        }
        let row = sqlx::query("SELECT state, lease_token, worker FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_optional(self.pool())
            .await
            .map_err(db(format!("reading job {job}")))?;
        match row {
            Some(r)
                if r.try_get::<String, _>(0).ok().as_deref() == Some("completed")
                    && r.try_get::<Option<String>, _>(1).ok().flatten().as_deref()
                        == Some(lease_token)
                    && r.try_get::<Option<String>, _>(2).ok().flatten().as_deref()
                        == Some(worker) =>
            {
                Ok(Completion::AlreadyCompleted)
            }
            _ => Err(self.refusal(job).await),
        }
    }

    /// Fails a job `worker` claimed: it goes back to the queue when `retry` and attempts are left,
    /// else it fails for good with `reason`.
    pub async fn fail(
        &self,
        job: &str,
        worker: &str,
        lease_token: &str,
        reason: &str,
        retry: bool,
    ) -> Result<(), QueueError> {
        let result = sqlx::query(
            "UPDATE jobs SET \
             state = CASE WHEN $1 = 1 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
             error = $2, lease_token = NULL, lease_until = NULL, \
             finished_at = CASE WHEN $1 = 1 AND attempts < max_attempts THEN NULL ELSE $3 END \
             WHERE id = $4 AND lease_token = $5 AND worker = $6 AND state = 'claimed'",
        )
        .bind(i64::from(retry))
        .bind(reason)
        .bind(now_ms())
        .bind(job)
        .bind(lease_token)
        .bind(worker)
        .execute(self.pool())
        .await
        .map_err(db(format!("failing job {job}")))?;
        if result.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.refusal(job).await)
        }
    }

    /// Why a change naming a lease was refused: where the job stands, never who holds it.
    async fn refusal(&self, job: &str) -> QueueError {
        match self.job(job).await {
            Ok(Some(row)) => QueueError::LeaseLost {
                job: job.to_owned(),
                state: match row.state.as_str() {
                    "claimed" => "held under another claim".into(),
                    _ => row.state,
                },
            },
            Ok(None) => QueueError::Unknown(job.to_owned()),
            Err(e) => QueueError::Store(e),
        }
    }

    /// A job as stored.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let rows = self.jobs_where("id = $1", id).await?;
        Ok(rows.into_iter().next())
    }

    /// The jobs of a campaign, oldest first.
    pub async fn jobs(&self, campaign: &str) -> Result<Vec<JobRow>, StoreError> {
        self.jobs_where("campaign_id = $1", campaign).await
    }

    async fn jobs_where(&self, filter: &str, value: &str) -> Result<Vec<JobRow>, StoreError> {
        let sql = format!(
            "SELECT id, kind, state, attempts, worker, result, error FROM jobs WHERE {filter} \
             ORDER BY enqueued_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_all(self.pool())
            .await
            .map_err(db("reading jobs"))?;
        rows.iter()
            .map(|r| {
                let corrupt = |e: sqlx::Error| StoreError::Corrupt {
                    table: "jobs",
                    message: e.to_string(),
                };
                Ok(JobRow {
                    id: r.try_get(0).map_err(corrupt)?,
                    kind: r.try_get(1).map_err(corrupt)?,
                    state: r.try_get(2).map_err(corrupt)?,
                    attempts: r.try_get::<i64, _>(3).map_err(corrupt)? as u32,
                    worker: r.try_get(4).map_err(corrupt)?,
                    result: r.try_get(5).map_err(corrupt)?,
                    error: r.try_get(6).map_err(corrupt)?,
                })
            })
            .collect()
    }

    /// Jobs waiting to be claimed (or whose lease has run out), by capability.
    pub async fn queue_depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT capability, COUNT(*) FROM jobs \
             WHERE state = 'queued' OR (state = 'claimed' AND lease_until < $1) \
             GROUP BY capability ORDER BY capability",
        )
        .bind(now_ms())
        .fetch_all(self.pool())
        .await
        .map_err(db("counting queued jobs"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(db("reading queue depth"))?,
                    r.try_get::<i64, _>(1).map_err(db("reading queue depth"))? as u64,
                ))
            })
            .collect()
    }
}
