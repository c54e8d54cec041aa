//! Who is calling: `Authorization: Bearer <token>`, or the dashboard's `labloop_token` cookie (set by
//! `POST /api/session`), checked against the store's hashed tokens. A token's secret never appears
//! in logs; its id does. Clients that keep failing to authenticate are refused for a while
//! (429), so tokens cannot be guessed at speed.

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use labloop_store::TokenRow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The dashboard's session cookie: the token's secret, HttpOnly and SameSite=Strict, so scripts
/// cannot read it and other sites cannot send it.
pub(crate) const COOKIE: &str = "labloop_token";

/// Roles that may read.
pub(crate) const READERS: &[&str] = &["viewer", "operator", "admin"];
/// Roles that may act on campaigns (pause, resume, abort, approve).
pub(crate) const OPERATORS: &[&str] = &["operator", "admin"];
/// Roles that may use the queue API.
pub(crate) const WORKERS: &[&str] = &["worker", "admin"];

/// Authentication failures allowed per client address in one window before it is refused.
const MAX_FAILURES: u32 = 10;
/// The window failures are counted in (and how long a client stays refused).
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Counts authentication failures per client address.
#[derive(Default)]
pub(crate) struct FailureLimiter {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    /// Whether `ip` has failed too often lately.
    fn blocked(&self, ip: IpAddr) -> bool {
        let failures = self.failures.lock().expect("limiter lock");
        failures
            .get(&ip)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
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

/// The bearer token of a request, from its `Authorization` header or the session cookie.
pub(crate) fn secret(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(b) = bearer {
        return Some(b.to_owned());
    }
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

/// The token whose secret this is, counting a failure against `ip` when there is none.
pub(crate) async fn check(
    state: &AppState,
    ip: IpAddr,
    secret: Option<String>,
) -> Result<TokenRow, ApiError> {
    if state.limiter.blocked(ip) {
        return Err(ApiError::refused(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address; try again in a minute",
        ));
    }
    // Only wrong tokens count as failures: a request without one guesses nothing.
    let Some(secret) = secret else {
        return Err(ApiError::refused(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (labloop token create --role ...)",
        ));
    };
    let Some(token) = state.store.token(&secret).await? else {
        state.limiter.failed(ip);
        tracing::warn!(%ip, "request with an unknown or revoked token");
        return Err(ApiError::refused(
            StatusCode::UNAUTHORIZED,
            "unknown or revoked token",
        ));
    };
    Ok(token)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check(state, client_ip(parts), secret(&parts.headers))
            .await
            .map(Self)
    }
}
