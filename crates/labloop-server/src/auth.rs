//! Who is calling: `Authorization: Bearer <token>`, checked against the store's hashed tokens. A
//! token's secret never appears in logs; its id does.

use crate::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use labloop_store::{Store, TokenRow};

/// The caller's token, if it may do what needs one of `roles`.
pub(crate) async fn authorize(
    store: &Store,
    headers: &HeaderMap,
    roles: &[&str],
) -> Result<TokenRow, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        return Err(ApiError::refused(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (labloop token create --role ...)",
        ));
    };
    let Some(token) = store.token(secret).await? else {
        tracing::warn!("request with an unknown or revoked token");
        return Err(ApiError::refused(
            StatusCode::UNAUTHORIZED,
            "unknown or revoked token",
        ));
    };
    if !roles.contains(&token.role.as_str()) {
        tracing::warn!(token = %token.id, role = %token.role, "request beyond the token's role");
        return Err(ApiError::refused(
            StatusCode::FORBIDDEN,
            &format!(
                "a {} token may not do this (needs: {})",
                token.role,
                roles.join(" or ")
            ),
        ));
    }
    Ok(token)
}
