//! Latency of choosing a batch of 48 (`cargo bench -p labloop-optimize --bench suggest`).
//!
//! - `clo-2000`: the 224 CLO protocols (4 inputs: every step's C-rate), 2 000 noisy observations
//!   spread over them (a long campaign with replicates), Thompson sampling and the knowledge
//!   gradient.
//! - `distinct-N`: N noisy observations at distinct random points of the unit 4-cube, 2 000 random
//!   candidates: the cost when nothing pools.
//!
//! - `update-N`: one new observation into a process conditioned on N distinct inputs, by
//!   `GaussianProcess::updated` (the factor grows by a row) against conditioning afresh with the
//!   same hyperparameters (`GaussianProcess::with_hyperparameters`).
//!
//! Prints the median of 5 runs per case, single-threaded, and — when `python3 -c 'import botorch'`
//! works — BoTorch's time on the same data (`benches/botorch_suggest.py`, one thread) and the ratio.
use labloop_optimize::{
    Acquisition, BatchRequest, DESIGN_SPREAD, FitOptions, GaussianProcess, HyperPrior,
    KNOWLEDGE_GRADIENT_SIGMAS, KernelKind, Observation, bounds_of, suggest_batch,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn clo_candidates() -> Vec<Vec<f64>> {
    let grids = [
        vec![3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0, 8.0],
        vec![3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0],
        vec![3.6, 4.0, 4.4, 4.8, 5.2, 5.6],
    ];
    let mut out = Vec::new();
    for &a in &grids[0] {
        for &b in &grids[1] {
            for &c in &grids[2] {
                let left = 1.0 / 6.0 - 0.2 / a - 0.2 / b - 0.2 / c;
                if left > 0.0 {
                    let d = 0.2 / left;
                    if (0.1..=4.81).contains(&d) && !(a == 4.8 && b == 4.8 && c == 4.8) {
                        out.push(vec![a, b, c, d]);
                    }
                }
            }
        }
    }
    out
}

fn truth(x: &[f64]) -> f64 {
    1100.0 - 30.0 * x.iter().map(|v| (v - 5.0).powi(2)).sum::<f64>()
}

/// Runs the BoTorch script on the same data, when `python3 -c 'import botorch'` works; its milliseconds.
fn botorch_ms(candidates: &[Vec<f64>], observations: &[Observation]) -> Option<f64> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import botorch"])
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    let json = format!(
        r#"{{"x": {:?}, "y": {:?}, "noise_var": {:?}, "candidates": {:?}, "batch": 48}}"#,
        observations.iter().map(|o| o.x.clone()).collect::<Vec<_>>(),
        observations.iter().map(|o| o.y).collect::<Vec<_>>(),
        observations.iter().map(|o| o.noise_var).collect::<Vec<_>>(),
        candidates
    );
    let path = std::env::temp_dir().join(format!("labloop-botorch-{}.json", std::process::id()));
    std::fs::write(&path, json).ok()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/botorch_suggest.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Times one case with the knowledge gradient (labloop's default) and Thompson sampling, and
/// BoTorch (qLogNEI) once on the same data; prints the ratio to each.
fn time_case(name: &str, candidates: &[Vec<f64>], observations: &[Observation]) {
    let ours: Vec<(&str, f64)> = [
        ("kg", Acquisition::KnowledgeGradient),
        ("thompson", Acquisition::Thompson),
    ]
    .into_iter()
    .map(|(method, acquisition)| {
        let request = BatchRequest {
            candidates,
            observations,
            pending: &[],
            batch_size: 48,
            acquisition,
            exploration: 0.0,
            fit: FitOptions {
                kernel: KernelKind::Matern52,
                bounds: bounds_of(candidates),
                restarts: 3,
                seed: 1,
                prior: HyperPrior::default(),
            },
            knowledge_gradient_sigmas: KNOWLEDGE_GRADIENT_SIGMAS,
            design_spread: DESIGN_SPREAD,
        };
        let ms = median_ms(|| {
            let s = suggest_batch(&request).expect("a batch");
            assert_eq!(s.picks.len(), 48);
        });
        (method, ms)
    })
    .collect();
    let reference = botorch_ms(candidates, observations);
    for (method, ms) in ours {
        let versus = match reference {
            Some(b) => format!("BoTorch qLogNEI {b:>9.1} ms = {:.0}x labloop", b / ms),
            None => "BoTorch not installed (pip install botorch): no comparison".into(),
        };
        println!(
            "{name:<14} {:>5} observations {:>5} candidates {method:>8}  labloop median {ms:>7.1} ms   {versus}",
            observations.len(),
            candidates.len()
        );
    }
}

fn median_ms(mut run: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

fn time_update(n: usize, rng: &mut StdRng) {
    let observation = |rng: &mut StdRng| {
        let x: Vec<f64> = (0..4).map(|_| rng.random_range(3.0..7.0)).collect();
        Observation {
            y: truth(&x) + rng.random_range(-160.0..160.0),
            x,
            noise_var: 164.0 * 164.0,
        }
    };
    let mut observations: Vec<Observation> = (0..n).map(|_| observation(rng)).collect();
    let options = FitOptions {
        kernel: KernelKind::Matern52,
        bounds: vec![(3.0, 7.0); 4],
        restarts: 1,
        seed: 1,
        prior: HyperPrior::default(),
    };
    let gp = GaussianProcess::fit(&observations, &options).expect("a fit");
    let arrival = observation(rng);
    let update = median_ms(|| {
        gp.updated(&arrival).expect("an update");
    });
    observations.push(arrival);
    let afresh = median_ms(|| {
        GaussianProcess::with_hyperparameters(&observations, &options, gp.hyperparameters())
            .expect("conditioned");
    });
    println!(
        "update-{n:<7} one observation into {n} distinct inputs: updated {update:>7.2} ms, conditioned afresh {afresh:>8.2} ms ({:.0}x)",
        afresh / update
    );
}

fn main() {
    let mut rng = StdRng::seed_from_u64(7);
    let clo = clo_candidates();
    let observations: Vec<Observation> = (0..2000)
        .map(|_| {
            let x = clo[rng.random_range(0..clo.len())].clone();
            Observation {
                y: truth(&x) + rng.random_range(-160.0..160.0),
                x,
                noise_var: 164.0 * 164.0,
            }
        })
        .collect();
    time_case("clo-2000", &clo, &observations);
    for n in [250, 500] {
        let points: Vec<Vec<f64>> = (0..2000)
            .map(|_| (0..4).map(|_| rng.random_range(3.0..7.0)).collect())
            .collect();
        let observations: Vec<Observation> = (0..n)
            .map(|_| {
                let x: Vec<f64> = (0..4).map(|_| rng.random_range(3.0..7.0)).collect();
                Observation {
                    y: truth(&x) + rng.random_range(-160.0..160.0),
                    x,
                    noise_var: 164.0 * 164.0,
                }
            })
            .collect();
        time_case(&format!("distinct-{n}"), &points, &observations);
    }
    for n in [500, 2000] {
        time_update(n, &mut rng);
    }
}
