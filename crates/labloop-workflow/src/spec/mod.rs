//! The typed workflow. Field names are the YAML keys; every struct rejects unknown keys. Enums with
//! data are written as a one-key map (`charge_protocol: {...}`); unit enums as a plain word.

use labloop_core::{CcCvFinish, ChargeProtocol, StepProtocolSpace};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod instruments;
mod optimizer;
mod space;
mod steps;

pub use instruments::*;
pub use optimizer::*;
pub use space::*;
pub use steps::*;

/// A whole workflow file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Files of shared instruments (relative to this file), each holding an `instruments:` list that
    /// is added to this file's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Values referred to elsewhere as `${{ variables.<name> }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, serde_json::Value>,
    /// What is optimised, over what.
    pub campaign: CampaignSpec,
    /// How suggestions are made.
    pub optimizer: OptimizerSpec,
    /// When the campaign ends.
    pub stopping: StoppingSpec,
    /// The instruments that run experiments.
    #[serde(default)]
    pub instruments: Vec<InstrumentSpec>,
    /// Programs labloop starts and talks to (`plugins/PROTOCOL.md`): a lab's own steps,
    /// measurements, lifetime models and instruments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginSpec>,
    /// What one experiment does.
    pub experiment: ExperimentSpec,
    /// Where the campaign is recorded.
    #[serde(default)]
    pub store: StoreSpec,
}

/// The campaign: a name, an objective and a search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// Name (letters, digits, `-`, `_`); the campaign's id in the store.
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of everything random in the campaign (optimizer starts, simulated cells).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// What is optimised.
    pub objective: ObjectiveSpec,
    /// Where suggestions come from.
    pub search_space: SearchSpaceSpec,
    /// Cells measured before the campaign (datasets imported with `labloop import`) whose lives
    /// the optimizer starts from, as if the campaign had cycled them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prior_data: Vec<PriorDataSpec>,
}

/// An imported dataset's cells as prior observations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorDataSpec {
    /// The dataset's name in the campaign's store.
    pub dataset: String,
    /// For cells whose life is not given: the fraction of a cell's initial capacity below which
    /// its life ends (its first cycle that stays below).
    #[serde(default = "default_end_of_life")]
    pub end_of_life_fraction: f64,
    /// The cells used, by their name in the dataset: the search space's candidate each ran.
    pub cells: BTreeMap<String, PriorCellSpec>,
}

fn default_end_of_life() -> f64 {
    0.8
}

/// One prior cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorCellSpec {
    /// The candidate it ran, as `labloop run` labels candidates (`4.8-5.2-5.2-4.16` for a
    /// protocol).
    pub candidate: String,
    /// Its cycle life, when known; else read off its fade in the dataset (a cell not yet at end
    /// of life is refused: a censored life is no measurement).
    #[serde(default)]
    pub life: Option<f64>,
}

fn default_seed() -> u64 {
    1
}

/// The objective and its direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSpec {
    /// The quantity: `cycle_life` (cycles to 80 % of nominal capacity, predicted early, observed
    /// when cycled to end of life), or the name of one a step measures (with `from`).
    pub name: String,
    /// Whether larger or smaller is better.
    pub direction: Direction,
    /// Where a measured objective comes from: a step's output, `steps.<id>.outputs.<name>`
    /// (e.g. a plugin measurement's); its σ is the output `<name>_sigma` when the step gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The objective's unit, for people (e.g. `mS/cm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The built-in objective's name.
pub const CYCLE_LIFE: &str = "cycle_life";

impl ObjectiveSpec {
    /// The step output the objective is read from (`(step id, output name)`), for a measured
    /// objective; `None` for cycle life.
    pub fn measured(&self) -> Option<(&str, &str)> {
        let from = self.from.as_deref()?;
        let parts: Vec<&str> = from.split('.').collect();
        match parts.as_slice() {
            ["steps", step, "outputs", name] => Some((step, name)),
            _ => None,
        }
    }
}

