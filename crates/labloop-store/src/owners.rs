//! Campaign ownership: one engine at a time runs a campaign, under a lease it renews. Several engines
//! on different machines may share one store; an engine that dies stops renewing, and another takes
//! the campaign over once the lease has run out.

use crate::{Store, StoreError, db, now_ms};
use sqlx::Row;
use std::time::Duration;

/// Who holds a campaign, and until when (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignOwner {
    /// The engine's name.
    pub owner: String,
    /// When its lease runs out unless renewed.
    pub lease_until_ms: i64,
}

impl Store {
    /// Takes `campaign` for `owner` for `lease` if nobody holds it, `owner` already does, its lease
    /// has run out, or its holder is `displace` (an engine known to be dead). Returns whether
    /// `owner` holds it now.
    pub async fn acquire_campaign(
        &self,
        campaign: &str,
        owner: &str,
        lease: Duration,
        displace: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let result = sqlx::query(
            "INSERT INTO campaign_owners (campaign_id, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (campaign_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE campaign_owners.owner = excluded.owner OR campaign_owners.lease_until < $4 \
             OR campaign_owners.owner = $5",
        )
        .bind(campaign)
        .bind(owner)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(displace.unwrap_or(""))
        .execute(self.pool())
        .await
        .map_err(db(format!("taking campaign {campaign}")))?;
        Ok(result.rows_affected() == 1)
    }

    /// Renews `owner`'s lease on `campaign`; false when it no longer holds it.
    pub async fn renew_campaign(
        &self,
        campaign: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE campaign_owners SET lease_until = $1 WHERE campaign_id = $2 AND owner = $3",
        )
        .bind(now_ms() + lease.as_millis() as i64)
        .bind(campaign)
        .bind(owner)
        .execute(self.pool())
        .await
        .map_err(db(format!("renewing the lease on campaign {campaign}")))?;
        Ok(result.rows_affected() == 1)
    }

    /// Lets go of `campaign` if `owner` holds it.
    pub async fn release_campaign(&self, campaign: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM campaign_owners WHERE campaign_id = $1 AND owner = $2")
            .bind(campaign)
            .bind(owner)
            .execute(self.pool())
            .await
            .map_err(db(format!("releasing campaign {campaign}")))?;
        Ok(())
    }

    /// Who holds `campaign` (a lease that ran out is still shown, with its time).
    pub async fn campaign_owner(
        &self,
        campaign: &str,
    ) -> Result<Option<CampaignOwner>, StoreError> {
        let row =
            sqlx::query("SELECT owner, lease_until FROM campaign_owners WHERE campaign_id = $1")
                .bind(campaign)
                .fetch_optional(self.pool())
                .await
                .map_err(db(format!("reading the owner of campaign {campaign}")))?;
        row.map(|r| {
            Ok(CampaignOwner {
                owner: r.try_get(0).map_err(db("reading a campaign owner"))?,
                lease_until_ms: r.try_get(1).map_err(db("reading a campaign owner"))?,
            })
        })
        .transpose()
    }
}
