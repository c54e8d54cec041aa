//! The typed workflow. Field names are the YAML keys; every struct rejects unknown keys. Enums with
//! data are written as a one-key map (`charge_protocol: {...}`); unit enums as a plain word.

use labloop_core::{CcCvFinish, ChargeProtocol, StepProtocolSpace};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// The search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SearchSpaceSpec {
    /// Multi-step constant-current fast-charging protocols (Attia et al. 2020).
    ChargeProtocol(ChargeProtocolSpec),
    /// Electrolyte (or electrode) formulations: a mixture whose fractions sum to a total, plus any
    /// other parameters (continuous, integer, categorical).
    Formulation(FormulationSpec),
}

/// Constant-current steps over SOC windows in a fixed time: each step but the last from a grid, the
/// last derived so the steps take exactly `charge_time_min`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeProtocolSpec {
    /// SOC at the step boundaries, rising, e.g. `[0, 0.2, 0.4, 0.6, 0.8]` for four steps.
    pub soc_breakpoints: Vec<f64>,
    /// Minutes the constant-current steps take together.
    pub charge_time_min: f64,
    /// C-rate grids of every step but the last, in order.
    pub free_steps: Vec<Vec<f64>>,
    /// Bounds on the derived last step.
    pub last_step: RateBounds,
    /// Whole protocols (every step's C-rate) to leave out, e.g. a baseline.
    #[serde(default)]
    pub exclude: Vec<Vec<f64>>,
    /// The phase after the fast steps.
    pub finish: FinishSpec,
}

/// Inclusive C-rate bounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateBounds {
    /// Lowest allowed C-rate.
    pub min_c_rate: f64,
    /// Highest allowed C-rate.
    pub max_c_rate: f64,
}

/// Constant current to a voltage, then constant voltage to full.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishSpec {
    /// C-rate of the CC part.
    pub c_rate: f64,
    /// Voltage of the CV part (V).
    pub cv_voltage_v: f64,
}

/// A mixture and other parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormulationSpec {
    /// The mixture's components, each with bounds on its fraction.
    pub components: Vec<ComponentSpec>,
    /// What the fractions sum to (1 for fractions, 100 for percent).
    #[serde(default = "default_total")]
    pub total: f64,
    /// Other parameters, e.g. salt molarity or an additive.
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
    /// Candidate formulations the optimizer scores per round (drawn once, seeded).
    #[serde(default = "default_candidates")]
    pub candidates: u32,
}

fn default_total() -> f64 {
    1.0
}

fn default_candidates() -> u32 {
    2000
}

/// One component of a mixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// Its name, e.g. `EC`.
    pub name: String,
    /// Smallest fraction.
    #[serde(default)]
    pub min: f64,
    /// Largest fraction.
    pub max: f64,
}

/// A named parameter: exactly one of `continuous`, `integer`, `categorical`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    /// Its name.
    pub name: String,
    /// A real number in `[min, max]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<RangeSpec>,
    /// A whole number in `[min, max]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integer: Option<IntRangeSpec>,
    /// One of named choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorical: Option<Vec<String>>,
    /// The unit its values are in (`wt%`, `mol/L`, `°C`), passed to instruments with each value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Real bounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    /// Lower bound.
    pub min: f64,
    /// Upper bound.
    pub max: f64,
}

/// Whole-number bounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntRangeSpec {
    /// Lower bound.
    pub min: i64,
    /// Upper bound.
    pub max: i64,
}

/// How suggestions are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// The strategy.
    pub kind: OptimizerKind,
    /// GP kernel.
    #[serde(default)]
    pub kernel: KernelSpec,
    /// How a batch is chosen once there is data.
    #[serde(default)]
    pub acquisition: AcquisitionSpec,
    /// UCB weight on the posterior standard deviation (`acquisition: ucb` only).
    #[serde(default = "default_exploration")]
    pub exploration: f64,
    /// Experiments per round (they run in parallel, one per channel).
    pub batch_size: u32,
    /// How the first round, with no data yet, is chosen.
    #[serde(default)]
    pub initial_design: InitialDesign,
    /// Starts of the hyperparameter fit.
    #[serde(default = "default_restarts")]
    pub restarts: u32,
}

fn default_exploration() -> f64 {
    2.0
}

fn default_restarts() -> u32 {
    3
}

