//! The campaign loop: rounds of suggest → run → predict → observe, recorded in the store.

use crate::EngineError;
use crate::channels::ChannelPool;
use crate::context::Context;
use crate::design::Candidates;
use crate::experiment::{ExperimentRun, RunEnd};
use crate::optimizer_settings;
use crate::ownership::Ownership;
use labloop_core::CampaignState;
use labloop_core::{ExperimentId, ExperimentState};
use labloop_drivers::{CellBuilder, Cycler};
use labloop_optimize::{
    BatchRequest, FitOptions, GaussianProcess, Observation, RECOMMENDATION_SIGMAS, Ranked,
    best_probability, rank, suggest_batch,
};
use labloop_predict::{LinearModel, ModelFile, Predictor, builtin_model};
use labloop_store::{NewExperiment, ObservationRow, Store};
use labloop_workflow::{Direction, InitialDesign, OptimizerKind, Workflow};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{Semaphore, oneshot, watch};

/// What the engine reports as it goes (for progress bars, logs, live dashboards).
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// The campaign is recorded and about to start.
    CampaignStarted {
        /// Its id in the store.
        campaign: String,
        /// Candidates in the space.
        candidates: usize,
        /// Rounds planned.
        rounds: u32,
    },
    /// A round's experiments are queued.
    RoundStarted {
        /// The round (from 0).
        round: u32,
        /// Experiments in it.
        experiments: usize,
        /// Cycles each runs.
        cycles_per_experiment: u32,
        /// How the batch was chosen.
        method: String,
    },
    /// Records were stored.
    CycleRecorded {
        /// The experiment.
        experiment: String,
        /// How many.
        records: usize,
    },
    /// An experiment's life was predicted.
    ExperimentPredicted {
        /// The experiment.
        experiment: String,
        /// Its protocol.
        protocol: String,
        /// Predicted life.
        cycle_life: f64,
        /// Its σ.
        sigma: f64,
        /// Why the cell is outside the model's training domain, when it is.
        out_of_domain: Option<String>,
    },
    /// An experiment failed (the campaign goes on).
    ExperimentFailed {
        /// The experiment.
        experiment: String,
        /// Why.
        reason: String,
    },
    /// A step waits for a person (`labloop approve`).
    ApprovalWaiting {
        /// The experiment.
        experiment: String,
        /// The step.
        step: String,
        /// What the person is asked.
        message: String,
    },
    /// A round is done.
    RoundFinished {
        /// The round.
        round: u32,
        /// The current recommendation.
        best: RankedProtocol,
        /// Posterior probability that it is the best.
        best_probability: f64,
    },
}

/// A protocol in the final ranking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankedProtocol {
    /// 1 = recommended.
    pub rank: usize,
    /// Index into the campaign's candidates.
    pub candidate_index: usize,
    /// As people name it, e.g. `4.8-5.2-5.2-4.16`.
    pub protocol: String,
    /// Every step's C-rate.
    pub c_rates: Vec<f64>,
    /// The surrogate's estimate of the mean cycle life (of the measured objective, for a
    /// campaign whose objective is a step's output).
    pub predicted_life: f64,
    /// Its standard deviation.
    pub sigma: f64,
    /// Cells tested under this protocol.
    pub cells: usize,
    /// Mean of their early predictions (measurements, for a measured objective), if any.
    pub mean_predicted: Option<f64>,
    /// Mean of the lives observed to end of life, if any cell reached it (censored ones excluded).
    pub mean_observed: Option<f64>,
    /// Cells still alive when their test stopped: their lives are only lower bounds.
    pub censored: usize,
    /// The smallest of those bounds: every censored cell lived at least this long.
    pub at_least: Option<f64>,
}

/// What a finished campaign returns.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignResult {
    /// Its id in the store.
    pub campaign: String,
    /// Rounds run.
    pub rounds: u32,
    /// Cells (experiments) run.
    pub cells: usize,
    /// Of which failed.
    pub failed: usize,
    /// Cycle records stored.
    pub records: u64,
    /// Candidates, best first (all of them).
    pub ranking: Vec<RankedProtocol>,
    /// The lifetime model used.
    pub model: String,
    /// Wall time of the campaign in this process, seconds.
    pub wall_time_s: f64,
    /// Why the campaign stopped: `max_rounds`, `max_cells`, `max_days`, `best_probability`.
    pub stopped_by: String,
    /// Posterior probability that the recommendation is the best.
    pub best_probability: f64,
}

/// Knobs that are not in the workflow.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// An experiment fails when its channel sends no record for this long.
    pub record_timeout: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            record_timeout: Duration::from_secs(600),
        }
    }
}

/// Runs CPU-heavy, pure computation (GP fits) off the async workers, so progress and I/O go on.
async fn compute<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EngineError::Internal(format!("an optimizer computation failed: {e}")))
}

/// Loads the model a workflow names: a built-in one, or a model file.
pub fn resolve_model(name: &str) -> Result<LinearModel, EngineError> {
    if let Some(model) = builtin_model(name) {
        return Ok(model);
    }
    let text = std::fs::read_to_string(name).map_err(|e| {
        EngineError::Workflow(format!(
            "predict.model `{name}` is neither a built-in model ({}) nor a readable file: {e}",
            labloop_predict::BUILTIN_MODELS.join(", ")
        ))
    })?;
    Ok(LinearModel::from_json(&text, name)?)
}

