//! The benchmark suite: every strategy replayed over many ground truths ([`crate::landscapes`]),
//! with the same observation stream for every strategy under one seed, summarised per landscape
//! and in aggregate per half of the split ([`Half`]). Pure: the caller supplies the landscapes and
//! the settings of labloop's strategy; threads only split the seeds.

use crate::OptimizeError;
use crate::bayesgap::BayesGapSettings;
use crate::bench::{Replay, ReplaySettings, Strategy, Summary, replay, summarize};
use crate::gp::bounds_of;
use crate::landscapes::{Half, Landscape};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

/// The target of "within 3 %": `(1 − TOLERANCE) × best`.
pub const TOLERANCE: f64 = 0.03;

/// How one landscape went.
#[derive(Clone, Debug, Serialize)]
pub struct LandscapeReport {
    /// The landscape's name.
    pub name: String,
    /// Its family.
    pub family: &'static str,
    /// Its half.
    pub half: Half,
    /// Additive noise σ.
    pub noise_sd: f64,
    /// Multiplicative spread.
    pub relative_sd: f64,
    /// Cells per round.
    pub batch: usize,
    /// Candidates.
    pub candidates: usize,
    /// The true best value.
    pub best: f64,
    /// The median true value (normalised regret is relative to best − median).
    pub median: f64,
    /// One summary per strategy, in the order asked.
    pub strategies: Vec<Summary>,
    /// Per round, labloop's mean true value minus random's, and the standard error of that paired
    /// difference (same seeds, same observation streams); absent without both strategies.
    pub labloop_minus_random: Option<Vec<(f64, f64)>>,
    /// The same against the CLO reference.
    pub labloop_minus_reference: Option<Vec<(f64, f64)>>,
}

impl LandscapeReport {
    /// The summary of `strategy`, when it was run.
    pub fn summary(&self, strategy: Strategy) -> Option<&Summary> {
        self.strategies.iter().find(|s| s.strategy == strategy)
    }

    /// Mean normalised simple regret of `strategy` after each round: (best − value) / (best −
    /// median), 0 for the best candidate, 1 for a median one.
    pub fn normalised_regret(&self, strategy: Strategy) -> Option<Vec<f64>> {
        let scale = (self.best - self.median).max(1e-9);
        self.summary(strategy).map(|s| {
            s.mean_simple_regret_per_round
                .iter()
                .map(|r| r / scale)
                .collect()
        })
    }

    /// Whether labloop's mean is above both baselines' after every round.
    pub fn labloop_ahead_every_round(&self) -> Option<bool> {
        let ahead =
            |d: &Option<Vec<(f64, f64)>>| d.as_ref().map(|d| d.iter().all(|(m, _)| *m > 0.0));
        Some(ahead(&self.labloop_minus_random)? && ahead(&self.labloop_minus_reference)?)
    }

    /// Whether labloop falls more than two standard errors below random after some round.
    pub fn labloop_clearly_below_random(&self) -> Option<bool> {
        self.labloop_minus_random
            .as_ref()
            .map(|d| d.iter().any(|(m, se)| *m < -2.0 * se))
    }
}

/// The aggregate over one half.
#[derive(Clone, Debug, Serialize)]
pub struct HalfReport {
    /// Which half.
    pub half: Half,
    /// Landscapes in it.
    pub landscapes: usize,
    /// Per strategy: mean normalised regret after each round over the landscapes.
    pub mean_normalised_regret: Vec<(Strategy, Vec<f64>)>,
    /// Per strategy: mean share of seeds within 3 % after each round over the landscapes.
    pub mean_share_within_target: Vec<(Strategy, Vec<f64>)>,
    /// Share of landscapes on which labloop is ahead of both baselines after every round.
    pub share_labloop_ahead_every_round: Option<f64>,
    /// Landscapes on which labloop is more than 2 s.e. below random after some round.
    pub labloop_clearly_below_random: Vec<String>,
}

