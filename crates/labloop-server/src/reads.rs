//! Read-only views (viewer, operator or admin tokens).

use crate::auth::{Caller, READERS};
use crate::{ApiError, AppState, known_campaign};
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignView {
    id: String,
    name: String,
    state: String,
    created_at: String,
    records: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ExperimentView {
    id: String,
    round: u32,
    protocol: String,
    cell_id: String,
    channel_id: Option<String>,
    state: String,
    predicted_life: Option<f64>,
    sigma: Option<f64>,
    observed_life: Option<f64>,
    /// The campaign's measured objective for this cell (a campaign whose objective is a step's
    /// output, `campaign.objective.from`), when measured.
    measured_objective: Option<f64>,
}

/// `GET /api/campaigns`.
#[utoipa::path(get, path = "/api/campaigns", tag = "read", responses((status = 200, body = [CampaignView])))]
pub(crate) async fn campaigns(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    caller.require(READERS)?;
    let mut out = Vec::new();
    for c in state.store.campaigns().await? {
        let records = state.store.count_records(&c.id).await?;
        out.push(CampaignView {
            id: c.id,
            name: c.name,
            state: c.state.to_string(),
            created_at: c.created_at,
            records,
        });
    }
    Ok(Json(out))
}

/// `GET /api/campaigns/{id}`: the campaign, its rounds with the best prediction of each, and the
/// workflow it runs.
#[utoipa::path(get, path = "/api/campaigns/{id}", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub(crate) async fn campaign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    let row = known_campaign(&state.store, &id).await?;
    Ok(Json(campaign_view(&state.store, row).await?))
}

/// A campaign's detail: state, rounds with their best prediction, owner, workflow.
pub(crate) async fn campaign_view(
    store: &labloop_store::Store,
    row: labloop_store::CampaignRow,
) -> Result<serde_json::Value, labloop_store::StoreError> {
    let id = row.id.clone();
    let observations = store.observations(&id).await?;
    let times: std::collections::BTreeMap<u32, String> =
        store.round_times(&id).await?.into_iter().collect();
    let (workflow, _) =
        labloop_workflow::parse_stored(&row.workflow_yaml, row.workflow_bundle.as_deref(), &id);
    let plan = workflow.as_ref().map(|w| {
        serde_json::json!({
            "max_rounds": w.stopping.max_rounds,
            "batch_size": w.optimizer.batch_size,
            "early_cycles": w.cycle_step().map(|c| c.cycles),
            "objective": w.campaign.objective,
            // Where each constant-current step starts and ends (the protocols' shape).
            "soc_breakpoints": match &w.campaign.search_space {
                labloop_workflow::SearchSpaceSpec::ChargeProtocol(p) => Some(p.soc_breakpoints.clone()),
                _ => None,
            },
        })
    });
    let rounds: Vec<serde_json::Value> = store
        .rounds(&id)
        .await?
        .into_iter()
        .map(|(round, method, _)| {
            let best = observations
                .iter()
                .filter(|o| o.round == round)
                .max_by(|a, b| a.prediction.cycle_life.total_cmp(&b.prediction.cycle_life));
            serde_json::json!({
                "round": round,
                "method": method,
                "predicted": observations.iter().filter(|o| o.round == round).count(),
                "best_protocol": best.map(|o| o.protocol_label.clone()),
                "best_predicted_life": best.map(|o| o.prediction.cycle_life),
                "best_sigma": best.map(|o| o.prediction.sigma),
                "started_at": times.get(&round),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "id": row.id,
        "name": row.name,
        "state": row.state,
        "created_at": row.created_at,
        "records": store.count_records(&id).await?,
        "rounds": rounds,
        "owner": store.campaign_owner(&id).await?.map(|o| o.owner),
        // What the campaign plans (rounds, batch, early window) and optimises, from its workflow.
        "plan": plan,
        // Viewers and reports never see a credential the workflow (or its store URL) carried.
        "workflow_yaml": labloop_workflow::redact_secrets(&row.workflow_yaml),
    }))
}

/// `GET /api/campaigns/{id}/experiments`.
#[utoipa::path(get, path = "/api/campaigns/{id}/experiments", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = [ExperimentView]), (status = 404)))]
pub(crate) async fn experiments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ExperimentView>>, ApiError> {
    caller.require(READERS)?;
    known_campaign(&state.store, &id).await?;
    Ok(Json(experiment_views(&state.store, &id).await?))
}

/// Every experiment of a campaign with its prediction and observed life.
pub(crate) async fn experiment_views(
    store: &labloop_store::Store,
    id: &str,
) -> Result<Vec<ExperimentView>, labloop_store::StoreError> {
    let observations = store.observations(id).await?;
    let measured: std::collections::HashMap<String, f64> = match store.campaign(id).await? {
        Some(row) => {
            let (workflow, _) = labloop_workflow::parse_stored(
                &row.workflow_yaml,
                row.workflow_bundle.as_deref(),
                id,
            );
            match workflow.filter(|w| w.campaign.objective.measured().is_some()) {
                Some(w) => store
                    .measured_observations(id, &w.campaign.objective.name)
                    .await?
                    .into_iter()
                    .filter_map(|o| o.measurement.map(|(v, _)| (o.experiment_id, v)))
                    .collect(),
                None => Default::default(),
            }
        }
        None => Default::default(),
    };
    let views = store
        .experiments(id)
        .await?
        .into_iter()
        .map(|e| {
            let o = observations.iter().find(|o| o.experiment_id == e.id);
            ExperimentView {
                predicted_life: o.map(|o| o.prediction.cycle_life),
                sigma: o.map(|o| o.prediction.sigma),
                observed_life: o.and_then(|o| o.observed.map(|(life, _)| life)),
                measured_objective: measured.get(&e.id).copied(),
                id: e.id,
                round: e.round,
                protocol: e.protocol_label,
                cell_id: e.cell_id,
                channel_id: e.channel_id,
                state: e.state.to_string(),
            }
        })
        .collect();
    Ok(views)
}

/// `GET /api/campaigns/{id}/capacity`: every cell's fade curve, `{experiment: [[cycle, Ah], …]}`.
#[utoipa::path(get, path = "/api/campaigns/{id}/capacity", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub(crate) async fn capacity(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    known_campaign(&state.store, &id).await?;
    Ok(Json(capacity_curves(&state.store, &id).await?))
}

