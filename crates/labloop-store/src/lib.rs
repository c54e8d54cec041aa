//! The store: the one source of truth of labloop. Campaigns, rounds with their provenance,
//! experiments with their append-only state events, every cycle record, every prediction.
//!
//! One code path over sqlx's `Any` driver serves SQLite (the embedded default: a file, nothing to set
//! up) and PostgreSQL (many machines), with one set of portable migrations. Only this crate speaks SQL.
//! Writes are idempotent where a retry could repeat them (a record of a cycle already stored is
//! skipped; a transition to the current state is a no-op), so a caller may always retry.

mod codec;
mod datasets;
mod experiments;
mod owners;
mod queue;
mod records;
mod requests;
mod steps;
mod tokens;

pub use datasets::{DatasetCell, DatasetSummary, ImportOutcome};
pub use experiments::{
    ExperimentRow, MeasurementRow, NewExperiment, ObservationRow, PredictionRow,
};
pub use owners::CampaignOwner;
pub use queue::{ClaimedJob, Completion, JobRow, NewJob, QueueError};
pub use requests::{CampaignRequest, RequestAction};
pub use steps::{Approval, PendingApproval, StepStatus};
pub use tokens::{ROLES, TokenRow};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use std::path::Path;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Errors of the store, saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one we serve.
    #[error("unsupported store URL `{0}`: expected sqlite://PATH or postgres://...")]
    Url(String),
    /// The database refused or failed.
    #[error("{action}: {source}")]
    Database {
        /// What was being done.
        action: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("migrating the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A transition the state machine forbids.
    #[error("experiment {experiment}: {source}")]
    Transition {
        /// The experiment.
        experiment: String,
        /// What was refused.
        source: labloop_core::TransitionError,
    },
    /// Something stored that does not decode.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A request beyond one of the bounds in `labloop_core::limits` (says which).
    #[error("{0}")]
    Limit(String),
    /// A worker asked for another job while it holds as many as it may.
    #[error("this worker holds {held} jobs already (at most {limit} at once): finish one first")]
    TooManyHeld {
        /// Jobs it holds under live leases.
        held: u64,
        /// `labloop_core::limits::MAX_HELD_JOBS`.
        limit: u64,
    },
    /// A file-system problem preparing an SQLite file.
    #[error("preparing {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

pub(crate) fn db(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
    let action = action.into();
    move |source| StoreError::Database { action, source }
}

/// The current time as RFC 3339 (UTC), as the store writes timestamps.
pub fn now_rfc3339() -> String {
    now()
}

/// Unix milliseconds now (leases, sessions).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("UTC timestamps format")
}

/// How long an SQLite writer waits for another's lock before failing: long enough that bursts of
/// claims, dashboards and a second engine only delay a campaign (the engine pauses a campaign
/// whose store still fails, with the reason).
pub const SQLITE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A campaign as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignRow {
    /// Its id.
    pub id: String,
    /// The workflow's campaign name.
    pub name: String,
    /// Where it stands.
    pub state: labloop_core::CampaignState,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// The workflow file it ran, as written (for people).
    pub workflow_yaml: String,
    /// The workflow with its included files (`labloop_workflow::Bundle` as JSON), from which it
    /// is read again; `None` in stores older than bundles.
    pub workflow_bundle: Option<String>,
}

fn campaign_row(r: &sqlx::any::AnyRow) -> Result<CampaignRow, StoreError> {
    let get = |e| db("reading campaigns")(e);
    Ok(CampaignRow {
        id: r.try_get(0).map_err(get)?,
        name: r.try_get(1).map_err(get)?,
        state: {
            let name: String = r.try_get(2).map_err(get)?;
            labloop_core::CampaignState::parse(&name).ok_or_else(|| StoreError::Corrupt {
                table: "campaigns",
                message: format!("unknown campaign state `{name}`"),
            })?
        },
        created_at: r.try_get(3).map_err(get)?,
        workflow_yaml: r.try_get(4).map_err(get)?,
        workflow_bundle: r.try_get(5).map_err(get)?,
    })
}

/// A handle on the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Brings the schema up to date. PostgreSQL serialises migrators with an advisory lock; SQLite has
/// none, so a second process opening a fresh file at the same moment (`labloop approve` while a
/// campaign starts) may lose the race on a migration the first is applying: it waits and tries again,
/// and then finds that migration applied.
async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        match sqlx::migrate!("./migrations").run(pool).await {
            Err(_) if backend == Backend::Sqlite && tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            other => return Ok(other?),
        }
    }
}

