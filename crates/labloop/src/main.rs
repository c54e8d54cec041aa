//! `labloop`: the command-line front of labloop. Argument parsing and wiring only; everything else
//! lives in the library crates.

mod agent;
mod check_instrument;
mod commands;
mod export;
mod import;
mod predict;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Closed-loop autonomous battery experiments.
#[derive(Parser)]
#[command(name = "labloop", version, about)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// How this engine holds its campaign in the store (engines sharing a store never run one campaign
/// twice; one takes over when another dies).
#[derive(clap::Args)]
struct EngineArgs {
    /// This engine's name in the store (default: <host>/<pid>/<start time>).
    #[arg(long)]
    owner: Option<String>,
    /// How long the campaign stays this engine's without a renewal; another engine takes it over
    /// once it runs out (renewed every third of it).
    #[arg(long, default_value = "15s", value_parser = agent::duration)]
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

#[derive(Subcommand)]
enum Command {
    /// Run a campaign from a workflow file.
    Run {
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
        /// Print the result as JSON on stdout (no table).
        #[arg(long)]
        json: bool,
        /// Protocols shown in the ranking table.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Continue a campaign from the store (after a crash, a reboot or Ctrl-C).
    Resume {
        /// The campaign's id (`labloop status` lists them).
        campaign: String,
        /// Store URL.
        #[arg(long)]
        store: String,
        /// Print the result as JSON on stdout (no table).
        #[arg(long)]
        json: bool,
        /// Protocols shown in the ranking table.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        engine: EngineArgs,
        /// If another engine runs the campaign, wait and take over when its lease runs out (a
        /// standby engine) instead of failing at once.
        #[arg(long)]
        wait: bool,
    },
    /// Approve (or reject) steps that wait for a person (`approve:` steps).
    Approve {
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
    },
    /// Check workflow files and print every problem with file:line:col.
    Validate {
        /// The workflow files.
        #[arg(required = true)]
        workflows: Vec<PathBuf>,
    },
    /// Print the JSON Schema of workflow files (for editors: `# yaml-language-server: $schema=...`).
    Schema {
        /// The schema of shared instrument files (`include:`) instead.
        #[arg(long)]
        include: bool,
    },
    /// List the campaigns in a store.
    Status {
        /// Store URL.
        #[arg(long, default_value = "sqlite://labloop-data/fast-charge-clo.sqlite")]
        store: String,
    },
    /// Serve the HTTP API and dashboard over a store (tokens from `labloop token create`; HTTPS with --tls-cert).
    Serve {
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
    },
    /// Lifetime models: train, score (RMSE, MAPE, σ coverage) or run one on Qdlin cell arrays.
    #[command(subcommand)]
    Predict(predict::PredictCommand),
    /// Benchmarks that print comparable figures.
    #[command(subcommand)]
    Bench(labloop_bench::BenchCommand),
    /// A worker: claim queued jobs this machine can do and run a command for each.
    Agent(agent::AgentArgs),
    /// Check a bridge against drivers/PROTOCOL.md: a pass/fail report per rule, with what was sent
    /// and received.
    CheckInstrument(check_instrument::CheckArgs),
    /// Write a campaign's experiments and cycle records as Parquet or CSV files (pandas reads them),
    /// or an imported dataset as JSON.
    Export(export::ExportArgs),
    /// Import vendor cycler files (Arbin, Maccor, BioLogic, Neware, Novonix, Battery Archive, BDF)
    /// into a dataset of the store, or check what they hold (`--check [--json]`).
    Import(import::ImportArgs),
    /// Save a campaign's report as one self-contained HTML file (plots and tables, no server needed).
    Report {
        /// The campaign.
        campaign: String,
        /// Store URL.
        #[arg(long)]
        store: String,
        /// Where to write the HTML (default: <campaign>-report.html).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// API tokens for `labloop serve`: create (the secret is shown once) or revoke.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints its secret once (the store keeps only a hash).
    Create {
        /// viewer (read), operator (actions), worker (the queue API) or admin (tokens).
        #[arg(long)]
        role: String,
        /// Who or what it is for (shown in logs instead of the secret).
        #[arg(long, default_value = "unnamed")]
        name: String,
        /// A capability a worker token may claim jobs for (repeat for several); worker tokens
        /// need at least one and claim nothing else.
        #[arg(long = "capability", value_name = "NAME")]
        capabilities: Vec<String>,
        /// Store URL.
        #[arg(long)]
        store: String,
    },
    /// Revoke a token by its id (`tok_...`).
    Revoke {
        /// The token's id.
        id: String,
        /// Store URL.
        #[arg(long)]
        store: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = ["warn", "info", "debug"][usize::from(cli.verbose.min(2))];
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Resume {
            campaign,
            store,
            json,
            top,
            engine,
            wait,
        } => commands::resume(&campaign, &store, json, top, engine.ownership(wait)),
        Command::Approve {
            campaign,
            store,
            experiment,
            step,
            by,
            note,
            reject,
        } => commands::approve(
            &campaign,
            &store,
            experiment.as_deref(),
            step.as_deref(),
            &labloop_store::Approval {
                by,
                approved: !reject,
                note,
            },
        ),
        Command::Run {
            workflow,
            store,
            rounds,
            seed,
            json,
            top,
            engine,
        } => commands::run(
            &workflow,
            labloop_engine::launch::Overrides {
                store,
                rounds,
                seed,
            },
            json,
            top,
            engine.ownership(false),
        ),
        Command::Validate { workflows } => commands::validate(&workflows),
        Command::Schema { include } => {
            let schema = if include {
                labloop_workflow::include_schema()
            } else {
                labloop_workflow::schema()
            };
            println!("{schema}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { store } => commands::status(&store),
        Command::Agent(args) => agent::run(&args).map(|()| ExitCode::SUCCESS),
        Command::CheckInstrument(args) => check_instrument::run(&args),
        Command::Export(args) => export::export(&args).map(|()| ExitCode::SUCCESS),
        Command::Import(args) => import::run(&args),
        Command::Report {
            campaign,
            store,
            out,
        } => commands::report(&campaign, &store, out.as_deref()),
        Command::Token(TokenCommand::Create {
            role,
            name,
            capabilities,
            store,
        }) => commands::token_create(&store, &role, &name, &capabilities),
        Command::Token(TokenCommand::Revoke { id, store }) => commands::token_revoke(&store, &id),
        Command::Serve {
            store,
            listen,
            tls_cert,
            tls_key,
        } => commands::serve(&store, &listen, tls_cert.as_deref(), tls_key.as_deref()),
        Command::Predict(command) => predict::run(&command).map(|()| ExitCode::SUCCESS),
        Command::Bench(command) => labloop_bench::run(&command).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
