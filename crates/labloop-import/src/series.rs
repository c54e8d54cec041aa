//! The core every reader shares: a cycler's time series, in labloop's conventions, turned into
//! per-cycle summaries. Pure arithmetic, no I/O; the live vendor adapters feed it the same rows.
//!
//! Conventions of a [`Sample`]: seconds, volts, amperes with the current **positive while
//! charging**, ampere-hours, watt-hours, °C. Cyclers count charge in one of three ways, kept as
//! they come ([`Counter`]); the rule that turns any of them into per-cycle capacities is
//! [`interval`]'s:
//!
//! - between two consecutive rows whose counter runs on (same or larger value), the counter's
//!   increase is what passed;
//! - where it resets (falls), its new value is what passed since the reset (the counter started
//!   again from zero within the interval);
//! - where a counter is missing, the current's integral over that interval (trapezoid) is what
//!   passed, split by the current's sign.
//!
//! So per-cycle, per-step and per-test counters all give the same per-cycle figures, and a file
//! without counters still gives its capacities. Energies follow the same rule with V·I.
//!
//! Cycle boundaries follow the data's own cycle index where every row has one (a new cycle where
//! the index changes). Without one they are inferred: a cycle is a charge and the discharge after
//! it, so a new cycle begins at the first charging row after a discharge. A row charges or
//! discharges when its current's magnitude exceeds [`ACTIVE_CURRENT_FRACTION`] of the file's
//! largest; rests never start a cycle.

use labloop_core::DischargeCurve;
use serde::{Deserialize, Serialize};

/// A row counts as charging or discharging when |I| exceeds this fraction of the file's largest
/// |I| (below it, the row is a rest: cyclers report a few µA of offset while resting).
pub const ACTIVE_CURRENT_FRACTION: f64 = 1e-3;

/// The voltage step of the discharge curves the core writes (V): the spacing of the predictor's
/// `Qdlin` grid (1 000 points from 3.6 V to 2.0 V), continued above and below it, so Severson
/// features come out of any vendor's file on the grid they were defined on.
pub const CURVE_GRID_STEP_V: f64 = (3.6 - 2.0) / 999.0;
/// The top of that grid (V); curve voltages are `3.6 − k·step` for integer k.
pub const CURVE_GRID_TOP_V: f64 = 3.6;

/// The most grid points a discharge curve holds (4 000 steps span 6.4 V, wider than any cell's
/// window).
pub const MAX_CURVE_POINTS: usize = 4000;

/// How a cycler counts charge (or energy) on one row. Missing values are `NaN`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Counter {
    /// No counter in the file: the current (or power) is integrated.
    Absent,
    /// Separate charge and discharge counters (Arbin, Battery Archive, BDF): each grows while its
    /// direction flows and resets at the cycler's own boundaries (cycle, step or test).
    Separate {
        /// Charge passed in (Ah) or energy in (Wh).
        charge: f64,
        /// Charge (or energy) delivered.
        discharge: f64,
    },
    /// One signed counter, rising on charge and falling on discharge (BioLogic `(Q-Qo)`).
    Signed(f64),
    /// One unsigned counter whose direction is the current's sign (Maccor `Amp-hr`, Novonix
    /// `Capacity`), usually reset at each step.
    Unsigned(f64),
}

/// One row of a cycler's time series, in labloop's conventions.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Where the row is in its file: the 1-based line of a text file, the record's index in a
    /// binary one.
    pub line: u64,
    /// Test time (s).
    pub time_s: f64,
    /// Terminal voltage (V).
    pub voltage_v: f64,
    /// Current (A), positive while charging.
    pub current_a: f64,
    /// The cycler's charge counter (Ah).
    pub capacity: Counter,
    /// The cycler's energy counter (Wh).
    pub energy: Counter,
    /// Cell temperature (°C), when recorded.
    pub temperature_c: Option<f64>,
    /// DC internal resistance (Ω), when recorded.
    pub internal_resistance_ohm: Option<f64>,
    /// The file's own cycle index, when it has one.
    pub cycle: Option<i64>,
}

