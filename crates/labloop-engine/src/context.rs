//! What every experiment of a campaign shares: the workflow, the store, the instruments and their
//! locks, the predictor, the clock, and the pause signal.

use crate::channels::ChannelPool;
use crate::experiment::wall_time;
use crate::runner::{EngineEvent, RunnerOptions};
use labloop_drivers::CellBuilder;
use labloop_predict::Predictor;
use labloop_store::Store;
use labloop_workflow::Workflow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc::UnboundedSender, watch};

/// The shortest real time a timeout on an accelerated clock is given.
pub const MIN_SIMULATED_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Context {
    pub workflow: Workflow,
    pub store: Store,
    pub channels: ChannelPool,
    pub builders: HashMap<String, Arc<dyn CellBuilder>>,
    /// Named locks (`resources:`), one permit per channel of the instrument they name.
    pub locks: HashMap<String, Arc<Semaphore>>,
    pub safety: HashMap<String, crate::safety::Interlock>,
    pub predictor: Arc<dyn Predictor + Send + Sync>,
    /// The workflow's plugins.
    pub plugins: labloop_plugin::Plugins,
    pub events: Option<UnboundedSender<EngineEvent>>,
    pub options: RunnerOptions,
    /// True once the campaign is pausing.
    pub pause: watch::Receiver<bool>,
    pub pause_tx: watch::Sender<bool>,
    pub pause_reason: Mutex<Option<String>>,
    /// Experiments a person asked to abort (the API): their running step stops at once.
    pub cancelled: watch::Sender<std::collections::BTreeSet<String>>,
    /// Whether a person aborted the whole campaign (it ends `aborted`, not `paused`).
    pub campaign_aborted: std::sync::atomic::AtomicBool,
    /// Whether a person paused the campaign through a request.
    pub paused_by_request: std::sync::atomic::AtomicBool,
    /// Instrument seconds per wall-clock second (simulated instruments run fast).
    pub time_scale: f64,
    /// Each step's id, and the order steps run in.
    pub step_ids: Vec<String>,
    pub order: Vec<usize>,
}

impl Context {
    pub fn emit(&self, event: EngineEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Wall-clock time for `seconds` of instrument time.
    pub fn wall(&self, seconds: f64) -> Duration {
        wall_time(seconds, self.time_scale)
    }

    /// How long an attempt may take before it times out, for a `timeout` of `seconds` of instrument
    /// time. On an accelerated (simulated) clock, never less than [`MIN_SIMULATED_TIMEOUT`] of real
    /// time: a loaded machine's scheduling delays are not the instrument's.
    pub fn timeout(&self, seconds: f64) -> Duration {
        let wall = self.wall(seconds);
        if self.time_scale > 1.0 {
            wall.max(MIN_SIMULATED_TIMEOUT)
        } else {
            wall
        }
    }

    /// Takes the named locks (`resources:`) in a fixed order (no deadlock between steps holding
    /// several); they are released when the guards drop.
    pub async fn hold(&self, resources: &[String]) -> Vec<OwnedSemaphorePermit> {
        let mut names: Vec<&String> = resources.iter().collect();
        names.sort();
        names.dedup();
        let mut guards = Vec::new();
        for name in names {
            if let Some(lock) = self.locks.get(name.as_str())
                && let Ok(guard) = lock.clone().acquire_owned().await
            {
                guards.push(guard);
            }
        }
        guards
    }

    /// Resolves once `experiment` has been cancelled by a person.
    pub async fn cancelled(&self, experiment: &str) {
        let mut rx = self.cancelled.subscribe();
        let _ = rx.wait_for(|set| set.contains(experiment)).await;
    }

    /// Whether `experiment` has been cancelled by a person.
    pub fn is_cancelled(&self, experiment: &str) -> bool {
        self.cancelled.borrow().contains(experiment)
    }

    /// Pauses the whole campaign (a step's `on_failure: pause_campaign`).
    pub fn request_pause(&self, reason: &str) {
        self.pause_reason
            .lock()
            .expect("pause lock")
            .get_or_insert_with(|| reason.to_owned());
        let _ = self.pause_tx.send(true);
    }
}
