//! The early-cycle features of Severson et al. (2019).
//!
//! The central one is ΔQ₁₀₀₋₁₀(V): the discharge capacity curve Q(V) of cycle 100 minus that of cycle
//! 10, on a fixed voltage grid (1 000 points from 3.6 V down to 2.0 V). Its log variance alone
//! predicts cycle life within ~15 %. The others describe the fade of discharge capacity and, when the
//! cycler reports them, charge time, temperature and internal resistance.

use crate::PredictError;
use labloop_core::CycleRecord;

/// Points on the voltage grid.
pub const VOLTAGE_GRID_POINTS: usize = 1000;
const GRID_HIGH_V: f64 = 3.6;
const GRID_LOW_V: f64 = 2.0;
/// The cycle ΔQ(V) is measured against.
pub const REFERENCE_CYCLE: u32 = 10;

/// Names of the coarsened ΔQ₁₀₀₋₁₀(V) curve: the mean of ΔQ over 20 equal voltage bands, from the
/// 3.6 V end (`dq_band_01`) to the 2.0 V end (`dq_band_20`).
pub const DQ_CURVE_FEATURES: [&str; 20] = [
    "dq_band_01",
    "dq_band_02",
    "dq_band_03",
    "dq_band_04",
    "dq_band_05",
    "dq_band_06",
    "dq_band_07",
    "dq_band_08",
    "dq_band_09",
    "dq_band_10",
    "dq_band_11",
    "dq_band_12",
    "dq_band_13",
    "dq_band_14",
    "dq_band_15",
    "dq_band_16",
    "dq_band_17",
    "dq_band_18",
    "dq_band_19",
    "dq_band_20",
];

/// Version of the feature definitions, written into every model file: a model trained on one
/// definition is only valid on features computed by the same one.
pub const FEATURE_DEFINITION: &str = "severson-2019/3: dQ(V) on a 1000-point 3.6-2.0 V grid between \
cycle 10 and the window's last cycle (population moments, Pearson kurtosis, log10 of magnitudes, \
20 band means); capacity fits through a 5-cycle running median";

/// The voltage grid of `Qdlin`: 1 000 points, linearly from 3.6 V down to 2.0 V.
pub fn voltage_grid() -> Vec<f64> {
    let step = (GRID_HIGH_V - GRID_LOW_V) / (VOLTAGE_GRID_POINTS - 1) as f64;
    (0..VOLTAGE_GRID_POINTS)
        .map(|i| GRID_HIGH_V - step * i as f64)
        .collect()
}

/// A discharge curve must reach this low for Q(V) on [`voltage_grid`] to mean what it meant on the
/// training cells (V): they discharged to 2.0 V, and below its last sample a curve reads as flat.
pub const CURVE_MUST_REACH_V: f64 = 2.2;
/// ...and must start at least this high (V), just under the top of the LFP plateau's shoulder.
pub const CURVE_MUST_START_ABOVE_V: f64 = 3.3;

/// Whether `curve` spans the voltage window the features read (see [`CURVE_MUST_REACH_V`]); a
/// curve cut short would move a prediction by hundreds of cycles without a word.
fn check_coverage(curve: &labloop_core::DischargeCurve, cycle: u32) -> Result<(), PredictError> {
    let low = curve
        .voltage_v
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let high = curve
        .voltage_v
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    if low <= CURVE_MUST_REACH_V && high >= CURVE_MUST_START_ABOVE_V {
        return Ok(());
    }
    Err(PredictError::MissingData(format!(
        "the discharge curve of cycle {cycle} spans {high:.2}–{low:.2} V, but the features read Q(V) on 3.6–2.0 V:          a curve must start at {CURVE_MUST_START_ABOVE_V} V or above and reach {CURVE_MUST_REACH_V} V or below          (record the whole discharge, to the cycler's 2.0 V cut-off)"
    )))
}

/// What the features are computed from: a cell's first `window` cycles.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyData {
    /// The last cycle of the early window (100 in the paper).
    pub window: u32,
    /// Discharge capacity (Ah) of cycles 1..=window; index 0 is cycle 1. NaN where not measured.
    pub discharge_capacity_ah: Vec<f64>,
    /// Q(V) of the reference cycle (10) on [`voltage_grid`].
    pub q_reference: Vec<f64>,
    /// Q(V) of the last cycle of the window on [`voltage_grid`].
    pub q_last: Vec<f64>,
    /// Charge time (s) per cycle, when the cycler reports it.
    pub charge_time_s: Option<Vec<f64>>,
    /// Average temperature (°C) per cycle, when reported.
    pub temperature_avg_c: Option<Vec<f64>>,
    /// Internal resistance (Ω) per cycle, when reported.
    pub internal_resistance_ohm: Option<Vec<f64>>,
}

