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

#[derive(Subcommand)]
enum Command {
    /// Run a campaign from a workflow file.
    Run(commands::RunArgs),
    /// Continue a campaign from the store (after a crash, a reboot or Ctrl-C).
    Resume(commands::ResumeArgs),
    /// Approve (or reject) steps that wait for a person (`approve:` steps).
    Approve(commands::ApproveArgs),
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
    Serve(commands::ServeArgs),
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
    Report(commands::ReportArgs),
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
        Command::Resume(args) => commands::resume(&args),
        Command::Approve(args) => commands::approve(&args),
        Command::Run(args) => commands::run(&args),
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
        Command::Report(args) => commands::report(&args),
        Command::Token(TokenCommand::Create {
            role,
            name,
            capabilities,
            store,
        }) => commands::token_create(&store, &role, &name, &capabilities),
        Command::Token(TokenCommand::Revoke { id, store }) => commands::token_revoke(&store, &id),
        Command::Serve(args) => commands::serve(&args),
        Command::Predict(command) => predict::run(&command).map(|()| ExitCode::SUCCESS),
        Command::Bench(command) => labloop_bench::run(&command).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
