//! What every experiment of a campaign shares: the workflow, the store, the instruments and their
//! locks, the predictor, the clock, and the halt signal.

use crate::channels::ChannelPool;
use crate::events::{EngineEvent, RunnerOptions};
use crate::halt::HaltSignal;
use crate::instruments::Instruments;
use labloop_drivers::CellBuilder;
use labloop_predict::Predictor;
use labloop_store::Store;
use labloop_workflow::Workflow;
use std::collections::HashMap;
use std::sync::Arc;
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
    /// Set once the campaign pauses or aborts: no new step starts.
    pub halt: HaltSignal,
    /// Experiments a person asked to abort (the API): their running step stops at once.
    pub cancelled: watch::Sender<std::collections::BTreeSet<String>>,
    /// Instrument seconds per wall-clock second (simulated instruments run fast).
    pub time_scale: f64,
    /// Each step's id, and the order steps run in.
    pub step_ids: Vec<String>,
    pub order: Vec<usize>,
}

impl Context {
    /// The context of a campaign run on `instruments` with `predictor`, halted by `halt`.
    pub fn new(
        workflow: &Workflow,
        store: &Store,
        instruments: &Instruments,
        predictor: &Arc<dyn Predictor + Send + Sync>,
        events: Option<UnboundedSender<EngineEvent>>,
        options: RunnerOptions,
        halt: HaltSignal,
    ) -> Self {
        // The slowest simulated clock sets the campaign's (real instruments run at 1).
        let time_scale = workflow
            .instruments
            .iter()
            .map(|i| i.clock_acceleration)
            .fold(f64::INFINITY, f64::min)
            .clamp(1.0, 1e12);
        Self {
            channels: ChannelPool::new(&instruments.cyclers),
            builders: instruments
                .builders
                .iter()
                .map(|b| (b.name().to_owned(), Arc::clone(b)))
                .collect(),
            locks: workflow
                .instruments
                .iter()
                .map(|i| {
                    (
                        i.name.clone(),
                        Arc::new(Semaphore::new(i.channels as usize)),
                    )
                })
                .collect(),
            safety: workflow
                .instruments
                .iter()
                .map(|i| (i.name.clone(), crate::safety::Interlock::of(i)))
                .collect(),
            predictor: Arc::clone(predictor),
            plugins: instruments.plugins.clone(),
            events,
            options,
            halt,
            cancelled: watch::channel(Default::default()).0,
            time_scale,
            order: workflow.run_order(),
            step_ids: workflow.step_ids(),
            store: store.clone(),
            workflow: workflow.clone(),
        }
    }

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
}

/// Wall-clock time for `simulated_s` seconds of instrument time.
pub(crate) fn wall_time(simulated_s: f64, time_scale: f64) -> Duration {
    Duration::from_secs_f64((simulated_s / time_scale.max(f64::MIN_POSITIVE)).clamp(0.0, 1e9))
}
