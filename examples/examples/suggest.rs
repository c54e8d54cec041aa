//! The optimizer on its own, as a library: a space-filling first batch over the CLO protocols,
//! observations of it (here from the simulator's ground truth plus the published noise, σ = 164
//! cycles), then the next batch by Thompson sampling and the current recommendation.
//! `cargo run -p labloop-examples --example suggest`
use labloop_optimize::{
    Acquisition, BatchRequest, DESIGN_SPREAD, FitOptions, GaussianProcess, HyperPrior,
    KNOWLEDGE_GRADIENT_SIGMAS, KernelKind, Observation, RECOMMENDATION_TREND_SHARE, bounds_of,
    rank, recommendation_fit, suggest_batch,
};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn request<'a>(
    inputs: &'a [Vec<f64>],
    observations: &'a [Observation],
    fit: &FitOptions,
) -> BatchRequest<'a> {
    BatchRequest {
        candidates: inputs,
        observations,
        pending: &[],
        batch_size: 24,
        acquisition: Acquisition::Thompson,
        exploration: 2.0,
        fit: fit.clone(),
        knowledge_gradient_sigmas: KNOWLEDGE_GRADIENT_SIGMAS,
        design_spread: DESIGN_SPREAD,
    }
}

fn main() {
    let workflow = labloop_examples::clo_workflow();
    let protocols = workflow
        .protocol_space()
        .expect("a charge-protocol campaign")
        .enumerate();
    let inputs: Vec<Vec<f64>> = protocols.iter().map(|p| p.c_rates()).collect();
    let fit = FitOptions {
        kernel: KernelKind::Matern52,
        bounds: bounds_of(&inputs),
        restarts: 3,
        seed: 7,
        prior: HyperPrior::default(),
    };

    let first = suggest_batch(&request(&inputs, &[], &fit)).expect("a design");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let noise = Normal::new(0.0, 164.0).expect("σ > 0");
    let observations: Vec<Observation> = first
        .picks
        .iter()
        .map(|&i| Observation {
            x: inputs[i].clone(),
            y: labloop_sim::expected_life(&protocols[i]) + noise.sample(&mut rng),
            noise_var: 164.0 * 164.0,
        })
        .collect();
    let next = suggest_batch(&request(&inputs, &observations, &fit)).expect("a batch");
    println!(
        "round 0 ({}): {:?}",
        first.method,
        first
            .picks
            .iter()
            .map(|&i| protocols[i].to_string())
            .collect::<Vec<_>>()
    );
    println!(
        "round 1 ({}): {:?}",
        next.method,
        next.picks
            .iter()
            .map(|&i| protocols[i].to_string())
            .collect::<Vec<_>>()
    );
    let gp = GaussianProcess::fit(
        &observations,
        &recommendation_fit(&fit, RECOMMENDATION_TREND_SHARE),
    )
    .expect("a fit");
    println!("hyperparameters: {:?}", gp.hyperparameters());
    for r in rank(&gp, &inputs).iter().take(5) {
        println!(
            "{:<20} {:>6.0} ± {:<4.0} (true {:.0})",
            protocols[r.index].to_string(),
            r.mean,
            r.sd,
            labloop_sim::expected_life(&protocols[r.index])
        );
    }
}
