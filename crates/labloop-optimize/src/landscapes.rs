//! Ground truths for the benchmark suite ([`crate::suite`]): families of landscapes over the CLO
//! protocol grid and over an electrolyte formulation space, each member drawn from its index so
//! the suite is the same on every machine. The simulator's physics variants and the published CLO
//! table are built by the caller (they need the simulator and a file) and join as plain
//! [`Landscape`]s.

use crate::kernel::scaled_distance2;
use crate::space::{Mixture, Parameter, Space};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::Serialize;

/// Which family a landscape belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// The published campaign's estimated lives (Attia et al. 2020).
    CloTable,
    /// labloop's simulator under other physics.
    Simulator,
    /// Draws from Gaussian-process priors over the CLO grid.
    GpPrior,
    /// Classic test functions mapped onto the CLO grid.
    TestFunction,
    /// Truths over the electrolyte formulation space (mixture, continuous and categorical).
    Formulation,
}

impl Family {
    /// The family's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::CloTable => "clo-table",
            Self::Simulator => "simulator",
            Self::GpPrior => "gp-prior",
            Self::TestFunction => "test-function",
            Self::Formulation => "formulation",
        }
    }
}

/// Which half of the suite a landscape is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Half {
    /// Defaults are chosen on these.
    Development,
    /// Held out: only reported.
    Validation,
}

impl Half {
    /// The rule of the split: even member indices of every family are for development, odd ones
    /// are held out for validation.
    pub fn of_member(member: usize) -> Self {
        if member.is_multiple_of(2) {
            Self::Development
        } else {
            Self::Validation
        }
    }

    /// The half's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Validation => "validation",
        }
    }
}

/// One ground truth and the campaign replayed against it.
#[derive(Clone, Debug)]
pub struct Landscape {
    /// `family/member` with what makes the member what it is.
    pub name: String,
    /// Its family.
    pub family: Family,
    /// Index within the family (decides the half, [`Half::of_member`]).
    pub member: usize,
    /// Each candidate's inputs as labloop sees them.
    pub inputs: Vec<Vec<f64>>,
    /// Each candidate's inputs as the published reference sees them.
    pub reference_inputs: Vec<Vec<f64>>,
    /// True mean of each candidate (larger is better).
    pub truth: Vec<f64>,
    /// Additive observation noise σ (cycles).
    pub noise_sd: f64,
    /// Multiplicative cell-to-cell spread (log-normal σ; 0 for none).
    pub relative_sd: f64,
    /// Cells per round.
    pub batch: usize,
    /// Rounds.
    pub rounds: u32,
}

impl Landscape {
    /// The half it is in.
    pub fn half(&self) -> Half {
        Half::of_member(self.member)
    }
}

/// The noise σ and batch size of a family's `member`: the suite's scenarios are spread over the
/// members, σ ∈ {50, 164, 300} cycles by `member % 3`, batch ∈ {48, 16, 8} by `(member / 3) % 3`,
/// so both halves see every noise level and every batch size.
pub fn scenario(member: usize) -> (f64, usize) {
    (
        [50.0, 164.0, 300.0][member % 3],
        [48, 16, 8][(member / 3) % 3],
    )
}

/// Rounds of every replayed campaign.
pub const ROUNDS: u32 = 4;

/// Candidates drawn from the formulation space for each formulation landscape.
pub const FORMULATION_CANDIDATES: usize = 400;

/// Maps raw values (any scale, larger better) to plausible cycle lives: the worst to a life drawn
/// in 400–700 cycles and the best to one in 1000–1300.
fn to_lives(values: &[f64], rng: &mut StdRng) -> Vec<f64> {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let worst = rng.random_range(400.0..700.0);
    let best = rng.random_range(1000.0..1300.0);
    values
        .iter()
        .map(|v| worst + (best - worst) * (v - lo) / (hi - lo).max(1e-12))
        .collect()
}

/// Points scaled to the unit box of their own bounds.
fn unit_box(points: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let bounds = crate::bounds_of(points);
    points
        .iter()
        .map(|p| crate::gp::scale(p, &bounds))
        .collect()
}

