//! Acting on a campaign (operator or admin tokens). Pause, resume and abort are written to the store
//! as requests; the engine running the campaign acts on them within a second and marks them handled
//! (`GET /api/campaigns/{id}/requests` shows when). Answers to approve steps go straight to the store,
//! where the waiting step reads them.
//!
//! ```text
//! POST /api/campaigns/{id}/pause                                         → 202 {"request": "req_…"}
//! POST /api/campaigns/{id}/resume                                        → 202 {"request": "req_…"}
//! POST /api/campaigns/{id}/abort                                         → 202 {"request": "req_…"}
//! POST /api/campaigns/{id}/abort-experiment {"experiment": "…"}          → 202 {"request": "req_…"}
//! POST /api/campaigns/{id}/approve {"experiment", "step", "approve": true, "note"} → 204
//! ```

use crate::auth::{Caller, Operator};
use crate::{ApiError, AppState, Body, known_campaign};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use labloop_store::{Approval, RequestAction, TokenRow};
use serde::Deserialize;

async fn request(
    state: &AppState,
    token: TokenRow,
    campaign: &str,
    action: RequestAction,
    experiment: Option<&str>,
) -> Result<Response, ApiError> {
    if let Some(experiment) = experiment {
        let known = state
            .store
            .experiments(campaign)
            .await?
            .iter()
            .any(|e| e.id == experiment);
        if !known {
            return Err(ApiError::refused(
                StatusCode::NOT_FOUND,
                &format!("campaign `{campaign}` has no experiment `{experiment}`"),
            ));
        }
    }
    let row = known_campaign(&state.store, campaign).await?;
    if row.state.is_over() {
        return Err(ApiError::refused(
            StatusCode::CONFLICT,
            &format!("campaign `{campaign}` is {}", row.state),
        ));
    }
    let who = Caller::who(&token);
    let id = state
        .store
        .request(campaign, action, experiment, &who)
        .await?;
    tracing::info!(campaign, action = action.as_str(), by = %who, request = %id, "request");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "request": id })),
    )
        .into_response())
}

/// `POST /api/campaigns/{id}/pause`: no new step starts; running tests go on.
#[utoipa::path(post, path = "/api/campaigns/{id}/pause", tag = "act", params(("id" = String, Path, description = "campaign id")), responses((status = 202, description = "request recorded", body = serde_json::Value), (status = 404), (status = 409, description = "the campaign is completed or aborted")))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Operator(token): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    request(&state, token, &id, RequestAction::Pause, None).await
}

/// `POST /api/campaigns/{id}/resume`.
#[utoipa::path(post, path = "/api/campaigns/{id}/resume", tag = "act", params(("id" = String, Path, description = "campaign id")), responses((status = 202, description = "request recorded", body = serde_json::Value), (status = 404), (status = 409, description = "the campaign is completed or aborted")))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Operator(token): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    request(&state, token, &id, RequestAction::Resume, None).await
}

/// `POST /api/campaigns/{id}/abort`: the campaign ends for good.
#[utoipa::path(post, path = "/api/campaigns/{id}/abort", tag = "act", params(("id" = String, Path, description = "campaign id")), responses((status = 202, description = "request recorded", body = serde_json::Value), (status = 404), (status = 409, description = "the campaign is completed or aborted")))]
pub(crate) async fn abort(
    State(state): State<AppState>,
    Operator(token): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    request(&state, token, &id, RequestAction::Abort, None).await
}

/// The body of `abort-experiment`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExperimentBody {
    experiment: String,
}

/// `POST /api/campaigns/{id}/abort-experiment`: one cell stops and its channel is freed.
#[utoipa::path(post, path = "/api/campaigns/{id}/abort-experiment", tag = "act", params(("id" = String, Path, description = "campaign id")), request_body = ExperimentBody, responses((status = 202, description = "request recorded", body = serde_json::Value), (status = 404), (status = 409, description = "the campaign is completed or aborted")))]
pub(crate) async fn abort_experiment(
    State(state): State<AppState>,
    Operator(token): Operator,
    Path(id): Path<String>,
    Body(body): Body<ExperimentBody>,
) -> Result<Response, ApiError> {
    request(
        &state,
        token,
        &id,
        RequestAction::AbortExperiment,
        Some(&body.experiment),
    )
    .await
}

/// The body of `approve`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    experiment: String,
    step: String,
    approve: bool,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/campaigns/{id}/approve`: answers a step waiting for a person.
#[utoipa::path(post, path = "/api/campaigns/{id}/approve", tag = "act", params(("id" = String, Path, description = "campaign id")), request_body = ApproveBody, responses((status = 204, description = "answered"), (status = 404, description = "nothing waits there")))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    Operator(token): Operator,
    Path(id): Path<String>,
    Body(body): Body<ApproveBody>,
) -> Result<Response, ApiError> {
    known_campaign(&state.store, &id).await?;
    let answer = Approval {
        by: Caller::who(&token),
        approved: body.approve,
        note: body.note,
    };
    let (answered, _) = state
        .store
        .answer_waiting(&id, Some(&body.experiment), Some(&body.step), &answer)
        .await?;
    if answered.is_empty() {
        return Err(ApiError::refused(
            StatusCode::NOT_FOUND,
            &format!(
                "nothing waits for approval at {} step `{}`",
                body.experiment, body.step
            ),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
