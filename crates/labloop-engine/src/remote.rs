//! Requests from people outside the engine (the dashboard, the HTTP API), read from the store: the
//! engine polls for open ones while it drives a campaign and acts on each exactly once.

use crate::context::Context;
use crate::{CampaignResult, CampaignRunner, EngineError};
use labloop_store::{CampaignRequest, RequestAction, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the engine looks for requests.
pub const POLL: Duration = Duration::from_millis(500);

/// Acts on `campaign`'s open requests until the task is dropped: pause and abort stop new steps
/// (tests already running go on, as on Ctrl-C); aborting an experiment stops it at once. A resume
/// while running has nothing to do and is only marked handled.
pub(crate) async fn watch(ctx: Arc<Context>, campaign: String) {
    loop {
        match ctx.store.requests(&campaign, true).await {
            Ok(open) => {
                for request in open {
                    // Marked first: a pause ends the run (and this task) at once, and a request
                    // left open would pause the campaign again when it resumes.
                    match ctx.store.handled(&request.id).await {
                        Ok(()) => act(&ctx, &request),
                        Err(e) => {
                            tracing::warn!(request = %request.id, error = %e, "could not take a request; trying again");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(campaign = %campaign, error = %e, "could not read requests"),
        }
        tokio::time::sleep(POLL).await;
    }
}

fn act(ctx: &Context, request: &CampaignRequest) {
    let who = &request.requested_by;
    tracing::info!(request = %request.id, action = request.action.as_str(), %who, "request");
    match request.action {
        RequestAction::Pause => {
            ctx.halt
                .pause(&format!("paused by {who} ({})", request.id), true);
        }
        RequestAction::Abort => {
            ctx.halt
                .abort(&format!("aborted by {who} ({})", request.id));
        }
        RequestAction::AbortExperiment => {
            if let Some(experiment) = &request.experiment_id {
                ctx.cancelled.send_modify(|set| {
                    set.insert(experiment.clone());
                });
            }
        }
        RequestAction::Resume => {}
    }
}

/// Waits until someone asks (through the store) to resume `campaign` — one paused by a person's
/// request — and marks the request handled.
pub async fn wait_for_resume(
    store: &labloop_store::Store,
    campaign: &str,
) -> Result<(), labloop_store::StoreError> {
    loop {
        for request in store.requests(campaign, true).await? {
            if request.action == RequestAction::Resume {
                store.handled(&request.id).await?;
                tracing::info!(request = %request.id, by = %request.requested_by, "resume request");
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How [`run_until_over`] left a campaign.
#[derive(Debug)]
pub enum RunOutcome {
    /// It ran to its end.
    Finished(CampaignResult),
    /// It stands paused — by `quit` (Ctrl-C), by a step's `on_failure: pause_campaign`, or by a
    /// person while `quit` fired — and `labloop resume` continues it.
    Paused {
        /// The campaign.
        campaign: String,
        /// Why.
        reason: String,
    },
}

/// What [`run_until_over`] tells its caller about a pause a person asked for.
#[derive(Debug)]
pub enum PauseNotice<'a> {
    /// Paused by a person: waiting for their resume request.
    Waiting {
        /// The campaign.
        campaign: &'a str,
        /// Who paused it and how.
        reason: &'a str,
    },
    /// A resume request came: the campaign goes on from the store.
    Resumed {
        /// The campaign.
        campaign: &'a str,
    },
}

/// Runs a campaign — a new one, or `resume` — until it is over, through the pauses people ask for
/// (the dashboard, the API): such a pause waits for their resume request ([`wait_for_resume`]) and
/// goes on from the store with a fresh runner from `runner`. A pause by `quit` (Ctrl-C; give the
/// runners the same receiver with [`CampaignRunner::with_pause`]) or by a step ends the run, as
/// does `quit` while waiting.
pub async fn run_until_over(
    runner: impl Fn() -> CampaignRunner,
    store: &Store,
    mut resume: Option<String>,
    quit: watch::Receiver<bool>,
    notify: impl Fn(PauseNotice<'_>),
) -> Result<RunOutcome, EngineError> {
    loop {
        let stretch = match &resume {
            Some(campaign) => runner().resume(campaign).await,
            None => runner().run().await,
        };
        match stretch {
            Ok(result) => return Ok(RunOutcome::Finished(result)),
            Err(EngineError::Paused {
                campaign,
                reason,
                by_request: true,
            }) if !*quit.borrow() => {
                notify(PauseNotice::Waiting {
                    campaign: &campaign,
                    reason: &reason,
                });
                let mut quitting = quit.clone();
                tokio::select! {
                    resumed = wait_for_resume(store, &campaign) => resumed?,
                    _ = quitting.wait_for(|q| *q) => {
                        return Ok(RunOutcome::Paused { campaign, reason });
                    }
                }
                notify(PauseNotice::Resumed {
                    campaign: &campaign,
                });
                resume = Some(campaign);
            }
            Err(EngineError::Paused {
                campaign, reason, ..
            }) => return Ok(RunOutcome::Paused { campaign, reason }),
            Err(other) => return Err(other),
        }
    }
}
