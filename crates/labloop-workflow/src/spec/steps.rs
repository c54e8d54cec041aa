//! What one experiment does: its steps, their actions and how they run.

use super::*;

/// What one experiment does: steps forming a small DAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// The steps. A step without `needs` follows the one above it.
    pub steps: Vec<StepSpec>,
}

/// One step: exactly one action key (`build_cell`, `rest`, `formation`, `cycle`, `predict`,
/// `cycle_to_eol`, `approve`, `run`, `measure`) and how it runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The step's id (letters, digits, `_`, `-`); default: its action's name.
    #[serde(default)]
    pub id: Option<String>,
    /// Steps that must finish first; default: the step above (none for the first); `[]` for none.
    #[serde(default)]
    pub needs: Option<Vec<String>>,
    /// Longest one attempt may take, e.g. `90s`, `30m`, `36h`, `2d`: instrument time (simulated time
    /// on simulators), real time for `approve`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$"))]
    pub timeout: Option<String>,
    /// Further attempts after a failure.
    #[serde(default)]
    pub retries: u32,
    /// Wait before the first retry, doubled for each later one.
    #[serde(default = "default_backoff")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$"))]
    pub backoff: String,
    /// What happens when every attempt failed.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Named locks held while the step runs (instrument names, e.g. a shared robot or oven).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Assemble a coin cell (robot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_cell: Option<BuildCellStep>,
    /// Wait at open circuit (wetting, thermal equilibrium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<RestStep>,
    /// Slow first cycles that form the SEI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formation: Option<FormationStep>,
    /// Cycle the cell (the early cycles the predictor reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<CycleStep>,
    /// Predict cycle life from the early cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict: Option<PredictStep>,
    /// Go on cycling to end of life; the observed life replaces the prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_to_eol: Option<CycleToEolStep>,
    /// Wait for a person to approve (`labloop approve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve: Option<ApproveStep>,
    /// A step kind a plugin adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<PluginStep>,
    /// A plugin's measurement (it changes nothing, so labloop may repeat it after a crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<MeasureStep>,
}

fn default_backoff() -> String {
    "10s".into()
}

/// What a failed step does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The experiment fails; the campaign goes on.
    #[default]
    AbortExperiment,
    /// The step is marked skipped and the steps after it run.
    Skip,
    /// The campaign pauses until `labloop resume`.
    PauseCampaign,
    /// Retry without end (backoff capped at 1 h).
    Retry,
}

/// Coin-cell assembly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildCellStep {
    /// The cell-builder instrument.
    pub robot: String,
    /// Electrolyte volume (µL), dispensed from the robot's stock solutions in the experiment's
    /// formulation.
    #[serde(default = "default_electrolyte")]
    pub electrolyte_ul: f64,
    /// The cathode the robot picks (its name in the robot's inventory, e.g. `NMC811-18mg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cathode: Option<String>,
    /// The anode (e.g. `graphite-10mg`, `Li-chip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anode: Option<String>,
    /// The separator (e.g. `Celgard-2325`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
}

fn default_electrolyte() -> f64 {
    70.0
}

/// A rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestStep {
    /// How long, e.g. `6h`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$"))]
    pub duration: String,
}

/// Formation cycling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormationStep {
    /// Cycles.
    pub cycles: u32,
    /// Charge and discharge C-rate.
    pub c_rate: f64,
}

/// Cycling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CycleStep {
    /// Cycles to run.
    pub cycles: u32,
    /// Discharge current as a C-rate.
    pub discharge_c_rate: f64,
    /// The charge protocol when the search space does not set one (formulation campaigns).
    #[serde(default)]
    pub protocol: Option<FixedProtocolSpec>,
}

/// A fixed charge protocol: equal SOC steps to `soc_end`, then CC-CV.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedProtocolSpec {
    /// Each step's C-rate.
    pub c_rates: Vec<f64>,
    /// SOC where the CC steps end.
    #[serde(default = "default_soc_end")]
    pub soc_end: f64,
    /// The phase after the fast steps.
    pub finish: FinishSpec,
}

fn default_soc_end() -> f64 {
    0.8
}

/// Early prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictStep {
    /// A built-in model (`severson-variance`, `severson-discharge`, `severson-neural`), a model
    /// file path, or (with `plugin`) a model the plugin declares.
    pub model: String,
    /// The plugin whose model this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

/// A plugin's step kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginStep {
    /// The plugin.
    pub plugin: String,
    /// The step kind, as the plugin declares it.
    pub step: String,
    /// Its inputs, checked against the JSON Schema the plugin declares; strings may use
    /// `${{ steps.<id>.outputs.<name> }}` and `${{ experiment.<field> }}`.
    #[serde(default, rename = "with")]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// A plugin's measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeasureStep {
    /// The plugin.
    pub plugin: String,
    /// The measurement, as the plugin declares it.
    pub measurement: String,
    /// Its inputs, as for `run`.
    #[serde(default, rename = "with")]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// Cycling to end of life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CycleToEolStep {
    /// End of life: discharge capacity below this fraction of the nominal (0–1).
    #[serde(default = "default_eol")]
    pub end_fraction: f64,
    /// Give up (and record a censored life) after this many cycles in all.
    pub max_cycles: u32,
    /// Nominal capacity (Ah) the end fraction is of; default: the first early cycle's capacity.
    #[serde(default)]
    pub nominal_capacity_ah: Option<f64>,
}