/// One cycle of a cell, as labloop stores and prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleSummary {
    /// labloop's cycle number, counted from 1: the file's own index (plus one where the file
    /// counts from 0), else the cycle's place in the file.
    pub cycle: u32,
    /// The file's own cycle index for this cycle (Maccor and BioLogic count from 0, Arbin from
    /// 1), absent where cycles were inferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cycle: Option<i64>,
    /// Data rows of the file in this cycle.
    pub points: u64,
    /// First and last line (or record) of the cycle in its file.
    pub first_line: u64,
    /// Last line (or record).
    pub last_line: u64,
    /// Test time at the cycle's first and last row (s).
    pub start_time_s: f64,
    /// Test time at the cycle's last row (s).
    pub end_time_s: f64,
    /// Charge passed in, constant-voltage tail included (Ah).
    pub charge_capacity_ah: f64,
    /// Charge delivered (Ah).
    pub discharge_capacity_ah: f64,
    /// Energy in (Wh).
    pub charge_energy_wh: f64,
    /// Energy delivered (Wh).
    pub discharge_energy_wh: f64,
    /// Lowest and highest terminal voltage (V).
    pub voltage_min_v: f64,
    /// Highest terminal voltage (V).
    pub voltage_max_v: f64,
    /// Largest current magnitude (A).
    pub current_max_a: f64,
    /// Time spent charging (s).
    pub charge_time_s: f64,
    /// Time spent discharging (s).
    pub discharge_time_s: f64,
    /// Cell temperature, lowest, time-averaged and highest (°C), when recorded.
    pub temperature_min_c: Option<f64>,
    /// Time-averaged cell temperature (°C).
    pub temperature_avg_c: Option<f64>,
    /// Highest cell temperature (°C).
    pub temperature_max_c: Option<f64>,
    /// The cycle's last recorded DC internal resistance (Ω), when recorded.
    pub internal_resistance_ohm: Option<f64>,
    /// The cycle's longest discharge as Q(V) on the predictor's voltage grid
    /// ([`CURVE_GRID_STEP_V`]), its first and last samples the measured ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discharge_curve: Option<DischargeCurve>,
}

impl CycleSummary {
    /// The cycle as the predictor and the engine read cycles: quantities the file did not record
    /// are `NaN` (the features that need them say so).
    pub fn to_record(&self) -> labloop_core::CycleRecord {
        labloop_core::CycleRecord {
            cycle: self.cycle,
            charge_capacity_ah: self.charge_capacity_ah,
            discharge_capacity_ah: self.discharge_capacity_ah,
            internal_resistance_ohm: self.internal_resistance_ohm.unwrap_or(f64::NAN),
            temperature_min_c: self.temperature_min_c.unwrap_or(f64::NAN),
            temperature_avg_c: self.temperature_avg_c.unwrap_or(f64::NAN),
            temperature_max_c: self.temperature_max_c.unwrap_or(f64::NAN),
            charge_time_s: self.charge_time_s,
            voltage_max_v: Some(self.voltage_max_v),
            voltage_min_v: Some(self.voltage_min_v),
            current_max_a: Some(self.current_max_a),
            discharge_curve: self.discharge_curve.clone(),
        }
    }
}

/// The cycles of one cell's time series (rows in file order). Empty input gives no cycles.
pub fn cycles(samples: &[Sample]) -> Vec<CycleSummary> {
    let largest = samples
        .iter()
        .map(|s| s.current_a.abs())
        .fold(0.0, f64::max);
    let threshold = largest * ACTIVE_CURRENT_FRACTION;
    let bounds = cycle_bounds(samples, threshold);
    let numbers = cycle_numbers(samples, &bounds);
    bounds
        .iter()
        .zip(numbers)
        .map(|(&(start, end), number)| summarise(samples, start, end, number, threshold))
        .collect()
}