impl Store {
    /// Connects (creating an SQLite file and its folder when needed) and migrates. An SQLite file
    /// that exists is checked first (see [`Store::open`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_checked(url, true).await
    }

    /// Opens a store that must exist: an SQLite file that is missing is an error, not a new empty
    /// store. Either way an existing SQLite file must be a store: an empty file (truncated?) is
    /// refused, and `PRAGMA quick_check` must pass, so a corrupted store never passes as healthy.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect_checked(url, false).await
    }

    async fn connect_checked(url: &str, create: bool) -> Result<Self, StoreError> {
        install_default_drivers();
        let mut existing_sqlite = false;
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let (file, _) = path.split_once('?').unwrap_or((path, ""));
            let in_memory = file.is_empty() || file == ":memory:";
            match std::fs::metadata(file) {
                Ok(meta) if meta.len() == 0 => {
                    // Another process may have just created it (SQLite writes nothing until its
                    // first statement): an empty file that stays empty is no store.
                    if !grows(file).await {
                        return Err(StoreError::Io {
                            path: file.to_owned(),
                            message: "the file is empty, not a store (truncated?); remove it to start a new store there".into(),
                        });
                    }
                    existing_sqlite = true;
                }
                Ok(_) => existing_sqlite = true,
                Err(_) if !create && !in_memory => {
                    return Err(StoreError::Io {
                        path: file.to_owned(),
                        message: "no store there (`labloop run` creates one)".into(),
                    });
                }
                Err(_) => {}
            }
            if let Some(dir) = Path::new(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
                    path: dir.display().to_string(),
                    message: e.to_string(),
                })?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = if path.contains("mode=") {
                url.to_owned()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        let connections = if backend == Backend::Sqlite { 4 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // SQLite's busy handler retries with backoff while another writer holds
                        // the lock; past this, "database is locked" reaches the caller.
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "PRAGMA busy_timeout = {}",
                            SQLITE_BUSY_TIMEOUT.as_millis()
                        )))
                        .execute(conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(db(format!("connecting to {}", redact(&url))))?;
        if existing_sqlite {
            check_integrity(&pool).await?;
        }
        if backend == Backend::Sqlite {
            // WAL lets readers (dashboard, status) run beside the engine's writes.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .map_err(db("enabling WAL"))?;
        }
        migrate(&pool, backend).await?;
        Ok(Self { pool, backend })
    }

    /// Closes every connection (waits for those in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that will write. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`):
    /// a read that later upgrades to a write would fail with "database is locked" under concurrency
    /// instead of waiting its turn.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(db("starting a transaction"))
    }

    /// Creates a campaign named `name`; its id is the name, or `name-2`, `name-3`, ... when taken.
    pub async fn create_campaign(
        &self,
        name: &str,
        workflow_yaml: &str,
    ) -> Result<String, StoreError> {
        self.create_campaign_with_bundle(name, workflow_yaml, None)
            .await
    }

    /// [`Store::create_campaign`], keeping the workflow's bundle (its text and its includes') too.
    pub async fn create_campaign_with_bundle(
        &self,
        name: &str,
        workflow_yaml: &str,
        workflow_bundle: Option<&str>,
    ) -> Result<String, StoreError> {
        for n in 1.. {
            let id = if n == 1 {
                name.to_owned()
            } else {
                format!("{name}-{n}")
            };
            let at = now();
            let inserted = sqlx::query(
                "INSERT INTO campaigns (id, name, workflow_yaml, workflow_bundle, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'running', $5, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&id)
            .bind(name)
            .bind(workflow_yaml)
            .bind(workflow_bundle)
            .bind(&at)
            .execute(&self.pool)
            .await
            .map_err(db("creating a campaign"))?;
            if inserted.rows_affected() == 1 {
                return Ok(id);
            }
        }
        unreachable!("the loop only ends by returning")
    }

    /// Sets a campaign's state.
    pub async fn set_campaign_state(
        &self,
        id: &str,
        state: labloop_core::CampaignState,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE campaigns SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db(format!("updating campaign {id}")))?;
        Ok(())
    }

    /// Every campaign, newest first.
    pub async fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, state, created_at, workflow_yaml, workflow_bundle FROM campaigns \
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing campaigns"))?;
        rows.iter().map(campaign_row).collect()
    }

    /// One campaign by id (one row read).
    pub async fn campaign(&self, id: &str) -> Result<Option<CampaignRow>, StoreError> {
        sqlx::query(
            "SELECT id, name, state, created_at, workflow_yaml, workflow_bundle FROM campaigns \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(format!("reading campaign {id}")))?
        .as_ref()
        .map(campaign_row)
        .transpose()
    }

    /// Records a round's suggestion and its provenance (JSON). Idempotent.
    pub async fn record_round(
        &self,
        campaign: &str,
        round: u32,
        method: &str,
        suggestion_json: &str,
    ) -> Result<(), StoreError> {
        self.record_round_with_experiments(campaign, round, method, suggestion_json, &[])
            .await
    }

    /// When each round of a campaign was planned (RFC 3339), by round.
    pub async fn round_times(&self, campaign: &str) -> Result<Vec<(u32, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT round, created_at FROM rounds WHERE campaign_id = $1 ORDER BY round",
        )
        .bind(campaign)
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("reading the round times of {campaign}")))?;
        rows.iter()
            .map(|r| {
                let round: i64 = r.try_get(0).map_err(db("reading rounds"))?;
                Ok((round as u32, r.try_get(1).map_err(db("reading rounds"))?))
            })
            .collect()
    }

    /// The rounds of a campaign: (round, method, suggestion JSON).
    pub async fn rounds(&self, campaign: &str) -> Result<Vec<(u32, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT round, method, suggestion FROM rounds WHERE campaign_id = $1 ORDER BY round",
        )
        .bind(campaign)
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("reading rounds of {campaign}")))?;
        rows.iter()
            .map(|r| {
                let round: i64 = r.try_get(0).map_err(db("reading rounds"))?;
                Ok((
                    round as u32,
                    r.try_get(1).map_err(db("reading rounds"))?,
                    r.try_get(2).map_err(db("reading rounds"))?,
                ))
            })
            .collect()
    }
}

/// Whether the empty file at `path` gets content within a few seconds (a store being created).
async fn grows(path: &str) -> bool {
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return true;
        }
    }
    false
}

/// `PRAGMA quick_check` on an SQLite store: its pages and indexes are whole (not the meaning of
/// what they hold). Cost: one read of the file.
async fn check_integrity(pool: &AnyPool) -> Result<(), StoreError> {
    let rows = sqlx::query("PRAGMA quick_check(20)")
        .fetch_all(pool)
        .await
        .map_err(db("checking the store's integrity"))?;
    let findings: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect();
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        table: "(the database file)",
        message: format!(
            "the integrity check failed; restore the store from a backup ({})",
            findings.join("; ")
        ),
    })
}

/// A URL without its password, for messages and output.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
    }
}
