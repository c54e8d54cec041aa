//! How suggestions are made: strategy, first design, acquisition, kernel.

use super::*;

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
    /// Experiments per round (they run in parallel, one per channel).
    pub batch_size: u32,
    /// How the first round, with no data yet, is chosen.
    #[serde(default)]
    pub initial_design: InitialDesign,
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
    /// Uniform random picks without repeats (a baseline).
    Random,
}

/// First-round designs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitialDesign {
    /// Points spread over the space (k-medoids of the candidates).
    #[default]
    Spread,
    /// Uniform random picks.
    Random,
}

/// Batch acquisitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AcquisitionSpec {
    /// Thompson sampling from the joint posterior: picks in proportion to the chance of being best.
    Thompson,
    /// Upper confidence bound with hallucinated observations (GP-BUCB).
    Ucb,
    /// Expected improvement in log form (LogEI), picks hallucinated one after another.
    LogEi,
    /// Knowledge gradient for the recommendation: each pick is the cell expected to improve the
    /// protocol finally recommended most, picks hallucinated one after another.
    #[default]
    KnowledgeGradient,
    /// Half the picks by the knowledge gradient, half by Thompson draws, alternating.
    Portfolio,
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