/// Every cell's fade curve, `{experiment: [[cycle, Ah], …]}`.
pub(crate) async fn capacity_curves(
    store: &labloop_store::Store,
    id: &str,
) -> Result<serde_json::Value, labloop_store::StoreError> {
    let mut curves = serde_json::Map::new();
    for (experiment, _) in store.last_cycles(id).await? {
        let points = store.capacity_points(&experiment, 0).await?;
        curves.insert(experiment, serde_json::json!(points));
    }
    Ok(serde_json::Value::Object(curves))
}

/// `GET /api/campaigns/{id}/approvals`: steps waiting for a person.
#[utoipa::path(get, path = "/api/campaigns/{id}/approvals", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub(crate) async fn approvals(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    known_campaign(&state.store, &id).await?;
    let pending: Vec<serde_json::Value> = state
        .store
        .pending_approvals(&id)
        .await?
        .into_iter()
        .map(|p| serde_json::json!({"experiment": p.experiment_id, "step": p.step, "message": p.message}))
        .collect();
    Ok(Json(serde_json::json!(pending)))
}

/// `GET /api/campaigns/{id}/requests`: what people asked of the campaign, and whether its engine
/// has acted on it.
#[utoipa::path(get, path = "/api/campaigns/{id}/requests", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub(crate) async fn requests(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    known_campaign(&state.store, &id).await?;
    let rows: Vec<serde_json::Value> = state
        .store
        .requests(&id, false)
        .await?
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "action": r.action.as_str(), "experiment": r.experiment_id,
                "requested_by": r.requested_by, "requested_at": r.requested_at,
                "handled_at": r.handled_at,
            })
        })
        .collect();
    Ok(Json(serde_json::json!(rows)))
}

/// `GET /api/campaigns/{id}/surrogate`: the optimizer's posterior mean and σ over every candidate
/// after the latest finished round (`{"round", "dimensions", "candidates": [{"x", "mean", "sd",
/// "label", "cells"}]}`); 404 before the first round ends.
#[utoipa::path(get, path = "/api/campaigns/{id}/surrogate", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = serde_json::Value), (status = 404, description = "no such campaign, or no round finished yet")))]
pub(crate) async fn surrogate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    known_campaign(&state.store, &id).await?;
    after_first_round(surrogate_view(&state.store, &id).await?, &id)
}