/// Optimization strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Bayesian optimization over a Gaussian-process surrogate with fitted hyperparameters.
    GaussianProcess,
    /// Uniform random picks without repeats (a baseline).
    Random,
}

/// First-round designs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitialDesign {
    /// Points spread over the space (k-medoids of the candidates).
    #[default]
    Spread,
    /// Uniform random picks.
    Random,
}

/// Batch acquisitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AcquisitionSpec {
    /// Thompson sampling from the joint posterior: picks in proportion to the chance of being best.
    Thompson,
    /// Upper confidence bound with hallucinated observations (GP-BUCB).
    Ucb,
    /// Expected improvement in log form (LogEI), picks hallucinated one after another.
    LogEi,
    /// Knowledge gradient for the recommendation: each pick is the cell expected to improve the
    /// protocol finally recommended most, picks hallucinated one after another.
    #[default]
    KnowledgeGradient,
    /// Half the picks by the knowledge gradient, half by Thompson draws, alternating.
    Portfolio,
}

/// GP kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KernelSpec {
    /// Matérn 5/2 with one length scale per input.
    #[default]
    Matern52,
    /// Squared exponential with one length scale per input.
    Rbf,
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

/// One instrument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSpec {
    /// Its name (channel ids are `<name>/chNN`).
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub kind: InstrumentKind,
    /// Which driver talks to it.
    pub driver: DriverKind,
    /// How to reach it (not for `sim`).
    #[serde(default)]
    pub transport: Option<TransportSpec>,
    /// Channels it offers (cyclers) or cells it holds at once (builders).
    #[serde(default = "default_channels")]
    pub channels: u32,
    /// Simulated seconds per real second (simulated instruments only).
    #[serde(default = "default_acceleration")]
    pub clock_acceleration: f64,
    /// Limits no test may exceed; the engine refuses protocols beyond them and stops a channel that
    /// reports a reading beyond them.
    #[serde(default)]
    pub safety: SafetyLimits,
    /// What a cycler's records carry beyond capacities (`discharge_curve`, `internal_resistance`,
    /// `temperature`, `charge_time`); absent: all of them. A campaign whose lifetime model needs
    /// what its cyclers do not record is refused before any cell is cycled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<RecordField>>,
    /// What a vendor's cycler needs beyond its address (the `maccor` driver): the procedure it
    /// runs and how a protocol's numbers become the procedure's variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorSpec>,
}

/// How labloop runs its protocols on a vendor's cycler: the lab prepares one procedure in the
/// vendor's software with variables where the C-rates and cycle count go; labloop sets those
/// variables for each test and starts the procedure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorSpec {
    /// The procedure (Maccor: its name in `C:\\Maccor\\Procedure`, without `.000`; Arbin: the
    /// schedule file's name, e.g. `LABLOOP-CLO.sdx`; not for Neware, whose step files labloop
    /// writes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub procedure: String,
    /// The procedure's variables by number (Maccor procedure variables, Arbin user variables,
    /// 1–16), each taking one of the test's values:
    /// `charge_c_rate_<k>` (the protocol's k-th constant-current step, from 1), `finish_c_rate`,
    /// `cv_voltage_v`, `discharge_c_rate`, `cycles`.
    /// (Keys are the variables' numbers as YAML writes them, `1:` ... `16:`.)
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The capacity the procedure's C-rates refer to (Ah), sent with the start (Maccor's
    /// `Crate`, Arbin's test capacity; Neware's step currents are computed from it).
    pub nominal_capacity_ah: f64,
    /// Seconds between two readings of a running channel (each reading is one point of the
    /// cycle's curve: a 4C discharge lasts ~900 s).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_s: f64,
    /// Seconds to wait for one reply before the link is counted down and opened again (MacNet's
    /// own client waits 2 s).
    #[serde(default = "default_reply_timeout")]
    pub reply_timeout_s: f64,
    /// Seconds without any reply after which the instrument is reported offline (and a waiting
    /// step says so instead of waiting on).
    #[serde(default = "default_offline_after")]
    pub offline_after_s: f64,
    /// User name to log in with (Arbin CTI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Name of the environment variable that holds the password (never the password itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Neware: the folder labloop writes each test's step file to (a share the BTS PC reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_dir: Option<String>,
    /// Neware: the same folder as the BTS PC names it (`C:\\labloop\\steps`); default
    /// `step_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_dir_on_cycler: Option<String>,
}

