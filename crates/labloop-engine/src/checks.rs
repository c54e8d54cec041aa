//! What a campaign checks before anything starts: the model against the workflow and what the
//! cyclers record, every plugin's `hello` and health, every instrument's identity and channels.
//! Every problem is reported at once, and nothing has been started when one is.

use crate::EngineError;
use crate::instruments::Instruments;
use labloop_predict::{CapacitySource, Predictor};
use labloop_workflow::Workflow;
use std::sync::Arc;

/// How long a plugin has to answer its health check (`ping`) before a campaign starts.
pub const PLUGIN_HEALTH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Checks `workflow` against its model and instruments before a campaign starts (or resumes).
pub(crate) async fn before_start(
    workflow: &Workflow,
    instruments: &Instruments,
    predictor: &(dyn Predictor + Send + Sync),
) -> Result<(), EngineError> {
    let checks = Checks {
        workflow,
        instruments,
        predictor,
    };
    checks.workflow()?;
    checks.instruments().await
}

struct Checks<'a> {
    workflow: &'a Workflow,
    instruments: &'a Instruments,
    predictor: &'a (dyn Predictor + Send + Sync),
}

impl Checks<'_> {
    /// Cyclers record their own per-cycle capacities: a model whose capacity features were
    /// trained on capacities read off the curves is biased on them, and the log says so before
    /// any cell is cycled (a warning, not a refusal: the bias is small next to its σ).
    fn recorded_capacities(&self) {
        let model = self.predictor.name();
        let trained = self.predictor.capacities_trained_on();
        if let Some(note) =
            labloop_predict::capacity::mismatch(model, trained, CapacitySource::Cycler)
        {
            tracing::warn!(
                model,
                "{note}; retrain it on a campaign's or an imported dataset's cells \
                 (`labloop predict train --store`), or choose a model without capacity features"
            );
        }
    }

    /// The model's features must be computable from what the cyclers record (their `records`):
    /// refused before any cell is cycled, not after its early cycles.
    fn recorded_features(&self) -> Result<(), EngineError> {
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

    /// The workflow against the model and the cyclers' channels.
    fn workflow(&self) -> Result<(), EngineError> {
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
            self.recorded_features()?;
            self.recorded_capacities();
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

    /// Starts the workflow's plugins and checks the workflow's use of each against its `hello`
    /// (what `labloop validate` does), and that each answers a health check.
    async fn plugins(&self) -> Result<(), EngineError> {
        let plugins = &self.instruments.plugins;
        let mut problems: Vec<String> = labloop_plugin::check::check(self.workflow, plugins)
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

    /// Asks every instrument who it is (`identify`) and checks it against the workflow: the protocol's
    /// major version, and every channel the workflow gives a cycler. All are asked at once; every
    /// problem is reported together, and nothing has started.
    async fn instruments(&self) -> Result<(), EngineError> {
        self.plugins().await?;
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
}
