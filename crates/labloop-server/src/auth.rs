//! Who is calling: `Authorization: Bearer <token>` (the scheme's case does not matter, RFC 7235),
//! or the dashboard's session cookie (an opaque session id with an expiry, set by
//! `POST /api/session`; never the token itself), checked against the store's hashes. A token's
//! secret never appears in logs; its id does. A cookie-authenticated request that changes
//! something must come from the dashboard's own origin with a JSON body (no cross-site forms).
//! Addresses that keep presenting wrong credentials are slowed down for a while (each further
//! wrong one waits before its 401, which carries `Retry-After`), so secrets cannot be guessed at
//! speed; a valid token is never refused or slowed for its address's failures (behind a proxy
//! every client has one address).

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use labloop_store::TokenRow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The dashboard's session cookie: a session id, HttpOnly and SameSite=Strict, so scripts cannot
/// read it and other sites cannot send it.
pub(crate) const COOKIE: &str = "labloop_session";

/// Roles that may read.
pub(crate) const READERS: &[&str] = &["viewer", "operator", "admin"];
/// Roles that may act on campaigns (pause, resume, abort, approve).
pub(crate) const OPERATORS: &[&str] = &["operator", "admin"];
/// Roles that may use the queue API.
pub(crate) const WORKERS: &[&str] = &["worker", "admin"];

/// Authentication failures allowed per client address in one window before it is refused.
const MAX_FAILURES: u32 = 10;
/// The window failures are counted in (and how long a client stays slowed down).
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long each further wrong credential from a throttled address waits for its 401.
const THROTTLE_DELAY: Duration = Duration::from_millis(50);

/// Counts authentication failures per client address.
#[derive(Default)]
pub(crate) struct FailureLimiter {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    /// How long `ip` stays refused, if it is.
    fn retry_after(&self, ip: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().expect("limiter lock");
        failures
            .get(&ip)
            .filter(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
            .map(|(_, since)| FAILURE_WINDOW.saturating_sub(since.elapsed()))
    }

    /// Counts one failure of `ip`.
    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// The authenticated caller of a request: any valid token. Handlers check its role with
/// [`Caller::require`].
pub(crate) struct Caller(pub TokenRow);

impl Caller {
    /// The caller's token if its role is one of `roles`, else 403.
    pub(crate) fn require(self, roles: &[&str]) -> Result<TokenRow, ApiError> {
        if roles.contains(&self.0.role.as_str()) {
            return Ok(self.0);
        }
        tracing::warn!(token = %self.0.id, role = %self.0.role, "request beyond the token's role");
        Err(ApiError::refused(
            StatusCode::FORBIDDEN,
            &format!(
                "a {} token may not do this (needs: {})",
                self.0.role,
                roles.join(" or ")
            ),
        ))
    }

    /// Who, for audit trails: the token's name and id, never its secret.
    pub(crate) fn who(token: &TokenRow) -> String {
        format!("{} ({})", token.name, token.id)
    }
}

/// What a request presents to say who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    /// An API token, from `Authorization: Bearer`.
    Bearer(String),
    /// A dashboard session id, from the cookie.
    Session(String),
}

/// The credential of a request: its `Authorization` header, else the session cookie.
pub(crate) fn credential(headers: &HeaderMap) -> Option<Credential> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|s| !s.is_empty());
    if let Some(b) = bearer {
        return Some(Credential::Bearer(b.to_owned()));
    }
    session_cookie(headers).map(Credential::Session)
}

/// The session id in the request's cookie, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Whether the page a browser says it sends from (`Origin`, else `Referer` when `or_referer`) is
/// on this server's host; `None` when it names no page.
pub(crate) fn from_this_host(headers: &HeaderMap, or_referer: bool) -> Option<bool> {
    let page = headers
        .get(header::ORIGIN)
        .or_else(|| or_referer.then(|| headers.get(header::REFERER)).flatten())
        .and_then(|v| v.to_str().ok())?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let page_host = page
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    Some(!host.is_empty() && page_host == host)
}

/// A cookie-authenticated request that changes something must be the dashboard's own: its
/// `Origin` (or, lacking one, `Referer`) names this server's host, and its body, if any, is JSON.
/// Bearer requests come from programs, which other sites cannot make a browser send.
fn same_origin(parts: &Parts) -> Result<(), ApiError> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if from_this_host(&parts.headers, true) != Some(true) {
        return Err(ApiError::refused(
            StatusCode::FORBIDDEN,
            "a request signed in by cookie must come from this server's own page (Origin)",
        ));
    }
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.trim_start().starts_with("application/json"));
    let has_body = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|n| n.trim() != "0")
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && !json {
        return Err(ApiError::refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a JSON body (content-type: application/json)",
        ));
    }
    Ok(())
}

/// The client's address (loopback when the server was not given connection info).
pub(crate) fn client_ip(parts: &Parts) -> IpAddr {
    if let Some(c) = parts.extensions.get::<ConnectInfo<crate::ClientAddr>>() {
        return c.0.0.ip();
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

/// The client's address, as an extractor.
pub(crate) struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts)))
    }
}

/// The token behind a credential. A wrong one counts a failure against `ip`; an address with too
/// many is slowed down (still 401, with Retry-After) — unless what it presents now is valid.
pub(crate) async fn check(
    state: &AppState,
    ip: IpAddr,
    credential: Option<Credential>,
) -> Result<TokenRow, ApiError> {
    // Only wrong credentials count as failures: a request without one guesses nothing.
    let Some(credential) = credential else {
        return Err(ApiError::refused(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (labloop token create --role ...)",
        ));
    };
    let found = match &credential {
        Credential::Bearer(secret) => state.store.token(secret).await?,
        Credential::Session(id) => state.store.session(id).await?,
    };
    if let Some(token) = found {
        return Ok(token);
    }
    state.limiter.failed(ip);
    if let Some(wait) = state.limiter.retry_after(ip) {
        // Still 401 (the credential is wrong), but slowly, and saying when to come back.
        tokio::time::sleep(THROTTLE_DELAY).await;
        let mut refusal = crate::error(
            StatusCode::UNAUTHORIZED,
            "unknown credential, and too many from this address: slowed down; try again later",
        );
        refusal.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Err(ApiError::Refused(Box::new(refusal)));
    }
    tracing::warn!(%ip, "request with an unknown or revoked credential");
    Err(ApiError::refused(
        StatusCode::UNAUTHORIZED,
        match credential {
            Credential::Bearer(_) => "unknown or revoked token",
            Credential::Session(_) => "the session has expired or was closed: sign in again",
        },
    ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = credential(&parts.headers);
        if matches!(credential, Some(Credential::Session(_))) {
            same_origin(parts)?;
        }
        check(state, client_ip(parts), credential).await.map(Self)
    }
}

/// Callers with a role, as extractors: the role is checked before the body is read, so a caller
/// without it learns nothing about what the body should be.
macro_rules! role_extractor {
    ($name:ident, $roles:expr, $doc:literal) => {
        #[doc = $doc]
        pub(crate) struct $name(pub TokenRow);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                Caller::from_request_parts(parts, state)
                    .await?
                    .require($roles)
                    .map(Self)
            }
        }
    };
}

role_extractor!(Operator, OPERATORS, "A caller that may act on campaigns.");
role_extractor!(Worker, WORKERS, "A caller that may use the queue API.");