fn default_poll_interval() -> f64 {
    1.0
}

fn default_reply_timeout() -> f64 {
    2.0
}

fn default_offline_after() -> f64 {
    60.0
}

/// One value of a test a vendor procedure's variable takes ([`VendorSpec::variables`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VendorVariable {
    /// The C-rate of the protocol's k-th constant-current step (from 1).
    ChargeCRate(usize),
    /// The C-rate of the CC part of the CC-CV finish.
    FinishCRate,
    /// The voltage of the CV part (V).
    CvVoltage,
    /// The discharge C-rate.
    DischargeCRate,
    /// How many cycles the test runs.
    Cycles,
}

impl VendorSpec {
    /// The variables by number, each with the value it takes; the first entry that is not a
    /// number 1–16 with a known value is the error.
    pub fn numbered_variables(&self) -> Result<Vec<(u32, VendorVariable)>, String> {
        self.variables
            .iter()
            .map(|(number, name)| {
                let n = variable_number(number)?;
                VendorVariable::parse(name)
                    .map(|v| (n, v))
                    .map_err(|e| format!("variable {number}: {e}"))
            })
            .collect()
    }
}

/// A procedure variable's number (1–16) as the workflow writes it.
pub fn variable_number(key: &str) -> Result<u32, String> {
    key.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .ok_or_else(|| format!("procedure variables are numbered 1 to 16, not `{key}`"))
}

impl VendorVariable {
    /// Reads a variable's name as the workflow writes it.
    pub fn parse(name: &str) -> Result<Self, String> {
        let step = name
            .strip_prefix("charge_c_rate_")
            .and_then(|k| k.parse::<usize>().ok())
            .filter(|&k| k >= 1);
        match (name, step) {
            (_, Some(k)) => Ok(Self::ChargeCRate(k)),
            ("finish_c_rate", _) => Ok(Self::FinishCRate),
            ("cv_voltage_v", _) => Ok(Self::CvVoltage),
            ("discharge_c_rate", _) => Ok(Self::DischargeCRate),
            ("cycles", _) => Ok(Self::Cycles),
            _ => Err(format!(
                "unknown value `{name}`: expected charge_c_rate_<k> (k from 1), finish_c_rate, cv_voltage_v, discharge_c_rate or cycles"
            )),
        }
    }

    /// The value for a test of `protocol` with this discharge rate and cycle count (`None`: the
    /// protocol has no k-th step).
    pub fn value(
        self,
        protocol: &ChargeProtocol,
        discharge_c_rate: f64,
        cycles: u32,
    ) -> Option<f64> {
        match self {
            Self::ChargeCRate(k) => protocol.steps.get(k - 1).map(|s| s.c_rate),
            Self::FinishCRate => Some(protocol.finish.c_rate),
            Self::CvVoltage => Some(protocol.finish.cv_voltage_v),
            Self::DischargeCRate => Some(discharge_c_rate),
            Self::Cycles => Some(f64::from(cycles)),
        }
    }
}

/// What a cycle record may carry beyond capacities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordField {
    /// The discharge's voltage–capacity curve (for the ΔQ(V) features).
    DischargeCurve,
    /// Internal resistance.
    InternalResistance,
    /// Cell temperature.
    Temperature,
    /// Charge time.
    ChargeTime,
}

impl RecordField {
    /// As the workflow spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DischargeCurve => "discharge_curve",
            Self::InternalResistance => "internal_resistance",
            Self::Temperature => "temperature",
            Self::ChargeTime => "charge_time",
        }
    }
}

fn default_channels() -> u32 {
    1
}

fn default_acceleration() -> f64 {
    1.0
}

/// Kinds of instrument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstrumentKind {
    /// A battery cycler with channels.
    #[default]
    Cycler,
    /// A robot that assembles coin cells.
    CellBuilder,
}

/// Instrument drivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// The in-process simulator (`drivers/sim`).
    Sim,
    /// SCPI-style ASCII over a serial line.
    Serial,
    /// JSON over an MQTT broker.
    Mqtt,
    /// An external worker: each command is a job on the store's queue, done by whoever claims it
    /// (`labloop agent`, or a worker of the lab's own); for cell builders.
    Queue,
    /// A Maccor cycler through MacNet's JSON-RPC interface (TCP, default port 57570).
    Maccor,
    /// An Arbin cycler through MITS Pro's CTI interface (binary frames on TCP, default port
    /// 9031).
    Arbin,
    /// A Neware cycler through BTS 8's XML interface (TCP, default port 502); labloop writes
    /// each test's step file from its protocol.
    Neware,
    /// A plugin (`transport: {plugin: {name: ...}}`) that speaks the instrument operations of
    /// `drivers/PROTOCOL.md` over the plugin protocol.
    Plugin,
}

