//! Instruments: their kinds, drivers, transports, vendor procedures and safety limits.

use super::*;

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
