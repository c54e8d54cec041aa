//! The subcommands: each wires library crates together and prints.

use anyhow::{Context, Result, bail};
use labloop_engine::launch::{Launch, Launched, Overrides, Prepared};
use labloop_engine::{CampaignResult, Ownership, PauseNotice};
use labloop_sim::SimulatorTruth;
use labloop_store::Store;
use labloop_workflow::{Diagnostic, Workflow};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

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

/// What the cells of a ranked candidate were seen to live: the mean of those cycled to end of
/// life, and the lower bound of those still alive when their test stopped (censored).
fn observed_life(r: &labloop_engine::RankedProtocol) -> String {
    let observed = r.mean_observed.map(|m| format!("{m:.0}"));
    let censored = r
        .at_least
        .map(|b| format!("≥ {b:.0} ({} censored)", r.censored));
    match (observed, censored) {
        (Some(o), Some(c)) => format!("{o}; {c}"),
        (Some(o), None) => o,
        (None, Some(c)) => c,
        (None, None) => "-".into(),
    }
}

#[derive(Serialize)]
struct RunOutput<'a> {
    #[serde(flatten)]
    result: &'a CampaignResult,
    store: &'a str,
    simulator_truth: Option<SimulatorTruth>,
}

/// Runs a new campaign from the workflow file at `path`.
pub fn run(
    path: &Path,
    overrides: Overrides,
    json: bool,
    top: usize,
    ownership: Ownership,
) -> Result<ExitCode> {
    execute_prepared(Launch::from_file(path, overrides, ownership)?, json, top)
}

/// Continues a campaign recorded in a store.
pub fn resume(
    campaign: &str,
    store_url: &str,
    json: bool,
    top: usize,
    ownership: Ownership,
) -> Result<ExitCode> {
    let prepared = runtime()?.block_on(Launch::from_store(campaign, store_url, ownership))?;
    execute_prepared(prepared, json, top)
}