impl DriverKind {
    /// Whether the driver runs a vendor's procedure (and so needs a `vendor` section).
    pub fn is_vendor(self) -> bool {
        matches!(self, Self::Maccor | Self::Arbin | Self::Neware)
    }
}

/// How a driver reaches its instrument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportSpec {
    /// A serial port.
    Serial {
        /// Device path, e.g. `/dev/ttyUSB0`.
        port: String,
        /// Baud rate.
        #[serde(default = "default_baud")]
        baud: u32,
    },
    /// A TCP connection to the instrument's control PC (vendor cyclers: Maccor MacNet's JSON
    /// port is 57570).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A plugin of the workflow's `plugins` that declares the `cycler` or `cell_builder`
    /// capability.
    Plugin {
        /// The plugin's name.
        name: String,
    },
    /// The store's job queue.
    Queue {
        /// The capability a worker needs to take these jobs (its `labloop agent --capability`).
        capability: String,
    },
    /// An MQTT broker.
    Mqtt {
        /// `mqtt://host:port`, or `mqtts://host:port` for TLS (port 8883 by default).
        broker: String,
        /// Topics are `<topic_prefix>/cmd`, `.../ack`, `.../status`, `.../telemetry/<channel>`.
        topic_prefix: String,
        /// TLS: PEM file of the CA that signed the broker's certificate (default: the system's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<String>,
        /// TLS: PEM client certificate, for brokers that ask for one (with `client_key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_cert: Option<String>,
        /// TLS: PEM private key of `client_cert`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_key: Option<String>,
        /// User name to log in with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// Name of the environment variable that holds the password (never the password itself:
        /// workflow files are shared and stored with campaigns).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_env: Option<String>,
    },
}

fn default_baud() -> u32 {
    115_200
}

/// Safety limits of an instrument, per channel: the engine refuses protocols beyond them before a
/// test starts, and a cycle record beyond any of them stops that channel's test and fails its
/// experiment with the reason (other channels go on).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SafetyLimits {
    /// Highest charge C-rate a protocol may ask for.
    #[serde(default = "default_max_c_rate")]
    pub max_c_rate: f64,
    /// Highest voltage (V).
    #[serde(default = "default_max_voltage")]
    pub max_voltage_v: f64,
    /// Highest cell temperature (°C).
    #[serde(default = "default_max_temperature")]
    pub max_temperature_c: f64,
    /// Lowest terminal voltage (V), if limited (over-discharge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_voltage_v: Option<f64>,
    /// Largest current, charge or discharge (A), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_current_a: Option<f64>,
}

impl Default for SafetyLimits {
    fn default() -> Self {
        Self {
            max_c_rate: default_max_c_rate(),
            max_voltage_v: default_max_voltage(),
            max_temperature_c: default_max_temperature(),
            min_voltage_v: None,
            max_current_a: None,
        }
    }
}

fn default_max_c_rate() -> f64 {
    10.0
}

fn default_max_voltage() -> f64 {
    4.5
}

fn default_max_temperature() -> f64 {
    75.0
}

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

/// Where the campaign is recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// `sqlite://path` or `postgres://...`; default: `sqlite://labloop-data/<campaign>.sqlite`.
    #[serde(default)]
    pub url: Option<String>,
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

impl ChargeProtocolSpec {
    /// The space in core terms.
    pub fn to_space(&self) -> StepProtocolSpace {
        StepProtocolSpace {
            soc_breakpoints: self.soc_breakpoints.clone(),
            charge_time_s: self.charge_time_min * 60.0,
            grids: self.free_steps.clone(),
            last_step_bounds: (self.last_step.min_c_rate, self.last_step.max_c_rate),
            exclude: self.exclude.clone(),
            finish: CcCvFinish {
                c_rate: self.finish.c_rate,
                cv_voltage_v: self.finish.cv_voltage_v,
            },
        }
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

impl Workflow {
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