/// A plugin: a program labloop starts and talks to over its standard input and output in
/// newline-delimited JSON (`plugins/PROTOCOL.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Its name, as steps, models and instruments refer to it.
    pub name: String,
    /// The program and its arguments, e.g. `[python3, plugins/eis.py]`; a relative program or
    /// argument path is the workflow's folder's.
    pub command: Vec<String>,
    /// Environment variables set for it (never secrets: name the variable to pass on instead,
    /// in `pass_env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Variables of labloop's own environment handed on to it (e.g. a token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
    /// Longest one call may take (real time), e.g. `30s`, `10m`; a step's own `timeout` bounds it
    /// further.
    #[serde(default = "default_call_timeout")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$"))]
    pub call_timeout: String,
    /// Restarts after it exits, in a row without a successful call, before its calls fail.
    #[serde(default = "default_plugin_restarts")]
    pub restarts: u32,
}

fn default_call_timeout() -> String {
    "60s".into()
}

fn default_plugin_restarts() -> u32 {
    3
}

/// Larger or smaller is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger is better.
    Maximize,
    /// Smaller is better.
    Minimize,
}

/// When to stop: the first rule met ends the campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoppingSpec {
    /// Rounds of suggestions.
    pub max_rounds: u32,
    /// Cells in all (the last round is cut short to fit).
    #[serde(default)]
    pub max_cells: Option<u32>,
    /// Days of campaign time (no new round starts after this).
    #[serde(default)]
    pub max_days: Option<f64>,
    /// Stop once the recommended candidate is the best with at least this posterior probability
    /// (0–1), estimated from joint posterior samples.
    #[serde(default)]
    pub best_probability: Option<f64>,
}

/// Where the campaign is recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// `sqlite://path` or `postgres://...`; default: `sqlite://labloop-data/<campaign>.sqlite`.
    #[serde(default)]
    pub url: Option<String>,
}

/// A duration written as `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`, in seconds.
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: expected e.g. `90s`, `30m`, `6h`, `2d`")
    })?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => {
            return Err(format!(
                "`{text}` has no known unit: expected `ms`, `s`, `m`, `h` or `d`, e.g. `30m`"
            ));
        }
    };
    Ok(value * scale)
}

impl Workflow {
    /// This workflow as YAML in its file's own form, its includes already inlined (so the list is
    /// left out: a reader would add them twice): what the store keeps of a workflow run with
    /// changes from the command line.
    pub fn to_yaml_as_run(&self) -> Result<String, String> {
        let mut as_run = self.clone();
        as_run.include.clear();
        // Through JSON, so enums stay one-key maps (the file's own form), not YAML tags.
        let value = serde_json::to_value(&as_run).map_err(|e| e.to_string())?;
        yaml_serde::to_string(&value).map_err(|e| e.to_string())
    }

    /// The charge-protocol space of the campaign, if it searches protocols.
    pub fn protocol_space(&self) -> Option<StepProtocolSpace> {
        match &self.campaign.search_space {
            SearchSpaceSpec::ChargeProtocol(spec) => Some(spec.to_space()),
            SearchSpaceSpec::Formulation(_) => None,
        }
    }

    /// Total cycler channels over all instruments.
    pub fn total_channels(&self) -> u32 {
        self.instruments
            .iter()
            .filter(|i| i.kind == InstrumentKind::Cycler)
            .map(|i| i.channels)
            .sum()
    }

    /// The first cycling step (validation guarantees there is one).
    pub fn cycle_step(&self) -> Option<&CycleStep> {
        self.experiment.steps.iter().find_map(|s| s.cycle.as_ref())
    }

    /// The prediction step, if any.
    pub fn predict_step(&self) -> Option<&PredictStep> {
        self.experiment
            .steps
            .iter()
            .find_map(|s| s.predict.as_ref())
    }

    /// Each step's id, in order.
    pub fn step_ids(&self) -> Vec<String> {
        self.experiment
            .steps
            .iter()
            .map(|s| {
                s.id.clone()
                    .unwrap_or_else(|| s.actions().first().map_or("step", |a| a.key()).to_owned())
            })
            .collect()
    }

    /// Each step's needs by index, with the default (the step above) filled in.
    pub fn step_needs(&self) -> Vec<Vec<String>> {
        let ids = self.step_ids();
        self.experiment
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| match &s.needs {
                Some(needs) => needs.clone(),
                None if i == 0 => Vec::new(),
                None => vec![ids[i - 1].clone()],
            })
            .collect()
    }
}
