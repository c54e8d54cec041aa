//! The subcommands: each wires library crates together and prints.

use anyhow::{Context, Result, bail};
use labloop_engine::launch::{Launch, Launched, Overrides, Prepared};
use labloop_engine::{CampaignResult, PauseNotice};
use labloop_sim::SimulatorTruth;
use labloop_store::Store;
use labloop_workflow::Diagnostic;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// How this engine holds its campaign in the store (engines sharing a store never run one campaign
/// twice; one takes over when another dies).
#[derive(clap::Args)]
struct EngineArgs {
    /// This engine's name in the store (default: <host>/<pid>/<start time>).
    #[arg(long)]
    owner: Option<String>,
    /// How long the campaign stays this engine's without a renewal; another engine takes it over
    /// once it runs out (renewed every third of it).
    #[arg(long, default_value = "15s", value_parser = crate::agent::duration)]
    lease: std::time::Duration,
}

impl EngineArgs {
    fn ownership(&self, wait: bool) -> labloop_engine::Ownership {
        let mut o = labloop_engine::Ownership::of_this_process(self.lease, wait);
        if let Some(owner) = &self.owner {
            o.owner.clone_from(owner);
        }
        o
    }
}

/// How `run` and `resume` show the campaign's result.
#[derive(clap::Args)]
struct OutputArgs {
    /// Print the result as JSON on stdout (no table).
    #[arg(long)]
    json: bool,
    /// Protocols shown in the ranking table.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// `labloop run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Store URL (sqlite://PATH or postgres://...); overrides the workflow's.
    #[arg(long)]
    store: Option<String>,
    /// Rounds to run; overrides the workflow's stopping.max_rounds.
    #[arg(long)]
    rounds: Option<u32>,
    /// Seed; overrides the workflow's campaign.seed (replicates with other simulated cells).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `labloop resume`.
#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The campaign's id (`labloop status` lists them).
    campaign: String,
    /// Store URL.
    #[arg(long)]
    store: String,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// If another engine runs the campaign, wait and take over when its lease runs out (a
    /// standby engine) instead of failing at once.
    #[arg(long)]
    wait: bool,
}

/// `labloop approve`.
#[derive(clap::Args)]
pub struct ApproveArgs {
    /// The campaign's id.
    campaign: String,
    /// Store URL.
    #[arg(long)]
    store: String,
    /// Only this experiment (default: every waiting one).
    #[arg(long)]
    experiment: Option<String>,
    /// Only this step.
    #[arg(long)]
    step: Option<String>,
    /// Who approves (recorded).
    #[arg(long, default_value = "cli")]
    by: String,
    /// A note recorded with the answer.
    #[arg(long)]
    note: Option<String>,
    /// Reject instead: the step fails and its `on_failure` policy applies (e.g. the experiment
    /// is aborted and its channel freed).
    #[arg(long)]
    reject: bool,
}

/// `labloop serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Store URL.
    #[arg(long, default_value = "sqlite://labloop-data/fast-charge-clo.sqlite")]
    store: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// `labloop report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The campaign.
    campaign: String,
    /// Store URL.
    #[arg(long)]
    store: String,
    /// Where to write the HTML (default: <campaign>-report.html).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn print_diagnostics(problems: &[Diagnostic]) {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!(
        "{} problem{} found",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
}

#[derive(Serialize)]
struct RunOutput<'a> {
    #[serde(flatten)]
    result: &'a CampaignResult,
    store: &'a str,
    simulator_truth: Option<SimulatorTruth>,
}

/// Runs a new campaign from a workflow file.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let overrides = Overrides {
        store: args.store.clone(),
        rounds: args.rounds,
        seed: args.seed,
    };
    let launch = Launch::from_file(&args.workflow, overrides, args.engine.ownership(false))?;
    execute_prepared(launch, &args.output)
}

/// Continues a campaign recorded in a store.
pub fn resume(args: &ResumeArgs) -> Result<ExitCode> {
    let ownership = args.engine.ownership(args.wait);
    let prepared =
        runtime()?.block_on(Launch::from_store(&args.campaign, &args.store, ownership))?;
    execute_prepared(prepared, &args.output)
}

/// Runs a prepared campaign, or prints the problems of its workflow (exit status 2).
fn execute_prepared(prepared: Prepared, output: &OutputArgs) -> Result<ExitCode> {
    match prepared {
        Ok(launch) => execute(launch, output.json, output.top),
        Err(problems) => {
            print_diagnostics(&problems);
            Ok(ExitCode::from(2))
        }
    }
}