/// labloop's number of each cycle: the file's own index, moved up by one where the file counts
/// from 0 (Maccor, BioLogic), so that cycle 100 is the hundredth whatever the cycler; 1, 2, 3, ...
/// in file order where the file has no index, or where its indices do not rise from cycle to
/// cycle (several tests in one file).
fn cycle_numbers(samples: &[Sample], bounds: &[(usize, usize)]) -> Vec<u32> {
    let ordinal = || (1..=bounds.len() as u32).collect();
    let sources: Option<Vec<i64>> = bounds.iter().map(|&(s, _)| samples[s].cycle).collect();
    let Some(sources) = sources else {
        return ordinal();
    };
    let lowest = sources.iter().copied().min().unwrap_or(1);
    let shift = if lowest < 1 { 1 - lowest } else { 0 };
    let rising = sources.windows(2).all(|w| w[1] > w[0]);
    let fits = sources
        .last()
        .is_some_and(|&l| l.saturating_add(shift) <= i64::from(u32::MAX));
    if rising && fits {
        sources.iter().map(|&c| (c + shift) as u32).collect()
    } else {
        ordinal()
    }
}

/// `[start, end)` row ranges of the cycles.
fn cycle_bounds(samples: &[Sample], threshold: f64) -> Vec<(usize, usize)> {
    if samples.is_empty() {
        return Vec::new();
    }
    let indexed = samples.iter().all(|s| s.cycle.is_some());
    let mut starts = vec![0];
    let direction = |current: f64| {
        if current.abs() > threshold {
            current.signum()
        } else {
            0.0
        }
    };
    let mut last_active = direction(samples[0].current_a);
    for i in 1..samples.len() {
        let new_cycle = if indexed {
            samples[i].cycle != samples[i - 1].cycle
        } else {
            let current = samples[i].current_a;
            let charging = current > threshold;
            let begins = charging && last_active < 0.0;
            if direction(current) != 0.0 {
                last_active = direction(current);
            }
            begins
        };
        if new_cycle {
            starts.push(i);
        }
    }
    let mut bounds: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    bounds.push((*starts.last().expect("one start"), samples.len()));
    bounds
}

/// Charge (or energy) in and out over the interval from `prev` to `cur`, by the module's rule.
/// `rate` is the current (A) or the power (W) of a row.
pub fn interval(
    prev: &Sample,
    cur: &Sample,
    counter: impl Fn(&Sample) -> Counter,
    rate: impl Fn(&Sample) -> f64,
) -> (f64, f64) {
    let hours = (cur.time_s - prev.time_s).max(0.0) / 3600.0;
    let (a, b) = (rate(prev), rate(cur));
    let integral = (
        hours * (a.max(0.0) + b.max(0.0)) / 2.0,
        hours * ((-a).max(0.0) + (-b).max(0.0)) / 2.0,
    );
    match (counter(prev), counter(cur)) {
        (
            Counter::Separate {
                charge: c0,
                discharge: d0,
            },
            Counter::Separate {
                charge: c1,
                discharge: d1,
            },
        ) => (
            passed(c0, c1).unwrap_or(integral.0),
            passed(d0, d1).unwrap_or(integral.1),
        ),
        (Counter::Signed(n0), Counter::Signed(n1)) if n0.is_finite() && n1.is_finite() => {
            let d = n1 - n0;
            (d.max(0.0), (-d).max(0.0))
        }
        (Counter::Unsigned(u0), Counter::Unsigned(u1)) => match passed(u0, u1) {
            Some(d) => {
                let direction = if b != 0.0 { b } else { a };
                if direction > 0.0 {
                    (d, 0.0)
                } else if direction < 0.0 {
                    (0.0, d)
                } else {
                    integral
                }
            }
            None => integral,
        },
        _ => integral,
    }
}

