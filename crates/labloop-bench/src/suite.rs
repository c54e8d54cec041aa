//! `labloop bench optimize --suite NAME`: every strategy over many ground truths. The families
//! are `labloop_optimize::landscapes`; this file adds the two that need the outside world (the
//! published CLO table, a file; the simulator's physics variants, `labloop-sim`) and prints.

use crate::optimize::{BenchArgs, ProtocolGrid, read_table};
use anyhow::{Result, bail};
use labloop_optimize::landscapes::{
    Family, Half, Landscape, ROUNDS, formulation_family, gp_prior_family, scenario,
    test_function_family,
};
use labloop_optimize::suite::{HalfReport, LandscapeReport, aggregate, run_landscape};
use labloop_sim::{Physics, stress_under};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;

/// Members of the simulator and GP-prior families, and of the formulation family.
const SIMULATOR_MEMBERS: usize = 10;
const GP_PRIOR_MEMBERS: usize = 10;
const FORMULATION_MEMBERS: usize = 6;

/// The suites `--suite` accepts besides a family's name.
const SUITES: [&str; 3] = ["all", "development", "validation"];

/// Every landscape of the suite.
fn landscapes(args: &BenchArgs, grid: &ProtocolGrid) -> Result<Vec<Landscape>> {
    let mut all = Vec::new();
    let explicit =
        args.clo_table.to_str() != Some("../shared/data/clo/clo_estimated_cycle_lives.csv");
    if args.clo_table.exists() || explicit {
        let truth = read_table(&args.clo_table, None, &grid.names, &grid.free)?;
        all.push(Landscape {
            name: "clo-table/0 published estimates".into(),
            family: Family::CloTable,
            member: 0,
            inputs: grid.inputs.clone(),
            reference_inputs: grid.free.clone(),
            truth,
            noise_sd: 164.0,
            relative_sd: 0.0,
            batch: 48,
            rounds: ROUNDS,
        });
    } else {
        eprintln!(
            "note: {} not found; the suite runs without the clo-table landscape (--clo-table FILE)",
            args.clo_table.display()
        );
    }
    all.extend(simulator_family(grid));
    all.extend(gp_prior_family(
        &grid.free,
        &grid.inputs,
        &grid.free,
        GP_PRIOR_MEMBERS,
    ));
    all.extend(test_function_family(&grid.free, &grid.inputs, &grid.free));
    all.extend(formulation_family(FORMULATION_MEMBERS));
    Ok(all)
}

/// The simulator under other physics ([`Physics::variant`], seeded by member): expected lives over
/// the grid, each cell spread by its physics' cell-to-cell spread, plus the scenario's noise.
fn simulator_family(grid: &ProtocolGrid) -> Vec<Landscape> {
    (0..SIMULATOR_MEMBERS)
        .map(|member| {
            let mut rng = StdRng::seed_from_u64(0x7369_6d70_6879_0000 + member as u64);
            let physics = Physics::variant(&mut rng);
            let truth: Vec<f64> = grid
                .protocols
                .iter()
                .map(|p| stress_under(p, &physics).expected_life)
                .collect();
            let best = (0..truth.len())
                .max_by(|&a, &b| truth[a].total_cmp(&truth[b]))
                .expect("the grid has protocols");
            let (noise_sd, batch) = scenario(member);
            Landscape {
                name: format!(
                    "simulator/{member} best {}",
                    grid.free[best]
                        .iter()
                        .map(|c| format!("{c}"))
                        .collect::<Vec<_>>()
                        .join("-")
                ),
                family: Family::Simulator,
                member,
                inputs: grid.inputs.clone(),
                reference_inputs: grid.free.clone(),
                truth,
                noise_sd,
                relative_sd: physics.life_spread,
                batch,
                rounds: ROUNDS,
            }
        })
        .collect()
}