/// Replays every strategy over one landscape for `seeds` seeds (1..=seeds) on `threads` threads.
/// `template` carries labloop's strategy (kernel, restarts, acquisition, exploration); the batch,
/// rounds, box and the reference's noise come from the landscape.
pub fn run_landscape(
    landscape: &Landscape,
    strategies: &[Strategy],
    template: &ReplaySettings,
    seeds: u64,
    threads: usize,
) -> Result<LandscapeReport, OptimizeError> {
    let settings = settings_for(landscape, template);
    let problem = crate::bench::Problem {
        inputs: &landscape.inputs,
        reference_inputs: &landscape.reference_inputs,
        truth: &landscape.truth,
    };
    let mut per_strategy: Vec<(Strategy, Vec<Replay>)> = Vec::new();
    for &strategy in strategies {
        let all: Vec<u64> = (1..=seeds).collect();
        let replays = std::thread::scope(|scope| {
            let handles: Vec<_> = all
                .chunks(all.len().div_ceil(threads.max(1)))
                .map(|chunk| {
                    let (problem, settings) = (&problem, &settings);
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|&seed| {
                                let mut s = settings.clone();
                                s.seed = seed;
                                s.fit.seed = seed;
                                let mut observe = observer(landscape, seed);
                                replay(strategy, problem, &s, &mut observe)
                            })
                            .collect::<Result<Vec<Replay>, OptimizeError>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("replay thread"))
                .collect::<Result<Vec<Vec<Replay>>, OptimizeError>>()
        })?;
        per_strategy.push((strategy, replays.into_iter().flatten().collect()));
    }
    let mut sorted = landscape.truth.clone();
    sorted.sort_by(f64::total_cmp);
    let replays_of = |s: Strategy| per_strategy.iter().find(|(k, _)| *k == s).map(|(_, r)| r);
    let difference = |other: Strategy| {
        Some(paired_difference(
            replays_of(Strategy::Labloop)?,
            replays_of(other)?,
        ))
    };
    Ok(LandscapeReport {
        name: landscape.name.clone(),
        family: landscape.family.name(),
        half: landscape.half(),
        noise_sd: landscape.noise_sd,
        relative_sd: landscape.relative_sd,
        batch: landscape.batch,
        candidates: landscape.truth.len(),
        best: *sorted.last().unwrap_or(&0.0),
        median: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        strategies: per_strategy
            .iter()
            .map(|(s, r)| summarize(*s, r, &landscape.truth, landscape.batch, TOLERANCE))
            .collect(),
        labloop_minus_random: difference(Strategy::Random),
        labloop_minus_reference: difference(Strategy::CloReference),
    })
}

/// The replay settings for a landscape: labloop's from the template, the campaign's shape and the
/// reference's noise model from the landscape (the published prior otherwise).
pub fn settings_for(landscape: &Landscape, template: &ReplaySettings) -> ReplaySettings {
    let mut s = template.clone();
    s.batch = landscape.batch;
    s.rounds = landscape.rounds;
    s.fit.bounds = bounds_of(&landscape.inputs);
    let defaults = BayesGapSettings::default();
    s.reference = BayesGapSettings {
        noise_sd: (landscape.noise_sd.powi(2)
            + (landscape.relative_sd * defaults.prior_mean).powi(2))
        .sqrt(),
        ..defaults
    };
    s
}

/// The observation stream of one seed: the truth with log-normal spread and additive Gaussian
/// noise, reported with the variance a campaign's predictor would state for it. Every strategy gets
/// the same stream under one seed.
pub fn observer(landscape: &Landscape, seed: u64) -> impl FnMut(usize) -> (f64, f64) + '_ {
    let mut rng = observation_stream(seed);
    move |i| {
        noisy_observation(
            landscape.truth[i],
            landscape.noise_sd,
            landscape.relative_sd,
            &mut rng,
        )
    }
}

/// The random stream of one seed's observations (`labloop bench optimize --truth FILE` uses it too).
pub fn observation_stream(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x6f62_7365_7276_6521)
}

/// One observation of a candidate whose true mean is `truth`: log-normal cell-to-cell spread
/// `relative_sd` (no draw spent on it when 0), then Gaussian noise `noise_sd`; with the variance a
/// predictor would state for it.
pub fn noisy_observation(
    truth: f64,
    noise_sd: f64,
    relative_sd: f64,
    rng: &mut StdRng,
) -> (f64, f64) {
    let cell = if relative_sd > 0.0 {
        truth
            * Normal::new(0.0, relative_sd)
                .expect("σ ≥ 0")
                .sample(rng)
                .exp()
    } else {
        truth
    };
    let y = cell + Normal::new(0.0, noise_sd).expect("σ ≥ 0").sample(rng);
    (y, noise_sd.powi(2) + (relative_sd * y.abs()).powi(2))
}

/// Per round: mean of `a − b` over seeds (paired by seed) and its standard error.
fn paired_difference(a: &[Replay], b: &[Replay]) -> Vec<(f64, f64)> {
    let rounds = a
        .iter()
        .chain(b)
        .map(|r| r.true_value.len())
        .min()
        .unwrap_or(0);
    let n = a.len().min(b.len());
    (0..rounds)
        .map(|k| {
            let d: Vec<f64> = (0..n)
                .map(|s| a[s].true_value[k] - b[s].true_value[k])
                .collect();
            let mean = d.iter().sum::<f64>() / n as f64;
            let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0).max(1.0);
            (mean, (var / n as f64).sqrt())
        })
        .collect()
}