/// Loads the predictor a workflow names: a built-in model, or a model file of any kind (elastic net
/// or neural ensemble).
pub fn load_predictor(name: &str) -> Result<Arc<dyn Predictor + Send + Sync>, EngineError> {
    Ok(ModelFile::resolve(name)?.into_predictor())
}

/// How long a plugin has to answer its health check (`ping`) before a campaign starts.
pub const PLUGIN_HEALTH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The instruments a campaign runs on.
#[derive(Clone, Default)]
pub struct Instruments {
    /// Battery cyclers.
    pub cyclers: Vec<Arc<dyn Cycler>>,
    /// Cell-assembly robots, by name.
    pub builders: Vec<Arc<dyn CellBuilder>>,
    /// The workflow's plugins (its steps', models' and instruments'), started on first use.
    pub plugins: labloop_plugin::Plugins,
}

/// Runs one campaign: a new one ([`CampaignRunner::run`]) or one recorded in the store
/// ([`CampaignRunner::resume`]).
pub struct CampaignRunner {
    workflow: Workflow,
    workflow_yaml: String,
    store: Store,
    instruments: Instruments,
    predictor: Arc<dyn Predictor + Send + Sync>,
    events: Option<UnboundedSender<EngineEvent>>,
    options: RunnerOptions,
    pause: Option<watch::Receiver<bool>>,
    ownership: Option<Ownership>,
    /// Cells measured before the campaign (`campaign.prior_data`), read before it starts.
    prior: Vec<crate::prior::PriorObservation>,
    /// The workflow with its includes, recorded with a new campaign.
    workflow_bundle: Option<String>,
}

impl CampaignRunner {
    /// A runner for `workflow` (and its source text, recorded with the campaign).
    pub fn new(
        workflow: Workflow,
        workflow_yaml: String,
        store: Store,
        instruments: Instruments,
        predictor: Arc<dyn Predictor + Send + Sync>,
    ) -> Self {
        Self {
            workflow,
            workflow_yaml,
            store,
            instruments,
            predictor,
            events: None,
            options: RunnerOptions::default(),
            pause: None,
            ownership: None,
            prior: Vec::new(),
            workflow_bundle: None,
        }
    }

    /// Holds the campaign in the store as `ownership` says while it runs, so that engines sharing a
    /// store never run one campaign twice, and one takes over when another dies.
    pub fn with_ownership(mut self, ownership: Ownership) -> Self {
        self.ownership = Some(ownership);
        self
    }

    /// Keeps the workflow's bundle (`labloop_workflow::Bundle` as JSON: its text and its
    /// includes') with the campaign, so that it reads again from the store alone.
    pub fn with_workflow_bundle(mut self, bundle: String) -> Self {
        self.workflow_bundle = Some(bundle);
        self
    }

    /// Sends progress events to `tx`.
    pub fn with_events(mut self, tx: UnboundedSender<EngineEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// Overrides the defaults of [`RunnerOptions`].
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self
    }

    /// Pauses the campaign gracefully when `pause` turns true (e.g. on Ctrl-C): no new step starts,
    /// tests on instruments go on, and [`CampaignRunner::resume`] continues later.
    pub fn with_pause(mut self, pause: watch::Receiver<bool>) -> Self {
        self.pause = Some(pause);
        self
    }

