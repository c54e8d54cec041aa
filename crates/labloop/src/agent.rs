//! `labloop agent`: the queue worker of `labloop_engine::agent`, from the command line.

use anyhow::Result;
use std::time::Duration;

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

/// Runs the agent until the queue stays empty for `--exit-when-idle` (or forever).
pub fn run(args: &AgentArgs) -> Result<()> {
    let agent = labloop_engine::agent::Agent {
        store_url: args.store.clone(),
        name: args
            .name
            .clone()
            .unwrap_or_else(labloop_engine::agent::default_name),
        capabilities: args.capabilities.clone(),
        exec: args.exec.clone(),
        lease: args.lease,
        poll: args.poll,
        exit_when_idle: args.exit_when_idle,
        timeout: args.timeout,
    };
    // Said on stdout, one line per job this worker completed (scripts count them).
    crate::commands::runtime()?.block_on(agent.run(|job| println!("completed {job}")))?;
    Ok(())
}