/// What a counter says passed from `a` to `b`: its increase, or `b` where it was reset, `None`
/// where either is missing. A fall within float noise (1e-9 plus a millionth of the value) is no
/// change, not a reset.
fn passed(a: f64, b: f64) -> Option<f64> {
    if !(a.is_finite() && b.is_finite()) {
        return None;
    }
    let tolerance = 1e-9 + 1e-6 * a.abs();
    Some(if b >= a - tolerance {
        (b - a).max(0.0)
    } else {
        b.max(0.0)
    })
}

fn summarise(
    samples: &[Sample],
    start: usize,
    end: usize,
    cycle: u32,
    threshold: f64,
) -> CycleSummary {
    let rows = &samples[start..end];
    let first = &rows[0];
    let last = &rows[rows.len() - 1];
    let mut summary = CycleSummary {
        cycle,
        source_cycle: first.cycle,
        points: rows.len() as u64,
        first_line: first.line,
        last_line: last.line,
        start_time_s: first.time_s,
        end_time_s: last.time_s,
        charge_capacity_ah: 0.0,
        discharge_capacity_ah: 0.0,
        charge_energy_wh: 0.0,
        discharge_energy_wh: 0.0,
        voltage_min_v: f64::INFINITY,
        voltage_max_v: f64::NEG_INFINITY,
        current_max_a: 0.0,
        charge_time_s: 0.0,
        discharge_time_s: 0.0,
        temperature_min_c: None,
        temperature_avg_c: None,
        temperature_max_c: None,
        internal_resistance_ohm: None,
        discharge_curve: None,
    };
    let mut temperature = TemperatureSum::default();
    // The longest run of discharging rows, as (voltage, discharged so far) pairs.
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut longest: Vec<(f64, f64)> = Vec::new();
    for (offset, row) in rows.iter().enumerate() {
        let i = start + offset;
        summary.voltage_min_v = summary.voltage_min_v.min(row.voltage_v);
        summary.voltage_max_v = summary.voltage_max_v.max(row.voltage_v);
        summary.current_max_a = summary.current_max_a.max(row.current_a.abs());
        if let Some(r) = row
            .internal_resistance_ohm
            .filter(|r| r.is_finite() && *r > 0.0)
        {
            summary.internal_resistance_ohm = Some(r);
        }
        let discharging = row.current_a < -threshold;
        // The interval into a cycle's first row belongs to that cycle. Before the file's first
        // row the counters stood at zero (a cycler counts from the test's start, so a recording
        // that begins mid-cycle keeps what the cycler had counted by then).
        let origin;
        let prev = if i > 0 {
            &samples[i - 1]
        } else {
            origin = at_zero(row);
            &origin
        };
        let (q_in, q_out) = interval(prev, row, |s| s.capacity, |s| s.current_a);
        let (e_in, e_out) = interval(prev, row, |s| s.energy, |s| s.current_a * s.voltage_v);
        summary.charge_capacity_ah += q_in;
        summary.discharge_capacity_ah += q_out;
        summary.charge_energy_wh += e_in;
        summary.discharge_energy_wh += e_out;
        let dt = (row.time_s - prev.time_s).max(0.0);
        if row.current_a > threshold {
            summary.charge_time_s += dt;
        } else if discharging {
            summary.discharge_time_s += dt;
        }
        if offset > 0 {
            temperature.add_interval(prev.temperature_c, row.temperature_c, dt);
        }
        temperature.add_point(row.temperature_c);
        if discharging {
            let so_far = run.last().map_or(0.0, |&(_, q)| q);
            run.push((
                row.voltage_v,
                so_far + if run.is_empty() { 0.0 } else { q_out },
            ));
        } else if !run.is_empty() {
            if run.len() > longest.len() {
                longest = std::mem::take(&mut run);
            }
            run.clear();
        }
    }
    if run.len() > longest.len() {
        longest = run;
    }
    (
        summary.temperature_min_c,
        summary.temperature_avg_c,
        summary.temperature_max_c,
    ) = temperature.finish();
    summary.discharge_curve = grid_curve(&longest);
    summary
}