fn default_eol() -> f64 {
    0.8
}

/// Waiting for a person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveStep {
    /// What the person is asked; may use `${{ ... }}` references.
    pub message: String,
}

/// The action of a step, by reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepAction<'a> {
    /// See [`BuildCellStep`].
    BuildCell(&'a BuildCellStep),
    /// See [`RestStep`].
    Rest(&'a RestStep),
    /// See [`FormationStep`].
    Formation(&'a FormationStep),
    /// See [`CycleStep`].
    Cycle(&'a CycleStep),
    /// See [`PredictStep`].
    Predict(&'a PredictStep),
    /// See [`CycleToEolStep`].
    CycleToEol(&'a CycleToEolStep),
    /// See [`ApproveStep`].
    Approve(&'a ApproveStep),
    /// See [`PluginStep`].
    Run(&'a PluginStep),
    /// See [`MeasureStep`].
    Measure(&'a MeasureStep),
}

impl StepAction<'_> {
    /// The action's key in YAML.
    pub fn key(&self) -> &'static str {
        match self {
            Self::BuildCell(_) => "build_cell",
            Self::Rest(_) => "rest",
            Self::Formation(_) => "formation",
            Self::Cycle(_) => "cycle",
            Self::Predict(_) => "predict",
            Self::CycleToEol(_) => "cycle_to_eol",
            Self::Approve(_) => "approve",
            Self::Run(_) => "run",
            Self::Measure(_) => "measure",
        }
    }

    /// Whether the step runs on the experiment's cycler channel.
    pub fn uses_channel(&self) -> bool {
        matches!(
            self,
            Self::Formation(_) | Self::Cycle(_) | Self::CycleToEol(_)
        )
    }

    /// The outputs the step offers to `${{ steps.<id>.outputs.<name> }}`; a plugin's step offers
    /// what its plugin declares (checked when `labloop validate` starts it), so `None`.
    pub fn outputs(&self) -> Option<&'static [&'static str]> {
        Some(match self {
            Self::Run(_) | Self::Measure(_) => return None,
            Self::BuildCell(_) => &["cell_id", "ocv_v", "mass_g"],
            Self::Rest(_) | Self::Approve(_) => &[],
            Self::Formation(_) => &["capacity_ah", "coulombic_efficiency"],
            Self::Cycle(_) => &["cycles", "last_capacity_ah"],
            Self::Predict(_) => &["cycle_life", "sigma"],
            Self::CycleToEol(_) => &["cycle_life", "censored"],
        })
    }
}

impl<'a> StepAction<'a> {
    /// The plugin the step calls, if any (a plugin step or measurement, or a plugin's model).
    pub fn plugin(&self) -> Option<&'a str> {
        match *self {
            Self::Run(r) => Some(&r.plugin),
            Self::Measure(m) => Some(&m.plugin),
            Self::Predict(p) => p.plugin.as_deref(),
            _ => None,
        }
    }
}

impl StepSpec {
    /// Every action key the step sets (valid steps set exactly one).
    pub fn actions(&self) -> Vec<StepAction<'_>> {
        let mut out = Vec::new();
        if let Some(a) = &self.build_cell {
            out.push(StepAction::BuildCell(a));
        }
        if let Some(a) = &self.rest {
            out.push(StepAction::Rest(a));
        }
        if let Some(a) = &self.formation {
            out.push(StepAction::Formation(a));
        }
        if let Some(a) = &self.cycle {
            out.push(StepAction::Cycle(a));
        }
        if let Some(a) = &self.predict {
            out.push(StepAction::Predict(a));
        }
        if let Some(a) = &self.cycle_to_eol {
            out.push(StepAction::CycleToEol(a));
        }
        if let Some(a) = &self.approve {
            out.push(StepAction::Approve(a));
        }
        if let Some(a) = &self.run {
            out.push(StepAction::Run(a));
        }
        if let Some(a) = &self.measure {
            out.push(StepAction::Measure(a));
        }
        out
    }

    /// The step's one action (validation guarantees there is exactly one).
    pub fn action(&self) -> StepAction<'_> {
        self.actions()[0]
    }
}

impl FixedProtocolSpec {
    /// The protocol in core terms.
    pub fn to_protocol(&self) -> ChargeProtocol {
        ChargeProtocol::equal_steps(
            &self.c_rates,
            self.soc_end,
            CcCvFinish {
                c_rate: self.finish.c_rate,
                cv_voltage_v: self.finish.cv_voltage_v,
            },
        )
    }
}
