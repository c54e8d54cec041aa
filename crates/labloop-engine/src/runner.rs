//! The campaign loop: rounds of suggest → run → predict → observe, recorded in the store. Planning
//! is [`crate::planning`]'s, each experiment [`crate::experiment`]'s, the checks before anything
//! starts [`crate::checks`]', and what stops it [`crate::halt`]'s.

use crate::EngineError;
use crate::context::Context;
use crate::design::Candidates;
use crate::events::{CampaignResult, EngineEvent, RunnerOptions};
use crate::halt::{Halt, HaltSignal};
use crate::instruments::Instruments;
use crate::ownership::Ownership;
use crate::planning::Planner;
use crate::subject::ExperimentRun;
use labloop_core::{CampaignState, ExperimentState};
use labloop_predict::Predictor;
use labloop_store::Store;
use labloop_workflow::Workflow;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch};

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

    /// Records a new campaign and runs it.
    pub async fn run(mut self) -> Result<CampaignResult, EngineError> {
        crate::checks::before_start(&self.workflow, &self.instruments, self.predictor.as_ref())
            .await?;
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

    /// Continues a campaign recorded in the store, from where the store says it stands.
    pub async fn resume(mut self, campaign: &str) -> Result<CampaignResult, EngineError> {
        crate::checks::before_start(&self.workflow, &self.instruments, self.predictor.as_ref())
            .await?;
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

    /// Runs the campaign while holding it (when an ownership is set), and lets go at the end. Ctrl-C
    /// (the runner's pause) and a lease lost to another engine both halt it.
    async fn drive_owned(mut self, campaign: String) -> Result<CampaignResult, EngineError> {
        let halt = HaltSignal::new();
        let _ctrl_c = self
            .pause
            .take()
            .map(|outside| halt.follow(outside, "asked to pause"));
        let store = self.store.clone();
        let Some(me) = self.ownership.clone() else {
            let result = self.drive(campaign.clone(), halt).await;
            return paused_on_store_failure(&store, campaign, result).await;
        };
        crate::ownership::take(&store, &campaign, &me).await?;
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
        let (keeper, lost) = crate::ownership::keep(store.clone(), campaign.clone(), me.clone());
        let _lost = halt.follow(lost.clone(), "another engine took the campaign over");
        let result = self.drive(campaign.clone(), halt).await;
        let result = paused_on_store_failure(&store, campaign.clone(), result).await;
        keeper.abort();
        if *lost.borrow() {
            return Err(EngineError::OwnershipLost { campaign });
        }
        store.release_campaign(&campaign, &me.owner).await?;
        result
    }

    /// The campaign's rounds, from the first the store has not finished, until a stopping rule or
    /// the halt signal ends them.
    async fn drive(
        self,
        campaign: String,
        halt: HaltSignal,
    ) -> Result<CampaignResult, EngineError> {
        let started = Instant::now();
        let wf = self.workflow.clone();
        let planner = Planner::new(
            wf.clone(),
            self.store.clone(),
            Arc::clone(&self.predictor),
            self.prior.clone(),
        )?;
        let candidates = Arc::clone(&planner.candidates);
        let ctx = Arc::new(Context::new(
            &wf,
            &self.store,
            &self.instruments,
            &self.predictor,
            self.events.clone(),
            self.options.clone(),
            halt.clone(),
        ));
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
        for round in 0..wf.stopping.max_rounds {
            if round >= recorded_rounds {
                match self
                    .next_batch(&campaign, ctx.time_scale, confidence)
                    .await?
                {
                    Ok(batch_size) => planner.plan_round(&campaign, round, batch_size).await?,
                    Err(reason) => {
                        stopped_by = reason;
                        break;
                    }
                }
            }
            self.start_round(&campaign, round, &candidates, &ctx, &mut tasks)
                .await?;
            if halt.is_set() {
                break;
            }
            self.check_round_failed(&campaign, round).await?;
            let (ranking, p) = planner.ranking(&campaign).await?;
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
            joined
                .map_err(|e| EngineError::Internal(format!("an experiment task failed: {e}")))??;
        }
        drop(requests);
        if let Some(halted) = halt.current() {
            return self.halted(campaign, halted).await;
        }
        let (ranking, p) = planner.ranking(&campaign).await?;
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

    /// Starts the round's experiments that have not ended, and waits until each has its objective
    /// (predicted: the next round need not wait for ends of life) or the campaign halts.
    async fn start_round(
        &self,
        campaign: &str,
        round: u32,
        candidates: &Candidates,
        ctx: &Arc<Context>,
        tasks: &mut tokio::task::JoinSet<Result<(), EngineError>>,
    ) -> Result<(), EngineError> {
        let planned: Vec<_> = self
            .store
            .experiments(campaign)
            .await?
            .into_iter()
            .filter(|e| e.round == round)
            .collect();
        self.emit(EngineEvent::RoundStarted {
            round,
            experiments: planned.len(),
            cycles_per_experiment: self.workflow.cycle_step().map_or(0, |c| c.cycles),
            method: self
                .store
                .rounds(campaign)
                .await?
                .into_iter()
                .find(|r| r.0 == round)
                .map(|r| r.1)
                .unwrap_or_default(),
        });
        let mut waits = Vec::new();
        for exp in planned.iter().filter(|e| !e.state.is_terminal()) {
            let (tx, rx) = oneshot::channel();
            waits.push(rx);
            let i = exp.candidate_index;
            let run = ExperimentRun {
                id: exp.id.clone(),
                cell_id: exp.cell_id.clone(),
                label: candidates.labels[i].clone(),
                protocol: candidates.protocols[i].clone(),
                formulation: candidates.formulations[i].clone(),
                parameters: candidates.parameters[i].clone(),
                ctx: Arc::clone(ctx),
                observed: Some(tx),
                channel_hint: exp.channel_id.clone(),
            };
            // How a run ended is the halt signal's to say (a paused run set it).
            tasks.spawn(async move { run.run().await.map(|_| ()) });
        }
        for rx in waits {
            tokio::select! {
                _ = rx => {}
                () = ctx.halt.halted() => break,
            }
        }
        // An experiment that stopped on a store error ends the campaign here, not later.
        while let Some(joined) = tasks.try_join_next() {
            joined
                .map_err(|e| EngineError::Internal(format!("an experiment task failed: {e}")))??;
        }
        Ok(())
    }

    /// Fails the campaign when every experiment of `round` failed: it has nothing to learn from.
    async fn check_round_failed(&self, campaign: &str, round: u32) -> Result<(), EngineError> {
        let exps = self.store.experiments(campaign).await?;
        let round_exps: Vec<_> = exps.iter().filter(|e| e.round == round).collect();
        let failed: Vec<_> = round_exps
            .iter()
            .filter(|e| e.state == ExperimentState::Failed)
            .collect();
        if round_exps.is_empty() || failed.len() < round_exps.len() {
            return Ok(());
        }
        self.store
            .set_campaign_state(campaign, CampaignState::Failed)
            .await?;
        Err(EngineError::RoundFailed {
            round,
            count: failed.len(),
            first: failed[0].id.clone(),
        })
    }

    /// Records how a halted campaign ended (`aborted`, or `paused` to resume) and says why.
    async fn halted(&self, campaign: String, halt: Halt) -> Result<CampaignResult, EngineError> {
        match halt {
            Halt::Abort { reason } => {
                self.store
                    .set_campaign_state(&campaign, CampaignState::Aborted)
                    .await?;
                tracing::info!(campaign = %campaign, %reason, "campaign aborted");
                Err(EngineError::Aborted { campaign, reason })
            }
            Halt::Pause { reason, by_request } => {
                self.store
                    .set_campaign_state(&campaign, CampaignState::Paused)
                    .await?;
                tracing::info!(campaign = %campaign, %reason, "campaign paused");
                Err(EngineError::Paused {
                    campaign,
                    reason,
                    by_request,
                })
            }
        }
    }

    fn emit(&self, event: EngineEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// The next round's batch size, or why no further round starts (a stopping rule).
    async fn next_batch(
        &self,
        campaign: &str,
        time_scale: f64,
        confidence: f64,
    ) -> Result<Result<usize, String>, EngineError> {
        let stop = &self.workflow.stopping;
        if let Some(p) = stop.best_probability
            && confidence >= p
        {
            return Ok(Err("best_probability".into()));
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
                return Ok(Err("max_days".into()));
            }
        }
        let cells = self.store.experiments(campaign).await?.len();
        let budget_left = stop
            .max_cells
            .map_or(usize::MAX, |m| (m as usize).saturating_sub(cells));
        match (self.workflow.optimizer.batch_size as usize).min(budget_left) {
            0 => Ok(Err("max_cells".into())),
            batch_size => Ok(Ok(batch_size)),
        }
    }
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
