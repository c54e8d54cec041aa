//! Live updates as server-sent events: `GET /api/campaigns/{id}/events`.
//!
//! One watcher per campaign (however many clients listen) compares cheap snapshots of the store
//! twice a second and broadcasts what changed:
//!
//! - `record` `{"experiment", "points": [[cycle, Ah], …]}` — new cycle records;
//! - `state` `{"experiment", "state", "channel"}` — an experiment moved on; `alarm` as well when it
//!   failed or was aborted;
//! - `prediction` `{"experiment", "cycle_life", "sigma", "observed_life"}`;
//! - `queue` `{"waiting": {capability: jobs}}`;
//! - `campaign` `{"state"}`, `approvals` `{"waiting"}`, `surrogate` `{"round"}` (a new map of the
//!   space after a round);
//! - `resync` — this client fell behind and should reload.
//!
//! The watcher stops when its last client leaves.

use crate::auth::{Caller, READERS};
use crate::{ApiError, AppState, known_campaign};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use labloop_store::Store;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often a campaign's watcher looks at the store.
const POLL: Duration = Duration::from_millis(500);

/// One event for every listener of a campaign.
#[derive(Clone, Debug)]
pub(crate) struct LiveEvent {
    kind: &'static str,
    data: String,
}

/// The campaigns being watched, each with its broadcast channel.
#[derive(Default)]
pub(crate) struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<LiveEvent>>>,
}

impl Hub {
    /// A receiver of `campaign`'s events, starting its watcher if none runs.
    fn subscribe(
        self: &std::sync::Arc<Self>,
        store: &Store,
        campaign: &str,
    ) -> broadcast::Receiver<LiveEvent> {
        let mut channels = self.channels.lock().expect("hub lock");
        if let Some(tx) = channels.get(campaign) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(1024);
        channels.insert(campaign.to_owned(), tx.clone());
        tokio::spawn(watch(
            std::sync::Arc::clone(self),
            store.clone(),
            campaign.to_owned(),
            tx,
        ));
        rx
    }

    /// Clients connected to a campaign's events (for metrics).
    pub(crate) fn listeners(&self) -> usize {
        self.channels
            .lock()
            .expect("hub lock")
            .values()
            .map(broadcast::Sender::receiver_count)
            .sum()
    }
}

/// `GET /api/campaigns/{id}/events`.
#[utoipa::path(get, path = "/api/campaigns/{id}/events", tag = "live", params(("id" = String, Path, description = "campaign id")), responses((status = 200, description = "text/event-stream: record, state, alarm (failed experiments, paused campaigns, out-of-domain predictions), prediction, campaign, approvals, resync", content_type = "text/event-stream", body = String), (status = 404)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(READERS)?;
    known_campaign(&state.store, &id).await?;
    let rx = state.hub.subscribe(&state.store, &id);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(e) => Event::default().event(e.kind).data(e.data),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("resync").data("{}")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What the watcher saw last.
#[derive(Default)]
struct Snapshot {
    last_cycles: HashMap<String, u32>,
    states: HashMap<String, (String, Option<String>)>,
    predictions: HashMap<String, (f64, Option<f64>)>,
    campaign_state: Option<labloop_core::CampaignState>,
    approvals: usize,
    surrogate_round: Option<u32>,
    queue: Vec<(String, u64)>,
}