    /// The model's features must be computable from what the cyclers record (their `records`):
    /// refused before any cell is cycled, not after its early cycles.
    fn check_recorded_features(&self) -> Result<(), EngineError> {
        let Some(trust) = self.predictor.trust() else {
            return Ok(());
        };
        for instrument in &self.workflow.instruments {
            let (labloop_workflow::InstrumentKind::Cycler, Some(records)) =
                (instrument.kind, &instrument.records)
            else {
                continue;
            };
            let missing = trust.domain.features.iter().find_map(|feature| {
                labloop_predict::needs_recorded(feature)
                    .filter(|need| !records.iter().any(|r| r.as_str() == *need))
                    .map(|need| (feature, need))
            });
            if let Some((feature, need)) = missing {
                let declared: Vec<&str> = records.iter().map(|r| r.as_str()).collect();
                return Err(EngineError::Workflow(format!(
                    "model `{}` needs feature `{feature}`, computed from the {need} of each cycle, \
                     which instrument `{}` does not record (its records: [{}]): choose a model \
                     without it, or a cycler that records it",
                    self.predictor.name(),
                    instrument.name,
                    declared.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), EngineError> {
        let wf = &self.workflow;
        let cycle = wf
            .cycle_step()
            .ok_or_else(|| EngineError::Workflow("the experiment has no cycle step".into()))?;
        if wf.predict_step().is_some() && cycle.cycles < self.predictor.window() {
            return Err(EngineError::Workflow(format!(
                "the cycle step runs {} cycles but model `{}` predicts from the first {}: cycle at least that many",
                cycle.cycles,
                self.predictor.name(),
                self.predictor.window()
            )));
        }
        if wf.predict_step().is_some() {
            self.check_recorded_features()?;
        }
        if self
            .instruments
            .cyclers
            .iter()
            .all(|c| c.channels().is_empty())
        {
            return Err(EngineError::Workflow(
                "the instruments offer no channels".into(),
            ));
        }
        Ok(())
    }

    /// Asks every instrument who it is (`identify`) and checks it against the workflow: the protocol's
    /// major version, and every channel the workflow gives a cycler. All are asked at once; every
    /// problem is reported together, and nothing has started.
    /// Reads the workflow's prior cells from the store (before anything is cycled).
    async fn load_prior(&mut self) -> Result<(), EngineError> {
        if self.workflow.campaign.prior_data.is_empty() {
            return Ok(());
        }
        let candidates = Candidates::of(&self.workflow)?;
        self.prior = crate::prior::load(&self.store, &self.workflow, &candidates).await?;
        tracing::info!(cells = self.prior.len(), "prior observations read");
        Ok(())
    }

    /// Starts the workflow's plugins and checks the workflow's use of each against its `hello`
    /// (what `labloop validate` does), and that each answers a health check.
    async fn check_plugins(&self) -> Result<(), EngineError> {
        let plugins = &self.instruments.plugins;
        let mut problems: Vec<String> = labloop_plugin::check::check(&self.workflow, plugins)
            .await
            .into_iter()
            .map(|(path, message)| format!("{path}: {message}"))
            .collect();
        if problems.is_empty() {
            for (name, plugin) in plugins.iter() {
                if let Err(e) = plugin.health(PLUGIN_HEALTH_PATIENCE).await {
                    problems.push(format!("plugin `{name}` failed its health check: {e}"));
                }
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(EngineError::Workflow(format!(
            "{}; nothing was started",
            problems.join("; ")
        )))
    }

    async fn check_instruments(&self) -> Result<(), EngineError> {
        self.check_plugins().await?;
        let mut asked = tokio::task::JoinSet::new();
        for cycler in &self.instruments.cyclers {
            let cycler = Arc::clone(cycler);
            asked.spawn(async move {
                let wanted: Vec<String> = cycler
                    .channels()
                    .iter()
                    .map(|c| labloop_drivers::wire_name(c).to_owned())
                    .collect();
                (cycler.name().to_owned(), wanted, cycler.identify().await)
            });
        }
        for builder in &self.instruments.builders {
            let builder = Arc::clone(builder);
            asked.spawn(async move {
                (
                    builder.name().to_owned(),
                    Vec::new(),
                    builder.identify().await,
                )
            });
        }
        let mut problems = Vec::new();
        while let Some(answer) = asked.join_next().await {
            let (name, wanted, identity) =
                answer.map_err(|e| EngineError::Internal(format!("identify: {e}")))?;
            let identity = match identity {
                Ok(identity) => identity,
                Err(e) => {
                    problems.push(format!("{name} did not identify itself: {e}"));
                    continue;
                }
            };
            if let Err(e) = labloop_drivers::wire::check_protocol(&identity.protocol) {
                problems.push(format!("{name} ({}) {e}", identity.model));
            }
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|w| !identity.channels.contains(w))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{name} ({}) announces channels [{}], but the workflow gives it {} ({}): {} missing",
                    identity.model,
                    identity.channels.join(", "),
                    wanted.len(),
                    wanted.join(", "),
                    missing.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        problems.sort();
        Err(EngineError::Instrument(format!(
            "{}; nothing was started",
            problems.join("; ")
        )))
    }

    /// Records a new campaign and runs it.
    pub async fn run(mut self) -> Result<CampaignResult, EngineError> {
        self.check()?;
        self.check_instruments().await?;
        self.load_prior().await?;
        let campaign = self
            .store
            .create_campaign_with_bundle(
                &self.workflow.campaign.name,
                &self.workflow_yaml,
                self.workflow_bundle.as_deref(),
            )
            .await?;
        self.drive_owned(campaign).await
    }

    /// Runs the campaign while holding it (when an ownership is set), and lets go at the end.
    async fn drive_owned(mut self, campaign: String) -> Result<CampaignResult, EngineError> {
        let Some(me) = self.ownership.clone() else {
            let store = self.store.clone();
            let result = self.drive(campaign.clone()).await;
            return paused_on_store_failure(&store, campaign, result).await;
        };
        crate::ownership::take(&self.store, &campaign, &me).await?;
        let store = self.store.clone();
        // Another engine may have finished it while this one waited.
        if store
            .campaign(&campaign)
            .await?
            .is_some_and(|c| c.state == CampaignState::Completed)
        {
            store.release_campaign(&campaign, &me.owner).await?;
            return Err(EngineError::Workflow(format!(
                "campaign `{campaign}` is already completed"
            )));
        }
        let (keeper, mut lost) =
            crate::ownership::keep(store.clone(), campaign.clone(), me.clone());
        let lost_flag = lost.clone();
        // Losing the campaign pauses it like Ctrl-C does: no new step starts.
        let (pause_tx, pause_rx) = watch::channel(false);
        let mut outer = self.pause.take();
        tokio::spawn(async move {
            let outer_paused = async {
                match outer.as_mut() {
                    Some(rx) => {
                        let _ = rx.wait_for(|p| *p).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = lost.wait_for(|l| *l) => {}
                () = outer_paused => {}
            }
            let _ = pause_tx.send(true);
        });
        self.pause = Some(pause_rx);
        let result = self.drive(campaign.clone()).await;
        let result = paused_on_store_failure(&store, campaign.clone(), result).await;
        keeper.abort();
        if *lost_flag.borrow() {
            return Err(EngineError::OwnershipLost { campaign });
        }
        store.release_campaign(&campaign, &me.owner).await?;
        result
    }

    /// Continues a campaign recorded in the store, from where the store says it stands.
    pub async fn resume(mut self, campaign: &str) -> Result<CampaignResult, EngineError> {
        self.check()?;
        self.check_instruments().await?;
        self.load_prior().await?;
        let row = self.store.campaign(campaign).await?.ok_or_else(|| {
            EngineError::Workflow(format!("no campaign `{campaign}` in the store"))
        })?;
        if row.state.is_over() {
            return Err(EngineError::Workflow(format!(
                "campaign `{campaign}` is already {}",
                row.state
            )));
        }
        self.store
            .set_campaign_state(campaign, CampaignState::Running)
            .await?;
        self.drive_owned(campaign.to_owned()).await
    }

    async fn drive(self, campaign: String) -> Result<CampaignResult, EngineError> {
        let started = Instant::now();
        let wf = self.workflow.clone();
        let candidates = Arc::new(Candidates::of(&wf)?);
        if candidates.is_empty() {
            return Err(EngineError::Workflow(
                "the search space has no candidates".into(),
            ));
        }
        let inputs: Arc<Vec<Vec<f64>>> = Arc::new(candidates.inputs.clone());
        let fit = optimizer_settings::fit_options(&wf, &inputs);
        let sign = match wf.campaign.objective.direction {
            Direction::Maximize => 1.0,
            Direction::Minimize => -1.0,
        };
        let (pause_tx, pause_rx) = watch::channel(false);
        if let Some(mut outer) = self.pause.clone() {
            let tx = pause_tx.clone();
            tokio::spawn(async move {
                if outer.wait_for(|p| *p).await.is_ok() {
                    let _ = tx.send(true);
                }
            });
        }
        let time_scale = wf
            .instruments
            .iter()
            .map(|i| i.clock_acceleration)
            .fold(f64::INFINITY, f64::min)
            .clamp(1.0, 1e12);
        let ids = wf.step_ids();
        let ctx = Arc::new(Context {
            channels: ChannelPool::new(&self.instruments.cyclers),
            builders: self
                .instruments
                .builders
                .iter()
                .map(|b| (b.name().to_owned(), Arc::clone(b)))
                .collect(),
            locks: wf
                .instruments
                .iter()
                .map(|i| {
                    (
                        i.name.clone(),
                        Arc::new(Semaphore::new(i.channels as usize)),
                    )
                })
                .collect(),
            safety: wf
                .instruments
                .iter()
                .map(|i| (i.name.clone(), crate::safety::Interlock::of(i)))
                .collect(),
            predictor: Arc::clone(&self.predictor),
            plugins: self.instruments.plugins.clone(),
            events: self.events.clone(),
            options: self.options.clone(),
            pause: pause_rx.clone(),
            pause_tx,
            pause_reason: Mutex::new(None),
            cancelled: watch::channel(Default::default()).0,
            campaign_aborted: Default::default(),
            paused_by_request: Default::default(),
            time_scale,
            order: step_order(&ids, &wf.step_needs()),
            step_ids: ids,
            store: self.store.clone(),
            workflow: wf.clone(),
        });
        // People's requests (pause, abort) arrive through the store while the campaign runs.
        let requests = AbortOnDrop(tokio::spawn(crate::remote::watch(
            Arc::clone(&ctx),
            campaign.clone(),
        )));
        tracing::info!(campaign = %campaign, candidates = candidates.len(), "campaign started");
        self.emit(EngineEvent::CampaignStarted {
            campaign: campaign.clone(),
            candidates: candidates.len(),
            rounds: wf.stopping.max_rounds,
        });
        // Channels whose tests were in flight stay with their experiments.
        let existing = self.store.experiments(&campaign).await?;
        ctx.channels.reserve(
            existing
                .iter()
                .filter(|e| !e.state.is_terminal())
                .filter_map(|e| e.channel_id.as_deref().map(Into::into)),
        );
        let recorded_rounds = self.store.rounds(&campaign).await?.len() as u32;

        let mut tasks = tokio::task::JoinSet::new();
        let mut stopped_by = "max_rounds".to_owned();
        let mut confidence = 0.0;
        let mut paused = false;
        for round in 0..wf.stopping.max_rounds {
            if round >= recorded_rounds {
                if let Some(reason) = self.stop_reason(&campaign, time_scale, confidence).await? {
                    stopped_by = reason;
                    break;
                }
                let cells = self.store.experiments(&campaign).await?.len();
                let budget_left = wf
                    .stopping
                    .max_cells
                    .map_or(usize::MAX, |m| (m as usize).saturating_sub(cells));
                let batch_size = (wf.optimizer.batch_size as usize).min(budget_left);
                if batch_size == 0 {
                    stopped_by = "max_cells".into();
                    break;
                }
                self.plan_round(
                    &campaign,
                    round,
                    batch_size,
                    &candidates,
                    &inputs,
                    &fit,
                    sign,
                )
                .await?;
            }
            let planned: Vec<_> = self
                .store
                .experiments(&campaign)
                .await?
                .into_iter()
                .filter(|e| e.round == round)
                .collect();
            self.emit(EngineEvent::RoundStarted {
                round,
                experiments: planned.len(),
                cycles_per_experiment: wf.cycle_step().map_or(0, |c| c.cycles),
                method: self
                    .store
                    .rounds(&campaign)
                    .await?
                    .into_iter()
                    .find(|r| r.0 == round)
                    .map(|r| r.1)
                    .unwrap_or_default(),
            });
            let mut waits = Vec::new();
            for exp in &planned {
                if exp.state.is_terminal() {
                    continue;
                }
                let (tx, rx) = oneshot::channel();
                waits.push(rx);
                let i = exp.candidate_index;
                tasks.spawn(
                    ExperimentRun {
                        id: exp.id.clone(),
                        cell_id: exp.cell_id.clone(),
                        label: candidates.labels[i].clone(),
                        protocol: candidates.protocols[i].clone(),
                        formulation: candidates.formulations[i].clone(),
                        parameters: candidates.parameters[i].clone(),
                        ctx: Arc::clone(&ctx),
                        observed: Some(tx),
                        channel_hint: exp.channel_id.clone(),
                    }
                    .run(),
                );
            }
            // The next round starts when this one's objectives are known (predicted), not when
            // every cell reached end of life.
            for rx in waits {
                let mut pause = pause_rx.clone();
                tokio::select! {
                    _ = rx => {}
                    _ = pause.wait_for(|p| *p) => { paused = true; break; }
                }
            }
            // An experiment that stopped on a store error ends the campaign here, not later.
            while let Some(joined) = tasks.try_join_next() {
                if let RunEnd::Paused = joined.map_err(|e| {
                    EngineError::Internal(format!("an experiment task failed: {e}"))
                })?? {
                    paused = true;
                }
            }
            if paused || *pause_rx.borrow() {
                paused = true;
                break;
            }
            let exps = self.store.experiments(&campaign).await?;
            let round_exps: Vec<_> = exps.iter().filter(|e| e.round == round).collect();
            let round_failed: Vec<_> = round_exps
                .iter()
                .filter(|e| e.state == ExperimentState::Failed)
                .collect();
            if !round_exps.is_empty() && round_failed.len() == round_exps.len() {
                self.store
                    .set_campaign_state(&campaign, CampaignState::Failed)
                    .await?;
                return Err(EngineError::RoundFailed {
                    round,
                    count: round_failed.len(),
                    first: round_failed[0].id.clone(),
                });
            }
            let (ranking, p) = self
                .ranking(&campaign, &candidates, &inputs, &fit, sign)
                .await?;
            confidence = p;
            self.store
                .record_surrogate(
                    &campaign,
                    round,
                    &crate::design::surrogate_snapshot(&candidates, &ranking, p, false).to_string(),
                )
                .await?;
            self.emit(EngineEvent::RoundFinished {
                round,
                best: ranking[0].clone(),
                best_probability: p,
            });
        }
        // Experiments that go on (to end of life) finish before the campaign does.
        while let Some(joined) = tasks.join_next().await {
            match joined
                .map_err(|e| EngineError::Internal(format!("an experiment task failed: {e}")))??
            {
                RunEnd::Paused => paused = true,
                RunEnd::Finished => {}
            }
        }
        drop(requests);
        if paused || *pause_rx.borrow() {
            let reason = ctx
                .pause_reason
                .lock()
                .expect("pause lock")
                .clone()
                .unwrap_or_else(|| "asked to pause".into());
            if ctx
                .campaign_aborted
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                self.store
                    .set_campaign_state(&campaign, CampaignState::Aborted)
                    .await?;
                tracing::info!(campaign = %campaign, %reason, "campaign aborted");
                return Err(EngineError::Aborted { campaign, reason });
            }
            self.store
                .set_campaign_state(&campaign, CampaignState::Paused)
                .await?;
            tracing::info!(campaign = %campaign, %reason, "campaign paused");
            let by_request = ctx
                .paused_by_request
                .load(std::sync::atomic::Ordering::SeqCst);
            return Err(EngineError::Paused {
                campaign,
                reason,
                by_request,
            });
        }
        let (ranking, p) = self
            .ranking(&campaign, &candidates, &inputs, &fit, sign)
            .await?;
        // The final ranking (lives observed after the last round included) replaces the last
        // round's snapshot, so the dashboard shows what this result reports.
        if let Some(last) = self.store.surrogate_round(&campaign).await? {
            self.store
                .record_surrogate(
                    &campaign,
                    last,
                    &crate::design::surrogate_snapshot(&candidates, &ranking, p, true).to_string(),
                )
                .await?;
        }
        self.store
            .set_campaign_state(&campaign, CampaignState::Completed)
            .await?;
        let exps = self.store.experiments(&campaign).await?;
        let records = self.store.count_records(&campaign).await?;
        tracing::info!(campaign = %campaign, cells = exps.len(), records, "campaign completed");
        Ok(CampaignResult {
            rounds: self.store.rounds(&campaign).await?.len() as u32,
            cells: exps.len(),
            failed: exps
                .iter()
                .filter(|e| e.state == ExperimentState::Failed)
                .count(),
            campaign,
            records,
            ranking,
            model: self.predictor.name().to_owned(),
            wall_time_s: started.elapsed().as_secs_f64(),
            stopped_by,
            best_probability: p,
        })
    }

    fn emit(&self, event: EngineEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Why no further round should start, if a stopping rule says so.
    async fn stop_reason(
        &self,
        campaign: &str,
        time_scale: f64,
        confidence: f64,
    ) -> Result<Option<String>, EngineError> {
        let stop = &self.workflow.stopping;
        if let Some(p) = stop.best_probability
            && confidence >= p
        {
            return Ok(Some("best_probability".into()));
        }
        if let Some(days) = stop.max_days
            && let Some(row) = self.store.campaign(campaign).await?
            && let Ok(created) = time::OffsetDateTime::parse(
                &row.created_at,
                &time::format_description::well_known::Rfc3339,
            )
        {
            let elapsed_s = (time::OffsetDateTime::now_utc() - created).as_seconds_f64();
            if elapsed_s * time_scale >= days * 86_400.0 {
                return Ok(Some("max_days".into()));
            }
        }
        Ok(None)
    }

    /// Chooses a round's batch and records it with its experiments, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn plan_round(
        &self,
        campaign: &str,
        round: u32,
        batch_size: usize,
        candidates: &Candidates,
        inputs: &Arc<Vec<Vec<f64>>>,
        fit: &FitOptions,
        sign: f64,
    ) -> Result<(), EngineError> {
        let wf = &self.workflow;
        let observations = self.observations(campaign, inputs, sign).await?;
        let seed = fit.seed.wrapping_add(u64::from(round));
        let started = Instant::now();
        let random = wf.optimizer.kind == OptimizerKind::Random
            || (observations.is_empty() && wf.optimizer.initial_design == InitialDesign::Random);
        let (picks, method, provenance) = if random {
            let tested: std::collections::HashSet<usize> = self
                .store
                .experiments(campaign)
                .await?
                .iter()
                .map(|e| e.candidate_index)
                .collect();
            let mut order: Vec<usize> = (0..candidates.len())
                .filter(|i| !tested.contains(i))
                .collect();
            if order.len() < batch_size {
                order = (0..candidates.len()).collect();
            }
            order.shuffle(&mut StdRng::seed_from_u64(seed));
            order.truncate(batch_size);
            (
                order,
                "random".to_owned(),
                serde_json::json!({"seed": seed}),
            )
        } else {
            let acquisition = optimizer_settings::acquisition(wf);
            let exploration = wf.optimizer.exploration;
            let round_fit = FitOptions {
                seed,
                ..fit.clone()
            };
            let shared = Arc::clone(inputs);
            let n_obs = observations.len();
            let suggestion = compute(move || {
                suggest_batch(&BatchRequest {
                    candidates: &shared,
                    observations: &observations,
                    pending: &[],
                    batch_size,
                    acquisition,
                    exploration,
                    fit: round_fit,
                    recommendation_sigmas: RECOMMENDATION_SIGMAS,
                })
            })
            .await??;
            let provenance = serde_json::json!({
                "acquisition": wf.optimizer.acquisition,
                "exploration": wf.optimizer.exploration,
                "kernel": wf.optimizer.kernel,
                "seed": seed,
                "observations": n_obs,
                "hyperparameters": suggestion.hyperparameters,
            });
            (suggestion.picks, suggestion.method, provenance)
        };
        let mut provenance = provenance;
        provenance["optimizer"] = serde_json::json!(format!(
            "labloop-optimize {} {method}",
            env!("CARGO_PKG_VERSION")
        ));
        provenance["model"] = serde_json::json!(self.predictor.name());
        provenance["picks"] = serde_json::json!(picks);
        // How long choosing the batch took (reading observations, fitting, the acquisition).
        provenance["suggest_s"] = serde_json::json!(started.elapsed().as_secs_f64());
        let experiments: Vec<NewExperiment> = picks
            .iter()
            .enumerate()
            .map(|(slot, &pick)| NewExperiment {
                id: ExperimentId::for_slot(&campaign.into(), round, slot as u32).0,
                campaign_id: campaign.to_owned(),
                round,
                slot: slot as u32,
                candidate_index: pick,
                parameters_json: candidates.values[pick].to_string(),
                protocol_json: serde_json::to_string(&candidates.protocols[pick])
                    .expect("protocols serialise"),
                protocol_label: candidates.labels[pick].clone(),
                cell_id: format!("{}-r{round}-s{slot:03}", wf.campaign.name),
            })
            .collect();
        self.store
            .record_round_with_experiments(
                campaign,
                round,
                &method,
                &provenance.to_string(),
                &experiments,
            )
            .await?;
        Ok(())
    }

    /// The optimizer's observations, read back from the store, with the model adapted to the
    /// campaign's observed lives ([`crate::adaptation`]).
    async fn observations(
        &self,
        campaign: &str,
        inputs: &[Vec<f64>],
        sign: f64,
    ) -> Result<Vec<Observation>, EngineError> {
        let mut rows = self.objective_rows(campaign).await?;
        // A measured objective is not the model's: nothing to adapt, no shared part.
        let shared = if self.workflow.campaign.objective.measured().is_some() {
            SharedOffset::none()
        } else {
            let predictor = crate::adaptation::adapt_to_observed(
                &self.store,
                &self.predictor,
                campaign,
                &mut rows,
            )
            .await?;
            SharedOffset::of(predictor.as_ref())
        };
        // Prior cells carry lives: they inform a cycle-life objective only.
        let prior_lives = if self.workflow.campaign.objective.measured().is_some() {
            &[][..]
        } else {
            &self.prior[..]
        };
        let prior = prior_lives.iter().map(|p| Observation {
            x: inputs[p.candidate_index].clone(),
            y: sign * p.life,
            noise_var: (p.life * crate::prior::PRIOR_SIGMA_FRACTION).powi(2),
        });
        Ok(rows
            .iter()
            .map(|o| to_observation(o, inputs, sign, &shared))
            .chain(prior)
            .collect())
    }

    /// Each experiment's objective as the store has it: its prediction (and observed life), or,
    /// for a measured objective, its measurement.
    async fn objective_rows(&self, campaign: &str) -> Result<Vec<ObservationRow>, EngineError> {
        let objective = &self.workflow.campaign.objective;
        Ok(match objective.measured() {
            Some(_) => {
                self.store
                    .measured_observations(campaign, &objective.name)
                    .await?
            }
            None => self.store.observations(campaign).await?,
        })
    }

    async fn ranking(
        &self,
        campaign: &str,
        candidates: &Candidates,
        inputs: &Arc<Vec<Vec<f64>>>,
        fit: &FitOptions,
        sign: f64,
    ) -> Result<(Vec<RankedProtocol>, f64), EngineError> {
        let observations = self.observations(campaign, inputs, sign).await?;
        #[derive(Default, Clone)]
        struct Tally {
            predicted: Vec<f64>,
            observed: Vec<f64>,
            bounds: Vec<f64>,
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let mut by_candidate: HashMap<usize, Tally> = HashMap::new();
        for o in self.objective_rows(campaign).await? {
            let t = by_candidate.entry(o.candidate_index).or_default();
            t.predicted.push(o.prediction.cycle_life);
            match o.observed {
                Some((life, false)) => t.observed.push(life),
                Some((bound, true)) => t.bounds.push(bound),
                None => {}
            }
        }
        let fit = fit.clone();
        let shared = Arc::clone(inputs);
        let (ranked, p): (Vec<Ranked>, f64) = compute(move || {
            let gp = GaussianProcess::fit(&observations, &fit)?;
            let (_, p) = best_probability(&gp, &shared, 1000, fit.seed);
            Ok::<_, labloop_optimize::OptimizeError>((rank(&gp, &shared), p))
        })
        .await??;
        let ranking = ranked
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let tested = by_candidate.get(&r.index).cloned().unwrap_or_default();
                RankedProtocol {
                    rank: i + 1,
                    candidate_index: r.index,
                    protocol: candidates.labels[r.index].clone(),
                    c_rates: candidates.protocols[r.index].c_rates(),
                    predicted_life: sign * r.mean,
                    sigma: r.sd,
                    cells: tested.predicted.len(),
                    mean_predicted: mean(&tested.predicted),
                    mean_observed: mean(&tested.observed),
                    censored: tested.bounds.len(),
                    at_least: tested.bounds.iter().copied().reduce(f64::min),
                }
            })
            .collect();
        Ok((ranking, p))
    }
}

/// The part of a model's σ that every cell of one campaign shares: its batch's offset (the batch
/// σ, or what is left of it once the model is adapted), in log₁₀ cycles. A common factor on every
/// predicted life moves none of them relative to another, so the optimizer, which compares
/// protocols, is given each prediction's σ without it.
struct SharedOffset {
    model: String,
    sigma_log10: f64,
}

impl SharedOffset {
    /// No shared part (a measured objective).
    fn none() -> Self {
        Self {
            model: String::new(),
            sigma_log10: 0.0,
        }
    }

    fn of(predictor: &(dyn Predictor + Send + Sync)) -> Self {
        let sigma_log10 = predictor.trust().map_or(0.0, |t| match &t.adaptation {
            Some(a) => a.offset_sigma_log10,
            None => t.batch_sigma_log10,
        });
        Self {
            model: predictor.name().to_owned(),
            sigma_log10,
        }
    }

    /// A prediction's σ in cycles without the shared part (only for the model it describes).
    fn without(&self, p: &labloop_store::PredictionRow) -> f64 {
        if p.model != self.model || self.sigma_log10 <= 0.0 {
            return p.sigma;
        }
        let own = (p.sigma_log10.powi(2) - self.sigma_log10.powi(2))
            .max(0.0)
            .sqrt();
        p.cycle_life * std::f64::consts::LN_10 * own
    }
}

/// Least σ of a censored life, as a fraction of its bound: the early prediction it is drawn from
/// was wrong enough to need the bound, so it is not trusted to place the life closer than this.
const CENSORED_SIGMA_FRACTION: f64 = 0.15;

/// An experiment's objective and its σ: the life observed by cycling to end of life where there is
/// one (only the measurement error remains, ≈2 % of life); for a censored life (alive at the bound
/// when its test stopped) the early prediction cut below the bound
/// ([`labloop_optimize::censored::lower_bounded`]), its σ at least
/// [`CENSORED_SIGMA_FRACTION`] of the bound; the early prediction otherwise (without its
/// campaign-wide part, [`SharedOffset`]).
fn objective_of(o: &ObservationRow, shared: &SharedOffset) -> (f64, f64) {
    if let Some(measured) = o.measurement {
        return measured;
    }
    let predicted = (o.prediction.cycle_life, shared.without(&o.prediction));
    match o.observed {
        Some((life, false)) => (life, life * 0.02),
        Some((bound, true)) => {
            let (mean, sd) =
                labloop_optimize::censored::lower_bounded(predicted.0, predicted.1, bound);
            (mean, sd.max(CENSORED_SIGMA_FRACTION * bound))
        }
        None => predicted,
    }
}

fn to_observation(
    o: &ObservationRow,
    inputs: &[Vec<f64>],
    sign: f64,
    shared: &SharedOffset,
) -> Observation {
    let (y, sd) = objective_of(o, shared);
    Observation {
        x: inputs[o.candidate_index].clone(),
        y: sign * y,
        noise_var: sd.powi(2),
    }
}

/// The order steps run in: dependencies first, and otherwise as written.
fn step_order(ids: &[String], needs: &[Vec<String>]) -> Vec<usize> {
    let mut done = vec![false; ids.len()];
    let mut order = Vec::new();
    while order.len() < ids.len() {
        let next = (0..ids.len()).find(|&i| {
            !done[i]
                && needs[i]
                    .iter()
                    .all(|n| ids.iter().position(|id| id == n).is_none_or(|j| done[j]))
        });
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            // Validation rejects cycles; run what is left as written rather than loop.
            None => {
                order.extend((0..ids.len()).filter(|&i| !done[i]));
                break;
            }
        }
    }
    order
}

/// Aborts a background task when dropped (on every way out of the function that holds it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A campaign whose store failed under it (a database locked past its busy timeout, a disk full, a
/// server gone) is left `paused` with the reason — never `running` with no engine — so `labloop
/// resume` continues it once the store is back. Marking it may fail for the same cause: a few
/// tries with backoff.
async fn paused_on_store_failure(
    store: &labloop_store::Store,
    campaign: String,
    result: Result<CampaignResult, EngineError>,
) -> Result<CampaignResult, EngineError> {
    let Err(EngineError::Store(e)) = result else {
        return result;
    };
    let reason = format!("the store failed: {e}");
    for attempt in 0..6u32 {
        match store
            .set_campaign_state(&campaign, CampaignState::Paused)
            .await
        {
            Ok(()) => break,
            Err(again) => {
                tracing::warn!(campaign = %campaign, error = %again, attempt, "marking the campaign paused");
                tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
            }
        }
    }
    tracing::error!(campaign = %campaign, %reason, "campaign paused");
    Err(EngineError::Paused {
        campaign,
        reason,
        by_request: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use labloop_store::PredictionRow;

    fn row(observed: Option<(f64, bool)>) -> ObservationRow {
        ObservationRow {
            experiment_id: "c-r0-e0".into(),
            round: 0,
            candidate_index: 1,
            protocol_label: "4.8-5.2-4.8-4.46".into(),
            prediction: PredictionRow {
                model: "severson-variance".into(),
                cycle_life: 900.0,
                sigma: 120.0,
                log10_life: 900f64.log10(),
                sigma_log10: 0.06,
                features_json: "{}".into(),
                out_of_domain: None,
            },
            observed,
            measurement: None,
        }
    }

    /// Multi-fidelity: the early prediction is an observation with its σ until the cell's own end of
    /// life arrives and replaces it (a censored life stays less certain); a minimised objective flips
    /// sign, never σ.
    #[test]
    fn an_observed_life_replaces_the_prediction() {
        let inputs = vec![vec![3.6], vec![4.8]];
        let none = SharedOffset {
            model: "severson-variance".into(),
            sigma_log10: 0.0,
        };
        let to_observation = |o: &ObservationRow, inputs: &[Vec<f64>], sign: f64| {
            to_observation(o, inputs, sign, &none)
        };
        let predicted = to_observation(&row(None), &inputs, 1.0);
        assert_eq!((predicted.x, predicted.y), (vec![4.8], 900.0));
        assert!((predicted.noise_var - 120.0 * 120.0).abs() < 1e-9);
        let observed = to_observation(&row(Some((1000.0, false))), &inputs, 1.0);
        assert_eq!(observed.y, 1000.0);
        assert!((observed.noise_var - 20.0 * 20.0).abs() < 1e-9);
        let censored = to_observation(&row(Some((1000.0, true))), &inputs, -1.0);
        assert!(censored.y < -1000.0, "{}", censored.y);
        assert!((censored.noise_var - 150.0 * 150.0).abs() < 1e-9);
        assert!(observed.noise_var < predicted.noise_var);
        assert!(observed.noise_var < censored.noise_var);
    }

    /// A censored life is a lower bound, never a measurement at the bound: a cell predicted at 900
    /// and still alive at 400 keeps (about) its prediction; one predicted at 900 and alive at 1000
    /// lives longer than 1000 by what the prediction's tail says.
    #[test]
    fn a_censored_life_is_a_lower_bound() {
        let none = SharedOffset {
            model: "severson-variance".into(),
            sigma_log10: 0.0,
        };
        let (early_cut, sd) = objective_of(&row(Some((400.0, true))), &none);
        assert!((early_cut - 900.0).abs() < 1.0, "{early_cut}");
        assert!((sd - 120.0).abs() < 1.0, "{sd}");
        let (late_cut, sd) = objective_of(&row(Some((1000.0, true))), &none);
        assert!(late_cut > 1050.0 && late_cut < 1200.0, "{late_cut}");
        assert!((sd - 150.0).abs() < 1e-9, "{sd}");
    }

    /// The batch offset every cell of a campaign shares is left out of the optimizer's noise: of
    /// σ = 0.06 log₁₀ with a shared 0.036, 0.048 remains; another model's predictions keep theirs.
    #[test]
    fn the_shared_batch_offset_is_not_noise_to_the_optimizer() {
        let shared = SharedOffset {
            model: "severson-variance".into(),
            sigma_log10: 0.036,
        };
        let inputs = vec![vec![3.6], vec![4.8]];
        let o = to_observation(&row(None), &inputs, 1.0, &shared);
        let expected = 900.0 * std::f64::consts::LN_10 * 0.048;
        assert!(
            (o.noise_var.sqrt() - expected).abs() < 1e-9,
            "{}",
            o.noise_var.sqrt()
        );
        let mut other = row(None);
        other.prediction.model = "my-model".into();
        let o = to_observation(&other, &inputs, 1.0, &shared);
        assert!((o.noise_var - 120.0 * 120.0).abs() < 1e-9);
    }
}