/// Runs a campaign to its end or its pause, printing its progress and its result.
fn execute(launch: Launch, json: bool, top: usize) -> Result<ExitCode> {
    let workflow = launch.workflow.clone();
    let store_url = launch.store_url.clone();
    let store_url = store_url.as_str();
    let launched = runtime()?.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let progress = tokio::spawn(crate::progress::show(rx, !json));
        let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\npausing: running tests go on; Ctrl-C again to quit at once");
                let _ = pause_tx.send(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let launched = launch
            .run(tx, pause_rx, |notice| match notice {
                PauseNotice::Waiting { campaign, reason } => eprintln!(
                    "campaign {campaign} {reason}; waiting for a resume request (Ctrl-C quits)"
                ),
                PauseNotice::Resumed { campaign } => eprintln!("campaign {campaign} resumed"),
            })
            .await;
        let _ = progress.await;
        launched
    })?;
    let (result, truth) = match launched {
        Launched::Finished {
            result,
            simulator_truth,
        } => (result, simulator_truth),
        Launched::Paused { campaign, reason } => {
            eprintln!(
                "campaign {campaign} paused ({reason}); `labloop resume {campaign} --store {}` continues it",
                labloop_store::redact(store_url)
            );
            return Ok(ExitCode::from(3));
        }
    };

    if json {
        let out = RunOutput {
            result: &result,
            store: &labloop_store::redact(store_url),
            simulator_truth: truth,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        labloop_engine::summary::text(
            &result,
            &workflow,
            &labloop_store::redact(store_url),
            top,
            truth.as_ref()
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks workflow files (and starts their plugins); exit status 2 when any has a problem.
pub fn validate(paths: &[PathBuf]) -> Result<ExitCode> {
    let mut all_ok = true;
    for path in paths {
        let checked = labloop_workflow::load(path).and_then(|w| {
            let problems = match runtime() {
                Ok(rt) => rt.block_on(labloop_plugin::check::check_file(&w, path)),
                Err(e) => vec![labloop_workflow::diagnostic_at(
                    "",
                    &path.display().to_string(),
                    "plugins",
                    e.to_string(),
                )],
            };
            if problems.is_empty() {
                Ok(w)
            } else {
                Err(problems)
            }
        });
        match checked {
            Ok(w) => println!(
                "{}: ok ({} candidates, {} steps, up to {} rounds of {}{})",
                path.display(),
                labloop_engine::Candidates::of(&w).map_or(0, |c| c.len()),
                w.experiment.steps.len(),
                w.stopping.max_rounds,
                w.optimizer.batch_size,
                match w.plugins.len() {
                    0 => String::new(),
                    n => format!("; {n} plugin(s) started and checked"),
                }
            ),
            Err(problems) => {
                all_ok = false;
                print_diagnostics(&problems);
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Lists the datasets and campaigns of a store.
pub fn status(url: &str) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let store = Store::open(url).await?;
        let campaigns = store.campaigns().await?;
        if campaigns.is_empty() {
            println!("no campaigns in {}", labloop_store::redact(url));
        }
        for d in store.datasets().await? {
            println!(
                "dataset {:<20} {} files, {} cells, {} cycles",
                d.name, d.files, d.cells, d.cycles
            );
        }
        for c in campaigns {
            let exps = store.experiments(&c.id).await?;
            let records = store.count_records(&c.id).await?;
            println!(
                "{:<28} {:<10} {} experiments, {} records, created {}",
                c.id,
                c.state,
                exps.len(),
                records,
                c.created_at
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Serves the HTTP API and dashboard until Ctrl-C.
pub fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let (url, listen) = (args.store.as_str(), args.listen.as_str());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(labloop_server::server_config(cert, key).map_err(anyhow::Error::msg)?)
        }
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    runtime()?.block_on(async {
        let store = Store::open(url).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "serving {} on {}://{}",
            labloop_store::redact(url),
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?
        );
        labloop_server::serve(listener, store, tls, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving HTTP")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Writes a campaign's self-contained HTML report.
pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    let (campaign, url) = (args.campaign.as_str(), args.store.as_str());
    let html = runtime()?.block_on(async {
        let store = Store::open(url).await?;
        let html = labloop_server::report(&store, campaign).await?;
        store.close().await;
        anyhow::Ok(html)
    })?;
    let Some(html) = html else {
        bail!(
            "no campaign `{campaign}` in {}; `labloop status --store ...` lists them",
            labloop_store::redact(url)
        );
    };
    let default = PathBuf::from(format!("{}-report.html", campaign.replace('/', "_")));
    let path = args.out.as_ref().unwrap_or(&default);
    std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Creates an API token and prints its secret (once) on stdout, its id on stderr.
pub fn token_create(
    url: &str,
    role: &str,
    name: &str,
    capabilities: &[String],
) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let store = Store::connect(url).await?;
        let capabilities: Vec<&str> = capabilities.iter().map(String::as_str).collect();
        let (row, secret) = store.create_token(role, name, &capabilities).await?;
        store.close().await;
        eprintln!(
            "token {} ({}, for {}); keep the secret: it is not shown again",
            row.id, row.role, row.name
        );
        println!("{secret}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Revokes an API token by id.
pub fn token_revoke(url: &str, id: &str) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let store = Store::open(url).await?;
        let found = store.revoke_token(id).await?;
        store.close().await;
        if !found {
            bail!("no token `{id}` in {}", labloop_store::redact(url));
        }
        eprintln!("token {id} revoked");
        Ok(ExitCode::SUCCESS)
    })
}

/// Answers steps waiting for a person (approves, or rejects).
pub fn approve(args: &ApproveArgs) -> Result<ExitCode> {
    let answer = labloop_store::Approval {
        by: args.by.clone(),
        approved: !args.reject,
        note: args.note.clone(),
    };
    let (step, experiment) = (args.step.as_deref(), args.experiment.as_deref());
    let (answered, waiting) = runtime()?.block_on(async {
        let store = Store::open(&args.store).await?;
        anyhow::Ok(
            store
                .answer_waiting(&args.campaign, experiment, step, &answer)
                .await?,
        )
    })?;
    if answered.is_empty() {
        println!(
            "nothing waits for approval in {} ({waiting} waiting in all)",
            args.campaign
        );
        return Ok(ExitCode::from(1));
    }
    let verb = if answer.approved {
        "approved"
    } else {
        "rejected"
    };
    for p in answered {
        println!("{verb} {} / {}: {}", p.experiment_id, p.step, p.message);
    }
    Ok(ExitCode::SUCCESS)
}
