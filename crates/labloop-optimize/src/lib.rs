//! Bayesian optimization for labloop: a Gaussian-process surrogate with fitted hyperparameters and
//! acquisitions that choose batches of experiments from a candidate set.
//!
//! - [`GaussianProcess`]: Matérn-5/2 or RBF kernel with one length scale per input (ARD), inputs scaled
//!   to the unit box, outputs standardised, a noise model that takes each observation's own variance
//!   (an early prediction's σ²) plus a fitted homoscedastic term; hyperparameters maximise the log
//!   marginal likelihood (with weak log-normal priors) by L-BFGS from several starts (argmin).
//! - [`suggest_batch`]: a batch for parallel channels from a discrete candidate set, by the
//!   knowledge gradient for the recommendation (the default), Thompson sampling from the joint
//!   posterior, GP-UCB with hallucinated observations (GP-BUCB, Desautels et al. 2014) or expected
//!   improvement in log form (LogEI); pending experiments are hallucinated as observed first. With
//!   no data yet, a representative (greedy k-medoids) design.
//! - [`Space`]: continuous, integer and categorical parameters, linear constraints and a mixture
//!   simplex, searched through seeded sets of feasible points.
//! - [`rank`]: candidates by a two-σ lower bound of the posterior, for the campaign's recommendation.
//! - [`bayesgap_batch`]: the published closed-loop algorithm (Attia et al. 2020) as a reference, and
//!   [`bench`]: replays of campaigns against a ground truth to compare strategies; [`suite`] runs
//!   them over many ground truths ([`landscapes`]), split into a development and a validation half.
//!
//! Pure computation: no I/O, no async. Everything is reproducible from the seed.

mod batch;
mod bayesgap;
pub mod bench;
pub mod censored;
mod confidence;
mod design;
mod gp;
mod kernel;
mod kg;
pub mod landscapes;
mod logei;
mod rank;
mod space;
pub mod suite;
mod update;

pub use batch::{
    Acquisition, BatchRequest, DESIGN_SPREAD, KNOWLEDGE_GRADIENT_SIGMAS, Suggestion, suggest_batch,
};
pub use bayesgap::{BayesGapSettings, bayesgap_batch, bayesgap_recommend};
pub use confidence::best_probability;
pub use gp::{
    FitOptions, GaussianProcess, HyperPrior, Hyperparameters, Observation, SIGNAL_EXCESS_FLOOR,
    bounds_of,
};
pub use kernel::KernelKind;
pub use logei::{log_expected_improvement, log_h};
pub use rank::{
    RECOMMENDATION_SIGMAS, RECOMMENDATION_TREND_SHARE, Ranked, rank, rank_by, recommendation_fit,
};
pub use space::{
    LinearConstraint, Mixture, Parameter, Space, SpaceError, SpaceOptimizeError, SpaceRequest,
    suggest_in_space,
};

/// What can go wrong, with what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimizeError {
    /// Inputs of inconsistent dimension.
    #[error("observation {index} has {got} inputs, expected {expected}")]
    Dimension {
        /// Which observation (or candidate).
        index: usize,
        /// Its dimension.
        got: usize,
        /// The space's dimension.
        expected: usize,
    },
    /// A value that is not a finite number.
    #[error("observation {index}: {what} is not finite")]
    NotFinite {
        /// Which observation.
        index: usize,
        /// Which value.
        what: &'static str,
    },
    /// Nothing to choose from.
    #[error("the candidate set is empty")]
    NoCandidates,
    /// The covariance could not be factorised even with jitter.
    #[error("the GP covariance is not positive definite even with jitter")]
    NotPositiveDefinite,
}