impl EarlyData {
    /// Gathers the early data from a cell's cycle records (any order; each cycle once). Needs every
    /// cycle from 2 to `window` and discharge curves at cycle 10 and at `window`.
    pub fn from_records(records: &[CycleRecord], window: u32) -> Result<Self, PredictError> {
        if window < REFERENCE_CYCLE + 10 {
            return Err(PredictError::MissingData(format!(
                "an early window of {window} cycles is too short (at least 20)"
            )));
        }
        let n = window as usize;
        let mut by_cycle: Vec<Option<&CycleRecord>> = vec![None; n];
        for r in records.iter().filter(|r| r.cycle >= 1 && r.cycle <= window) {
            by_cycle[r.cycle as usize - 1] = Some(r);
        }
        if let Some(missing) = (2..=n).find(|&c| by_cycle[c - 1].is_none()) {
            return Err(PredictError::MissingData(format!(
                "no record of cycle {missing}"
            )));
        }
        let grid = voltage_grid();
        let curve_at = |cycle: u32| -> Result<Vec<f64>, PredictError> {
            let curve = by_cycle[cycle as usize - 1]
                .and_then(|r| r.discharge_curve.as_ref())
                .ok_or_else(|| {
                    PredictError::MissingData(format!("no discharge curve at cycle {cycle}"))
                })?;
            check_coverage(curve, cycle)?;
            Ok(curve.capacity_at(&grid))
        };
        let series = |f: fn(&CycleRecord) -> f64| -> Vec<f64> {
            by_cycle.iter().map(|r| r.map_or(f64::NAN, f)).collect()
        };
        Ok(Self {
            window,
            discharge_capacity_ah: series(|r| r.discharge_capacity_ah),
            q_reference: curve_at(REFERENCE_CYCLE)?,
            q_last: curve_at(window)?,
            charge_time_s: Some(series(|r| r.charge_time_s)),
            temperature_avg_c: Some(series(|r| r.temperature_avg_c)),
            internal_resistance_ohm: Some(series(|r| r.internal_resistance_ohm)),
        })
    }

    /// The features this data supports, by name.
    pub fn features(&self) -> FeatureSet {
        let mut set = FeatureSet::default();
        let dq: Vec<f64> = self
            .q_last
            .iter()
            .zip(&self.q_reference)
            .map(|(a, b)| a - b)
            .collect();
        let m = Moments::of(&dq);
        set.push("log_var_dq", m.variance.log10());
        set.push(
            "log_abs_min_dq",
            dq.iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .abs()
                .log10(),
        );
        set.push("log_abs_mean_dq", m.mean.abs().log10());
        set.push("log_abs_skew_dq", m.skewness.abs().log10());
        set.push("log_abs_kurt_dq", m.kurtosis.abs().log10());
        // The curve itself, coarsened: the mean of ΔQ over each of 20 equal voltage bands (for
        // models that learn its shape rather than summary statistics).
        let band = dq.len() / DQ_CURVE_FEATURES.len();
        for (i, name) in DQ_CURVE_FEATURES.iter().enumerate() {
            set.push(name, mean(&dq[i * band..(i + 1) * band]));
        }

        let w = self.window as usize;
        // Cyclers log the odd glitch (the Severson arrays hold a few 31 Ah cycles): fits and maxima
        // read the capacity through a 5-cycle running median.
        let qd = &median_filter(&self.discharge_capacity_ah, 5);
        let (slope, intercept) = line_fit(2..=w, qd);
        set.push("fade_slope", slope);
        set.push("fade_intercept", intercept);
        let (slope, intercept) = line_fit(w - 9..=w, qd);
        set.push("fade_slope_last10", slope);
        set.push("fade_intercept_last10", intercept);
        let q2 = self.discharge_capacity_ah[1];
        set.push("qd_cycle2", q2);
        set.push(
            "qd_max_minus_cycle2",
            qd[1..w].iter().copied().fold(f64::NEG_INFINITY, f64::max) - q2,
        );
        set.push("qd_last", qd[w - 1]);

        if let Some(t) = &self.charge_time_s {
            set.push("charge_time_first5", mean(&t[1..6]));
        }
        if let Some(temp) = &self.temperature_avg_c {
            set.push(
                "temperature_integral",
                temp[1..w].iter().filter(|v| v.is_finite()).sum(),
            );
        }
        if let Some(ir) = &self.internal_resistance_ohm {
            set.push(
                "ir_min",
                ir[1..w].iter().copied().fold(f64::INFINITY, f64::min),
            );
            set.push("ir_last_minus_cycle2", ir[w - 1] - ir[1]);
        }
        set
    }
}

/// Named feature values of one cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureSet {
    values: Vec<(&'static str, f64)>,
}

