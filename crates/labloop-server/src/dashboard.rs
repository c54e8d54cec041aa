//! The dashboard: one self-contained page (`dashboard.html`, no build step, no CDN) served at `/`.
//! It signs in with a token, which `POST /api/session` turns into an HttpOnly, SameSite=Strict
//! cookie, so the page's live-event stream (which cannot send headers) is authenticated too and no
//! script can read the secret.

use crate::auth::{COOKIE, ClientIp, check};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

const PAGE: &str = include_str!("dashboard.html");

/// Security headers for the page: no framing, no sniffing, scripts and styles only from the page.
fn page_headers() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
        ),
    ]
}

/// `GET /`.
#[utoipa::path(get, path = "/", tag = "dashboard", responses((status = 200, description = "the dashboard page", content_type = "text/html", body = String)))]
pub(crate) async fn page() -> Response {
    (page_headers(), Html(PAGE)).into_response()
}

/// The body of `POST /api/session`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    token: String,
}

/// `POST /api/session {"token"}`: checks the token and sets the session cookie; answers the
/// token's role and name.
#[utoipa::path(post, path = "/api/session", tag = "dashboard", request_body = Login, responses((status = 200, description = "signed in; sets the HttpOnly session cookie", body = serde_json::Value), (status = 401, description = "unknown or revoked token"), (status = 429, description = "too many wrong tokens from this address")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<Login>,
) -> Result<Response, ApiError> {
    let secret = body.token.trim().to_owned();
    let token = check(&state, ip, Some(secret.clone()).filter(|s| !s.is_empty())).await?;
    let cookie = format!("{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(serde_json::json!({"role": token.role, "name": token.name, "id": token.id})),
    )
        .into_response())
}

/// `DELETE /api/session`: forgets the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "dashboard", responses((status = 204, description = "signed out")))]
pub(crate) async fn logout(_headers: HeaderMap) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
    )
        .into_response()
}

/// A campaign's report: the dashboard page with a snapshot of the campaign embedded, so it renders
/// with no server (plots, channels, rounds), to mail or archive. `None` if there is no such campaign.
pub async fn report(
    store: &labloop_store::Store,
    campaign: &str,
) -> Result<Option<String>, labloop_store::StoreError> {
    let Some(row) = store.campaign(campaign).await? else {
        return Ok(None);
    };
    let snapshot = serde_json::json!({
        "campaign": crate::reads::campaign_view(store, row).await?,
        "experiments": crate::reads::experiment_views(store, campaign).await?,
        "capacity": crate::reads::capacity_curves(store, campaign).await?,
        "surrogate": crate::reads::surrogate_view(store, campaign).await?,
        "generated_at": labloop_store::now_rfc3339(),
    });
    // `</` cannot end the script element early.
    let json = snapshot.to_string().replace("</", "<\\/");
    let tag =
        format!("<script id=\"snapshot\" type=\"application/json\">{json}</script>\n<script>");
    Ok(Some(PAGE.replacen("<script>", &tag, 1)))
}
