//! labloop's HTTP API: read access to the store for people and programs watching a campaign.
//!
//! Small for now: a health check, read-only JSON views of campaigns and experiments (`viewer`,
//! `operator` or `admin` tokens), and the queue API for workers (`worker` or `admin` tokens). Every
//! route but `/health` needs a bearer token. Only this crate knows HTTP. Actions, live updates and
//! the dashboard come with the monitoring work.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use labloop_store::Store;
use serde::Serialize;

mod auth;
mod queue_api;

/// The API's routes over a store.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/campaigns", get(campaigns))
        .route("/api/campaigns/{id}/experiments", get(experiments))
        .route("/api/queue/claim", post(queue_api::claim))
        .route("/api/queue/jobs/{*rest}", post(queue_api::change))
        .with_state(store)
}

async fn health() -> &'static str {
    "ok"
}

#[derive(Serialize)]
struct CampaignView {
    id: String,
    name: String,
    state: String,
    created_at: String,
    records: u64,
}

#[derive(Serialize)]
struct ExperimentView {
    id: String,
    round: u32,
    protocol: String,
    cell_id: String,
    channel_id: Option<String>,
    state: String,
    predicted_life: Option<f64>,
    sigma: Option<f64>,
}

/// Why a request got no result: the store failed (500), or the request was refused.
enum ApiError {
    Store(labloop_store::StoreError),
    Refused(Box<Response>),
}

impl ApiError {
    /// A refusal with `status` and a message.
    fn refused(status: StatusCode, message: &str) -> Self {
        Self::Refused(Box::new(error(status, message)))
    }
}

/// A JSON error response.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store error");
                error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            }
            ApiError::Refused(response) => *response,
        }
    }
}

impl From<labloop_store::StoreError> for ApiError {
    fn from(e: labloop_store::StoreError) -> Self {
        Self::Store(e)
    }
}

/// Roles that may read.
const READERS: &[&str] = &["viewer", "operator", "admin"];

async fn campaigns(
    State(store): State<Store>,
    headers: HeaderMap,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    auth::authorize(&store, &headers, READERS).await?;
    let mut out = Vec::new();
    for c in store.campaigns().await? {
        let records = store.count_records(&c.id).await?;
        out.push(CampaignView {
            id: c.id,
            name: c.name,
            state: c.state,
            created_at: c.created_at,
            records,
        });
    }
    Ok(Json(out))
}

async fn experiments(
    State(store): State<Store>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth::authorize(&store, &headers, READERS).await?;
    if !store.campaigns().await?.iter().any(|c| c.id == id) {
        return Ok((
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no campaign `{id}`") })),
        )
            .into_response());
    }
    let predictions = store.observations(&id).await?;
    let views: Vec<ExperimentView> = store
        .experiments(&id)
        .await?
        .into_iter()
        .map(|e| {
            let p = predictions
                .iter()
                .find(|o| o.experiment_id == e.id)
                .map(|o| &o.prediction);
            ExperimentView {
                predicted_life: p.map(|p| p.cycle_life),
                sigma: p.map(|p| p.sigma),
                id: e.id,
                round: e.round,
                protocol: e.protocol_label,
                cell_id: e.cell_id,
                channel_id: e.channel_id,
                state: e.state.to_string(),
            }
        })
        .collect();
    Ok(Json(views).into_response())
}
