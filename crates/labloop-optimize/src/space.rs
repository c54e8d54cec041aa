//! Search spaces beyond a fixed candidate list: continuous, integer and categorical parameters, linear
//! constraints, and a mixture simplex (component fractions with bounds that sum to a total) for
//! electrolyte formulations. A space is searched by drawing a large seeded set of feasible points and
//! choosing among them with the discrete machinery ([`crate::suggest_batch`]); feasibility is checked
//! on every point drawn, so nothing infeasible is ever suggested.

use crate::OptimizeError;
use crate::batch::{
    Acquisition, BatchRequest, DESIGN_SPREAD, KNOWLEDGE_GRADIENT_SIGMAS, suggest_batch,
};
use crate::gp::{FitOptions, HyperPrior, Observation};
use crate::kernel::KernelKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

/// One parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    /// A real number in `[low, high]`.
    Continuous {
        /// Its name.
        name: String,
        /// Lowest value.
        low: f64,
        /// Highest value.
        high: f64,
    },
    /// An integer in `[low, high]`.
    Integer {
        /// Its name.
        name: String,
        /// Lowest value.
        low: i64,
        /// Highest value.
        high: i64,
    },
    /// One of a few named choices, stored as its index.
    Categorical {
        /// Its name.
        name: String,
        /// The choices.
        choices: Vec<String>,
    },
}

/// `low ≤ Σ coefficient × parameter ≤ high` over continuous or integer parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearConstraint {
    /// (parameter index, coefficient) pairs.
    pub terms: Vec<(usize, f64)>,
    /// Lower bound, if any.
    pub low: Option<f64>,
    /// Upper bound, if any.
    pub high: Option<f64>,
}

/// Continuous parameters that are fractions of a whole: each within its own bounds, summing to `total`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    /// Indices of the component parameters (each continuous).
    pub components: Vec<usize>,
    /// What they sum to (1 for fractions).
    pub total: f64,
}

/// A search space.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// The parameters, in order; a point is one value per parameter.
    pub parameters: Vec<Parameter>,
    /// Linear constraints.
    pub constraints: Vec<LinearConstraint>,
    /// At most one mixture.
    pub mixture: Option<Mixture>,
}

/// Mixture sums are exact to this.
const SUM_TOLERANCE: f64 = 1e-9;

/// Why a space cannot be searched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpaceError {
    /// A parameter's bounds are empty or not finite.
    #[error("parameter `{0}`: bounds are empty or not finite")]
    Bounds(String),
    /// A mixture's bounds cannot reach its total.
    #[error("mixture: component bounds sum to [{low}, {high}], which cannot make {total}")]
    Mixture {
        /// Sum of lower bounds.
        low: f64,
        /// Sum of upper bounds.
        high: f64,
        /// The required total.
        total: f64,
    },
    /// A constraint or mixture names a parameter that is missing or not numeric.
    #[error("constraint refers to parameter {0}, which is not a continuous or integer parameter")]
    Reference(usize),
    /// Sampling found too few feasible points.
    #[error(
        "found {found} feasible points of {wanted} wanted in {tries} draws: the constraints leave (almost) nothing"
    )]
    TooFewFeasible {
        /// Feasible points found.
        found: usize,
        /// Points asked for.
        wanted: usize,
        /// Draws made.
        tries: usize,
    },
}

impl Space {
    fn numeric_bounds(&self, i: usize) -> Option<(f64, f64)> {
        match self.parameters.get(i)? {
            Parameter::Continuous { low, high, .. } => Some((*low, *high)),
            Parameter::Integer { low, high, .. } => Some((*low as f64, *high as f64)),
            Parameter::Categorical { .. } => None,
        }
    }

