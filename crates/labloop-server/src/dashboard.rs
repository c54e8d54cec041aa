//! The dashboard: one self-contained page (`dashboard.html`, no build step, no CDN) served at `/`.
//! It signs in with a token, which `POST /api/session` turns into an HttpOnly, SameSite=Strict
//! cookie, so the page's live-event stream (which cannot send headers) is authenticated too and no
//! script can read the secret.

use crate::auth::{COOKIE, ClientIp, Credential, check, from_this_host, session_cookie};
use crate::{ApiError, AppState, Body};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;

const PAGE: &str = include_str!("dashboard.html");

/// The text between the first `<{tag}>` and its closing tag.
fn block<'a>(page: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = page.find(&open).map_or(0, |i| i + open.len());
    let end = page[start..]
        .find(&format!("</{tag}>"))
        .map_or(page.len(), |i| start + i);
    &page[start..end]
}

fn sha256_source(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The page's Content-Security-Policy: its own script and style block, named by hash, and nothing
/// else inline — no injected `<script>`, no `onerror=` attribute, no `javascript:` URL runs.
pub(crate) fn content_security_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(block(PAGE, "script")),
            sha256_source(block(PAGE, "style"))
        )
    })
}

/// Security headers for the page: no framing, no sniffing, only the page's own script and style.
fn page_headers() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, content_security_policy()),
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

/// How long a dashboard session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The session cookie's attributes: `Secure` when served over TLS.
fn cookie(state: &AppState, value: &str, max_age: u64) -> String {
    let secure = if state.secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// `POST /api/session {"token"}`: checks the token and opens a session (an opaque id with an
/// expiry, in an HttpOnly cookie; the token itself stays with the person); answers the token's
/// role and name.
#[utoipa::path(post, path = "/api/session", tag = "dashboard", request_body = Login, responses((status = 200, description = "signed in; sets the HttpOnly session cookie", body = serde_json::Value), (status = 401, description = "unknown or revoked token"), (status = 403, description = "not from this server's own page (Origin)")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Body(body): Body<Login>,
) -> Result<Response, ApiError> {
    // Signing in from another site's page would plant that site's session (login CSRF).
    if from_this_host(&headers, false) == Some(false) {
        return Err(ApiError::refused(
            StatusCode::FORBIDDEN,
            "sign in from this server's own page (Origin)",
        ));
    }
    let secret = body.token.trim().to_owned();
    let credential = Some(secret)
        .filter(|s| !s.is_empty())
        .map(Credential::Bearer);
    let token = check(&state, ip, credential).await?;
    let session = state.store.create_session(&token, SESSION_LIFETIME).await?;
    Ok((
        [(
            header::SET_COOKIE,
            cookie(&state, &session, SESSION_LIFETIME.as_secs()),
        )],
        Json(serde_json::json!({"role": token.role, "name": token.name, "id": token.id})),
    )
        .into_response())
}

/// `DELETE /api/session`: closes the session and forgets the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "dashboard", responses((status = 204, description = "signed out")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = session_cookie(&headers) {
        state.store.close_session(&id).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie(&state, "", 0))],
    )
        .into_response())
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
        "ranking": crate::reads::ranking_view(store, campaign).await?,
        "generated_at": labloop_store::now_rfc3339(),
    });
    // `</` cannot end the data block early, `<!--` cannot open a comment in it.
    let json = snapshot
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e");
    let tag =
        format!("<script id=\"snapshot\" type=\"application/json\">{json}</script>\n<script>");
    // A file opened from disk has no headers: the same policy goes in a meta element.
    let meta = format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n<title>",
        content_security_policy()
    );
    Ok(Some(
        PAGE.replacen("<title>", &meta, 1)
            .replacen("<script>", &tag, 1),
    ))
}
