//! Plugins: programs in any language that labloop starts and talks to over their standard input and
//! output in newline-delimited JSON (`plugins/PROTOCOL.md`). A plugin adds step kinds, measurements,
//! lifetime models and instruments (cyclers, cell builders) without touching labloop.
//!
//! [`Plugin`] is one plugin's process ([`host`]); [`Plugins`] the workflow's, built from its
//! `plugins:` section; [`PluginLink`] carries instrument operations to a plugin, so the drivers'
//! [`labloop_drivers::link_cycler::LinkCycler`] and
//! [`labloop_drivers::remote::RemoteCellBuilder`] drive it; [`check`] holds what `labloop
//! validate` asks of each plugin before a campaign starts.

pub mod check;
pub mod host;
mod link;
pub mod protocol;

pub use host::{Plugin, PluginConfig, PluginCounters};
pub use link::{PluginLink, PluginModel, model_params, prediction_of};
pub use protocol::{Capabilities, Hello, ModelInfo, Operation, PROTOCOL};

use labloop_workflow::{PluginSpec, Workflow, parse_duration};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a plugin call failed. Every variant names the plugin and the cause.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The program could not be started.
    #[error("plugin `{plugin}`: cannot start `{program}`: {detail}")]
    Start {
        /// The plugin.
        plugin: String,
        /// Its program.
        program: String,
        /// Why.
        detail: String,
    },
    /// It did not greet labloop as the protocol says.
    #[error("plugin `{plugin}`: {detail}")]
    Hello {
        /// The plugin.
        plugin: String,
        /// What was wrong.
        detail: String,
    },
    /// It exited, and restarting it did not help.
    #[error("plugin `{plugin}` {detail}")]
    Exited {
        /// The plugin.
        plugin: String,
        /// How it ended, with its last words on standard error.
        detail: String,
    },
    /// No reply in time (it was killed; the next call starts it again).
    #[error("plugin `{plugin}`: no reply to {method} `{id}` within {after:?}{cause}")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The call's method.
        method: String,
        /// The call's id.
        id: String,
        /// How long labloop waited.
        after: Duration,
        /// What labloop saw instead.
        cause: String,
    },
    /// It answered with an error.
    #[error("plugin `{plugin}` refused {method}: {code}: {message}")]
    Refused {
        /// The plugin.
        plugin: String,
        /// The call's method.
        method: String,
        /// Its error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// It died during a call that acts, and keeps no results: labloop cannot know whether it
    /// was carried out, so it is not repeated.
    #[error(
        "plugin `{plugin}` {detail} during {method} `{id}`; it keeps no results (`persistent: false` in its hello), so labloop does not repeat a call that acts: its outcome is unknown"
    )]
    Interrupted {
        /// The plugin.
        plugin: String,
        /// The call's method.
        method: String,
        /// The call's id.
        id: String,
        /// How it ended.
        detail: String,
    },
    /// A reply does not have the shape its method's result has.
    #[error("plugin `{plugin}`: {detail}")]
    Protocol {
        /// The plugin.
        plugin: String,
        /// What was wrong.
        detail: String,
    },
    /// The workflow names a plugin it does not declare.
    #[error("no plugin `{0}` in the workflow")]
    Unknown(String),
}

/// A workflow's plugins, by name; each starts on first use.
#[derive(Clone, Default)]
pub struct Plugins {
    by_name: BTreeMap<String, Arc<Plugin>>,
}

impl Plugins {
    /// The plugins `workflow` declares, started from `dir` (the workflow's folder), keeping their
    /// state under `state_dir` and their standard error in `log`.
    pub fn of(
        workflow: &Workflow,
        dir: &Path,
        state_dir: &Path,
        log: Option<PathBuf>,
    ) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for spec in &workflow.plugins {
            let config = config_of(spec, &workflow.campaign.name, dir, state_dir, log.clone())?;
            by_name.insert(spec.name.clone(), Arc::new(Plugin::new(config)));
        }
        Ok(Self { by_name })
    }

    /// The plugin `name`.
    pub fn get(&self, name: &str) -> Result<&Arc<Plugin>, PluginError> {
        self.by_name
            .get(name)
            .ok_or_else(|| PluginError::Unknown(name.to_owned()))
    }

    /// Every plugin, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Plugin>)> {
        self.by_name.iter()
    }

    /// Whether the workflow has none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Asks every plugin to exit.
    pub async fn shutdown(&self) {
        for plugin in self.by_name.values() {
            plugin.shutdown().await;
        }
    }
}

/// How to start the plugin `spec` declares.
pub fn config_of(
    spec: &PluginSpec,
    campaign: &str,
    dir: &Path,
    state_dir: &Path,
    log: Option<PathBuf>,
) -> Result<PluginConfig, String> {
    let call_timeout = parse_duration(&spec.call_timeout)
        .map_err(|e| format!("plugin `{}`: call_timeout: {e}", spec.name))?;
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for name in &spec.pass_env {
        if let Ok(value) = std::env::var(name) {
            env.push((name.clone(), value));
        }
    }
    Ok(PluginConfig {
        name: spec.name.clone(),
        command: spec.command.clone(),
        env,
        dir: dir.to_path_buf(),
        campaign: campaign.to_owned(),
        state_dir: state_dir.join(&spec.name),
        log,
        call_timeout: Duration::from_secs_f64(call_timeout.clamp(0.001, 1e7)),
        restarts: spec.restarts,
        backoff: Duration::from_millis(250),
    })
}