/// Every feature [`EarlyData::features`] computes besides the ΔQ(V) bands, by name.
pub const SUMMARY_FEATURES: [&str; 16] = [
    "log_var_dq",
    "log_abs_min_dq",
    "log_abs_mean_dq",
    "log_abs_skew_dq",
    "log_abs_kurt_dq",
    "fade_slope",
    "fade_intercept",
    "fade_slope_last10",
    "fade_intercept_last10",
    "qd_cycle2",
    "qd_max_minus_cycle2",
    "qd_last",
    "charge_time_first5",
    "temperature_integral",
    "ir_min",
    "ir_last_minus_cycle2",
];

/// What a cycler must record, beyond capacities, for `feature`: `discharge_curve` (the ΔQ(V)
/// features), `internal_resistance`, `temperature` or `charge_time`; `None` for the capacity
/// features, which every cycler records.
pub fn needs_recorded(feature: &str) -> Option<&'static str> {
    if feature.starts_with("ir_") {
        Some("internal_resistance")
    } else if feature.starts_with("temperature") {
        Some("temperature")
    } else if feature.starts_with("charge_time") {
        Some("charge_time")
    } else if feature.starts_with("fade_") || feature.starts_with("qd_") {
        None
    } else {
        Some("discharge_curve")
    }
}

impl FeatureSet {
    pub(crate) fn push(&mut self, name: &'static str, value: f64) {
        self.values.push((name, value));
    }

    /// Features read back by name (from a stored prediction's features, say); names labloop does
    /// not compute are left out.
    pub fn from_named<'a>(named: impl IntoIterator<Item = (&'a str, f64)>) -> Self {
        let mut set = Self::default();
        for (name, value) in named {
            let known = SUMMARY_FEATURES
                .iter()
                .chain(DQ_CURVE_FEATURES.iter())
                .find(|k| **k == name);
            if let Some(known) = known {
                set.push(known, value);
            }
        }
        set
    }

    /// The value of a feature, if this cell has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// All features, in computation order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.values.iter().copied()
    }
}

struct Moments {
    mean: f64,
    variance: f64,
    skewness: f64,
    kurtosis: f64,
}

impl Moments {
    /// Population moments; kurtosis is Pearson's (3 for a normal distribution), as MATLAB's
    /// `kurtosis` computes it and as Severson et al. used it (scipy's default is the excess, −3).
    fn of(x: &[f64]) -> Self {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let central = |k: i32| x.iter().map(|v| (v - mean).powi(k)).sum::<f64>() / n;
        let variance = central(2);
        Self {
            mean,
            variance,
            skewness: central(3) / variance.powf(1.5),
            kurtosis: central(4) / (variance * variance),
        }
    }
}

/// Running median over `width` neighbours, the window shrinking symmetrically at the ends so a
/// straight line passes unchanged; NaNs are left out of each window.
fn median_filter(x: &[f64], width: usize) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let half = (width / 2).min(i).min(x.len() - 1 - i);
            let mut window: Vec<f64> = x[i - half..=i + half]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if window.is_empty() || !x[i].is_finite() {
                return x[i];
            }
            window.sort_by(f64::total_cmp);
            window[window.len() / 2]
        })
        .collect()
}

fn mean(x: &[f64]) -> f64 {
    let finite: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
    finite.iter().sum::<f64>() / finite.len() as f64
}

