//! The campaign loop: rounds of suggest → run → predict → observe, recorded in the store.

use crate::EngineError;
use crate::channels::ChannelPool;
use crate::experiment::ExperimentRun;
use labloop_core::{ChargeProtocol, ExperimentId, ExperimentState};
use labloop_drivers::Cycler;
use labloop_optimize::{
    Acquisition, BatchRequest, FitOptions, GaussianProcess, KernelKind, Observation, Ranked,
    bounds_of, rank, suggest_batch,
};
use labloop_predict::{LinearModel, Predictor, builtin_model};
use labloop_store::{NewExperiment, Store};
use labloop_workflow::{AcquisitionSpec, Direction, KernelSpec, Workflow};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

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
    },
    /// An experiment failed (the campaign goes on).
    ExperimentFailed {
        /// The experiment.
        experiment: String,
        /// Why.
        reason: String,
    },
    /// A round is done.
    RoundFinished {
        /// The round.
        round: u32,
        /// The current recommendation.
        best: RankedProtocol,
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
    /// The surrogate's estimate of the mean cycle life.
    pub predicted_life: f64,
    /// Its standard deviation.
    pub sigma: f64,
    /// Cells tested under this protocol.
    pub cells: usize,
    /// Mean of their early predictions, if any were tested.
    pub mean_observed: Option<f64>,
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
    /// Wall time of the campaign, seconds.
    pub wall_time_s: f64,
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

/// Runs one campaign.
pub struct CampaignRunner {
    workflow: Workflow,
    workflow_yaml: String,
    store: Store,
    cyclers: Vec<Arc<dyn Cycler>>,
    predictor: Arc<dyn Predictor + Send + Sync>,
    events: Option<UnboundedSender<EngineEvent>>,
    options: RunnerOptions,
}

impl CampaignRunner {
    /// A runner for `workflow` (and its source text, recorded with the campaign).
    pub fn new(
        workflow: Workflow,
        workflow_yaml: String,
        store: Store,
        cyclers: Vec<Arc<dyn Cycler>>,
        predictor: Arc<dyn Predictor + Send + Sync>,
    ) -> Self {
        Self {
            workflow,
            workflow_yaml,
            store,
            cyclers,
            predictor,
            events: None,
            options: RunnerOptions::default(),
        }
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

    fn emit(&self, event: EngineEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Runs every round and returns the ranking.
    pub async fn run(self) -> Result<CampaignResult, EngineError> {
        let started = Instant::now();
        let wf = &self.workflow;
        let cycle = wf
            .cycle_step()
            .ok_or_else(|| EngineError::Workflow("the experiment has no cycle step".into()))?
            .clone();
        if wf.predict_step().is_none() {
            return Err(EngineError::Workflow(
                "this engine needs a `predict` step to turn early cycles into an objective".into(),
            ));
        }
        if cycle.cycles < self.predictor.window() {
            return Err(EngineError::Workflow(format!(
                "the cycle step runs {} cycles but model `{}` predicts from the first {}: cycle at least that many",
                cycle.cycles,
                self.predictor.name(),
                self.predictor.window()
            )));
        }
        let space = wf.protocol_space();
        let candidates: Vec<ChargeProtocol> = space.enumerate();
        // The surrogate sees every step's C-rate, the derived last one included: life depends on it
        // directly (plating at high SOC), and through the free steps only non-linearly.
        let inputs: Arc<Vec<Vec<f64>>> =
            Arc::new(candidates.iter().map(ChargeProtocol::c_rates).collect());
        let fit = FitOptions {
            kernel: match wf.optimizer.kernel {
                KernelSpec::Matern52 => KernelKind::Matern52,
                KernelSpec::Rbf => KernelKind::Rbf,
            },
            bounds: bounds_of(&inputs),
            restarts: wf.optimizer.restarts as usize,
            seed: wf.campaign.seed,
        };
        let sign = match wf.campaign.objective.direction {
            Direction::Maximize => 1.0,
            Direction::Minimize => -1.0,
        };

        let channels = Arc::new(ChannelPool::new(&self.cyclers));
        if channels.size() == 0 {
            return Err(EngineError::Workflow(
                "the instruments offer no channels".into(),
            ));
        }
        let campaign = self
            .store
            .create_campaign(&wf.campaign.name, &self.workflow_yaml)
            .await?;
        tracing::info!(campaign = %campaign, candidates = candidates.len(), "campaign started");
        self.emit(EngineEvent::CampaignStarted {
            campaign: campaign.clone(),
            candidates: candidates.len(),
            rounds: wf.stopping.max_rounds,
        });

        let mut cells = 0usize;
        let mut failed = 0usize;
        let mut rounds = 0;
        for round in 0..wf.stopping.max_rounds {
            let budget_left = wf
                .stopping
                .max_cells
                .map_or(usize::MAX, |m| (m as usize).saturating_sub(cells));
            let batch_size = (wf.optimizer.batch_size as usize).min(budget_left);
            if batch_size == 0 {
                break;
            }
            let observations = self.observations(&campaign, &inputs, sign).await?;
            let acquisition = match wf.optimizer.acquisition {
                AcquisitionSpec::Thompson => Acquisition::Thompson,
                AcquisitionSpec::Ucb => Acquisition::Ucb,
                AcquisitionSpec::LogEi => Acquisition::LogEi,
            };
            let exploration = wf.optimizer.exploration;
            let round_fit = FitOptions {
                seed: fit.seed.wrapping_add(u64::from(round)),
                ..fit.clone()
            };
            let seed = round_fit.seed;
            let shared_inputs = Arc::clone(&inputs);
            let suggestion = compute(move || {
                suggest_batch(&BatchRequest {
                    candidates: &shared_inputs,
                    observations: &observations,
                    pending: &[],
                    batch_size,
                    acquisition,
                    exploration,
                    fit: round_fit,
                })
            })
            .await??;
            let provenance = serde_json::json!({
                "optimizer": format!("labloop-optimize {} {}", env!("CARGO_PKG_VERSION"), suggestion.method),
                "acquisition": wf.optimizer.acquisition,
                "exploration": wf.optimizer.exploration,
                "kernel": wf.optimizer.kernel,
                "seed": seed,
                "observations": suggestion.observations,
                "hyperparameters": suggestion.hyperparameters,
                "model": self.predictor.name(),
                "picks": suggestion.picks,
            });
            self.store
                .record_round(
                    &campaign,
                    round,
                    &suggestion.method,
                    &provenance.to_string(),
                )
                .await?;
            self.emit(EngineEvent::RoundStarted {
                round,
                experiments: suggestion.picks.len(),
                cycles_per_experiment: cycle.cycles,
                method: suggestion.method.clone(),
            });

            let mut tasks = tokio::task::JoinSet::new();
            for (slot, &pick) in suggestion.picks.iter().enumerate() {
                let id = ExperimentId::for_slot(&campaign.as_str().into(), round, slot as u32).0;
                let protocol = candidates[pick].clone();
                let cell_id = format!("{}-r{round}-s{slot:03}", wf.campaign.name);
                self.store
                    .add_experiment(&NewExperiment {
                        id: id.clone(),
                        campaign_id: campaign.clone(),
                        round,
                        slot: slot as u32,
                        candidate_index: pick,
                        parameters_json: serde_json::to_string(&inputs[pick])
                            .expect("numbers serialise"),
                        protocol_json: serde_json::to_string(&protocol)
                            .expect("protocols serialise"),
                        protocol_label: protocol.to_string(),
                        cell_id: cell_id.clone(),
                    })
                    .await?;
                self.store
                    .transition(&id, ExperimentState::Queued, None)
                    .await?;
                tasks.spawn(
                    ExperimentRun {
                        id,
                        cell_id,
                        protocol,
                        cycles: cycle.cycles,
                        discharge_c_rate: cycle.discharge_c_rate,
                        store: self.store.clone(),
                        channels: Arc::clone(&channels),
                        predictor: Arc::clone(&self.predictor),
                        events: self.events.clone(),
                        record_timeout: self.options.record_timeout,
                    }
                    .run(),
                );
            }
            while let Some(joined) = tasks.join_next().await {
                joined.map_err(|e| {
                    EngineError::Internal(format!("an experiment task failed: {e}"))
                })??;
            }
            cells += suggestion.picks.len();
            rounds += 1;
            let exps = self.store.experiments(&campaign).await?;
            let round_failed: Vec<_> = exps
                .iter()
                .filter(|e| e.round == round && e.state == ExperimentState::Failed)
                .collect();
            failed += round_failed.len();
            if round_failed.len() == suggestion.picks.len() {
                self.store.set_campaign_state(&campaign, "failed").await?;
                return Err(EngineError::RoundFailed {
                    round,
                    count: round_failed.len(),
                    first: round_failed[0].id.clone(),
                });
            }
            let ranking = self
                .ranking(&campaign, &candidates, &inputs, &fit, sign)
                .await?;
            self.emit(EngineEvent::RoundFinished {
                round,
                best: ranking[0].clone(),
            });
        }

        let ranking = self
            .ranking(&campaign, &candidates, &inputs, &fit, sign)
            .await?;
        for exp in self.store.experiments(&campaign).await? {
            if exp.state == ExperimentState::Predicted {
                self.store
                    .transition(&exp.id, ExperimentState::Completed, None)
                    .await?;
            }
        }
        self.store
            .set_campaign_state(&campaign, "completed")
            .await?;
        let records = self.store.count_records(&campaign).await?;
        tracing::info!(campaign = %campaign, cells, records, "campaign completed");
        Ok(CampaignResult {
            campaign,
            rounds,
            cells,
            failed,
            records,
            ranking,
            model: self.predictor.name().to_owned(),
            wall_time_s: started.elapsed().as_secs_f64(),
        })
    }

    /// The optimizer's observations, read back from the store.
    async fn observations(
        &self,
        campaign: &str,
        inputs: &[Vec<f64>],
        sign: f64,
    ) -> Result<Vec<Observation>, EngineError> {
        Ok(self
            .store
            .observations(campaign)
            .await?
            .into_iter()
            .map(|o| Observation {
                x: inputs[o.candidate_index].clone(),
                y: sign * o.prediction.cycle_life,
                noise_var: o.prediction.sigma.powi(2),
            })
            .collect())
    }

    async fn ranking(
        &self,
        campaign: &str,
        candidates: &[ChargeProtocol],
        inputs: &[Vec<f64>],
        fit: &FitOptions,
        sign: f64,
    ) -> Result<Vec<RankedProtocol>, EngineError> {
        let rows = self.store.observations(campaign).await?;
        let observations = self.observations(campaign, inputs, sign).await?;
        let fit = fit.clone();
        let gp = compute(move || GaussianProcess::fit(&observations, &fit)).await??;
        let ranked: Vec<Ranked> = rank(&gp, inputs);
        Ok(ranked
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let tested: Vec<f64> = rows
                    .iter()
                    .filter(|o| o.candidate_index == r.index)
                    .map(|o| o.prediction.cycle_life)
                    .collect();
                RankedProtocol {
                    rank: i + 1,
                    candidate_index: r.index,
                    protocol: candidates[r.index].to_string(),
                    c_rates: candidates[r.index].c_rates(),
                    predicted_life: sign * r.mean,
                    sigma: r.sd,
                    cells: tested.len(),
                    mean_observed: (!tested.is_empty())
                        .then(|| tested.iter().sum::<f64>() / tested.len() as f64),
                }
            })
            .collect())
    }
}
