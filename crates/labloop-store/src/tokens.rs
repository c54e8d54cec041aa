//! API tokens: a secret handed out once, of which the store keeps only a SHA-256, with a role —
//! `viewer` (read), `operator` (actions), `worker` (the queue API), `admin` (tokens). A worker
//! token carries the capabilities it was registered for; it claims nothing else. The dashboard's
//! sessions are opaque ids with an expiry, standing for a token, so a browser never holds the token.

use crate::{Store, StoreError, db, now, now_ms};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// The roles a token may have.
pub const ROLES: [&str; 4] = ["viewer", "operator", "worker", "admin"];

/// A token as the store knows it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// Its id (shown in lists and logs instead of the secret).
    pub id: String,
    /// Its role.
    pub role: String,
    /// Who or what it is for.
    pub name: String,
    /// The capabilities a worker token was registered for (empty for other roles).
    pub capabilities: Vec<String>,
}

fn refused(message: String) -> StoreError {
    StoreError::Corrupt {
        table: "api_tokens",
        message,
    }
}

/// 256 random bits as hex: secrets, session ids, lease tokens.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    /// Creates a token with `role` for `name`; returns its row and its secret (shown once). A
    /// `worker` token needs the `capabilities` it may claim (at most
    /// [`MAX_CAPABILITIES`](labloop_core::limits::MAX_CAPABILITIES)); other roles take none.
    pub async fn create_token(
        &self,
        role: &str,
        name: &str,
        capabilities: &[&str],
    ) -> Result<(TokenRow, String), StoreError> {
        use labloop_core::limits::{MAX_CAPABILITIES, is_capability};
        if !ROLES.contains(&role) {
            return Err(refused(format!(
                "unknown role `{role}`: expected one of {}",
                ROLES.join(", ")
            )));
        }
        if role == "worker" && capabilities.is_empty() {
            return Err(refused(
                "a worker token needs the capabilities it may claim (--capability NAME)".into(),
            ));
        }
        if role != "worker" && !capabilities.is_empty() {
            return Err(refused(format!(
                "only worker tokens have capabilities, not {role} tokens"
            )));
        }
        if capabilities.len() > MAX_CAPABILITIES {
            return Err(refused(format!(
                "{} capabilities: at most {MAX_CAPABILITIES}",
                capabilities.len()
            )));
        }
        if let Some(bad) = capabilities.iter().find(|c| !is_capability(c)) {
            return Err(refused(format!(
                "capability `{bad}`: expected 1 to 64 letters, digits, `_`, `-` or `.`"
            )));
        }
        let secret = format!("llt_{}", random_hex());
        let id = format!("tok_{}", &digest(&secret)[..12]);
        sqlx::query(
            "INSERT INTO api_tokens (id, hash, role, name, created_at, revoked, capabilities) \
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(&id)
        .bind(digest(&secret))
        .bind(role)
        .bind(name)
        .bind(now())
        .bind(capabilities.join(" "))
        .execute(self.pool())
        .await
        .map_err(db("creating a token"))?;
        Ok((
            TokenRow {
                id,
                role: role.to_owned(),
                name: name.to_owned(),
                capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            },
            secret,
        ))
    }

    /// The token whose secret this is, unless unknown or revoked.
    pub async fn token(&self, secret: &str) -> Result<Option<TokenRow>, StoreError> {
        self.token_where("hash", &digest(secret)).await
    }

    async fn token_where(&self, column: &str, value: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT id, role, name, capabilities FROM api_tokens WHERE {column} = $1 AND revoked = 0"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_optional(self.pool())
            .await
            .map_err(db("checking a token"))?;
        row.map(|r| {
            let capabilities: String = r.try_get(3).map_err(db("reading a token"))?;
            Ok(TokenRow {
                id: r.try_get(0).map_err(db("reading a token"))?,
                role: r.try_get(1).map_err(db("reading a token"))?,
                name: r.try_get(2).map_err(db("reading a token"))?,
                capabilities: capabilities.split_whitespace().map(str::to_owned).collect(),
            })
        })
        .transpose()
    }

    /// Opens a dashboard session for `token` lasting `lifetime`; returns its opaque id (the
    /// cookie's value; the store keeps only its hash).
    pub async fn create_session(
        &self,
        token: &TokenRow,
        lifetime: std::time::Duration,
    ) -> Result<String, StoreError> {
        let id = format!("lls_{}", random_hex());
        let now = now_ms();
        // Expired sessions go as new ones come.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(db("forgetting expired sessions"))?;
        sqlx::query("INSERT INTO sessions (hash, token_id, expires_at) VALUES ($1, $2, $3)")
            .bind(digest(&id))
            .bind(&token.id)
            .bind(now + lifetime.as_millis().min(i64::MAX as u128) as i64)
            .execute(self.pool())
            .await
            .map_err(db("opening a session"))?;
        Ok(id)
    }

    /// The token behind a session id, unless the session expired, was closed, or its token was
    /// revoked.
    pub async fn session(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query("SELECT token_id FROM sessions WHERE hash = $1 AND expires_at >= $2")
            .bind(digest(id))
            .bind(now_ms())
            .fetch_optional(self.pool())
            .await
            .map_err(db("checking a session"))?;
        let Some(row) = row else { return Ok(None) };
        let token: String = row.try_get(0).map_err(db("reading a session"))?;
        self.token_where("id", &token).await
    }

    /// Closes a session (signing out); closing an unknown one does nothing.
    pub async fn close_session(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE hash = $1")
            .bind(digest(id))
            .execute(self.pool())
            .await
            .map_err(db("closing a session"))?;
        Ok(())
    }

    /// Revokes a token by id (and closes its sessions); returns whether it existed.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db("revoking a token"))?;
        sqlx::query("DELETE FROM sessions WHERE token_id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db("closing a revoked token's sessions"))?;
        Ok(result.rows_affected() == 1)
    }
}