/// `GET /api/campaigns/{id}/ranking`: the candidates best first, as `labloop run` prints them
/// (`{"round", "final", "best_probability", "ranking": [{"rank", "candidate_index", "protocol",
/// "c_rates", "predicted_life", "sigma", "cells", "mean_predicted", "mean_observed", "censored",
/// "at_least"}]}`, at most 100): the campaign's final ranking once it completed, else the latest
/// round's; 404 before the first round ends.
#[utoipa::path(get, path = "/api/campaigns/{id}/ranking", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = serde_json::Value), (status = 404, description = "no such campaign, or no round finished yet")))]
pub(crate) async fn ranking(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    known_campaign(&state.store, &id).await?;
    after_first_round(ranking_view(&state.store, &id).await?, &id)
}

/// A view that exists once a round has finished: 404 before.
fn after_first_round(
    view: Option<serde_json::Value>,
    id: &str,
) -> Result<Json<serde_json::Value>, ApiError> {
    view.map(Json).ok_or_else(|| {
        ApiError::refused(
            axum::http::StatusCode::NOT_FOUND,
            &format!("campaign `{id}` has no finished round yet"),
        )
    })
}

/// The ranking of the latest snapshot (the final one once the campaign completed).
pub(crate) async fn ranking_view(
    store: &labloop_store::Store,
    id: &str,
) -> Result<Option<serde_json::Value>, labloop_store::StoreError> {
    Ok(surrogate_view(store, id).await?.map(|s| {
        serde_json::json!({
            "round": s["round"],
            "final": s.get("final").cloned().unwrap_or(serde_json::json!(false)),
            "best_probability": s.get("best_probability").cloned().unwrap_or_default(),
            "ranking": s.get("ranking").cloned().unwrap_or(serde_json::json!([])),
        })
    }))
}

/// The latest round's posterior snapshot with its round number, if a round has finished.
pub(crate) async fn surrogate_view(
    store: &labloop_store::Store,
    id: &str,
) -> Result<Option<serde_json::Value>, labloop_store::StoreError> {
    Ok(store.latest_surrogate(id).await?.map(|(round, snapshot)| {
        let mut value: serde_json::Value = serde_json::from_str(&snapshot).unwrap_or_default();
        value["round"] = serde_json::json!(round);
        value
    }))
}

/// Jobs waiting per capability as a JSON object (the API's and the live events' shape).
pub(crate) fn waiting(depth: &[(String, u64)]) -> serde_json::Value {
    serde_json::Value::Object(
        depth
            .iter()
            .map(|(capability, n)| (capability.clone(), serde_json::json!(n)))
            .collect(),
    )
}

/// `GET /api/campaigns/{id}/instruments`: the campaign's instruments (from its workflow: name,
/// kind, driver, channels, safety limits) and which experiment holds each busy channel.
#[utoipa::path(get, path = "/api/campaigns/{id}/instruments", tag = "read", params(("id" = String, Path, description = "campaign id")), responses((status = 200, body = serde_json::Value), (status = 404)))]
pub(crate) async fn instruments(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    let row = known_campaign(&state.store, &id).await?;
    let (workflow, _) =
        labloop_workflow::parse_stored(&row.workflow_yaml, row.workflow_bundle.as_deref(), &id);
    let busy: Vec<(String, String, String)> = state
        .store
        .experiments(&id)
        .await?
        .into_iter()
        .filter(|e| !e.state.is_terminal())
        .filter_map(|e| e.channel_id.map(|ch| (ch, e.id, e.state.to_string())))
        .collect();
    let instruments: Vec<serde_json::Value> = workflow
        .map(|w| w.instruments)
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let prefix = format!("{}/", i.name);
            let held: Vec<serde_json::Value> = busy
                .iter()
                .filter(|(ch, _, _)| ch.starts_with(&prefix))
                .map(|(ch, exp, st)| serde_json::json!({"channel": ch, "experiment": exp, "state": st}))
                .collect();
            serde_json::json!({
                "name": i.name,
                "kind": i.kind,
                "driver": i.driver,
                "channels": i.channels,
                "busy": held.len(),
                "safety": i.safety,
                "held": held,
            })
        })
        .collect();
    Ok(Json(serde_json::json!(instruments)))
}

/// `GET /api/queue`: jobs waiting per capability.
#[utoipa::path(get, path = "/api/queue", tag = "read", responses((status = 200, body = serde_json::Value)))]
pub(crate) async fn queue(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    let depth = state.store.queue_depth().await?;
    Ok(Json(serde_json::json!({ "waiting": waiting(&depth) })))
}