/// The first row as the counters stood before it: unsigned and separate counters at zero, a
/// signed one (which may start anywhere) where it is.
fn at_zero(first: &Sample) -> Sample {
    let zero = |c: Counter| match c {
        Counter::Separate { .. } => Counter::Separate {
            charge: 0.0,
            discharge: 0.0,
        },
        Counter::Unsigned(_) => Counter::Unsigned(0.0),
        other => other,
    };
    Sample {
        capacity: zero(first.capacity),
        energy: zero(first.energy),
        ..first.clone()
    }
}

/// Temperature extremes and the time-weighted mean (trapezoid; the plain mean when the cycle
/// has no duration).
#[derive(Default)]
struct TemperatureSum {
    min: Option<f64>,
    max: Option<f64>,
    weighted: f64,
    seconds: f64,
    plain: f64,
    count: u64,
}

impl TemperatureSum {
    fn add_point(&mut self, t: Option<f64>) {
        let Some(t) = t.filter(|t| t.is_finite()) else {
            return;
        };
        self.min = Some(self.min.map_or(t, |m| m.min(t)));
        self.max = Some(self.max.map_or(t, |m| m.max(t)));
        self.plain += t;
        self.count += 1;
    }

    fn add_interval(&mut self, a: Option<f64>, b: Option<f64>, dt: f64) {
        if let (Some(a), Some(b)) = (a, b)
            && a.is_finite()
            && b.is_finite()
        {
            self.weighted += dt * (a + b) / 2.0;
            self.seconds += dt;
        }
    }

    fn finish(self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let avg = if self.seconds > 0.0 {
            Some(self.weighted / self.seconds)
        } else if self.count > 0 {
            Some(self.plain / self.count as f64)
        } else {
            None
        };
        (self.min, avg, self.max)
    }
}