    /// Checks the space is well formed and its mixture can reach its total.
    pub fn check(&self) -> Result<(), SpaceError> {
        for p in &self.parameters {
            let ok = match p {
                Parameter::Continuous { low, high, .. } => {
                    low.is_finite() && high.is_finite() && low <= high
                }
                Parameter::Integer { low, high, .. } => low <= high,
                Parameter::Categorical { choices, .. } => !choices.is_empty(),
            };
            if !ok {
                return Err(SpaceError::Bounds(p.name().to_owned()));
            }
        }
        for c in &self.constraints {
            if let Some(&(i, _)) = c
                .terms
                .iter()
                .find(|(i, _)| self.numeric_bounds(*i).is_none())
            {
                return Err(SpaceError::Reference(i));
            }
        }
        if let Some(m) = &self.mixture {
            let mut low = 0.0;
            let mut high = 0.0;
            for &i in &m.components {
                match self.parameters.get(i) {
                    Some(Parameter::Continuous {
                        low: l, high: h, ..
                    }) => {
                        low += l;
                        high += h;
                    }
                    _ => return Err(SpaceError::Reference(i)),
                }
            }
            if low > m.total + SUM_TOLERANCE || high < m.total - SUM_TOLERANCE {
                return Err(SpaceError::Mixture {
                    low,
                    high,
                    total: m.total,
                });
            }
        }
        Ok(())
    }

    /// Whether a point satisfies every bound, integrality, choice, constraint and the mixture.
    pub fn is_feasible(&self, x: &[f64]) -> bool {
        if x.len() != self.parameters.len() || x.iter().any(|v| !v.is_finite()) {
            return false;
        }
        let in_bounds = self.parameters.iter().zip(x).all(|(p, &v)| match p {
            Parameter::Continuous { low, high, .. } => v >= *low && v <= *high,
            Parameter::Integer { low, high, .. } => {
                v.fract() == 0.0 && v >= *low as f64 && v <= *high as f64
            }
            Parameter::Categorical { choices, .. } => {
                v.fract() == 0.0 && v >= 0.0 && (v as usize) < choices.len()
            }
        });
        let constraints = self.constraints.iter().all(|c| {
            let s: f64 = c.terms.iter().map(|(i, a)| a * x[*i]).sum();
            c.low.is_none_or(|l| s >= l - SUM_TOLERANCE)
                && c.high.is_none_or(|h| s <= h + SUM_TOLERANCE)
        });
        let mixture = self.mixture.as_ref().is_none_or(|m| {
            (m.components.iter().map(|&i| x[i]).sum::<f64>() - m.total).abs() <= SUM_TOLERANCE
        });
        in_bounds && constraints && mixture
    }

    /// `n` feasible points drawn at random (uniform within bounds; mixtures uniform on their bounded
    /// simplex). Fails when the constraints reject nearly every draw.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Result<Vec<Vec<f64>>, SpaceError> {
        self.check()?;
        let max_tries = 1000 * n.max(1);
        let mut out = Vec::with_capacity(n);
        let mut tries = 0;
        while out.len() < n && tries < max_tries {
            tries += 1;
            let x = self.draw(rng);
            if self.is_feasible(&x) {
                out.push(x);
            }
        }
        if out.len() < n {
            return Err(SpaceError::TooFewFeasible {
                found: out.len(),
                wanted: n,
                tries,
            });
        }
        Ok(out)
    }

    fn draw(&self, rng: &mut impl Rng) -> Vec<f64> {
        let mut x: Vec<f64> = self
            .parameters
            .iter()
            .map(|p| match p {
                Parameter::Continuous { low, high, .. } => rng.random_range(*low..=*high),
                Parameter::Integer { low, high, .. } => rng.random_range(*low..=*high) as f64,
                Parameter::Categorical { choices, .. } => rng.random_range(0..choices.len()) as f64,
            })
            .collect();
        if let Some(m) = &self.mixture {
            // Uniform on the simplex above the lower bounds (Dirichlet(1) by normalised exponentials);
            // points past an upper bound are rejected by the caller.
            let lows: Vec<f64> = m
                .components
                .iter()
                .map(|&i| self.numeric_bounds(i).map_or(0.0, |b| b.0))
                .collect();
            let free = m.total - lows.iter().sum::<f64>();
            let gamma = Gamma::new(1.0, 1.0).expect("valid shape");
            let g: Vec<f64> = m.components.iter().map(|_| gamma.sample(rng)).collect();
            let sum: f64 = g.iter().sum();
            for (k, &i) in m.components.iter().enumerate() {
                x[i] = lows[k] + free * g[k] / sum;
            }
            // Make the sum exact in floating point: the last component takes the rounding.
            let last = *m.components.last().expect("a mixture has components");
            let others: f64 = m
                .components
                .iter()
                .filter(|&&i| i != last)
                .map(|&i| x[i])
                .sum();
            x[last] = m.total - others;
        }
        x
    }

    /// The point as GP inputs: numbers as they are, a categorical as one-hot columns.
    pub fn encode(&self, x: &[f64]) -> Vec<f64> {
        let mut out = Vec::new();
        for (p, &v) in self.parameters.iter().zip(x) {
            match p {
                Parameter::Categorical { choices, .. } => {
                    out.extend((0..choices.len()).map(|c| f64::from(u8::from(c == v as usize))))
                }
                _ => out.push(v),
            }
        }
        out
    }

    /// Bounds of the encoded inputs.
    pub fn encoded_bounds(&self) -> Vec<(f64, f64)> {
        self.parameters
            .iter()
            .flat_map(|p| match p {
                Parameter::Categorical { choices, .. } => vec![(0.0, 1.0); choices.len()],
                Parameter::Continuous { low, high, .. } => vec![(*low, *high)],
                Parameter::Integer { low, high, .. } => vec![(*low as f64, *high as f64)],
            })
            .collect()
    }
}

