//! The typed workflow. Field names are the YAML keys; every struct rejects unknown keys.

use labloop_core::{CcCvFinish, StepProtocolSpace};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole workflow file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// What is optimised, over what.
    pub campaign: CampaignSpec,
    /// How suggestions are made.
    pub optimizer: OptimizerSpec,
    /// When the campaign ends.
    pub stopping: StoppingSpec,
    /// The instruments that run experiments.
    pub instruments: Vec<InstrumentSpec>,
    /// What one experiment does.
    pub experiment: ExperimentSpec,
    /// Where the campaign is recorded.
    #[serde(default)]
    pub store: StoreSpec,
}

/// The campaign: a name, an objective and a search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// Name (letters, digits, `-`, `_`); the campaign's id in the store.
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of everything random in the campaign (optimizer starts, simulated cells).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// What is optimised.
    pub objective: ObjectiveSpec,
    /// Where suggestions come from.
    #[serde(with = "yaml_serde::with::singleton_map")]
    #[schemars(with = "SearchSpaceSpec")]
    pub search_space: SearchSpaceSpec,
}

fn default_seed() -> u64 {
    1
}

/// The objective and its direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSpec {
    /// The measured quantity.
    pub name: Objective,
    /// Whether larger or smaller is better.
    pub direction: Direction,
}

/// Quantities an experiment yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Cycles to 80 % of nominal capacity (predicted early, observed later).
    CycleLife,
}

/// Larger or smaller is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger is better.
    Maximize,
    /// Smaller is better.
    Minimize,
}

/// The search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SearchSpaceSpec {
    /// Multi-step constant-current fast-charging protocols (Attia et al. 2020).
    ChargeProtocol(ChargeProtocolSpec),
}

/// Constant-current steps over SOC windows in a fixed time: each step but the last from a grid, the
/// last derived so the steps take exactly `charge_time_min`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeProtocolSpec {
    /// SOC at the step boundaries, rising, e.g. `[0, 0.2, 0.4, 0.6, 0.8]` for four steps.
    pub soc_breakpoints: Vec<f64>,
    /// Minutes the constant-current steps take together.
    pub charge_time_min: f64,
    /// C-rate grids of every step but the last, in order.
    pub free_steps: Vec<Vec<f64>>,
    /// Bounds on the derived last step.
    pub last_step: RateBounds,
    /// Whole protocols (every step's C-rate) to leave out, e.g. a baseline.
    #[serde(default)]
    pub exclude: Vec<Vec<f64>>,
    /// The phase after the fast steps.
    pub finish: FinishSpec,
}

/// Inclusive C-rate bounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateBounds {
    /// Lowest allowed C-rate.
    pub min_c_rate: f64,
    /// Highest allowed C-rate.
    pub max_c_rate: f64,
}

/// Constant current to a voltage, then constant voltage to full.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishSpec {
    /// C-rate of the CC part.
    pub c_rate: f64,
    /// Voltage of the CV part (V).
    pub cv_voltage_v: f64,
}

/// How suggestions are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// The strategy.
    pub kind: OptimizerKind,
    /// GP kernel.
    #[serde(default)]
    pub kernel: KernelSpec,
    /// How a batch is chosen once there is data.
    #[serde(default)]
    pub acquisition: AcquisitionSpec,
    /// UCB weight on the posterior standard deviation (`acquisition: ucb` only).
    #[serde(default = "default_exploration")]
    pub exploration: f64,
    /// Experiments per round (one per channel in parallel).
    pub batch_size: u32,
    /// Starts of the hyperparameter fit.
    #[serde(default = "default_restarts")]
    pub restarts: u32,
}

fn default_exploration() -> f64 {
    2.0
}

fn default_restarts() -> u32 {
    3
}

/// Optimization strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Bayesian optimization over a Gaussian-process surrogate with fitted hyperparameters.
    GaussianProcess,
}

/// Batch acquisitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AcquisitionSpec {
    /// Thompson sampling from the joint posterior: picks in proportion to the chance of being best.
    #[default]
    Thompson,
    /// Upper confidence bound with hallucinated observations (GP-BUCB).
    Ucb,
    /// Expected improvement in log form (LogEI), picks hallucinated one after another.
    LogEi,
}

/// GP kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KernelSpec {
    /// Matérn 5/2 with one length scale per input.
    #[default]
    Matern52,
    /// Squared exponential with one length scale per input.
    Rbf,
}

/// When to stop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoppingSpec {
    /// Rounds of suggestions.
    pub max_rounds: u32,
    /// Cells in all (the last round is cut short to fit).
    #[serde(default)]
    pub max_cells: Option<u32>,
}

/// One instrument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSpec {
    /// Its name (channel ids are `<name>/chNN`).
    pub name: String,
    /// Which driver talks to it.
    pub driver: DriverKind,
    /// Channels it offers.
    pub channels: u32,
    /// Simulated seconds per real second (simulated instruments only).
    #[serde(default = "default_acceleration")]
    pub clock_acceleration: f64,
}

fn default_acceleration() -> f64 {
    1.0
}

/// Instrument drivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// The in-process simulated cycler (`drivers/sim`).
    Sim,
}

/// What one experiment does, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// The steps.
    #[serde(with = "yaml_serde::with::singleton_map_recursive")]
    #[schemars(with = "Vec<StepSpec>")]
    pub steps: Vec<StepSpec>,
}

/// One step of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    /// Cycle the cell under the suggested protocol.
    Cycle(CycleStep),
    /// Predict cycle life from the early cycles.
    Predict(PredictStep),
}

/// Cycling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CycleStep {
    /// Cycles to run.
    pub cycles: u32,
    /// Discharge current as a C-rate.
    pub discharge_c_rate: f64,
}

/// Early prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictStep {
    /// A built-in model (`severson-variance`, `severson-discharge`) or a model file path.
    pub model: String,
}

/// Where the campaign is recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// `sqlite://path` or `postgres://...`; default: `sqlite://labloop-data/<campaign>.sqlite`.
    #[serde(default)]
    pub url: Option<String>,
}

impl ChargeProtocolSpec {
    /// The space in core terms.
    pub fn to_space(&self) -> StepProtocolSpace {
        StepProtocolSpace {
            soc_breakpoints: self.soc_breakpoints.clone(),
            charge_time_s: self.charge_time_min * 60.0,
            grids: self.free_steps.clone(),
            last_step_bounds: (self.last_step.min_c_rate, self.last_step.max_c_rate),
            exclude: self.exclude.clone(),
            finish: CcCvFinish {
                c_rate: self.finish.c_rate,
                cv_voltage_v: self.finish.cv_voltage_v,
            },
        }
    }
}

impl Workflow {
    /// The charge-protocol space of the campaign.
    pub fn protocol_space(&self) -> StepProtocolSpace {
        match &self.campaign.search_space {
            SearchSpaceSpec::ChargeProtocol(spec) => spec.to_space(),
        }
    }

    /// Total channels over all instruments.
    pub fn total_channels(&self) -> u32 {
        self.instruments.iter().map(|i| i.channels).sum()
    }

    /// The cycling step (validation guarantees there is one).
    pub fn cycle_step(&self) -> Option<&CycleStep> {
        self.experiment.steps.iter().find_map(|s| match s {
            StepSpec::Cycle(c) => Some(c),
            StepSpec::Predict(_) => None,
        })
    }

    /// The prediction step, if any.
    pub fn predict_step(&self) -> Option<&PredictStep> {
        self.experiment.steps.iter().find_map(|s| match s {
            StepSpec::Predict(p) => Some(p),
            StepSpec::Cycle(_) => None,
        })
    }
}
