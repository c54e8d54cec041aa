//! Fast-charging protocols and the spaces they are drawn from.
//!
//! A protocol charges in constant-current steps over SOC windows, then finishes with a CC-CV phase to
//! full. A [`StepProtocolSpace`] is the template of Attia et al. (Nature 2020): every step but the last
//! takes its C-rate from a grid; the last is derived so that the CC steps take exactly the stated time.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One constant-current step over a window of state of charge.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChargeStep {
    /// SOC where the step starts (0–1).
    pub soc_from: f64,
    /// SOC where the step ends (0–1).
    pub soc_to: f64,
    /// Charge current as a C-rate.
    pub c_rate: f64,
}

impl ChargeStep {
    /// The step's duration in seconds.
    pub fn duration_s(&self) -> f64 {
        (self.soc_to - self.soc_from) / self.c_rate * 3600.0
    }
}

/// The phase after the fast steps: constant current up to a voltage, then constant voltage to full.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CcCvFinish {
    /// Current of the CC part as a C-rate.
    pub c_rate: f64,
    /// Voltage held in the CV part.
    pub cv_voltage_v: f64,
}

/// A complete charging protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChargeProtocol {
    /// The constant-current steps, in SOC order.
    pub steps: Vec<ChargeStep>,
    /// How the cell is charged from the end of the last step to full.
    pub finish: CcCvFinish,
}

impl ChargeProtocol {
    /// The C-rates of the steps, in order.
    pub fn c_rates(&self) -> Vec<f64> {
        self.steps.iter().map(|s| s.c_rate).collect()
    }

    /// Time spent in the constant-current steps, in seconds.
    pub fn fast_charge_time_s(&self) -> f64 {
        self.steps.iter().map(ChargeStep::duration_s).sum()
    }

    /// Steps of equal SOC width from 0 to `soc_end` at the given C-rates, then `finish`: e.g. a
    /// one-step `[1.0]` to 80 % or the four 20 % steps of Attia et al.
    pub fn equal_steps(c_rates: &[f64], soc_end: f64, finish: CcCvFinish) -> Self {
        let width = soc_end / c_rates.len() as f64;
        let steps = c_rates
            .iter()
            .enumerate()
            .map(|(i, &c_rate)| ChargeStep {
                soc_from: width * i as f64,
                soc_to: width * (i + 1) as f64,
                c_rate,
            })
            .collect();
        Self { steps, finish }
    }

    /// SOC reached at the end of the fast steps.
    pub fn fast_charge_soc(&self) -> f64 {
        self.steps.last().map_or(0.0, |s| s.soc_to)
    }
}

/// Protocols are named as in the lab: their C-rates joined by dashes, e.g. `4.8-5.2-5.2-4.16`.
impl fmt::Display for ChargeProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            let rounded = (step.c_rate * 100.0).round() / 100.0;
            write!(f, "{rounded}")?;
        }
        Ok(())
    }
}

/// A template that is not well formed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolSpaceError {
    /// SOC breakpoints must rise strictly from a value ≥ 0 to a value ≤ 1.
    #[error("soc_breakpoints must rise strictly within 0..1, got {0:?}")]
    Breakpoints(Vec<f64>),
    /// One grid per step except the derived last one.
    #[error("expected {expected} C-rate grids (one per step but the last), got {got}")]
    GridCount {
        /// Grids needed.
        expected: usize,
        /// Grids given.
        got: usize,
    },
    /// C-rates must be positive and finite.
    #[error("grid {grid} holds a C-rate that is not positive: {value}")]
    BadRate {
        /// Index of the grid (0 = first step).
        grid: usize,
        /// The offending value.
        value: f64,
    },
    /// The charge time must be positive.
    #[error("charge time must be positive, got {0} s")]
    ChargeTime(f64),
    /// The grids combine into more protocols than can be enumerated.
    #[error(
        "the grids combine into {combinations} protocols, more than the limit of {limit}: use fewer steps or coarser grids"
    )]
    TooLarge {
        /// The grids' sizes multiplied (saturating).
        combinations: u64,
        /// [`crate::limits::MAX_CANDIDATES`].
        limit: u64,
    },
}

/// The Attia et al. template: SOC windows, a fixed time for the fast steps, grids for all steps but
/// the last, and bounds on the derived last step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepProtocolSpace {
    /// SOC at the step boundaries: `n + 1` values for `n` steps, e.g. `[0, 0.2, 0.4, 0.6, 0.8]`.
    pub soc_breakpoints: Vec<f64>,
    /// Total duration of the CC steps in seconds (600 for "0 → 80 % in 10 minutes").
    pub charge_time_s: f64,
    /// C-rate grids for steps `1..n-1`.
    pub grids: Vec<Vec<f64>>,
    /// Inclusive bounds on the derived last C-rate.
    pub last_step_bounds: (f64, f64),
    /// Protocols (all `n` C-rates) left out, e.g. a baseline.
    pub exclude: Vec<Vec<f64>>,
    /// The CC-CV phase that follows.
    pub finish: CcCvFinish,
}

/// Two C-rates closer than this are the same (grids are written with at most three decimals).
const RATE_TOLERANCE: f64 = 1e-3;

impl StepProtocolSpace {
    /// Number of CC steps.
    pub fn steps(&self) -> usize {
        self.soc_breakpoints.len().saturating_sub(1)
    }