/// A Matérn correlation of smoothness `nu` (0.5, 1.5, 2.5; anything else is the RBF).
fn matern(nu: f64, r: f64) -> f64 {
    let s3 = 3f64.sqrt() * r;
    let s5 = 5f64.sqrt() * r;
    match nu {
        0.5 => (-r).exp(),
        1.5 => (1.0 + s3) * (-s3).exp(),
        2.5 => (1.0 + s5 + s5 * s5 / 3.0) * (-s5).exp(),
        _ => (-0.5 * r * r).exp(),
    }
}

/// One draw of a zero-mean GP with covariance `k` at the points.
fn gp_draw(n: usize, k: impl Fn(usize, usize) -> f64, rng: &mut StdRng) -> Vec<f64> {
    let mut cov = DMatrix::from_fn(n, n, k);
    for i in 0..n {
        cov[(i, i)] += 1e-8;
    }
    let chol = cov
        .cholesky()
        .expect("a kernel matrix with jitter is positive definite");
    let z = DVector::from_fn(n, |_, _| rng.sample::<f64, _>(StandardNormal));
    (chol.l() * z).iter().copied().collect()
}

/// GP-prior landscapes over the CLO grid: `members` draws whose smoothness (Matérn 1/2, 3/2, 5/2,
/// RBF by member), per-dimension length scales (log-uniform 0.12–1.2 of each range: anisotropy),
/// linear trend (up to twice the draw's spread, which puts many optima on edges and corners) and
/// monotone warp (power 0.5–2 of the standardised value: skew) vary. `free` are the candidates'
/// free C-rates, `inputs` labloop's inputs, `reference` the reference's.
pub fn gp_prior_family(
    free: &[Vec<f64>],
    inputs: &[Vec<f64>],
    reference: &[Vec<f64>],
    members: usize,
) -> Vec<Landscape> {
    let unit = unit_box(free);
    (0..members)
        .map(|member| {
            let mut rng = StdRng::seed_from_u64(0x6770_7072_696f_7200 + member as u64);
            let nu = [0.5, 1.5, 2.5, f64::INFINITY][member % 4];
            let d = unit[0].len();
            let ell: Vec<f64> = (0..d)
                .map(|_| rng.random_range(0.12f64.ln()..1.2f64.ln()).exp())
                .collect();
            let k = |i: usize, j: usize| {
                let r = scaled_distance2(&unit[i], &unit[j], &ell).sqrt();
                matern(nu, r)
            };
            let draw = gp_draw(unit.len(), k, &mut rng);
            let trend_size = rng.random_range(0.0..2.0);
            let w: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
            let power = rng.random_range(0.5f64.ln()..2.0f64.ln()).exp();
            let raw: Vec<f64> = draw
                .iter()
                .zip(&unit)
                .map(|(v, x)| v + trend_size * w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            let (lo, hi) = raw
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                    (l.min(*v), h.max(*v))
                });
            let warped: Vec<f64> = raw
                .iter()
                .map(|v| ((v - lo) / (hi - lo).max(1e-12)).powf(power))
                .collect();
            let (noise_sd, batch) = scenario(member);
            Landscape {
                name: format!(
                    "gp-prior/{member} nu={nu} ell={}",
                    ell.iter()
                        .map(|l| format!("{l:.2}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                family: Family::GpPrior,
                member,
                inputs: inputs.to_vec(),
                reference_inputs: reference.to_vec(),
                truth: to_lives(&warped, &mut rng),
                noise_sd,
                relative_sd: 0.0,
                batch,
                rounds: ROUNDS,
            }
        })
        .collect()
}

/// A classic test function to minimise, on points in its own domain, and that domain per input.
#[derive(Clone, Copy, Debug)]
enum TestFunction {
    Hartmann,
    Ackley,
    Rosenbrock,
    Branin,
    StyblinskiTang,
}

impl TestFunction {
    fn name(self) -> &'static str {
        match self {
            Self::Hartmann => "hartmann",
            Self::Ackley => "ackley",
            Self::Rosenbrock => "rosenbrock",
            Self::Branin => "branin",
            Self::StyblinskiTang => "styblinski-tang",
        }
    }

    /// Domain of input `k` (of `d`).
    fn domain(self, k: usize) -> (f64, f64) {
        match self {
            Self::Hartmann => (0.0, 1.0),
            Self::Ackley => (-5.0, 5.0),
            Self::Rosenbrock => (-2.0, 2.0),
            Self::Branin => [(-5.0, 10.0), (0.0, 15.0)]
                .get(k)
                .copied()
                .unwrap_or((0.0, 1.0)),
            Self::StyblinskiTang => (-5.0, 5.0),
        }
    }

    fn value(self, x: &[f64]) -> f64 {
        match self {
            Self::Hartmann => hartmann(x),
            Self::Ackley => {
                let d = x.len() as f64;
                let sq = x.iter().map(|v| v * v).sum::<f64>() / d;
                let cos = x
                    .iter()
                    .map(|v| (2.0 * std::f64::consts::PI * v).cos())
                    .sum::<f64>()
                    / d;
                -20.0 * (-0.2 * sq.sqrt()).exp() - cos.exp() + 20.0 + std::f64::consts::E
            }
            Self::Rosenbrock => x
                .windows(2)
                .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
                .sum::<f64>()
                // Its valley spans orders of magnitude: lives follow its logarithm.
                .ln_1p(),
            Self::Branin => {
                let (a, b) = (x[0], x[1]);
                let pi = std::f64::consts::PI;
                let branin = (b - 5.1 / (4.0 * pi * pi) * a * a + 5.0 / pi * a - 6.0).powi(2)
                    + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * a.cos()
                    + 10.0;
                // Inputs beyond two tilt it gently.
                branin + x[2..].iter().map(|v| 20.0 * (v - 0.3).powi(2)).sum::<f64>()
            }
            Self::StyblinskiTang => {
                x.iter()
                    .map(|v| v.powi(4) - 16.0 * v * v + 5.0 * v)
                    .sum::<f64>()
                    / 2.0
            }
        }
    }
}

/// Hartmann's 3- or 6-input function (inputs past 6 ignored, fewer than 6 but more than 3 padded
/// with 0.5).
fn hartmann(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    if x.len() <= 3 {
        const A: [[f64; 3]; 4] = [
            [3.0, 10.0, 30.0],
            [0.1, 10.0, 35.0],
            [3.0, 10.0, 30.0],
            [0.1, 10.0, 35.0],
        ];
        const P: [[f64; 3]; 4] = [
            [0.3689, 0.1170, 0.2673],
            [0.4699, 0.4387, 0.7470],
            [0.1091, 0.8732, 0.5547],
            [0.0381, 0.5743, 0.8828],
        ];
        return -(0..4)
            .map(|i| {
                let s: f64 = (0..x.len())
                    .map(|k| A[i][k] * (x[k] - P[i][k]).powi(2))
                    .sum();
                ALPHA[i] * (-s).exp()
            })
            .sum::<f64>();
    }
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    -(0..4)
        .map(|i| {
            let s: f64 = (0..6)
                .map(|k| A[i][k] * (x.get(k).copied().unwrap_or(0.5) - P[i][k]).powi(2))
                .sum();
            ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

/// A seeded placement of the unit box in a function's domain: the inputs permuted, each possibly
/// reflected, and mapped onto a window of 60–100 % of the domain at a random offset (so the optimum
/// lands elsewhere, or on an edge, from member to member).
fn placement(f: TestFunction, d: usize, rng: &mut StdRng) -> impl Fn(&[f64]) -> Vec<f64> + use<> {
    let mut order: Vec<usize> = (0..d).collect();
    order.shuffle(rng);
    let windows: Vec<(bool, f64, f64)> = (0..d)
        .map(|k| {
            let (lo, hi) = f.domain(k);
            let width = rng.random_range(0.6..1.0);
            let start = rng.random_range(0.0..=1.0 - width);
            (
                rng.random_bool(0.5),
                lo + (hi - lo) * start,
                (hi - lo) * width,
            )
        })
        .collect();
    move |u: &[f64]| {
        (0..d)
            .map(|k| {
                let (flip, from, width) = windows[k];
                let v = u[order[k]];
                from + width * if flip { 1.0 - v } else { v }
            })
            .collect()
    }
}

/// Test functions on the CLO grid: Hartmann-3, Ackley, Rosenbrock and Branin (a third input as a
/// gentle tilt), two placements each (members 2f and 2f + 1, so each function is in both halves).
pub fn test_function_family(
    free: &[Vec<f64>],
    inputs: &[Vec<f64>],
    reference: &[Vec<f64>],
) -> Vec<Landscape> {
    let unit = unit_box(free);
    let functions = [
        TestFunction::Hartmann,
        TestFunction::Ackley,
        TestFunction::Rosenbrock,
        TestFunction::Branin,
    ];
    (0..2 * functions.len())
        .map(|member| {
            let f = functions[member / 2];
            let mut rng = StdRng::seed_from_u64(0x7465_7374_666e_0000 + member as u64);
            let place = placement(f, unit[0].len(), &mut rng);
            let values: Vec<f64> = unit.iter().map(|u| -f.value(&place(u))).collect();
            let (noise_sd, batch) = scenario(member);
            Landscape {
                name: format!("test-function/{member} {}", f.name()),
                family: Family::TestFunction,
                member,
                inputs: inputs.to_vec(),
                reference_inputs: reference.to_vec(),
                truth: to_lives(&values, &mut rng),
                noise_sd,
                relative_sd: 0.0,
                batch,
                rounds: ROUNDS,
            }
        })
        .collect()
}

/// The electrolyte formulation space of `workflows/electrolyte-formulation.yaml`: EC 10–50 %, EMC
/// 20–80 %, DMC 0–40 %, FEC 0–15 % summing to 1, LiPF6 0.8–1.6 M, additive none | VC | LiDFOB | PES.
pub fn formulation_space() -> Space {
    let fraction = |name: &str, low: f64, high: f64| Parameter::Continuous {
        name: name.into(),
        low,
        high,
    };
    Space {
        parameters: vec![
            fraction("EC", 0.10, 0.50),
            fraction("EMC", 0.20, 0.80),
            fraction("DMC", 0.00, 0.40),
            fraction("FEC", 0.00, 0.15),
            fraction("LiPF6_molar", 0.8, 1.6),
            Parameter::Categorical {
                name: "additive".into(),
                choices: ["none", "VC", "LiDFOB", "PES"].map(String::from).to_vec(),
            },
        ],
        constraints: Vec::new(),
        mixture: Some(Mixture {
            components: vec![0, 1, 2, 3],
            total: 1.0,
        }),
    }
}

/// Truths over [`formulation_space`] ([`FORMULATION_CANDIDATES`] seeded feasible points each), three
/// kinds two members apart so each is in both halves: a GP draw whose kernel is a Matérn-5/2 over
/// the numbers times a categorical correlation (the additive matters on its own and through
/// interactions); Hartmann-6 over the numbers and the additive's place; Styblinski–Tang over the
/// numbers plus an offset per additive. labloop sees the encoded points (fractions, molarity,
/// one-hot additive); the reference sees them scaled to a box 4 wide, the width of the CLO grid's
/// C-rates its published γ = 1 was set for.
pub fn formulation_family(members: usize) -> Vec<Landscape> {
    let space = formulation_space();
    (0..members)
        .map(|member| {
            let mut rng = StdRng::seed_from_u64(0x666f_726d_756c_0000 + member as u64);
            let points = space
                .sample(FORMULATION_CANDIDATES, &mut rng)
                .expect("the formulation space is feasible");
            let inputs: Vec<Vec<f64>> = points.iter().map(|p| space.encode(p)).collect();
            let bounds = space.encoded_bounds();
            let numbers: Vec<Vec<f64>> = points
                .iter()
                .map(|p| crate::gp::scale(&p[..5], &bounds[..5]))
                .collect();
            let additive: Vec<usize> = points.iter().map(|p| p[5] as usize).collect();
            let kind = (member / 2) % 3;
            let values: Vec<f64> = match kind {
                0 => {
                    let ell: Vec<f64> = (0..5)
                        .map(|_| rng.random_range(0.2f64.ln()..1.5f64.ln()).exp())
                        .collect();
                    let rho = rng.random_range(0.2..0.9);
                    gp_draw(
                        points.len(),
                        |i, j| {
                            let r = scaled_distance2(&numbers[i], &numbers[j], &ell).sqrt();
                            let same = if additive[i] == additive[j] { 1.0 } else { rho };
                            matern(2.5, r) * same
                        },
                        &mut rng,
                    )
                }
                1 => {
                    let place = placement(TestFunction::Hartmann, 6, &mut rng);
                    numbers
                        .iter()
                        .zip(&additive)
                        .map(|(x, &a)| {
                            let mut u = x.clone();
                            u.push((a as f64 + 0.5) / 4.0);
                            -hartmann(&place(&u))
                        })
                        .collect()
                }
                _ => {
                    let place = placement(TestFunction::StyblinskiTang, 5, &mut rng);
                    let offsets: Vec<f64> = (0..4).map(|_| rng.random_range(-40.0..40.0)).collect();
                    numbers
                        .iter()
                        .zip(&additive)
                        .map(|(x, &a)| -TestFunction::StyblinskiTang.value(&place(x)) + offsets[a])
                        .collect()
                }
            };
            let (noise_sd, batch) = scenario(member);
            Landscape {
                name: format!(
                    "formulation/{member} {}",
                    ["gp-prior", "hartmann-6", "styblinski-tang"][kind]
                ),
                family: Family::Formulation,
                member,
                reference_inputs: inputs
                    .iter()
                    .map(|x| {
                        crate::gp::scale(x, &bounds)
                            .iter()
                            .map(|v| 4.0 * v)
                            .collect()
                    })
                    .collect(),
                inputs,
                truth: to_lives(&values, &mut rng),
                noise_sd,
                relative_sd: 0.0,
                batch,
                rounds: ROUNDS,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Vec<Vec<f64>> {
        (0..6)
            .flat_map(|i| {
                (0..6).flat_map(move |j| (0..5).map(move |k| vec![i as f64, j as f64, k as f64]))
            })
            .collect()
    }

    #[test]
    fn families_are_plausible_lives_and_reproducible() {
        let g = grid();
        let mut all = gp_prior_family(&g, &g, &g, 4);
        all.extend(test_function_family(&g, &g, &g));
        all.extend(formulation_family(3));
        for l in &all {
            let best = l.truth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let worst = l.truth.iter().copied().fold(f64::INFINITY, f64::min);
            assert!((1000.0..=1300.0).contains(&best), "{}: best {best}", l.name);
            assert!(
                (400.0..=700.0).contains(&worst),
                "{}: worst {worst}",
                l.name
            );
            assert_eq!(l.truth.len(), l.inputs.len());
            assert_eq!(l.truth.len(), l.reference_inputs.len());
        }
        let again = gp_prior_family(&g, &g, &g, 4);
        assert_eq!(again[3].truth, all[3].truth);
        // Different members are different landscapes.
        assert_ne!(all[0].truth, all[1].truth);
    }

    #[test]
    fn optima_move_around_the_grid() {
        // Across the grid families the best candidate is not always in the same place, and some
        // lie on the grid's boundary.
        let g = grid();
        let mut all = gp_prior_family(&g, &g, &g, 10);
        all.extend(test_function_family(&g, &g, &g));
        let best_of = |l: &Landscape| {
            (0..l.truth.len())
                .max_by(|&a, &b| l.truth[a].total_cmp(&l.truth[b]))
                .unwrap()
        };
        let places: std::collections::HashSet<usize> = all.iter().map(best_of).collect();
        assert!(places.len() >= all.len() / 2, "{places:?}");
        let on_edge = all
            .iter()
            .filter(|l| {
                let x = &g[best_of(l)];
                x[0] == 0.0
                    || x[0] == 5.0
                    || x[1] == 0.0
                    || x[1] == 5.0
                    || x[2] == 0.0
                    || x[2] == 4.0
            })
            .count();
        assert!(on_edge >= 3, "{on_edge}");
    }

    #[test]
    fn the_split_is_by_member_parity_and_covers_every_scenario() {
        assert_eq!(Half::of_member(4), Half::Development);
        assert_eq!(Half::of_member(7), Half::Validation);
        for half in [0, 1] {
            let scenarios: std::collections::HashSet<(u64, usize)> = (0..10)
                .filter(|m| m % 2 == half)
                .map(|m| {
                    let (s, b) = scenario(m);
                    (s as u64, b)
                })
                .collect();
            let noises: std::collections::HashSet<u64> = scenarios.iter().map(|s| s.0).collect();
            let batches: std::collections::HashSet<usize> = scenarios.iter().map(|s| s.1).collect();
            assert_eq!(noises.len(), 3, "{scenarios:?}");
            assert_eq!(batches.len(), 3, "{scenarios:?}");
        }
    }

    #[test]
    fn hartmann_has_its_known_minima() {
        let h3 = hartmann(&[0.114614, 0.555649, 0.852547]);
        assert!((h3 - -3.86278).abs() < 1e-4, "{h3}");
        let h6 = hartmann(&[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]);
        assert!((h6 - -3.32237).abs() < 1e-4, "{h6}");
    }
}
