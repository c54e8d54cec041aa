//! The search spaces: multi-step charge protocols and formulations (mixtures and parameters).

use super::*;

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
