//! A cell builder that is a queue: each `build` becomes a job on the store's queue (its id the
//! order's idempotency key), done by whichever external worker with the right capability claims it
//! (`labloop agent`, a lab's own script). The engine waits for the job to end; a job already queued
//! under the key (a campaign resumed after a crash) is waited for, never queued twice.

use async_trait::async_trait;
use labloop_drivers::{BuiltCell, CellBuilder, CellOrder, DriverError};
use labloop_store::{NewJob, Store};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Claims a job may have before it fails (a worker that dies spends one).
const ATTEMPTS: u32 = 3;

/// A cell builder reached through the store's job queue.
pub struct QueueCellBuilder {
    name: String,
    capability: String,
    store_url: String,
    store: OnceCell<Store>,
    poll: Duration,
}

impl QueueCellBuilder {
    /// The builder `name`, whose jobs need `capability`, on the store at `store_url` (connected on
    /// first use), looking for the job's end every `poll`.
    pub fn new(name: &str, capability: &str, store_url: &str, poll: Duration) -> Self {
        Self {
            name: name.to_owned(),
            capability: capability.to_owned(),
            store_url: store_url.to_owned(),
            store: OnceCell::new(),
            poll,
        }
    }

    fn failure(&self, message: String) -> DriverError {
        DriverError::Instrument {
            instrument: self.name.clone(),
            message,
        }
    }
}

#[async_trait]
impl CellBuilder for QueueCellBuilder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn build(&self, order: CellOrder) -> Result<BuiltCell, DriverError> {
        let store = self
            .store
            .get_or_try_init(|| Store::connect(&self.store_url))
            .await
            .map_err(|e| self.failure(format!("the queue's store: {e}")))?;
        let payload = serde_json::to_string(&order).expect("an order serialises");
        let id = order.key.clone();
        store
            .enqueue(&NewJob {
                id: id.clone(),
                campaign: order.key.split('/').next().map(str::to_owned),
                kind: "build_cell".into(),
                capability: self.capability.clone(),
                payload,
                max_attempts: ATTEMPTS,
            })
            .await
            .map_err(|e| self.failure(e.to_string()))?;
        loop {
            let job = store
                .job(&id)
                .await
                .map_err(|e| self.failure(e.to_string()))?
                .ok_or_else(|| self.failure(format!("job {id} vanished from the queue")))?;
            match job.state.as_str() {
                "completed" => {
                    let result = job.result.unwrap_or_default();
                    return serde_json::from_str(&result).map_err(|e| {
                        self.failure(format!(
                            "job {id}: the worker's result is not a built cell ({e}): {result}"
                        ))
                    });
                }
                "failed" => {
                    return Err(self.failure(format!(
                        "job {id} failed: {}",
                        job.error.unwrap_or_default()
                    )));
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
    }
}
