//! Requests from people outside the engine (the dashboard, the HTTP API), read from the store: the
//! engine polls for open ones while it drives a campaign and acts on each exactly once.

use crate::context::Context;
use labloop_store::{CampaignRequest, RequestAction};
use std::sync::Arc;
use std::time::Duration;

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
