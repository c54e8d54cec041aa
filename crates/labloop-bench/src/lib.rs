//! labloop's benchmarks, behind `labloop bench ...`: each prints the comparison it exists for
//! (labloop against the published CLO algorithm and random on ground truths; against BoTorch,
//! navani and the like where a reference is named), so figures from two runs compare.
//!
//! - `optimize` (`optimize.rs`, the suite in `suite.rs`): campaigns replayed against ground truths;
//! - `engine`: the engine's own cost per step on an instant simulated clock;
//! - `mqtt`: records ingested through a broker; `queue`: claims per second;
//! - `predict`: featurize/predict throughput and training time per backend;
//! - `serve`: the monitoring server under live clients and paced reads;
//! - `plugin`: calls per second and latency through a plugin's pipes (Python SDK, Rust).

mod engine;
mod mqtt;
mod optimize;
mod plugin;
mod predict;
mod queue;
mod serve;
mod suite;

use clap::Subcommand;
use std::time::Duration;

/// A duration as workflows write it (`10ms`, `15s`, `2h`).
fn duration(text: &str) -> Result<Duration, String> {
    labloop_workflow::parse_duration(text).map(Duration::from_secs_f64)
}

/// The benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Replay campaigns against a ground truth for many seeds and compare strategies: labloop's
    /// optimizer as the workflow configures it, the published CLO algorithm (BayesGap, Attia et al.
    /// 2020) and random batches.
    ///
    /// The truth is `sim` (the simulator: each observation is the early prediction of a freshly
    /// simulated cell, with the model's own σ) or a CSV file with a header whose parameter columns are
    /// named like the space's parameters (cc1, cc2, cc3 for the CLO space: every step's C-rate but the
    /// derived last), other columns ignored, and the true mean in the last column (or --truth-column).
    /// E.g. ../shared/data/clo/clo_estimated_cycle_lives.csv. Each table observation is the true mean
    /// plus Gaussian noise of --noise-sd.
    ///
    /// Prints per strategy: median (and IQR) cells until the recommended candidate is within 3 % of the
    /// true best, how many seeds got there, the mean true value of the recommendation after each round
    /// (with the standard error of the last), the final simple regret, the median time to choose a
    /// batch, and the share of seeds within 3 % after each round. --json prints one object per
    /// strategy.
    Optimize(optimize::BenchArgs),
    /// The engine's own cost per experiment step: a robot-built, formed, cycled and predicted campaign
    /// on simulated instruments with an instant clock and random suggestions, so that what is timed
    /// is the engine and its store (events, locks, keyed commands, records stored before each ack).
    Engine(engine::EngineBenchArgs),
    /// Cycle records ingested end to end over MQTT (simulator → broker → driver → store): records/s,
    /// and the publish-to-stored latency with many channels at about one record per second each.
    Mqtt(mqtt::MqttBenchArgs),
    /// The job queue: claims per second and enqueue-to-completion latency, per store backend.
    Queue(queue::QueueBenchArgs),
    /// The lifetime predictor: featurize and predict throughput (cells/s) and training time, per
    /// model and backend, with the GPU/CPU ratio when a GPU is there.
    Predict(predict::PredictBenchArgs),
    /// The monitoring server under load: live-event clients and paced API reads while a simulated
    /// campaign ingests; latency percentiles.
    Serve(serve::ServeBenchArgs),
    /// The plugin protocol: calls per second and latency (mean, p50, p99) through a plugin's
    /// pipes, for `ping` and for a journalled measurement, one caller and several at once, for
    /// the Python SDK's example and the Rust example plugin. Run from the repository.
    Plugin(plugin::PluginBenchArgs),
}

/// Runs a benchmark and prints its figures.
pub fn run(command: &BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Optimize(args) => optimize::optimize(args),
        BenchCommand::Engine(args) => engine::engine(args),
        BenchCommand::Mqtt(args) => mqtt::mqtt(args),
        BenchCommand::Queue(args) => queue::queue(args),
        BenchCommand::Predict(args) => predict::predict(args),
        BenchCommand::Serve(args) => serve::serve(args),
        BenchCommand::Plugin(args) => plugin::plugin(args),
    }
}
