//! Progress bars (one per round) from the engine's events.

use indicatif::{ProgressBar, ProgressStyle};
use labloop_engine::EngineEvent;
use tokio::sync::mpsc::UnboundedReceiver;

/// Draws a bar per round until the engine's sender closes.
pub async fn show(mut events: UnboundedReceiver<EngineEvent>, enabled: bool) {
    let style = ProgressStyle::with_template(
        "{prefix:>9} [{bar:40.cyan/blue}] {pos:>6}/{len} cycles {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let mut bar: Option<ProgressBar> = None;
    let mut failures = 0;
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::ApprovalWaiting {
                experiment,
                step,
                message,
            } => {
                let line = format!(
                    "{experiment} / {step} waits for approval: {message} (labloop approve)"
                );
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
            EngineEvent::RoundStarted {
                round,
                experiments,
                cycles_per_experiment,
                method,
            } => {
                let b = if enabled {
                    ProgressBar::new((experiments as u64) * u64::from(cycles_per_experiment))
                } else {
                    ProgressBar::hidden()
                };
                b.set_style(style.clone());
                b.set_prefix(format!("round {round}"));
                b.set_message(format!("{experiments} cells, {method}"));
                bar = Some(b);
            }
            EngineEvent::CycleRecorded { records, .. } => {
                if let Some(b) = &bar {
                    b.inc(records as u64);
                }
            }
            EngineEvent::ExperimentFailed { experiment, reason } => {
                failures += 1;
                if let Some(b) = &bar {
                    b.println(format!("  failed: {experiment}: {reason}"));
                }
            }
            EngineEvent::RoundFinished { best, .. } => {
                if let Some(b) = bar.take() {
                    b.finish_with_message(format!(
                        "best so far {} ({:.0} ± {:.0} cycles){}",
                        best.protocol,
                        best.predicted_life,
                        best.sigma,
                        if failures > 0 {
                            format!(", {failures} failed")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            EngineEvent::ExperimentPredicted {
                experiment,
                cycle_life,
                sigma,
                out_of_domain: Some(why),
                ..
            } => {
                let line = format!(
                    "  warning: {experiment} is outside the model's training domain ({why}): \
                     {cycle_life:.0} ± {sigma:.0} cycles, σ widened"
                );
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
            EngineEvent::CampaignStarted { .. } | EngineEvent::ExperimentPredicted { .. } => {}
        }
    }
}
