//! The API's OpenAPI 3.1 document, generated from the handlers' annotations and the request and
//! response types, served at `/api/openapi.json` (no token: it describes, it reveals no data).

use crate::{actions, dashboard, live, metrics, queue_api, reads};
use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "labloop",
        description = "Closed-loop battery experiments: watch campaigns, act on them, feed the job queue. \
Every route but /health, / and this document needs a token: `Authorization: Bearer <secret>` \
(from `labloop token create --role viewer|operator|worker|admin`) or the dashboard's session cookie."
    ),
    paths(
        crate::health,
        dashboard::page,
        dashboard::login,
        dashboard::logout,
        reads::campaigns,
        reads::campaign,
        reads::experiments,
        reads::capacity,
        reads::approvals,
        reads::requests,
        reads::surrogate,
        reads::instruments,
        reads::queue,
        live::events,
        actions::pause,
        actions::resume,
        actions::abort,
        actions::abort_experiment,
        actions::approve,
        queue_api::claim,
        queue_api::change,
        metrics::metrics,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "read", description = "viewer, operator or admin"),
        (name = "act", description = "operator or admin"),
        (name = "live", description = "server-sent events"),
        (name = "queue", description = "worker or admin"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::COOKIE))),
        );
    }
}

/// The document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json`.
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