/// Least-squares line through `(cycle, values[cycle - 1])` for the cycles given; NaNs are skipped.
fn line_fit(cycles: std::ops::RangeInclusive<usize>, values: &[f64]) -> (f64, f64) {
    let points: Vec<(f64, f64)> = cycles
        .filter_map(|c| {
            values
                .get(c - 1)
                .filter(|v| v.is_finite())
                .map(|v| (c as f64, *v))
        })
        .collect();
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use labloop_core::DischargeCurve;

    fn record(cycle: u32, capacity: f64, shift: f64) -> CycleRecord {
        let voltage_v: Vec<f64> = (0..50)
            .map(|i| 3.5 - shift - 1.4 * i as f64 / 49.0)
            .collect();
        let capacity_ah: Vec<f64> = (0..50).map(|i| capacity * i as f64 / 49.0).collect();
        CycleRecord {
            cycle,
            charge_capacity_ah: capacity,
            discharge_capacity_ah: capacity,
            internal_resistance_ohm: 0.016 + 1e-5 * cycle as f64,
            temperature_min_c: 30.0,
            temperature_avg_c: 33.0,
            temperature_max_c: 36.0,
            charge_time_s: 1600.0,
            voltage_max_v: None,
            voltage_min_v: None,
            current_max_a: None,
            discharge_curve: Some(DischargeCurve {
                voltage_v,
                capacity_ah,
            }),
        }
    }

    /// A curve that stops at 3.0 V would read as a cell that lost its low-voltage capacity: refused,
    /// naming the cycle and the window.
    #[test]
    fn a_curve_cut_short_is_refused_not_misread() {
        let mut records: Vec<CycleRecord> = (1..=30).map(|c| record(c, 1.07, 0.0)).collect();
        assert!(EarlyData::from_records(&records, 30).is_ok());
        let curve = records[9].discharge_curve.as_mut().unwrap();
        let keep = curve.voltage_v.iter().take_while(|v| **v >= 3.0).count();
        curve.voltage_v.truncate(keep);
        curve.capacity_ah.truncate(keep);
        let e = EarlyData::from_records(&records, 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("discharge curve of cycle 10 spans 3.50–3.01 V"),
            "{e}"
        );
        assert!(e.contains("reach 2.2 V or below"), "{e}");
    }

    #[test]
    fn grid_runs_from_3_6_to_2_0() {
        let g = voltage_grid();
        assert_eq!(g.len(), 1000);
        assert!((g[0] - 3.6).abs() < 1e-12 && (g[999] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn fading_cells_have_the_expected_features() {
        let records: Vec<CycleRecord> = (1..=100)
            .map(|c| record(c, 1.07 - 1e-4 * c as f64, 1e-4 * c as f64))
            .collect();
        let data = EarlyData::from_records(&records, 100).unwrap();
        let f = data.features();
        assert!((f.get("fade_slope").unwrap() + 1e-4).abs() < 1e-9);
        assert!((f.get("qd_cycle2").unwrap() - 1.0698).abs() < 1e-9);
        assert!((f.get("ir_last_minus_cycle2").unwrap() - 98e-5).abs() < 1e-9);
        assert!(f.get("log_var_dq").unwrap().is_finite());
        assert!(f.get("log_abs_min_dq").unwrap() < -1.0);
        // Faster fade, larger variance of ΔQ.
        let faster: Vec<CycleRecord> = (1..=100)
            .map(|c| record(c, 1.07 - 5e-4 * c as f64, 5e-4 * c as f64))
            .collect();
        let g = EarlyData::from_records(&faster, 100).unwrap().features();
        assert!(g.get("log_var_dq").unwrap() > f.get("log_var_dq").unwrap() + 1.0);
    }

    #[test]
    fn every_computed_feature_reads_back_by_name() {
        let records: Vec<CycleRecord> = (1..=100)
            .map(|c| record(c, 1.07 - 1e-4 * c as f64, 1e-4 * c as f64))
            .collect();
        let f = EarlyData::from_records(&records, 100).unwrap().features();
        let back = FeatureSet::from_named(f.iter().chain([("nonsense", 1.0)]));
        assert_eq!(back, f);
    }

    #[test]
    fn each_feature_names_what_it_is_computed_from() {
        assert_eq!(needs_recorded("log_var_dq"), Some("discharge_curve"));
        assert_eq!(needs_recorded("dq_band_07"), Some("discharge_curve"));
        assert_eq!(needs_recorded("qd_cycle2"), None);
        assert_eq!(needs_recorded("fade_slope"), None);
        assert_eq!(needs_recorded("ir_min"), Some("internal_resistance"));
        assert_eq!(needs_recorded("temperature_integral"), Some("temperature"));
        assert_eq!(needs_recorded("charge_time_first5"), Some("charge_time"));
    }

    #[test]
    fn missing_cycles_are_named() {
        let records: Vec<CycleRecord> = (1..=100)
            .filter(|&c| c != 57)
            .map(|c| record(c, 1.0, 0.0))
            .collect();
        let err = EarlyData::from_records(&records, 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not enough early data: no record of cycle 57"
        );
    }

    #[test]
    fn glitches_do_not_move_the_fade_features() {
        let mut records: Vec<CycleRecord> = (1..=100)
            .map(|c| record(c, 1.07 - 1e-4 * c as f64, 0.0))
            .collect();
        let clean = EarlyData::from_records(&records, 100).unwrap().features();
        records[11].discharge_capacity_ah = 31.0;
        let glitched = EarlyData::from_records(&records, 100).unwrap().features();
        // The glitch is replaced by a neighbour's value: the features move by no more than that.
        for name in ["fade_slope", "qd_max_minus_cycle2", "fade_intercept"] {
            assert!(
                (clean.get(name).unwrap() - glitched.get(name).unwrap()).abs() < 2e-5,
                "{name}"
            );
        }
    }

    #[test]
    fn moments_match_matlab() {
        let m = Moments::of(&[1.0, 2.0, 3.0, 10.0]);
        assert!((m.variance - 12.5).abs() < 1e-12);
        assert!((m.skewness - 45.0 / 12.5f64.powf(1.5)).abs() < 1e-12);
        // MATLAB kurtosis([1 2 3 10]) = 2.2304 (scipy.stats.kurtosis(..., fisher=False)).
        assert!((m.kurtosis - 2.2304).abs() < 1e-4);
    }
}
