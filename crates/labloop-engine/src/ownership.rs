//! One engine at a time runs a campaign: it takes the campaign in the store under a lease, renews it
//! while it runs, and lets go at the end. Another engine (on this machine or another sharing the
//! store) takes over once the lease runs out — at once when the holder was a process on this machine
//! that no longer exists. An engine that finds its lease taken stops starting steps at once.

use crate::EngineError;
use labloop_store::Store;
use std::time::Duration;
use tokio::sync::watch;

/// How an engine holds its campaign.
#[derive(Clone, Debug)]
pub struct Ownership {
    /// This engine's name in the store (default: `<host>/<pid>/<start time>`).
    pub owner: String,
    /// How long the campaign stays this engine's without a renewal (renewed every third of it).
    pub lease: Duration,
    /// Wait for the current holder's lease to run out instead of failing at once.
    pub wait: bool,
}

impl Ownership {
    /// This process as the owner, with `lease`.
    pub fn of_this_process(lease: Duration, wait: bool) -> Self {
        Self {
            owner: this_process(),
            lease,
            wait,
        }
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// `<host>/<pid>/<nanoseconds at start>`: unique, and tells which process on which host holds it.
pub fn this_process() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}/{}/{nanos}", host(), std::process::id())
}

/// Whether `owner` names a process of this machine that is gone (its lease need not be waited out).
fn gone_from_here(owner: &str) -> bool {
    let mut parts = owner.split('/');
    let (Some(h), Some(pid), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    h == host()
        && pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// Takes `campaign` for `me`, waiting for the holder's lease when `me.wait`.
pub(crate) async fn take(store: &Store, campaign: &str, me: &Ownership) -> Result<(), EngineError> {
    let mut told = false;
    loop {
        let holder = store.campaign_owner(campaign).await?;
        let dead = holder
            .as_ref()
            .filter(|h| h.owner != me.owner && gone_from_here(&h.owner))
            .map(|h| h.owner.clone());
        if store
            .acquire_campaign(campaign, &me.owner, me.lease, dead.as_deref())
            .await?
        {
            match (&holder, &dead) {
                (_, Some(dead)) => {
                    tracing::warn!(campaign, previous = %dead, "took over from an engine that is gone")
                }
                (Some(h), None) if h.owner != me.owner => {
                    tracing::warn!(campaign, previous = %h.owner, "took over after the previous engine's lease ran out")
                }
                _ => {}
            }
            return Ok(());
        }
        let holder = store.campaign_owner(campaign).await?;
        let (owner, until) = holder.map_or((String::new(), 0), |h| (h.owner, h.lease_until_ms));
        if !me.wait {
            return Err(EngineError::Owned {
                campaign: campaign.to_owned(),
                owner,
                until_ms: until,
            });
        }
        if !told {
            tracing::warn!(campaign, %owner, "another engine runs this campaign: waiting for its lease to run out");
            told = true;
        }
        tokio::time::sleep((me.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(2)))
            .await;
    }
}

/// Renews the lease every third of it until dropped; the receiver turns true if the lease is lost
/// (another engine took the campaign, or the store was unreachable for a whole lease).
pub(crate) fn keep(
    store: Store,
    campaign: String,
    me: Ownership,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
    let (lost_tx, lost_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(me.lease / 3).await;
            match store.renew_campaign(&campaign, &me.owner, me.lease).await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(campaign, "another engine took this campaign: stopping");
                    let _ = lost_tx.send(true);
                    return;
                }
                Err(e) if last_renewed.elapsed() >= me.lease => {
                    tracing::error!(campaign, error = %e, "could not renew the campaign's lease: stopping");
                    let _ = lost_tx.send(true);
                    return;
                }
                Err(e) => tracing::warn!(campaign, error = %e, "renewing the campaign's lease"),
            }
        }
    });
    (task, lost_rx)
}
