//! The model a workflow's predict step names, through one resolver: a plugin's model
//! ([`workflow_predictor`]), else a built-in model's name or a model file of either kind
//! ([`ModelFile::resolve`]).

use crate::EngineError;
use labloop_predict::{LinearModel, ModelFile, Predictor};
use std::sync::Arc;

/// Loads the predictor a workflow names: a built-in model, or a model file of any kind (elastic net
/// or neural ensemble).
pub fn load_predictor(name: &str) -> Result<Arc<dyn Predictor + Send + Sync>, EngineError> {
    Ok(ModelFile::resolve(name)?.into_predictor())
}

/// Loads an elastic net a workflow names (a built-in one or a model file), for callers that
/// change its settings before they run it; a neural ensemble is refused.
pub fn resolve_model(name: &str) -> Result<LinearModel, EngineError> {
    match ModelFile::resolve(name)? {
        ModelFile::Linear(model) => Ok(model),
        ModelFile::Neural(_) => Err(EngineError::Workflow(format!(
            "model `{name}` is a neural ensemble; an elastic net is needed here"
        ))),
    }
}

/// The predictor the workflow's predict step names: a plugin's model (asked for its early window),
/// a built-in model, or a model file; `severson-variance` for a workflow without a predict step.
pub async fn workflow_predictor(
    workflow: &labloop_workflow::Workflow,
    plugins: &labloop_plugin::Plugins,
) -> Result<Arc<dyn Predictor + Send + Sync>, EngineError> {
    let step = workflow.predict_step();
    if let Some((plugin, model)) = step.and_then(|p| p.plugin.as_deref().map(|pl| (pl, &p.model))) {
        let plugin_error = |e: labloop_plugin::PluginError| {
            EngineError::Workflow(format!("predict.plugin `{plugin}`: {e}"))
        };
        let hello = plugins
            .get(plugin)
            .map_err(plugin_error)?
            .hello()
            .await
            .map_err(plugin_error)?;
        let info = hello.capabilities.models.get(model).ok_or_else(|| {
            EngineError::Workflow(format!("plugin `{plugin}` offers no model `{model}`"))
        })?;
        return Ok(Arc::new(labloop_plugin::PluginModel::new(
            plugin,
            model,
            info.window,
        )));
    }
    load_predictor(step.map_or("severson-variance", |p| p.model.as_str()))
}
