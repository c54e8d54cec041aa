//! A plugin as labloop's instruments and models see it: [`PluginLink`] carries the instrument
//! operations of `drivers/PROTOCOL.md` as `instrument` calls, and [`PluginModel`] stands for a
//! plugin's lifetime model where the engine keeps its predictor.

use crate::{Plugin, PluginError};
use async_trait::async_trait;
use labloop_core::CycleRecord;
use labloop_drivers::DriverError;
use labloop_drivers::remote::CommandLink;
use labloop_drivers::wire::{Op, WireFault};
use labloop_predict::{FeatureSet, ModelFile, PredictError, Prediction, Predictor, Trust};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// An instrument a plugin drives: each operation is one `instrument` call whose params are the
/// operation as `drivers/PROTOCOL.md` writes it (`{"op": "start", "channel": "ch01", "test":
/// {...}}`) and whose result is that operation's. Operations are idempotent by their own keys
/// (a test's, an order's), so a call cut off by the plugin's exit is asked again.
pub struct PluginLink {
    plugin: Arc<Plugin>,
    instrument: String,
}

impl PluginLink {
    /// The instrument `instrument` on `plugin`.
    pub fn new(plugin: Arc<Plugin>, instrument: &str) -> Self {
        Self {
            plugin,
            instrument: instrument.to_owned(),
        }
    }

    fn driver_error(&self, e: PluginError) -> DriverError {
        match e {
            PluginError::Refused { code, message, .. } => {
                WireFault::new(&code.to_ascii_uppercase(), &message).into_error(&self.instrument)
            }
            PluginError::Protocol { detail, .. } => DriverError::Protocol {
                instrument: self.instrument.clone(),
                detail,
            },
            other => DriverError::Offline {
                instrument: self.instrument.clone(),
                detail: other.to_string(),
            },
        }
    }
}

#[async_trait]
impl CommandLink for PluginLink {
    fn instrument(&self) -> &str {
        &self.instrument
    }

    async fn command(&self, op: Op, patience: Duration) -> Result<Value, DriverError> {
        let params = serde_json::to_value(&op).map_err(|e| DriverError::Protocol {
            instrument: self.instrument.clone(),
            detail: format!("encoding {op:?}: {e}"),
        })?;
        let id = self.plugin.fresh_id(&self.instrument);
        // Every operation is idempotent by its own key, but a builder that keeps nothing may
        // not know a `build` it was cut off in: that one is not repeated blindly.
        let repeatable = !matches!(op, Op::Build { .. });
        self.plugin
            .call_within("instrument", &id, &params, repeatable, patience)
            .await
            .map_err(|e| self.driver_error(e))
    }
}

/// A plugin's lifetime model where the engine keeps its predictor: its name and early window.
/// Predictions go through the plugin (`model.predict`, asynchronously); this value only answers
/// what the engine asks of a predictor before a campaign starts.
pub struct PluginModel {
    name: String,
    window: u32,
}

impl PluginModel {
    /// The model `model` of plugin `plugin`, predicting from the first `window` cycles.
    pub fn new(plugin: &str, model: &str, window: u32) -> Self {
        Self {
            name: format!("plugin:{plugin}/{model}"),
            window,
        }
    }
}

impl Predictor for PluginModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn window(&self) -> u32 {
        self.window
    }

    fn predict(&self, _cells: &[FeatureSet]) -> Result<Vec<Prediction>, PredictError> {
        Err(PredictError::MissingData(format!(
            "model `{}` predicts through its plugin (`model.predict`), not in-process",
            self.name
        )))
    }

    fn trust(&self) -> Option<&Trust> {
        None
    }

    fn model_file(&self) -> Option<ModelFile> {
        None
    }
}

/// The params of a `model.predict` call: the model, labloop's features of the cell, and (when
/// the model asks for them) each early cycle's summary.
pub fn model_params(model: &str, features: &FeatureSet, records: Option<&[CycleRecord]>) -> Value {
    let features: serde_json::Map<String, Value> = features
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let mut params = json!({"model": model, "features": features});
    if let Some(records) = records {
        params["records"] = records
            .iter()
            .map(|r| {
                json!({
                    "cycle": r.cycle,
                    "discharge_capacity_ah": r.discharge_capacity_ah,
                    "charge_capacity_ah": r.charge_capacity_ah,
                    "internal_resistance_ohm": finite(r.internal_resistance_ohm),
                    "temperature_max_c": finite(r.temperature_max_c),
                    "charge_time_s": finite(r.charge_time_s),
                })
            })
            .collect();
    }
    params
}

fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// A `model.predict` result: `{cycle_life, sigma[, out_of_domain]}`.
pub fn prediction_of(
    plugin: &str,
    value: &Value,
) -> Result<(f64, f64, Option<String>), PluginError> {
    let number = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| PluginError::Protocol {
                plugin: plugin.to_owned(),
                detail: format!(
                    "a model.predict result is {{\"cycle_life\": positive number, \"sigma\": positive number}}; `{field}` is {}",
                    value.get(field).map_or("missing".to_owned(), Value::to_string)
                ),
            })
    };
    let out_of_domain = value
        .get("out_of_domain")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((number("cycle_life")?, number("sigma")?, out_of_domain))
}
