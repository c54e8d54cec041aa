//! The queue API for workers (`worker` or `admin` tokens): claim a job, renew its lease, complete or
//! fail it — the same queue `labloop agent` uses through the store, for workers that only speak HTTP.
//!
//! ```text
//! POST /api/queue/claim                  {"capabilities": ["coin-cell-robot"], "lease_s": 30}
//!   (capabilities: the token's registered ones, or some of them; lease_s: 1 to 3600, default 30)
//!   → 200 {"id", "kind", "capability", "payload", "attempt", "lease_token"}   or 204 (nothing to do)
//! POST /api/queue/jobs/<id>/heartbeat    {"lease_token", "lease_s"}                → 204
//! POST /api/queue/jobs/<id>/complete     {"lease_token", "result": {...}}          → 200 {"completed": "new"|"again"}
//! POST /api/queue/jobs/<id>/fail         {"lease_token", "reason", "retry": true}  → 204
//! ```
//!
//! A change naming a lease the job no longer has, or one another worker claimed, is 409 (drop the
//! job); an unknown job is 404. A worker token claims only the capabilities it was registered for
//! (`labloop token create --role worker --capability NAME`); an admin token may name any.

use crate::auth::Worker;
use crate::{ApiError, Body, error};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use labloop_core::limits::{MAX_CAPABILITIES, MAX_LEASE_S};
use labloop_store::{Completion, QueueError, Store, TokenRow};
use serde::Deserialize;
use std::time::Duration;

/// The lease asked for: 1 s to [`MAX_LEASE_S`], default 30 s.
fn lease(seconds: Option<f64>) -> Result<Duration, ApiError> {
    let s = seconds.unwrap_or(30.0);
    if !(1.0..=MAX_LEASE_S).contains(&s) {
        return Err(ApiError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "lease_s: {s} is outside 1 to {MAX_LEASE_S} s (a longer job renews its lease with heartbeats)"
            ),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// What the caller may claim: the capabilities it names, which for a worker token must be among
/// its registered ones (all of them when it names none).
fn claimable(caller: &TokenRow, asked: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let refuse = |status, message: &str| Err(ApiError::refused(status, message));
    if let Some(asked) = &asked
        && asked.len() > MAX_CAPABILITIES
    {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "capabilities: {} listed, at most {MAX_CAPABILITIES}",
                asked.len()
            ),
        );
    }
    // An admin token claims for the capabilities it names (none named: nothing to claim).
    if caller.role != "worker" {
        return Ok(asked.unwrap_or_default());
    }
    let Some(asked) = asked.filter(|a| !a.is_empty()) else {
        return Ok(caller.capabilities.clone());
    };
    let unregistered: Vec<String> = asked
        .iter()
        .filter(|c| !caller.capabilities.contains(c))
        .map(|c| c.chars().take(64).collect())
        .collect();
    if unregistered.is_empty() {
        return Ok(asked);
    }
    refuse(
        StatusCode::FORBIDDEN,
        &format!(
            "this worker token is not registered for {} (registered: {})",
            unregistered.join(", "),
            caller.capabilities.join(", ")
        ),
    )
}

/// `POST /api/queue/claim`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimRequest {
    /// The capabilities to claim for (default: all the token's registered ones).
    #[serde(default)]
    #[schema(max_items = 32, value_type = Option<Vec<Capability>>)]
    capabilities: Option<Vec<String>>,
    /// The lease, 1 to 3600 s (default 30).
    #[serde(default)]
    #[schema(minimum = 1.0, maximum = 3600.0)]
    lease_s: Option<f64>,
}

/// A capability's name.
#[derive(utoipa::ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
#[allow(dead_code)]
pub(crate) struct Capability(String);

#[utoipa::path(post, path = "/api/queue/claim", tag = "queue", request_body = ClaimRequest, responses((status = 200, description = "a job, with its lease token", body = serde_json::Value), (status = 204, description = "nothing to do"), (status = 400, description = "the body is not JSON"), (status = 403, description = "the token's role may not do this, or it is not registered for a capability named"), (status = 409, description = "this worker holds as many jobs as it may at once"), (status = 413, description = "the body is too large"), (status = 415, description = "the body is not JSON"), (status = 422, description = "the body does not match the schema, or is beyond a limit (capabilities, lease_s)")))]
pub(crate) async fn claim(
    State(store): State<Store>,
    Worker(caller): Worker,
    Body(body): Body<ClaimRequest>,
) -> Result<Response, ApiError> {
    let lease = lease(body.lease_s)?;
    let capabilities = claimable(&caller, body.capabilities)?;
    let capabilities: Vec<&str> = capabilities.iter().map(String::as_str).collect();
    let worker = crate::auth::Caller::who(&caller);
    let claimed = store.claim(&worker, &capabilities, lease).await;
    match &claimed {
        Err(e @ labloop_store::StoreError::Limit(_)) => {
            return Err(ApiError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.to_string(),
            ));
        }
        Err(e @ labloop_store::StoreError::TooManyHeld { .. }) => {
            return Err(ApiError::refused(StatusCode::CONFLICT, &e.to_string()));
        }
        _ => {}
    }
    Ok(match claimed? {
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
    })
}

/// What a worker does to a job it holds.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub(crate) enum JobAction {
    /// Renew the lease.
    Heartbeat,
    /// Complete with a result.
    Complete,
    /// Fail (to the queue again, when `retry` and attempts are left).
    Fail,
}

/// The body of heartbeat, complete and fail.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobChange {
    lease_token: String,
    #[serde(default)]
    #[schema(minimum = 1.0, maximum = 3600.0)]
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
#[utoipa::path(post, path = "/api/queue/jobs/{job}/{action}", tag = "queue", params(("job" = String, Path, description = "job id (may contain slashes)"), ("action" = JobAction, Path, description = "heartbeat, complete or fail")), request_body = JobChange, responses((status = 200, description = "completed (new or again)", body = serde_json::Value), (status = 204, description = "done"), (status = 400, description = "the body is not JSON"), (status = 404, description = "no such job"), (status = 409, description = "the lease is not this worker's claim (taken over, or another worker's)"), (status = 413, description = "the body is too large"), (status = 415, description = "the body is not JSON"), (status = 422, description = "the body does not match the schema, or lease_s is beyond 3600 s")))]
pub(crate) async fn change(
    State(store): State<Store>,
    Worker(caller): Worker,
    Path(rest): Path<String>,
    Body(body): Body<JobChange>,
) -> Result<Response, ApiError> {
    let worker = crate::auth::Caller::who(&caller);
    let Some((id, action)) = rest.rsplit_once('/') else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "expected /api/queue/jobs/<id>/<action>",
        ));
    };
    let token = &body.lease_token;
    let outcome = match action {
        "heartbeat" => store
            .heartbeat(id, &worker, token, lease(body.lease_s)?)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
        "complete" => {
            let result = body.result.unwrap_or(serde_json::Value::Null).to_string();
            store
                .complete(id, &worker, token, &result)
                .await
                .map(|done| {
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
                .fail(id, &worker, token, &reason, body.retry.unwrap_or(true))
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
