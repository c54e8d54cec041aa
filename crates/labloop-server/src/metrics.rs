//! Prometheus metrics at `/metrics` (text exposition format; any reader token, sent by Prometheus
//! as `authorization: {credentials: …}`): records ingested, experiments per state (busy and
//! faulted channels), campaign states, the optimizer's latency, queue depth, live listeners.

use crate::auth::{Caller, READERS};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let store = &state.store;
    let mut out = String::new();
    let campaigns = store.campaigns().await?;
    out.push_str("# HELP labloop_cycle_records Cycle records stored, per campaign.\n");
    out.push_str("# TYPE labloop_cycle_records counter\n");
    for c in &campaigns {
        let n = store.count_records(&c.id).await?;
        let _ = writeln!(
            out,
            "labloop_cycle_records_total{{campaign=\"{}\"}} {n}",
            label(&c.id)
        );
    }
    out.push_str("# HELP labloop_campaign_state 1 for each campaign's current state.\n");
    out.push_str("# TYPE labloop_campaign_state gauge\n");
    for c in &campaigns {
        let _ = writeln!(
            out,
            "labloop_campaign_state{{campaign=\"{}\",state=\"{}\"}} 1",
            label(&c.id),
            label(c.state.as_str())
        );
    }
    out.push_str("# HELP labloop_experiments Experiments per campaign and state (running: a busy channel; failed: a faulted one).\n");
    out.push_str("# TYPE labloop_experiments gauge\n");
    for c in &campaigns {
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        for e in store.experiments(&c.id).await? {
            *by_state.entry(e.state.to_string()).or_default() += 1;
        }
        for (s, n) in by_state {
            let _ = writeln!(
                out,
                "labloop_experiments{{campaign=\"{}\",state=\"{}\"}} {n}",
                label(&c.id),
                label(&s)
            );
        }
    }
    out.push_str("# HELP labloop_predictions_out_of_domain Predictions made outside their model's training domain, per campaign.\n");
    out.push_str("# TYPE labloop_predictions_out_of_domain counter\n");
    for c in &campaigns {
        let n = store
            .observations(&c.id)
            .await?
            .iter()
            .filter(|o| o.prediction.out_of_domain.is_some())
            .count();
        let _ = writeln!(
            out,
            "labloop_predictions_out_of_domain_total{{campaign=\"{}\"}} {n}",
            label(&c.id)
        );
    }
    out.push_str("# HELP labloop_optimizer_seconds How long the optimizer took to choose the latest round's batch.\n");
    out.push_str("# TYPE labloop_optimizer_seconds gauge\n");
    for c in &campaigns {
        let latest = store.rounds(&c.id).await?.into_iter().last();
        let seconds = latest
            .and_then(|(_, _, provenance)| {
                serde_json::from_str::<serde_json::Value>(&provenance).ok()
            })
            .and_then(|p| p["suggest_s"].as_f64());
        if let Some(seconds) = seconds {
            let _ = writeln!(
                out,
                "labloop_optimizer_seconds{{campaign=\"{}\"}} {seconds}",
                label(&c.id)
            );
        }
    }
    out.push_str("# HELP labloop_queue_depth Jobs waiting for a worker, per capability.\n");
    out.push_str("# TYPE labloop_queue_depth gauge\n");
    for (capability, n) in store.queue_depth().await? {
        let _ = writeln!(
            out,
            "labloop_queue_depth{{capability=\"{}\"}} {n}",
            label(&capability)
        );
    }
    out.push_str("# HELP labloop_live_listeners Clients connected to live events.\n");
    out.push_str("# TYPE labloop_live_listeners gauge\n");
    let _ = writeln!(out, "labloop_live_listeners {}", state.hub.listeners());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
