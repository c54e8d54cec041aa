//! labloop's HTTP API and dashboard: watch a campaign from anywhere, act on it without a shell.
//!
//! - reads (viewer, operator or admin tokens): campaigns, experiments, fade curves, rounds,
//!   instruments and their busy channels, the optimizer's posterior, pending approvals and
//!   requests, the queue;
//! - actions (operator or admin): pause, resume, abort a campaign or one experiment, answer an
//!   approve step — written to the store as requests the campaign's engine acts on;
//! - live updates as server-sent events (`/api/campaigns/{id}/events`);
//! - the dashboard page at `/`, served by this binary;
//! - Prometheus metrics at `/metrics`; the queue API for workers (worker or admin).
//!
//! Every route but `/health` and the dashboard's static page needs a token (a bearer header, or
//! the dashboard's HttpOnly session cookie). No CORS headers are sent: other origins are refused by
//! browsers. Bodies are JSON of at most [`MAX_BODY_BYTES`]; every refusal is a JSON `{"error"}`.
//! Only this crate knows HTTP.

use axum::extract::{DefaultBodyLimit, FromRef, FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use labloop_core::limits::MAX_BODY_BYTES;
use labloop_store::Store;
use std::sync::Arc;

mod actions;
mod auth;
mod connections;
mod dashboard;
mod live;
mod metrics;
mod openapi;
mod queue_api;
mod reads;
mod tls;

pub use dashboard::report;
pub use openapi::openapi;
pub use tls::{ClientAddr, TlsListener, server_config};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    limiter: Arc<auth::FailureLimiter>,
    hub: Arc<live::Hub>,
    /// Served over TLS: cookies are `Secure` and responses carry HSTS.
    secure: bool,
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Store {
        state.store.clone()
    }
}

/// The API's routes over a store. Serve it with [`serve`], or with
/// `into_make_service_with_connect_info::<SocketAddr>()` (or `::<ClientAddr>()`) so wrong tokens
/// are counted per client address.
pub fn router(store: Store) -> Router {
    router_with(store, false)
}

/// The routes, for serving over TLS when `secure` (`Secure` cookies, HSTS).
pub fn router_with(store: Store, secure: bool) -> Router {
    let state = AppState {
        store,
        limiter: Arc::default(),
        hub: Arc::default(),
        secure,
    };
    let hsts = move |mut response: Response| async move {
        if secure {
            response.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        response
    };
    Router::new()
        .route("/health", get(health))
        .route("/", get(dashboard::page))
        .route(
            "/api/session",
            post(dashboard::login).delete(dashboard::logout),
        )
        .route("/api/campaigns", get(reads::campaigns))
        .route("/api/campaigns/{id}", get(reads::campaign))
        .route("/api/campaigns/{id}/experiments", get(reads::experiments))
        .route("/api/campaigns/{id}/capacity", get(reads::capacity))
        .route("/api/campaigns/{id}/approvals", get(reads::approvals))
        .route("/api/campaigns/{id}/requests", get(reads::requests))
        .route("/api/campaigns/{id}/surrogate", get(reads::surrogate))
        .route("/api/campaigns/{id}/ranking", get(reads::ranking))
        .route("/api/campaigns/{id}/instruments", get(reads::instruments))
        .route("/api/campaigns/{id}/events", get(live::events))
        .route("/api/campaigns/{id}/pause", post(actions::pause))
        .route("/api/campaigns/{id}/resume", post(actions::resume))
        .route("/api/campaigns/{id}/abort", post(actions::abort))
        .route(
            "/api/campaigns/{id}/abort-experiment",
            post(actions::abort_experiment),
        )
        .route("/api/campaigns/{id}/approve", post(actions::approve))
        .route("/api/queue", get(reads::queue))
        .route("/api/queue/claim", post(queue_api::claim))
        .route("/api/queue/jobs/{*rest}", post(queue_api::change))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(hsts))
        .with_state(state)
}

/// A JSON object as a request body, whose refusals (not JSON 400/415, too large 413, not an object
/// or not the schema 422, naming the field) are JSON `{"error"}` like every other.
pub(crate) struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let value = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(value)) => value,
            Err(rejection) => return Err(error(rejection.status(), &rejection.body_text())),
        };
        // serde would take a list for a struct's fields in order; a body is always an object.
        if !value.is_object() {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expected a JSON object as the body",
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(Self)
            .map_err(|e| {
                let at = e.path().to_string();
                let message = if at == "." {
                    e.inner().to_string()
                } else {
                    format!("{at}: {}", e.inner())
                };
                error(StatusCode::UNPROCESSABLE_ENTITY, &message)
            })
    }
}

/// `GET /health`: no token needed.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "ok", body = String)))]
async fn health() -> &'static str {
    "ok"
}

/// Why a request got no result: the store failed (500), or the request was refused.
pub(crate) enum ApiError {
    Store(labloop_store::StoreError),
    Refused(Box<Response>),
}

impl ApiError {
    /// A refusal with `status` and a message.
    pub(crate) fn refused(status: StatusCode, message: &str) -> Self {
        Self::Refused(Box::new(error(status, message)))
    }
}

/// A JSON error response.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
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

/// The campaign `id`, or 404.
pub(crate) async fn known_campaign(
    store: &Store,
    id: &str,
) -> Result<labloop_store::CampaignRow, ApiError> {
    store
        .campaign(id)
        .await?
        .ok_or_else(|| ApiError::refused(StatusCode::NOT_FOUND, &format!("no campaign `{id}`")))
}

/// Serves the API and dashboard on `listener` until `shutdown` resolves: over TLS when `tls` names a
/// certificate and key (PEM), else plain HTTP. Clients get
/// [`HEADER_READ_TIMEOUT_S`](labloop_core::limits::HEADER_READ_TIMEOUT_S) to send a request's
/// headers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(store, tls.is_some());
    match tls {
        Some(config) => {
            connections::serve(TlsListener::new(listener, config)?, app, shutdown).await
        }
        None => connections::serve(listener, app, shutdown).await,
    }
}