    /// Checks that the template is well formed (not that it admits any protocol).
    pub fn check(&self) -> Result<(), ProtocolSpaceError> {
        let b = &self.soc_breakpoints;
        let rising = b.windows(2).all(|w| w[1] > w[0]);
        if b.len() < 2 || !rising || b[0] < 0.0 || b[b.len() - 1] > 1.0 {
            return Err(ProtocolSpaceError::Breakpoints(b.clone()));
        }
        if self.grids.len() + 1 != self.steps() {
            return Err(ProtocolSpaceError::GridCount {
                expected: self.steps() - 1,
                got: self.grids.len(),
            });
        }
        for (grid, values) in self.grids.iter().enumerate() {
            if let Some(&value) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(ProtocolSpaceError::BadRate { grid, value });
            }
        }
        if !(self.charge_time_s.is_finite() && self.charge_time_s > 0.0) {
            return Err(ProtocolSpaceError::ChargeTime(self.charge_time_s));
        }
        let combinations = self
            .grids
            .iter()
            .fold(1u64, |n, g| n.saturating_mul(g.len() as u64));
        if combinations > crate::limits::MAX_CANDIDATES {
            return Err(ProtocolSpaceError::TooLarge {
                combinations,
                limit: crate::limits::MAX_CANDIDATES,
            });
        }
        Ok(())
    }

    /// The last step's C-rate that makes the CC steps take exactly `charge_time_s`, given the free
    /// C-rates; `None` when the free steps alone already take the whole time.
    pub fn derived_last_rate(&self, free: &[f64]) -> Option<f64> {
        let b = &self.soc_breakpoints;
        let used_h: f64 = free
            .iter()
            .enumerate()
            .map(|(i, c)| (b[i + 1] - b[i]) / c)
            .sum();
        let left_h = self.charge_time_s / 3600.0 - used_h;
        let last_width = b[b.len() - 1] - b[b.len() - 2];
        (left_h > 0.0).then(|| last_width / left_h)
    }

    /// The protocol with these free C-rates, or `None` when it is not in the space (derived step out of
    /// bounds, or excluded).
    pub fn protocol(&self, free: &[f64]) -> Option<ChargeProtocol> {
        let last = self.derived_last_rate(free)?;
        let (lo, hi) = self.last_step_bounds;
        if last < lo || last > hi {
            return None;
        }
        let rates: Vec<f64> = free.iter().copied().chain([last]).collect();
        let excluded = self.exclude.iter().any(|ex| {
            ex.len() == rates.len()
                && ex
                    .iter()
                    .zip(&rates)
                    .all(|(a, b)| (a - b).abs() < RATE_TOLERANCE)
        });
        if excluded {
            return None;
        }
        let b = &self.soc_breakpoints;
        let steps = rates
            .iter()
            .enumerate()
            .map(|(i, &c_rate)| ChargeStep {
                soc_from: b[i],
                soc_to: b[i + 1],
                c_rate,
            })
            .collect();
        Some(ChargeProtocol {
            steps,
            finish: self.finish,
        })
    }

    /// Every protocol in the space, in grid order (first step varies slowest).
    pub fn enumerate(&self) -> Vec<ChargeProtocol> {
        let mut out = Vec::new();
        let mut free = Vec::with_capacity(self.grids.len());
        self.enumerate_from(0, &mut free, &mut out);
        out
    }

    fn enumerate_from(&self, depth: usize, free: &mut Vec<f64>, out: &mut Vec<ChargeProtocol>) {
        if depth == self.grids.len() {
            out.extend(self.protocol(free));
            return;
        }
        for &rate in &self.grids[depth] {
            free.push(rate);
            self.enumerate_from(depth + 1, free, out);
            free.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clo() -> StepProtocolSpace {
        StepProtocolSpace {
            soc_breakpoints: vec![0.0, 0.2, 0.4, 0.6, 0.8],
            charge_time_s: 600.0,
            grids: vec![
                vec![3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0, 8.0],
                vec![3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0],
                vec![3.6, 4.0, 4.4, 4.8, 5.2, 5.6],
            ],
            last_step_bounds: (0.1, 4.81),
            exclude: vec![vec![4.8; 4]],
            finish: CcCvFinish {
                c_rate: 1.0,
                cv_voltage_v: 3.6,
            },
        }
    }

    #[test]
    fn derived_step_fills_the_time_exactly() {
        let space = clo();
        let p = space.protocol(&[4.8, 5.2, 5.2]).unwrap();
        assert!((p.fast_charge_time_s() - 600.0).abs() < 1e-9);
        assert!((p.steps[3].c_rate - 4.16).abs() < 0.005);
        assert_eq!(p.to_string(), "4.8-5.2-5.2-4.16");
    }

    #[test]
    fn clo_grid_has_224_protocols_and_no_baseline() {
        let space = clo();
        space.check().unwrap();
        let all = space.enumerate();
        assert_eq!(all.len(), 224);
        assert!(space.protocol(&[4.8, 4.8, 4.8]).is_none());
        assert!(
            all.iter()
                .all(|p| p.steps[3].c_rate <= 4.81 && p.steps[3].c_rate >= 0.1)
        );
    }

    #[test]
    fn malformed_templates_are_named() {
        let mut space = clo();
        space.grids.pop();
        assert_eq!(
            space.check(),
            Err(ProtocolSpaceError::GridCount {
                expected: 3,
                got: 2
            })
        );
        let mut space = clo();
        space.soc_breakpoints = vec![0.0, 0.4, 0.2];
        assert!(matches!(
            space.check(),
            Err(ProtocolSpaceError::Breakpoints(_))
        ));
        let mut space = clo();
        space.grids[1][0] = -1.0;
        assert_eq!(
            space.check(),
            Err(ProtocolSpaceError::BadRate {
                grid: 1,
                value: -1.0
            })
        );
    }

    #[test]
    fn impossible_times_derive_nothing() {
        let space = clo();
        assert_eq!(space.derived_last_rate(&[1.0, 1.0, 1.0]), None);
    }
}
