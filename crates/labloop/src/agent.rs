//! `labloop agent`: a ready-made worker. It claims jobs it has the capabilities for, runs a local
//! command for each (any robot wrapped in a few lines of a script), keeps the lease alive while the
//! command runs, and completes the job with the command's JSON output, or fails it with the
//! command's exit status and the tail of its stderr.
//!
//! The command runs through `sh -c`, with the job's payload on its stdin and in `LABLOOP_JOB_PAYLOAD`,
//! its id in `LABLOOP_JOB_ID`, its kind in `LABLOOP_JOB_KIND` and the attempt in `LABLOOP_JOB_ATTEMPT`.
//! Its stdout is the result: JSON as is, other text as `{"output": "..."}`.

use anyhow::{Context, Result};
use labloop_store::{ClaimedJob, Completion, QueueError, Store};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// What `labloop agent` was asked to do.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// Store URL (the same database the engines use).
    #[arg(long)]
    store: String,
    /// A capability of this worker (jobs need one): repeat for several.
    #[arg(long = "capability", required = true)]
    capabilities: Vec<String>,
    /// The command to run for each job (through `sh -c`).
    #[arg(long)]
    exec: String,
    /// This worker's name (default: host name and process id).
    #[arg(long)]
    name: Option<String>,
    /// Lease per claim; heartbeats renew it every third of it while the command runs.
    #[arg(long, default_value = "30s", value_parser = duration)]
    lease: Duration,
    /// Pause between claims when the queue is empty.
    #[arg(long, default_value = "1s", value_parser = duration)]
    poll: Duration,
    /// Stop once the queue has been empty this long (default: run until stopped).
    #[arg(long, value_parser = duration)]
    exit_when_idle: Option<Duration>,
    /// Give up on a command that runs longer than this: kill it and fail the job (retried).
    #[arg(long, value_parser = duration)]
    timeout: Option<Duration>,
}

pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    labloop_workflow::parse_duration(text).map(Duration::from_secs_f64)
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Runs the agent until the queue stays empty for `--exit-when-idle` (or forever).
pub fn run(args: &AgentArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &AgentArgs) -> Result<()> {
    let store = Store::connect(&args.store).await?;
    let name = args.name.clone().unwrap_or_else(default_name);
    let capabilities: Vec<&str> = args.capabilities.iter().map(String::as_str).collect();
    let mut idle_since = Instant::now();
    tracing::info!(worker = %name, capabilities = ?capabilities, "agent ready");
    loop {
        let Some(job) = store.claim(&name, &capabilities, args.lease).await? else {
            if args
                .exit_when_idle
                .is_some_and(|limit| idle_since.elapsed() >= limit)
            {
                tracing::info!(worker = %name, "queue empty: agent stops");
                return Ok(());
            }
            tokio::time::sleep(args.poll).await;
            continue;
        };
        tracing::info!(worker = %name, job = %job.id, attempt = job.attempt, "claimed");
        let outcome = work(args, &store, &job).await;
        let reported = match outcome {
            Ok(result) => store
                .complete(&job.id, &name, &job.lease_token, &result)
                .await
                .map(|done| {
                    if done == Completion::Completed {
                        // Said on stdout, one line per job this worker completed (scripts count them).
                        println!("completed {}", job.id);
                    }
                }),
            Err(reason) => {
                tracing::warn!(worker = %name, job = %job.id, %reason, "job failed");
                store
                    .fail(&job.id, &name, &job.lease_token, &reason, true)
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
async fn work(args: &AgentArgs, store: &Store, job: &ClaimedJob) -> Result<String, String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&args.exec)
        .env("LABLOOP_JOB_ID", &job.id)
        .env("LABLOOP_JOB_KIND", &job.kind)
        .env("LABLOOP_JOB_PAYLOAD", &job.payload)
        .env("LABLOOP_JOB_ATTEMPT", job.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting `{}`: {e}", args.exec))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin closes it early: not an error.
        let _ = stdin.write_all(job.payload.as_bytes()).await;
    }
    let output = child.wait_with_output();
    tokio::pin!(output);
    let started = Instant::now();
    let beat = args.lease / 3;
    let output = loop {
        tokio::select! {
            out = &mut output => break out.map_err(|e| format!("running `{}`: {e}", args.exec))?,
            () = tokio::time::sleep(beat) => {
                if let Err(e) = store.heartbeat(&job.id, &job.worker, &job.lease_token, args.lease).await {
                    // Dropping the future kills the command: the job is no longer ours.
                    return Err(format!("lease lost while running: {e}"));
                }
                if args.timeout.is_some_and(|t| started.elapsed() > t) {
                    return Err(format!("`{}` ran over {:?}; killed", args.exec, args.timeout.unwrap_or_default()));
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
            args.exec,
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
