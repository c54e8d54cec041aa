//! Planning a campaign's rounds: the optimizer's observations read back from the store (the
//! model adapted to the lives observed so far), each round's batch chosen and recorded with its
//! experiments, and the ranking of every candidate.

use crate::EngineError;
use crate::design::Candidates;
use crate::events::RankedProtocol;
use crate::objective::{SharedOffset, to_observation};
use crate::optimizer_settings;
use crate::prior::PriorObservation;
use labloop_core::ExperimentId;
use labloop_optimize::{
    BatchRequest, DESIGN_SPREAD, FitOptions, GaussianProcess, KNOWLEDGE_GRADIENT_SIGMAS,
    Observation, RECOMMENDATION_TREND_SHARE, Ranked, best_probability, rank, recommendation_fit,
    suggest_batch,
};
use labloop_predict::Predictor;
use labloop_store::{NewExperiment, ObservationRow, Store};
use labloop_workflow::{Direction, InitialDesign, OptimizerKind, Workflow};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What planning a campaign's rounds needs, fixed for the campaign's run in this process.
pub(crate) struct Planner {
    workflow: Workflow,
    store: Store,
    predictor: Arc<dyn Predictor + Send + Sync>,
    /// Cells measured before the campaign (`campaign.prior_data`).
    prior: Vec<PriorObservation>,
    /// The search space's candidates.
    pub candidates: Arc<Candidates>,
    /// Their inputs as the surrogate sees them.
    inputs: Arc<Vec<Vec<f64>>>,
    /// The surrogate's fit.
    fit: FitOptions,
    /// +1 to maximise the objective, −1 to minimise it (the optimizer maximises).
    sign: f64,
}

impl Planner {
    /// The planner of `workflow`'s campaign; refused when the search space has no candidates.
    pub fn new(
        workflow: Workflow,
        store: Store,
        predictor: Arc<dyn Predictor + Send + Sync>,
        prior: Vec<PriorObservation>,
    ) -> Result<Self, EngineError> {
        let candidates = Arc::new(Candidates::of(&workflow)?);
        if candidates.is_empty() {
            return Err(EngineError::Workflow(
                "the search space has no candidates".into(),
            ));
        }
        let inputs: Arc<Vec<Vec<f64>>> = Arc::new(candidates.inputs.clone());
        let fit = optimizer_settings::fit_options(&workflow, &inputs);
        let sign = match workflow.campaign.objective.direction {
            Direction::Maximize => 1.0,
            Direction::Minimize => -1.0,
        };
        Ok(Self {
            workflow,
            store,
            predictor,
            prior,
            candidates,
            inputs,
            fit,
            sign,
        })
    }

    /// Chooses a round's batch and records it with its experiments, in one transaction.
    pub async fn plan_round(
        &self,
        campaign: &str,
        round: u32,
        batch_size: usize,
    ) -> Result<(), EngineError> {
        let wf = &self.workflow;
        let candidates = &self.candidates;
        let observations = self.observations(campaign).await?;
        let seed = self.fit.seed.wrapping_add(u64::from(round));
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
                ..self.fit.clone()
            };
            let shared = Arc::clone(&self.inputs);
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
                    knowledge_gradient_sigmas: KNOWLEDGE_GRADIENT_SIGMAS,
                    design_spread: DESIGN_SPREAD,
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
    async fn observations(&self, campaign: &str) -> Result<Vec<Observation>, EngineError> {
        let (inputs, sign) = (&self.inputs, self.sign);
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
    pub async fn objective_rows(&self, campaign: &str) -> Result<Vec<ObservationRow>, EngineError> {
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

    pub async fn ranking(&self, campaign: &str) -> Result<(Vec<RankedProtocol>, f64), EngineError> {
        let (candidates, sign) = (&self.candidates, self.sign);
        let observations = self.observations(campaign).await?;
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
        // The recommendation's surrogate: the batches' with its own linear-trend share.
        let fit = recommendation_fit(&self.fit, RECOMMENDATION_TREND_SHARE);
        let shared = Arc::clone(&self.inputs);
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

/// Runs CPU-heavy, pure computation (GP fits) off the async workers, so progress and I/O go on.
async fn compute<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EngineError::Internal(format!("an optimizer computation failed: {e}")))
}
