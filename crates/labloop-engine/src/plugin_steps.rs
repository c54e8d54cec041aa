//! Steps that call the workflow's plugins (`plugins/PROTOCOL.md`): a plugin's step kind
//! (`step.run`), its measurement (`measurement.read`) and its lifetime model (`model.predict`).
//! Each call's id is the attempt's idempotency key (`<experiment>/<step>/<attempt>`), so an
//! attempt resumed after a crash of labloop asks again under the same id and a persistent plugin
//! answers without acting twice; a plugin that keeps nothing is never asked again to act.

use crate::subject::{StepCall, StepFailure, StepOutcome};
use labloop_core::ExperimentState;
use labloop_plugin::{Operation, model_params, prediction_of};
use labloop_predict::EarlyData;
use labloop_store::{MeasurementRow, PredictionRow, StoreError};
use labloop_workflow::{interpolate, references};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What a plugin step asks for.
#[derive(Clone, Copy)]
pub(crate) enum PluginOp<'a> {
    /// A step kind (it acts).
    Step(&'a str),
    /// A measurement (it changes nothing).
    Measurement(&'a str),
}

fn failed(e: impl std::fmt::Display) -> StepFailure {
    StepFailure::Failed(e.to_string())
}

impl StepCall<'_> {
    /// Runs a plugin's step kind or measurement; its result object is the step's outputs. When the
    /// campaign's objective is one of them, it is recorded as the experiment's.
    pub(crate) async fn plugin_step(
        &self,
        plugin_name: &str,
        op: PluginOp<'_>,
        inputs: &BTreeMap<String, Value>,
    ) -> Result<StepOutcome, StepFailure> {
        let ctx = &self.run.ctx;
        let plugin = ctx.plugins.get(plugin_name).map_err(failed)?;
        let hello = plugin.hello().await.map_err(failed)?;
        let (method, field, name, declared, acts) = match op {
            PluginOp::Step(kind) => (
                "step.run",
                "step",
                kind,
                hello.capabilities.steps.get(kind),
                true,
            ),
            PluginOp::Measurement(m) => (
                "measurement.read",
                "measurement",
                m,
                hello.capabilities.measurements.get(m),
                false,
            ),
        };
        let declared: &Operation = declared.ok_or_else(|| {
            failed(format!(
                "plugin `{plugin_name}` (version {}) no longer offers {field} `{name}`",
                hello.version
            ))
        })?;
        let inputs = self.resolve(inputs)?;
        let rejected = labloop_plugin::check::input_errors(declared, &inputs);
        if !rejected.is_empty() {
            let said: Vec<String> = rejected
                .iter()
                .map(|(at, why)| format!("with{}: {why}", at.replace('/', ".")))
                .collect();
            return Err(failed(format!(
                "inputs of {field} `{name}` rejected by plugin `{plugin_name}`'s schema: {}",
                said.join("; ")
            )));
        }
        if acts && self.resumed_in_flight && !hello.persistent {
            return Err(failed(format!(
                "{field} `{name}` was under way on plugin `{plugin_name}` when labloop stopped, and the plugin keeps no results (`persistent: false`): labloop does not repeat it, since its outcome is unknown; check by hand, then retry the experiment"
            )));
        }
        let params = json!({
            field: name,
            "inputs": inputs,
            "experiment": self.experiment_info(),
        });
        let value = plugin
            .call(method, &self.key(), &params, !acts)
            .await
            .map_err(failed)?;
        let Value::Object(outputs) = value else {
            return Err(failed(format!(
                "plugin `{plugin_name}`: a {method} result is an object of outputs, got {value}"
            )));
        };
        if let Some(missing) = declared.outputs.keys().find(|k| !outputs.contains_key(*k)) {
            return Err(failed(format!(
                "plugin `{plugin_name}`: the result of {field} `{name}` lacks its declared output `{missing}`"
            )));
        }
        self.record_objective(&outputs, plugin_name, declared)
            .await?;
        Ok(StepOutcome(Value::Object(outputs)))
    }

    /// When the campaign's objective is read from this step, records it as the experiment's.
    async fn record_objective(
        &self,
        outputs: &Map<String, Value>,
        plugin_name: &str,
        declared: &Operation,
    ) -> Result<(), StepFailure> {
        let ctx = &self.run.ctx;
        let objective = &ctx.workflow.campaign.objective;
        let Some((step, output)) = objective.measured() else {
            return Ok(());
        };
        if step != self.step_id {
            return Ok(());
        }
        let value = outputs
            .get(output)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                failed(format!(
                    "the objective `{}` is step `{step}`'s output `{output}`, which is {} (expected a number)",
                    objective.name,
                    outputs.get(output).map_or("missing".to_owned(), Value::to_string)
                ))
            })?;
        let sigma = outputs
            .get(&format!("{output}_sigma"))
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0);
        let unit = objective.unit.clone().or_else(|| {
            declared
                .outputs
                .get(output)
                .map(|o| o.unit.clone())
                .filter(|u| !u.is_empty())
        });
        let row = MeasurementRow {
            name: objective.name.clone(),
            value,
            sigma,
            unit,
            source: format!("steps.{step}.outputs.{output} (plugin {plugin_name})"),
        };
        ctx.store.record_measurement(&self.run.id, &row).await?;
        // It has its objective now (a cell still cycling stays `running` until it is predicted).
        match ctx
            .store
            .transition(&self.run.id, ExperimentState::Predicted, None)
            .await
        {
            Ok(_) | Err(StoreError::Transition { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(experiment = %self.run.id, objective = %objective.name, value, ?sigma, "objective measured");
        Ok(())
    }

    /// Predicts the cell's life with a plugin's model from the early cycles.
    pub(crate) async fn plugin_predict(
        &self,
        plugin_name: &str,
        model: &str,
    ) -> Result<StepOutcome, StepFailure> {
        let ctx = &self.run.ctx;
        let plugin = ctx.plugins.get(plugin_name).map_err(failed)?;
        let hello = plugin.hello().await.map_err(failed)?;
        let info = hello.capabilities.models.get(model).ok_or_else(|| {
            failed(format!(
                "plugin `{plugin_name}` no longer offers model `{model}`"
            ))
        })?;
        let (window, early) = self.early_records("predict").await?;
        let records = window.renumbered(early);
        let features = EarlyData::from_records(&records, info.window)
            .map_err(failed)?
            .features();
        let used = &records[..records.len().min(info.window as usize)];
        let params = model_params(model, &features, info.records.then_some(used));
        let value = plugin
            .call("model.predict", &self.key(), &params, true)
            .await
            .map_err(failed)?;
        let (cycle_life, sigma, out_of_domain) =
            prediction_of(plugin_name, &value).map_err(failed)?;
        let features_json = serde_json::to_string(
            &features
                .iter()
                .filter(|(_, v)| v.is_finite())
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap_or_else(|_| "{}".into());
        let row = PredictionRow {
            model: format!("plugin:{plugin_name}/{model}"),
            cycle_life,
            sigma,
            log10_life: cycle_life.log10(),
            sigma_log10: sigma / (cycle_life * std::f64::consts::LN_10),
            features_json,
            out_of_domain,
        };
        self.record_predicted(row).await
    }

    /// The step's inputs with their references resolved: a string that is one reference becomes
    /// the value it names (a number stays a number); references inside text are written in.
    fn resolve(&self, inputs: &BTreeMap<String, Value>) -> Result<Value, StepFailure> {
        let mut out = Map::new();
        for (key, value) in inputs {
            let resolved = match value.as_str() {
                Some(text) if text.contains("${{") => {
                    let refs = references(text).map_err(failed)?;
                    let whole = refs.len() == 1 && refs[0].start == 0 && refs[0].end == text.len();
                    let unknown = std::cell::RefCell::new(None::<String>);
                    let value = if whole {
                        self.reference(&refs[0].expr)
                    } else {
                        Some(Value::String(interpolate(text, |expr| {
                            let v = self.reference(expr);
                            if v.is_none() {
                                unknown.borrow_mut().get_or_insert_with(|| expr.to_owned());
                            }
                            v.map(|v| match v {
                                Value::String(s) => s,
                                other => other.to_string(),
                            })
                        })))
                    };
                    match (value, unknown.into_inner()) {
                        (Some(v), None) => v,
                        _ => {
                            return Err(failed(format!(
                                "with.{key}: `{text}` refers to something this step cannot see; expected `steps.<id>.outputs.<name>` of an earlier step or `experiment.<id|cell_id|protocol>`"
                            )));
                        }
                    }
                }
                _ => value.clone(),
            };
            out.insert(key.clone(), resolved);
        }
        Ok(Value::Object(out))
    }

    /// The value a reference names.
    fn reference(&self, expr: &str) -> Option<Value> {
        let parts: Vec<&str> = expr.split('.').collect();
        match parts.as_slice() {
            ["steps", id, "outputs", name] => self.outputs.get(*id)?.get(*name).cloned(),
            ["experiment", field] => self.experiment_info().get(*field).cloned(),
            _ => None,
        }
    }

    /// What a plugin is told about the experiment it serves.
    fn experiment_info(&self) -> Value {
        let run = self.run;
        json!({
            "id": run.id,
            "campaign": run.ctx.workflow.campaign.name,
            "cell_id": self.cell_id(),
            "protocol": run.label,
            "c_rates": run.protocol.c_rates(),
            "formulation": run.formulation.iter().cloned().collect::<BTreeMap<String, f64>>(),
            "parameters": run.parameters,
            "attempt": self.attempt,
        })
    }
}