/// How to choose a batch in a [`Space`].
#[derive(Clone, Debug)]
pub struct SpaceRequest<'a> {
    /// The space.
    pub space: &'a Space,
    /// Measured points (in the space's own terms) with their values and noise variances.
    pub observations: &'a [Observation],
    /// Points queued or running, not yet observed.
    pub pending: &'a [Vec<f64>],
    /// How many to choose.
    pub batch_size: usize,
    /// How to score.
    pub acquisition: Acquisition,
    /// UCB weight (UCB only).
    pub exploration: f64,
    /// Feasible points drawn to choose from.
    pub candidates: usize,
    /// Kernel.
    pub kernel: KernelKind,
    /// Seed of the draw and of the fit.
    pub seed: u64,
}

/// Chooses a batch of feasible points: draws `candidates` feasible points, adds the pending ones, and
/// picks among them as [`suggest_batch`] does (never a pending point, never one twice).
pub fn suggest_in_space(request: &SpaceRequest<'_>) -> Result<Vec<Vec<f64>>, SpaceOptimizeError> {
    let space = request.space;
    let mut rng = StdRng::seed_from_u64(request.seed);
    let mut points = space.sample(request.candidates, &mut rng)?;
    let pending: Vec<usize> = request
        .pending
        .iter()
        .map(|p| {
            points.push(p.clone());
            points.len() - 1
        })
        .collect();
    let encoded: Vec<Vec<f64>> = points.iter().map(|p| space.encode(p)).collect();
    let observations: Vec<Observation> = request
        .observations
        .iter()
        .map(|o| Observation {
            x: space.encode(&o.x),
            ..o.clone()
        })
        .collect();
    let batch = BatchRequest {
        candidates: &encoded,
        observations: &observations,
        pending: &pending,
        batch_size: request.batch_size,
        acquisition: request.acquisition,
        exploration: request.exploration,
        fit: FitOptions {
            kernel: request.kernel,
            bounds: space.encoded_bounds(),
            restarts: 3,
            seed: request.seed,
            prior: HyperPrior::default(),
        },
        knowledge_gradient_sigmas: KNOWLEDGE_GRADIENT_SIGMAS,
        design_spread: DESIGN_SPREAD,
    };
    Ok(suggest_batch(&batch)?
        .picks
        .into_iter()
        .map(|i| points[i].clone())
        .collect())
}

/// Why a batch could not be chosen in a space.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpaceOptimizeError {
    /// The space itself.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The optimizer.
    #[error(transparent)]
    Optimize(#[from] OptimizeError),
}

impl Parameter {
    /// The parameter's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Continuous { name, .. }
            | Self::Integer { name, .. }
            | Self::Categorical { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn cont(name: &str, low: f64, high: f64) -> Parameter {
        Parameter::Continuous {
            name: name.into(),
            low,
            high,
        }
    }

    /// An electrolyte: three solvent fractions with bounds summing to 1, a salt molarity, an additive
    /// count, a categorical salt, and a constraint on two of the solvents.
    fn electrolyte() -> Space {
        Space {
            parameters: vec![
                cont("ec", 0.1, 0.5),
                cont("emc", 0.2, 0.8),
                cont("dmc", 0.0, 0.6),
                cont("salt_molar", 0.8, 1.6),
                Parameter::Integer {
                    name: "additives".into(),
                    low: 0,
                    high: 3,
                },
                Parameter::Categorical {
                    name: "salt".into(),
                    choices: vec!["LiPF6".into(), "LiFSI".into()],
                },
            ],
            constraints: vec![LinearConstraint {
                terms: vec![(0, 1.0), (2, 1.0)],
                low: None,
                high: Some(0.7),
            }],
            mixture: Some(Mixture {
                components: vec![0, 1, 2],
                total: 1.0,
            }),
        }
    }

    #[test]
    fn sampled_points_are_always_feasible() {
        // Property: over many seeds and sizes, every drawn point passes every check.
        let space = electrolyte();
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let points = space.sample(200, &mut rng).unwrap();
            for x in &points {
                assert!(space.is_feasible(x), "seed {seed}: {x:?}");
                assert!((x[0] + x[1] + x[2] - 1.0).abs() <= 1e-9);
                assert!(x[0] + x[2] <= 0.7 + 1e-9);
                assert_eq!(x[4].fract(), 0.0);
            }
        }
    }

