//! The queue API for workers (`worker` or `admin` tokens): claim a job, renew its lease, complete or
//! fail it — the same queue `labloop agent` uses through the store, for workers that only speak HTTP.
//!
//! ```text
//! POST /api/queue/claim                  {"capabilities": ["coin-cell-robot"], "lease_s": 30}
//!   → 200 {"id", "kind", "capability", "payload", "attempt", "lease_token"}   or 204 (nothing to do)
//! POST /api/queue/jobs/<id>/heartbeat    {"lease_token", "lease_s"}                → 204
//! POST /api/queue/jobs/<id>/complete     {"lease_token", "result": {...}}          → 200 {"completed": "new"|"again"}
//! POST /api/queue/jobs/<id>/fail         {"lease_token", "reason", "retry": true}  → 204
//! ```
//!
//! A change naming a lease the job no longer has is 409 (drop the job); an unknown job is 404.

use crate::auth::{Caller, WORKERS};
use crate::{ApiError, error};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use labloop_store::{Completion, QueueError, Store};
use serde::Deserialize;
use std::time::Duration;

fn lease(seconds: Option<f64>) -> Duration {
    Duration::from_secs_f64(seconds.unwrap_or(30.0).clamp(1.0, 86_400.0))
}

/// `POST /api/queue/claim`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimRequest {
    capabilities: Vec<String>,
    #[serde(default)]
    lease_s: Option<f64>,
}

#[utoipa::path(post, path = "/api/queue/claim", tag = "queue", request_body = ClaimRequest, responses((status = 200, description = "a job, with its lease token", body = serde_json::Value), (status = 204, description = "nothing to do"), (status = 401, description = "no or an unknown token"), (status = 403, description = "the token's role may not do this"), (status = 429, description = "too many wrong tokens from this address")))]
pub(crate) async fn claim(
    State(store): State<Store>,
    caller: Caller,
    Json(body): Json<ClaimRequest>,
) -> Result<Response, ApiError> {
    let caller = caller.require(WORKERS)?;
    let capabilities: Vec<&str> = body.capabilities.iter().map(String::as_str).collect();
    let worker = format!("{} ({})", caller.name, caller.id);
    Ok(
        match store
            .claim(&worker, &capabilities, lease(body.lease_s))
            .await?
        {
            Some(job) => Json(serde_json::json!({
                "id": job.id,
                "kind": job.kind,
                "capability": job.capability,
                "payload": serde_json::from_str::<serde_json::Value>(&job.payload)
                    .unwrap_or(serde_json::Value::String(job.payload)),
                "attempt": job.attempt,
                "lease_token": job.lease_token,
            }))
            .into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

/// The body of heartbeat, complete and fail.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobChange {
    lease_token: String,
    #[serde(default)]
    lease_s: Option<f64>,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retry: Option<bool>,
}

fn refused(e: QueueError) -> Result<Response, ApiError> {
    match e {
        QueueError::Store(e) => Err(e.into()),
        QueueError::Unknown(_) => Ok(error(StatusCode::NOT_FOUND, &e.to_string())),
        QueueError::LeaseLost { .. } => Ok(error(StatusCode::CONFLICT, &e.to_string())),
    }
}

/// `POST /api/queue/jobs/<id>/<heartbeat|complete|fail>` (job ids may contain slashes).
#[utoipa::path(post, path = "/api/queue/jobs/{job}/{action}", tag = "queue", params(("job" = String, Path, description = "job id (may contain slashes)"), ("action" = String, Path, description = "heartbeat, complete or fail")), request_body = JobChange, responses((status = 200, description = "completed (new or again)", body = serde_json::Value), (status = 204, description = "done"), (status = 404, description = "no such job"), (status = 409, description = "the lease was taken over"), (status = 401, description = "no or an unknown token"), (status = 403, description = "the token's role may not do this"), (status = 429, description = "too many wrong tokens from this address")))]
pub(crate) async fn change(
    State(store): State<Store>,
    caller: Caller,
    Path(rest): Path<String>,
    Json(body): Json<JobChange>,
) -> Result<Response, ApiError> {
    caller.require(WORKERS)?;
    let Some((id, action)) = rest.rsplit_once('/') else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "expected /api/queue/jobs/<id>/<action>",
        ));
    };
    let token = &body.lease_token;
    let outcome = match action {
        "heartbeat" => store
            .heartbeat(id, token, lease(body.lease_s))
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
        "complete" => {
            let result = body.result.unwrap_or(serde_json::Value::Null).to_string();
            store.complete(id, token, &result).await.map(|done| {
                let completed = match done {
                    Completion::Completed => "new",
                    Completion::AlreadyCompleted => "again",
                };
                Json(serde_json::json!({ "completed": completed })).into_response()
            })
        }
        "fail" => {
            let reason = body
                .reason
                .unwrap_or_else(|| "failed (no reason given)".into());
            store
                .fail(id, token, &reason, body.retry.unwrap_or(true))
                .await
                .map(|()| StatusCode::NO_CONTENT.into_response())
        }
        other => {
            return Ok(error(
                StatusCode::NOT_FOUND,
                &format!("no action `{other}`: heartbeat, complete or fail"),
            ));
        }
    };
    outcome.or_else(refused)
}
