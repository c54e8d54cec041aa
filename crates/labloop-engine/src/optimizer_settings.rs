//! The optimizer a workflow's `optimizer` section asks for, in `labloop-optimize`'s terms; shared by
//! campaigns and by `labloop bench optimize`, so a benchmark replays what a campaign would run.

use labloop_optimize::{Acquisition, FitOptions, HyperPrior, KernelKind, bounds_of};
use labloop_workflow::{AcquisitionSpec, KernelSpec, Workflow};

/// How the surrogate is fitted over `inputs` (its box is theirs), seeded by the campaign's seed.
pub fn fit_options(wf: &Workflow, inputs: &[Vec<f64>]) -> FitOptions {
    FitOptions {
        kernel: match wf.optimizer.kernel {
            KernelSpec::Matern52 => KernelKind::Matern52,
            KernelSpec::Rbf => KernelKind::Rbf,
        },
        bounds: bounds_of(inputs),
        restarts: wf.optimizer.restarts as usize,
        seed: wf.campaign.seed,
        prior: HyperPrior::default(),
    }
}

/// How each batch is chosen once there is data.
pub fn acquisition(wf: &Workflow) -> Acquisition {
    match wf.optimizer.acquisition {
        AcquisitionSpec::Thompson => Acquisition::Thompson,
        AcquisitionSpec::Ucb => Acquisition::Ucb,
        AcquisitionSpec::LogEi => Acquisition::LogEi,
        AcquisitionSpec::KnowledgeGradient => Acquisition::KnowledgeGradient,
        AcquisitionSpec::Portfolio => Acquisition::Portfolio,
    }
}