    #[test]
    fn infeasible_points_are_caught() {
        let space = electrolyte();
        assert!(
            !space.is_feasible(&[0.3, 0.3, 0.3, 1.0, 1.0, 0.0]),
            "sum 0.9"
        );
        assert!(
            !space.is_feasible(&[0.5, 0.2, 0.3, 1.0, 1.0, 0.0]),
            "ec + dmc = 0.8 > 0.7"
        );
        assert!(
            !space.is_feasible(&[0.3, 0.4, 0.3, 1.0, 1.5, 0.0]),
            "non-integer additives"
        );
        assert!(
            !space.is_feasible(&[0.3, 0.4, 0.3, 1.0, 1.0, 2.0]),
            "no third salt"
        );
        assert!(space.is_feasible(&[0.3, 0.4, 0.3, 1.0, 1.0, 1.0]));
    }

    #[test]
    fn impossible_mixtures_and_bad_references_are_named() {
        let mut space = electrolyte();
        space.parameters[1] = cont("emc", 0.0, 0.1);
        space.parameters[2] = cont("dmc", 0.0, 0.1);
        assert_eq!(
            space.check(),
            Err(SpaceError::Mixture {
                low: 0.1,
                high: 0.7,
                total: 1.0
            })
        );
        let mut space = electrolyte();
        space.constraints[0].terms.push((5, 1.0));
        assert_eq!(space.check(), Err(SpaceError::Reference(5)));
        let mut tight = electrolyte();
        tight.constraints.push(LinearConstraint {
            terms: vec![(0, 1.0)],
            low: Some(0.6),
            high: None,
        });
        assert!(matches!(
            tight.sample(10, &mut StdRng::seed_from_u64(1)),
            Err(SpaceError::TooFewFeasible { .. })
        ));
    }

    #[test]
    fn a_formulation_campaign_finds_the_best_blend() {
        // Best: ec 0.3, emc 0.5, dmc 0.2 at 1.2 M with LiFSI; every suggestion must be feasible.
        let space = electrolyte();
        let truth = |x: &[f64]| {
            1000.0
                - 2000.0 * ((x[0] - 0.3).powi(2) + (x[1] - 0.5).powi(2) + (x[2] - 0.2).powi(2))
                - 200.0 * (x[3] - 1.2).powi(2)
                - 20.0 * x[4]
                + 50.0 * x[5]
        };
        let mut observations: Vec<Observation> = Vec::new();
        for round in 0..5 {
            let request = SpaceRequest {
                space: &space,
                observations: &observations,
                pending: &[],
                batch_size: 8,
                acquisition: Acquisition::Thompson,
                exploration: 0.0,
                candidates: 1000,
                kernel: KernelKind::Matern52,
                seed: round,
            };
            for x in suggest_in_space(&request).unwrap() {
                assert!(space.is_feasible(&x), "{x:?}");
                observations.push(Observation {
                    y: truth(&x),
                    x,
                    noise_var: 1.0,
                });
            }
        }
        let best = observations
            .iter()
            .map(|o| o.y)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(best > 1000.0, "best found {best}");
    }

    #[test]
    fn categoricals_encode_one_hot() {
        let space = electrolyte();
        assert_eq!(
            space.encode(&[0.3, 0.4, 0.3, 1.2, 2.0, 1.0]),
            vec![0.3, 0.4, 0.3, 1.2, 2.0, 0.0, 1.0]
        );
        assert_eq!(space.encoded_bounds().len(), 7);
    }
}