/// Runs the suite `name` and prints its table (or one JSON line per landscape and per half).
pub fn suite(args: &BenchArgs, name: &str) -> Result<()> {
    let grid = ProtocolGrid::load(args.space.as_deref())?;
    let mut all = landscapes(args, &grid)?;
    for l in &mut all {
        l.rounds = args.rounds;
    }
    if name == "list" {
        println!(
            "suites: {}, or a family: clo-table, simulator, gp-prior, test-function, formulation",
            SUITES.join(", ")
        );
        println!(
            "split: even member indices are the development half, odd ones the validation half"
        );
        println!(
            "options for --set: acquisition, kernel, restarts, exploration, recommendation_sigmas, knowledge_gradient_sigmas, design_spread, length_prior, signal_prior, noise_prior (centre,spread of the log), signal_excess_floor (a number or off), trend_share, input_warping (on or off)"
        );
        for l in &all {
            println!(
                "{:<44} {:<12} σ {:>3.0}{} batch {:>2}  {} candidates",
                l.name,
                l.half().name(),
                l.noise_sd,
                if l.relative_sd > 0.0 {
                    format!(" + {:.0} %", 100.0 * l.relative_sd)
                } else {
                    String::new()
                },
                l.batch,
                l.truth.len()
            );
        }
        return Ok(());
    }
    let chosen: Vec<&Landscape> = all
        .iter()
        .filter(|l| match name {
            "all" => true,
            "development" => l.half() == Half::Development,
            "validation" => l.half() == Half::Validation,
            family => l.family.name() == family,
        })
        .collect();
    if chosen.is_empty() {
        bail!(
            "unknown suite `{name}`: expected {}, a family (clo-table, simulator, gp-prior, test-function, formulation) or list",
            SUITES.join(", ")
        );
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let strategies = args.strategies()?;
    let template = grid.template(args.batch, args.rounds, &args.overrides)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let mut reports = Vec::new();
    for l in chosen {
        let report = run_landscape(l, &strategies, &template, args.seeds, threads)?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_landscape(&report);
        }
        reports.push(report);
    }
    for half in [Half::Development, Half::Validation] {
        let summary = aggregate(&reports, half, &strategies);
        if summary.landscapes == 0 {
            continue;
        }
        if args.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            print_half(&summary);
        }
    }
    if !args.json {
        println!(
            "\n{} landscapes × {} strategies × {} seeds in {:.0} s",
            reports.len(),
            strategies.len(),
            args.seeds,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn print_landscape(r: &LandscapeReport) {
    println!(
        "\n{} [{}] σ {:.0}{} batch {} — best {:.0}, median {:.0}",
        r.name,
        r.half.name(),
        r.noise_sd,
        if r.relative_sd > 0.0 {
            format!(" + {:.0} % spread", 100.0 * r.relative_sd)
        } else {
            String::new()
        },
        r.batch,
        r.best,
        r.median
    );
    for s in &r.strategies {
        let per_round: Vec<String> = s
            .mean_true_value_per_round
            .iter()
            .zip(&s.standard_error_per_round)
            .map(|(m, se)| format!("{m:>5.0}±{se:<3.0}"))
            .collect();
        let shares: Vec<String> = s
            .reached_per_round
            .iter()
            .map(|f| format!("{:>3.0}", 100.0 * f))
            .collect();
        println!(
            "  {:<14} {}  within 3 %: {} %  regret {:.0}",
            s.strategy.name(),
            per_round.join(" "),
            shares.join(" "),
            s.mean_simple_regret_per_round
                .last()
                .copied()
                .unwrap_or(f64::NAN)
        );
    }
    for (label, diff) in [
        ("labloop−random", &r.labloop_minus_random),
        ("labloop−clo", &r.labloop_minus_reference),
    ] {
        if let Some(d) = diff {
            let rounds: Vec<String> = d
                .iter()
                .map(|(m, se)| format!("{m:>+5.0}±{se:<3.0}"))
                .collect();
            println!("  {label:<14} {}", rounds.join(" "));
        }
    }
}

fn print_half(h: &HalfReport) {
    println!(
        "\n== {} half: {} landscapes ==",
        h.half.name(),
        h.landscapes
    );
    println!("mean normalised regret after each round ((best − value) / (best − median)):");
    for (s, rounds) in &h.mean_normalised_regret {
        let r: Vec<String> = rounds.iter().map(|v| format!("{v:.3}")).collect();
        println!("  {:<14} {}", s.name(), r.join(" "));
    }
    println!("mean share of seeds within 3 % after each round:");
    for (s, rounds) in &h.mean_share_within_target {
        let r: Vec<String> = rounds
            .iter()
            .map(|v| format!("{:.0} %", 100.0 * v))
            .collect();
        println!("  {:<14} {}", s.name(), r.join(" "));
    }
    if let Some(share) = h.share_labloop_ahead_every_round {
        println!(
            "labloop ahead of both baselines after every round on {:.0} % of landscapes",
            100.0 * share
        );
    }
    if h.labloop_clearly_below_random.is_empty() {
        println!("labloop is never more than 2 s.e. below random");
    } else {
        println!(
            "labloop more than 2 s.e. below random on: {}",
            h.labloop_clearly_below_random.join("; ")
        );
    }
}
