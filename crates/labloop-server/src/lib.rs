//! labloop's HTTP API: read access to the store for people and programs watching a campaign.
//!
//! Small for now: a health check and read-only JSON views of campaigns and experiments. Only this
//! crate knows HTTP. It has no authentication yet, so `labloop serve` binds to loopback by default;
//! tokens, actions, live updates and the dashboard come with the monitoring work.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use labloop_store::Store;
use serde::Serialize;

/// The API's routes over a store.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/campaigns", get(campaigns))
        .route("/api/campaigns/{id}/experiments", get(experiments))
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

struct ApiError(labloop_store::StoreError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "store error");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": self.0.to_string() })),
        )
            .into_response()
    }
}

impl From<labloop_store::StoreError> for ApiError {
    fn from(e: labloop_store::StoreError) -> Self {
        Self(e)
    }
}

async fn campaigns(State(store): State<Store>) -> Result<Json<Vec<CampaignView>>, ApiError> {
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
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
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