/// Aggregates the landscapes of one half.
pub fn aggregate(reports: &[LandscapeReport], half: Half, strategies: &[Strategy]) -> HalfReport {
    let mine: Vec<&LandscapeReport> = reports.iter().filter(|r| r.half == half).collect();
    let mean_over = |per: &dyn Fn(&LandscapeReport) -> Option<Vec<f64>>| -> Vec<f64> {
        let rows: Vec<Vec<f64>> = mine.iter().filter_map(|r| per(r)).collect();
        let rounds = rows.iter().map(Vec::len).min().unwrap_or(0);
        (0..rounds)
            .map(|k| rows.iter().map(|r| r[k]).sum::<f64>() / rows.len() as f64)
            .collect()
    };
    let ahead: Vec<bool> = mine
        .iter()
        .filter_map(|r| r.labloop_ahead_every_round())
        .collect();
    HalfReport {
        half,
        landscapes: mine.len(),
        mean_normalised_regret: strategies
            .iter()
            .map(|&s| (s, mean_over(&|r| r.normalised_regret(s))))
            .collect(),
        mean_share_within_target: strategies
            .iter()
            .map(|&s| {
                (
                    s,
                    mean_over(&|r| r.summary(s).map(|x| x.reached_per_round.clone())),
                )
            })
            .collect(),
        share_labloop_ahead_every_round: (!ahead.is_empty())
            .then(|| ahead.iter().filter(|a| **a).count() as f64 / ahead.len() as f64),
        labloop_clearly_below_random: mine
            .iter()
            .filter(|r| r.labloop_clearly_below_random() == Some(true))
            .map(|r| r.name.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HyperPrior;
    use crate::batch::Acquisition;
    use crate::gp::FitOptions;
    use crate::kernel::KernelKind;
    use crate::landscapes::{Family, gp_prior_family};

    #[test]
    fn a_small_suite_reports_every_strategy_and_both_halves() {
        let grid: Vec<Vec<f64>> = (0..5)
            .flat_map(|i| {
                (0..5).flat_map(move |j| (0..3).map(move |k| vec![i as f64, j as f64, k as f64]))
            })
            .collect();
        let mut landscapes = gp_prior_family(&grid, &grid, &grid, 2);
        for l in &mut landscapes {
            l.batch = 6;
            l.rounds = 2;
        }
        let template = ReplaySettings {
            batch: 0,
            rounds: 0,
            seed: 0,
            fit: FitOptions {
                kernel: KernelKind::Matern52,
                bounds: Vec::new(),
                restarts: 1,
                seed: 0,
                prior: HyperPrior::default(),
            },
            acquisition: Acquisition::KnowledgeGradient,
            exploration: 2.0,
            reference: BayesGapSettings::default(),
            recommendation_sigmas: 2.0,
            knowledge_gradient_sigmas: 2.0,
            design_spread: 0.0,
            recommendation_trend_share: crate::RECOMMENDATION_TREND_SHARE,
        };
        let reports: Vec<LandscapeReport> = landscapes
            .iter()
            .map(|l| run_landscape(l, &Strategy::ALL, &template, 4, 2).unwrap())
            .collect();
        for r in &reports {
            assert_eq!(r.family, Family::GpPrior.name());
            assert_eq!(r.strategies.len(), 3);
            assert_eq!(r.labloop_minus_random.as_ref().unwrap().len(), 2);
            for s in &r.strategies {
                assert_eq!(s.seeds, 4);
                // Every recommendation is a real candidate: regret between 0 and best − worst.
                for regret in &s.mean_simple_regret_per_round {
                    assert!(*regret >= 0.0 && *regret <= r.best - 400.0, "{regret}");
                }
            }
        }
        let dev = aggregate(&reports, Half::Development, &Strategy::ALL);
        let val = aggregate(&reports, Half::Validation, &Strategy::ALL);
        assert_eq!((dev.landscapes, val.landscapes), (1, 1));
        assert_eq!(dev.mean_normalised_regret.len(), 3);
        assert!(dev.share_labloop_ahead_every_round.is_some());
    }

    #[test]
    fn every_strategy_sees_the_same_observations_under_one_seed() {
        let grid: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64]).collect();
        let mut l = gp_prior_family(&grid, &grid, &grid, 1).remove(0);
        l.relative_sd = 0.1;
        let a: Vec<(f64, f64)> = (0..5)
            .map({
                let mut o = observer(&l, 3);
                move |i| o(i)
            })
            .collect();
        let b: Vec<(f64, f64)> = (0..5)
            .map({
                let mut o = observer(&l, 3);
                move |i| o(i)
            })
            .collect();
        assert_eq!(a, b);
        let c: Vec<(f64, f64)> = (0..5)
            .map({
                let mut o = observer(&l, 4);
                move |i| o(i)
            })
            .collect();
        assert_ne!(a, c);
        // The stated variance includes the spread's share.
        assert!(
            a.iter().all(
                |(y, v)| *v > l.noise_sd.powi(2) && *v < l.noise_sd.powi(2) + (0.2 * y).powi(2)
            )
        );
    }
}
