//! API tokens: a secret handed out once, of which the store keeps only a SHA-256, with a role —
//! `viewer` (read), `operator` (actions), `worker` (the queue API), `admin` (tokens).

use crate::{Store, StoreError, db, now};
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
}

fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    /// Creates a token with `role` for `name`; returns its row and its secret (shown once).
    pub async fn create_token(
        &self,
        role: &str,
        name: &str,
    ) -> Result<(TokenRow, String), StoreError> {
        if !ROLES.contains(&role) {
            return Err(StoreError::Corrupt {
                table: "api_tokens",
                message: format!(
                    "unknown role `{role}`: expected one of {}",
                    ROLES.join(", ")
                ),
            });
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let secret = format!("llt_{secret}");
        let id = format!("tok_{}", &digest(&secret)[..12]);
        sqlx::query(
            "INSERT INTO api_tokens (id, hash, role, name, created_at, revoked) VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(&id)
        .bind(digest(&secret))
        .bind(role)
        .bind(name)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(db("creating a token"))?;
        Ok((
            TokenRow {
                id,
                role: role.to_owned(),
                name: name.to_owned(),
            },
            secret,
        ))
    }

    /// The token whose secret this is, unless unknown or revoked.
    pub async fn token(&self, secret: &str) -> Result<Option<TokenRow>, StoreError> {
        let row =
            sqlx::query("SELECT id, role, name FROM api_tokens WHERE hash = $1 AND revoked = 0")
                .bind(digest(secret))
                .fetch_optional(self.pool())
                .await
                .map_err(db("checking a token"))?;
        row.map(|r| {
            Ok(TokenRow {
                id: r.try_get(0).map_err(db("reading a token"))?,
                role: r.try_get(1).map_err(db("reading a token"))?,
                name: r.try_get(2).map_err(db("reading a token"))?,
            })
        })
        .transpose()
    }

    /// Revokes a token by id; returns whether it existed.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(db("revoking a token"))?;
        Ok(result.rows_affected() == 1)
    }
}
