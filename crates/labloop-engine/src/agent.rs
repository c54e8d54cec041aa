//! A ready-made queue worker (`labloop agent`): it claims jobs it has the capabilities for, runs a
//! local command for each (any robot wrapped in a few lines of a script), keeps the lease alive
//! while the command runs, and completes the job with the command's JSON output, or fails it with
//! the command's exit status and the tail of its stderr.
//!
//! The command runs through `sh -c`, with the job's payload on its stdin and in
//! `LABLOOP_JOB_PAYLOAD`, its id in `LABLOOP_JOB_ID`, its kind in `LABLOOP_JOB_KIND` and the attempt
//! in `LABLOOP_JOB_ATTEMPT`. Its stdout is the result: JSON as is, other text as
//! `{"output": "..."}`.

use crate::EngineError;
use labloop_store::{ClaimedJob, Completion, QueueError, Store};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A worker of the store's job queue.
#[derive(Clone, Debug)]
pub struct Agent {
    /// The store (the same database the engines use).
    pub store_url: String,
    /// This worker's name.
    pub name: String,
    /// Its capabilities (a job needs one of them).
    pub capabilities: Vec<String>,
    /// The command run for each job (through `sh -c`).
    pub exec: String,
    /// Lease per claim; heartbeats renew it every third of it while the command runs.
    pub lease: Duration,
    /// Pause between claims while the queue is empty.
    pub poll: Duration,
    /// Stop once the queue has been empty this long (`None`: run until stopped).
    pub exit_when_idle: Option<Duration>,
    /// Kill a command that runs longer than this and fail its job (retried).
    pub timeout: Option<Duration>,
}

/// A name for this worker: the host's name and the process id.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

impl Agent {
    /// Claims and runs jobs until the queue has been empty for `exit_when_idle` (or forever);
    /// `completed` hears the id of each job this worker completed.
    pub async fn run(&self, completed: impl Fn(&str)) -> Result<(), EngineError> {
        let store = Store::connect(&self.store_url).await?;
        let name = &self.name;
        let capabilities: Vec<&str> = self.capabilities.iter().map(String::as_str).collect();
        let mut idle_since = Instant::now();
        tracing::info!(worker = %name, capabilities = ?capabilities, "agent ready");
        loop {
            let Some(job) = store.claim(name, &capabilities, self.lease).await? else {
                if self
                    .exit_when_idle
                    .is_some_and(|limit| idle_since.elapsed() >= limit)
                {
                    tracing::info!(worker = %name, "queue empty: agent stops");
                    return Ok(());
                }
                tokio::time::sleep(self.poll).await;
                continue;
            };
            tracing::info!(worker = %name, job = %job.id, attempt = job.attempt, "claimed");
            let outcome = self.work(&store, &job).await;
            let reported = match outcome {
                Ok(result) => store
                    .complete(&job.id, name, &job.lease_token, &result)
                    .await
                    .map(|done| {
                        if done == Completion::Completed {
                            completed(&job.id);
                        }
                    }),
                Err(reason) => {
                    tracing::warn!(worker = %name, job = %job.id, %reason, "job failed");
                    store
                        .fail(&job.id, name, &job.lease_token, &reason, true)
                        .await
                }
            };
            match reported {
                Ok(()) => {}
                Err(QueueError::Store(e)) => return Err(e.into()),
                // Our lease was taken over (we were too slow, or paused): the job is someone else's.
                Err(e) => tracing::warn!(worker = %name, error = %e, "result dropped"),
            }
            idle_since = Instant::now();
        }
    }

    /// Runs the command for `job`, renewing its lease meanwhile; its JSON result, or why it failed.
    async fn work(&self, store: &Store, job: &ClaimedJob) -> Result<String, String> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.exec)
            .env("LABLOOP_JOB_ID", &job.id)
            .env("LABLOOP_JOB_KIND", &job.kind)
            .env("LABLOOP_JOB_PAYLOAD", &job.payload)
            .env("LABLOOP_JOB_ATTEMPT", job.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting `{}`: {e}", self.exec))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin closes it early: not an error.
            let _ = stdin.write_all(job.payload.as_bytes()).await;
        }
        let output = child.wait_with_output();
        tokio::pin!(output);
        let started = Instant::now();
        let beat = self.lease / 3;
        let output = loop {
            tokio::select! {
                out = &mut output => break out.map_err(|e| format!("running `{}`: {e}", self.exec))?,
                () = tokio::time::sleep(beat) => {
                    if let Err(e) = store.heartbeat(&job.id, &job.worker, &job.lease_token, self.lease).await {
                        // Dropping the future kills the command: the job is no longer ours.
                        return Err(format!("lease lost while running: {e}"));
                    }
                    if self.timeout.is_some_and(|t| started.elapsed() > t) {
                        return Err(format!("`{}` ran over {:?}; killed", self.exec, self.timeout.unwrap_or_default()));
                    }
                }
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!(
                "`{}` exited with {}: {}",
                self.exec,
                output.status,
                tail.trim()
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = stdout.trim();
        Ok(match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => value.to_string(),
            Err(_) => serde_json::json!({ "output": text }).to_string(),
        })
    }
}
