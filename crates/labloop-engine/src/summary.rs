//! The text `labloop run` prints when a campaign ends: what ran, why it stopped, the ranking
//! (measured objective or predicted life) and, for simulated cells, how the recommendation
//! compares with the simulator's truth.

use crate::{CampaignResult, RankedProtocol};
use labloop_sim::SimulatorTruth;
use labloop_workflow::{Direction, Workflow};
use std::fmt::Write;

/// The summary of a finished campaign: its counts, why it stopped, the first `top` of its ranking
/// and, when its cells were simulated, the simulator's truth. `store` is the store's URL as shown
/// to people (redacted).
pub fn text(
    result: &CampaignResult,
    workflow: &Workflow,
    store: &str,
    top: usize,
    truth: Option<&SimulatorTruth>,
) -> String {
    let mut out = String::new();
    write_text(&mut out, result, workflow, store, top, truth).expect("a String takes any text");
    out
}

fn write_text(
    out: &mut String,
    result: &CampaignResult,
    workflow: &Workflow,
    store: &str,
    top: usize,
    truth: Option<&SimulatorTruth>,
) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(
        out,
        "Campaign {}: {} rounds, {} cells ({} failed), {} cycle records in {:.1} s  [{}]",
        result.campaign,
        result.rounds,
        result.cells,
        result.failed,
        result.records,
        result.wall_time_s,
        store
    )?;
    writeln!(out, "Stopped by: {}.", result.stopped_by)?;
    let (what, heading) = if workflow.protocol_space().is_some() {
        ("protocols", "protocol (C-rates)")
    } else {
        ("candidates", "candidate")
    };
    let objective = &workflow.campaign.objective;
    let measured = objective
        .from
        .as_deref()
        .filter(|_| objective.measured().is_some());
    match measured {
        Some(from) => writeln!(
            out,
            "Objective: {}{} ({:?}), measured as {from}. Best {what}, the most assuredly good first (estimate {} 2σ):",
            objective.name,
            objective
                .unit
                .as_deref()
                .map(|u| format!(" [{u}]"))
                .unwrap_or_default(),
            objective.direction,
            match objective.direction {
                Direction::Maximize => "−",
                Direction::Minimize => "+",
            }
        ),
        None => writeln!(
            out,
            "Lifetime model: {}. Best {what}, the most assuredly good first (predicted life − 2σ):",
            result.model
        ),
    }?;
    writeln!(out)?;
    let shown = result.ranking.iter().take(top);
    let width = shown
        .clone()
        .map(|r| r.protocol.chars().count())
        .chain([heading.len()])
        .max()
        .unwrap_or(22);
    if measured.is_some() {
        writeln!(
            out,
            "{:>4}  {:<width$} {:>22}  {:>5}  {:>14}",
            "rank", heading, "estimate", "cells", "mean measured"
        )?;
        for r in shown {
            writeln!(
                out,
                "{:>4}  {:<width$} {:>12.3} ± {:<7.3}  {:>5}  {:>14}",
                r.rank,
                r.protocol,
                r.predicted_life,
                r.sigma,
                r.cells,
                r.mean_predicted.map_or("-".into(), |m| format!("{m:.3}")),
            )?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:>4}  {:<width$} {:>18}  {:>5}  {:>14}  {:>20}",
        "rank", heading, "predicted life", "cells", "mean predicted", "observed life"
    )?;
    for r in shown {
        writeln!(
            out,
            "{:>4}  {:<width$} {:>10.0} ± {:<5.0}  {:>5}  {:>14}  {:>20}",
            r.rank,
            r.protocol,
            r.predicted_life,
            r.sigma,
            r.cells,
            r.mean_predicted.map_or("-".into(), |m| format!("{m:.0}")),
            observed_life(r)
        )?;
    }
    if result.ranking.iter().any(|r| r.censored > 0) {
        writeln!(
            out,
            "(≥ N: cells still alive at N cycles when their test stopped; their lives are lower bounds, not measurements.)"
        )?;
    }
    if let Some(t) = truth {
        writeln!(out)?;
        writeln!(
            out,
            "Simulator truth: the recommended protocol's mean life is {:.0} cycles, rank {} of {}; the best is {} at {:.0} ({:.1} % better).",
            t.recommended_true_life,
            t.recommended_true_rank,
            t.candidates,
            t.best_protocol,
            t.best_true_life,
            100.0 * (t.best_true_life / t.recommended_true_life - 1.0)
        )?;
        writeln!(
            out,
            "Early predictions against each simulated cell's true life: RMSE {:.0} cycles, MAPE {:.1} %.",
            t.prediction_rmse_cycles, t.prediction_mape_percent
        )?;
    }
    Ok(())
}

/// What the cells of a ranked candidate were seen to live: the mean of those cycled to end of
/// life, and the lower bound of those still alive when their test stopped (censored).
fn observed_life(r: &RankedProtocol) -> String {
    let observed = r.mean_observed.map(|m| format!("{m:.0}"));
    let censored = r
        .at_least
        .map(|b| format!("≥ {b:.0} ({} censored)", r.censored));
    match (observed, censored) {
        (Some(o), Some(c)) => format!("{o}; {c}"),
        (Some(o), None) => o,
        (None, Some(c)) => c,
        (None, None) => "-".into(),
    }
}