/// Runs a prepared campaign, or prints the problems of its workflow (exit status 2).
fn execute_prepared(prepared: Prepared, json: bool, top: usize) -> Result<ExitCode> {
    match prepared {
        Ok(launch) => execute(launch, json, top),
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
    println!();
    println!(
        "Campaign {}: {} rounds, {} cells ({} failed), {} cycle records in {:.1} s  [{}]",
        result.campaign,
        result.rounds,
        result.cells,
        result.failed,
        result.records,
        result.wall_time_s,
        labloop_store::redact(store_url)
    );
    println!("Stopped by: {}.", result.stopped_by);
    let (what, heading) = if workflow.protocol_space().is_some() {
        ("protocols", "protocol (C-rates)")
    } else {
        ("candidates", "candidate")
    };
    let objective = &workflow.campaign.objective;
    let measured = objective
        .from
        .as_deref()
        .filter(|_| objective.measured().is_some());
    match measured {
        Some(from) => println!(
            "Objective: {}{} ({:?}), measured as {from}. Best {what}, the most assuredly good first (estimate {} 2σ):",
            objective.name,
            objective
                .unit
                .as_deref()
                .map(|u| format!(" [{u}]"))
                .unwrap_or_default(),
            objective.direction,
            match objective.direction {
                labloop_workflow::Direction::Maximize => "−",
                labloop_workflow::Direction::Minimize => "+",
            }
        ),
        None => println!(
            "Lifetime model: {}. Best {what}, the most assuredly good first (predicted life − 2σ):",
            result.model
        ),
    }
    println!();
    let shown = result.ranking.iter().take(top);
    if measured.is_some() {
        let width = shown
            .clone()
            .map(|r| r.protocol.chars().count())
            .chain([heading.len()])
            .max()
            .unwrap_or(22);
        println!(
            "{:>4}  {:<width$} {:>22}  {:>5}  {:>14}",
            "rank", heading, "estimate", "cells", "mean measured"
        );
        for r in shown {
            println!(
                "{:>4}  {:<width$} {:>12.3} ± {:<7.3}  {:>5}  {:>14}",
                r.rank,
                r.protocol,
                r.predicted_life,
                r.sigma,
                r.cells,
                r.mean_predicted.map_or("-".into(), |m| format!("{m:.3}")),
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = shown
        .clone()
        .map(|r| r.protocol.chars().count())
        .chain([heading.len()])
        .max()
        .unwrap_or(22);
    println!(
        "{:>4}  {:<width$} {:>18}  {:>5}  {:>14}  {:>20}",
        "rank", heading, "predicted life", "cells", "mean predicted", "observed life"
    );
    for r in shown {
        println!(
            "{:>4}  {:<width$} {:>10.0} ± {:<5.0}  {:>5}  {:>14}  {:>20}",
            r.rank,
            r.protocol,
            r.predicted_life,
            r.sigma,
            r.cells,
            r.mean_predicted.map_or("-".into(), |m| format!("{m:.0}")),
            observed_life(r)
        );
    }
    if result.ranking.iter().any(|r| r.censored > 0) {
        println!(
            "(≥ N: cells still alive at N cycles when their test stopped; their lives are lower bounds, not measurements.)"
        );
    }
    if let Some(t) = truth {
        println!();
        println!(
            "Simulator truth: the recommended protocol's mean life is {:.0} cycles, rank {} of {}; the best is {} at {:.0} ({:.1} % better).",
            t.recommended_true_life,
            t.recommended_true_rank,
            t.candidates,
            t.best_protocol,
            t.best_true_life,
            100.0 * (t.best_true_life / t.recommended_true_life - 1.0)
        );
        println!(
            "Early predictions against each simulated cell's true life: RMSE {:.0} cycles, MAPE {:.1} %.",
            t.prediction_rmse_cycles, t.prediction_mape_percent
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn validate(paths: &[std::path::PathBuf]) -> Result<ExitCode> {
    let mut all_ok = true;
    for path in paths {
        let checked = labloop_workflow::load(path).and_then(|w| {
            let problems = check_plugins(&w, path);
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

/// Starts each plugin of the workflow at `path` (in a scratch state folder) and checks the
/// workflow's use of it against its `hello`; the problems, located in the file.
fn check_plugins(workflow: &Workflow, path: &Path) -> Vec<Diagnostic> {
    if workflow.plugins.is_empty() {
        return Vec::new();
    }
    let file = path.display().to_string();
    let located = |problems: Vec<(String, String)>| -> Vec<Diagnostic> {
        let text = labloop_workflow::read_file(path).unwrap_or_default();
        problems
            .into_iter()
            .map(|(at, message)| labloop_workflow::diagnostic_at(&text, &file, &at, message))
            .collect()
    };
    let scratch = std::env::temp_dir().join(format!("labloop-validate-{}", std::process::id()));
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let plugins = match labloop_plugin::Plugins::of(workflow, folder, &scratch, None) {
        Ok(p) => p,
        Err(e) => return located(vec![("plugins".into(), e)]),
    };
    let problems = match runtime() {
        Ok(rt) => rt.block_on(async {
            let problems = labloop_plugin::check::check(workflow, &plugins).await;
            plugins.shutdown().await;
            problems
        }),
        Err(e) => vec![("plugins".into(), e.to_string())],
    };
    let _ = std::fs::remove_dir_all(&scratch);
    located(problems)
}

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

pub fn serve(
    url: &str,
    listen: &str,
    tls_cert: Option<&std::path::Path>,
    tls_key: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let tls = match (tls_cert, tls_key) {
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
pub fn report(campaign: &str, url: &str, out: Option<&std::path::Path>) -> Result<ExitCode> {
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
    let default = std::path::PathBuf::from(format!("{}-report.html", campaign.replace('/', "_")));
    let path = out.unwrap_or(&default);
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
    if !labloop_store::ROLES.contains(&role) {
        bail!(
            "--role {role}: expected one of {}",
            labloop_store::ROLES.join(", ")
        );
    }
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
pub fn approve(
    campaign: &str,
    store_url: &str,
    experiment: Option<&str>,
    step: Option<&str>,
    answer: &labloop_store::Approval,
) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let store = Store::open(store_url).await?;
        let pending = store.pending_approvals(campaign).await?;
        let chosen: Vec<_> = pending
            .iter()
            .filter(|p| experiment.is_none_or(|e| p.experiment_id == e))
            .filter(|p| step.is_none_or(|s| p.step == s))
            .collect();
        if chosen.is_empty() {
            println!(
                "nothing waits for approval in {campaign} ({} waiting in all)",
                pending.len()
            );
            return Ok(ExitCode::from(1));
        }
        for p in chosen {
            store.approve(&p.experiment_id, &p.step, answer).await?;
            let verb = if answer.approved {
                "approved"
            } else {
                "rejected"
            };
            println!("{verb} {} / {}: {}", p.experiment_id, p.step, p.message);
        }
        Ok(ExitCode::SUCCESS)
    })
}
