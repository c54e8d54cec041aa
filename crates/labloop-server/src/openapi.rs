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
        reads::ranking,
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
        document,
    ),
    components(schemas(queue_api::JobAction, queue_api::Capability)),
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

/// Routes that need no token.
const PUBLIC: [&str; 4] = ["/health", "/", "/api/openapi.json", "/api/session"];

/// The refusals every route with a JSON body may answer, as a JSON `{"error"}`.
const BODY_REFUSALS: [(&str, &str); 4] = [
    ("400", "the body is not valid JSON"),
    ("413", "the body is larger than the limit"),
    ("415", "the body is not JSON (content-type)"),
    (
        "422",
        "the body does not match the schema, or is beyond a limit",
    ),
];

/// The refusals every route behind a token may answer.
const AUTH_REFUSALS: [(&str, &str); 2] = [
    (
        "401",
        "no, an unknown or a revoked token, or an expired session (slowed down, with Retry-After, after many from one address)",
    ),
    (
        "403",
        "the token's role may not do this (or, by cookie, not from this server's page)",
    ),
];

fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder, Type};
    let schema = ObjectBuilder::new()
        .property("error", ObjectBuilder::new().schema_type(Type::String))
        .required("error");
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let mut refusals: Vec<(&str, &str)> = Vec::new();
                if operation.request_body.is_some() {
                    refusals.extend(BODY_REFUSALS);
                }
                if public {
                    operation.security = Some(Vec::new());
                } else {
                    refusals.extend(AUTH_REFUSALS);
                }
                for (status, description) in refusals {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description).into());
                }
                // Every refusal a handler documents is the same JSON `{"error"}`.
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(response) = response
                        && status.starts_with('4')
                        && response.content.is_empty()
                    {
                        response.content = error_response("").content;
                    }
                }
            }
        }
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
#[utoipa::path(get, path = "/api/openapi.json", tag = "health", responses((status = 200, description = "this document", body = serde_json::Value)))]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}