/// A discharge's (voltage, discharged) samples as Q(V) on the grid: the measured first sample,
/// every grid voltage strictly between the first voltage and the running minimum's end, and the
/// measured last sample. `None` for a run too short to be a curve.
fn grid_curve(run: &[(f64, f64)]) -> Option<DischargeCurve> {
    if run.len() < 2 {
        return None;
    }
    let raw = DischargeCurve {
        voltage_v: run.iter().map(|&(v, _)| v).collect(),
        capacity_ah: run.iter().map(|&(_, q)| q).collect(),
    };
    let top = raw.voltage_v[0];
    let bottom = raw.voltage_v.iter().copied().fold(f64::INFINITY, f64::min);
    if top <= bottom || top.is_nan() || bottom.is_nan() {
        return None;
    }
    // Grid points strictly inside (bottom, top): k from the first below top to the last above
    // bottom.
    let k_first = ((CURVE_GRID_TOP_V - top) / CURVE_GRID_STEP_V).floor() as i64 + 1;
    let k_last = ((CURVE_GRID_TOP_V - bottom) / CURVE_GRID_STEP_V).ceil() as i64 - 1;
    // A span wider than MAX_CURVE_POINTS steps (a damaged reading of 1e30 V) takes every
    // n-th grid point, so a curve stays bounded and still on the grid.
    let stride = ((k_last - k_first + 1).max(1) as f64 / MAX_CURVE_POINTS as f64).ceil() as i64;
    let mut grid: Vec<f64> = Vec::new();
    grid.push(top);
    for k in (k_first..=k_last).step_by(stride.max(1) as usize) {
        let v = CURVE_GRID_TOP_V - k as f64 * CURVE_GRID_STEP_V;
        if v < top && v > bottom {
            grid.push(v);
        }
    }
    grid.push(bottom);
    let mut capacity = raw.capacity_at(&grid);
    // The curve ends at the discharge's measured total, wherever its lowest voltage came.
    if let Some(end) = capacity.last_mut() {
        *end = raw.capacity_ah[raw.capacity_ah.len() - 1].max(*end);
    }
    Some(DischargeCurve {
        voltage_v: grid,
        capacity_ah: capacity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64, t: f64, v: f64, i: f64, capacity: Counter, cycle: Option<i64>) -> Sample {
        Sample {
            line,
            time_s: t,
            voltage_v: v,
            current_a: i,
            capacity,
            energy: Counter::Absent,
            temperature_c: Some(25.0),
            internal_resistance_ohm: None,
            cycle,
        }
    }

    /// One hour of charge at 1 A, one of discharge at 1 A, sampled every 60 s, twice; the
    /// counter given by `count` for (charged, discharged so far in the cycle, signed net).
    fn two_cycles(count: impl Fn(f64, f64, f64, bool) -> Counter, indexed: bool) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut line = 1;
        for c in 0..2 {
            for k in 0..=120 {
                let t = c as f64 * 7260.0 + k as f64 * 60.0;
                let charging = k <= 60;
                let (charged, discharged) = if charging {
                    (k as f64 / 60.0, 0.0)
                } else {
                    (1.0, (k - 60) as f64 / 60.0)
                };
                let v = if charging {
                    3.0 + 0.01 * k as f64
                } else {
                    3.6 - 0.01 * (k - 60) as f64
                };
                let i = if charging { 1.0 } else { -1.0 };
                let counter = count(charged, discharged, charged - discharged, charging);
                out.push(row(line, t, v, i, counter, indexed.then_some(c + 1)));
                line += 1;
            }
        }
        out
    }

    fn check(cycles: &[CycleSummary]) {
        assert_eq!(cycles.len(), 2, "{cycles:#?}");
        for c in cycles {
            assert!(
                (c.charge_capacity_ah - 1.0).abs() < 0.02,
                "charge {}",
                c.charge_capacity_ah
            );
            assert!(
                (c.discharge_capacity_ah - 1.0).abs() < 0.02,
                "discharge {}",
                c.discharge_capacity_ah
            );
        }
    }

    #[test]
    fn every_counter_kind_gives_the_same_capacities() {
        check(&cycles(&two_cycles(
            |c, d, _, _| Counter::Separate {
                charge: c,
                discharge: d,
            },
            true,
        )));
        check(&cycles(&two_cycles(|_, _, n, _| Counter::Signed(n), true)));
        check(&cycles(&two_cycles(
            |c, d, _, charging| Counter::Unsigned(if charging { c } else { d }),
            true,
        )));
        check(&cycles(&two_cycles(|_, _, _, _| Counter::Absent, true)));
    }

    #[test]
    fn cycles_are_inferred_from_the_current_without_an_index() {
        let inferred = cycles(&two_cycles(|_, _, _, _| Counter::Absent, false));
        check(&inferred);
        assert_eq!(
            inferred[1].first_line, 122,
            "the second charge starts cycle 2"
        );
        assert!(inferred.iter().all(|c| c.source_cycle.is_none()));
    }

    #[test]
    fn the_discharge_curve_lies_on_the_predictors_grid() {
        let c = &cycles(&two_cycles(|_, _, _, _| Counter::Absent, true))[0];
        let curve = c.discharge_curve.as_ref().expect("a discharge");
        curve.check_shape().expect("a discharge's shape");
        let inner = &curve.voltage_v[1..curve.voltage_v.len() - 1];
        for v in inner {
            let k = (CURVE_GRID_TOP_V - v) / CURVE_GRID_STEP_V;
            assert!((k - k.round()).abs() < 1e-6, "{v} is off the grid");
        }
        assert!((curve.voltage_v[0] - 3.59).abs() < 1e-9);
        let total = *curve.capacity_ah.last().unwrap();
        assert!((total - 59.0 / 60.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn a_counter_reset_mid_cycle_loses_nothing() {
        let mut rows = two_cycles(
            |c, d, _, _| Counter::Separate {
                charge: c,
                discharge: d,
            },
            true,
        );
        // The charge counter restarts from zero half way through the first charge.
        for r in rows.iter_mut().take(121).skip(30) {
            if let Counter::Separate { charge, .. } = &mut r.capacity {
                *charge -= 0.5;
            }
        }
        check(&cycles(&rows));
    }
}