async fn watch(
    hub: std::sync::Arc<Hub>,
    store: Store,
    campaign: String,
    tx: broadcast::Sender<LiveEvent>,
) {
    let mut seen: Option<Snapshot> = None;
    loop {
        if tx.receiver_count() == 0 {
            let mut channels = hub.channels.lock().expect("hub lock");
            // A client may have subscribed since the count was read.
            if tx.receiver_count() == 0 {
                channels.remove(&campaign);
                return;
            }
        }
        match look(&store, &campaign, seen.as_ref()).await {
            Ok((now, events)) => {
                for e in events {
                    let _ = tx.send(e);
                }
                seen = Some(now);
            }
            Err(e) => {
                tracing::warn!(campaign = %campaign, error = %e, "live watcher could not read the store")
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The store now, and the events since `before` (none on the first look: clients load the
/// current state through the API).
async fn look(
    store: &Store,
    campaign: &str,
    before: Option<&Snapshot>,
) -> Result<(Snapshot, Vec<LiveEvent>), labloop_store::StoreError> {
    let mut now = Snapshot::default();
    let mut events = Vec::new();
    let mut emit = |kind: &'static str, data: serde_json::Value| {
        events.push(LiveEvent {
            kind,
            data: data.to_string(),
        });
    };
    for (experiment, last) in store.last_cycles(campaign).await? {
        if let Some(before) = before {
            let was = before.last_cycles.get(&experiment).copied().unwrap_or(0);
            if last > was {
                let points = store.capacity_points(&experiment, was).await?;
                emit(
                    "record",
                    serde_json::json!({"experiment": experiment, "points": points}),
                );
            }
        }
        now.last_cycles.insert(experiment, last);
    }
    for e in store.experiments(campaign).await? {
        let state = (e.state.to_string(), e.channel_id.clone());
        if let Some(before) = before
            && before.states.get(&e.id) != Some(&state)
        {
            let data =
                serde_json::json!({"experiment": e.id, "state": state.0, "channel": state.1});
            if matches!(state.0.as_str(), "failed" | "aborted") {
                // What happened: the last failed step's reason, where there is one.
                let mut alarm = data.clone();
                let failed = store
                    .step_states(&e.id)
                    .await?
                    .into_iter()
                    .filter(|(_, s)| s.state == labloop_core::StepState::Failed)
                    .filter_map(|(step, s)| s.detail.map(|d| (step, d)))
                    .next_back();
                if let Some((step, reason)) = failed {
                    alarm["step"] = serde_json::json!(step);
                    alarm["reason"] = serde_json::json!(reason);
                }
                emit("alarm", alarm);
            }
            emit("state", data);
        }
        now.states.insert(e.id, state);
    }
    for o in store.observations(campaign).await? {
        let value = (o.prediction.cycle_life, o.observed.map(|(life, _)| life));
        if let Some(before) = before
            && before.predictions.get(&o.experiment_id) != Some(&value)
        {
            if let Some(why) = &o.prediction.out_of_domain
                && !before.predictions.contains_key(&o.experiment_id)
            {
                emit(
                    "alarm",
                    serde_json::json!({"experiment": o.experiment_id, "out_of_domain": why}),
                );
            }
            emit(
                "prediction",
                serde_json::json!({
                    "experiment": o.experiment_id, "cycle_life": value.0,
                    "sigma": o.prediction.sigma, "observed_life": value.1,
                }),
            );
        }
        now.predictions.insert(o.experiment_id, value);
    }
    now.campaign_state = store.campaign(campaign).await?.map(|c| c.state);
    now.approvals = store.pending_approvals(campaign).await?.len();
    now.surrogate_round = store.surrogate_round(campaign).await?;
    now.queue = store.queue_depth().await?;
    if let Some(before) = before {
        if before.campaign_state != now.campaign_state {
            let state = now.campaign_state.map_or("", |s| s.as_str());
            emit("campaign", serde_json::json!({"state": state}));
            use labloop_core::CampaignState::{Failed, Paused};
            if matches!(now.campaign_state, Some(Paused | Failed)) {
                emit(
                    "alarm",
                    serde_json::json!({"campaign": campaign, "state": state}),
                );
            }
        }
        if before.queue != now.queue {
            emit(
                "queue",
                serde_json::json!({ "waiting": crate::reads::waiting(&now.queue) }),
            );
        }
        if before.surrogate_round != now.surrogate_round {
            emit(
                "surrogate",
                serde_json::json!({"round": now.surrogate_round}),
            );
        }
        if before.approvals != now.approvals {
            emit("approvals", serde_json::json!({"waiting": now.approvals}));
        }
    }
    Ok((now, events))
}
