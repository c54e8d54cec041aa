//! What a cycler reports for each cycle of a cell.

use serde::{Deserialize, Serialize};

/// One charge/discharge cycle of one cell, as the cycler measured it (SI units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// Cycle index, counted from 1 (`41.0` reads as 41).
    #[serde(deserialize_with = "crate::integral::u32_lenient")]
    pub cycle: u32,
    /// Charge passed in during charging (Ah).
    pub charge_capacity_ah: f64,
    /// Charge delivered during discharge (Ah).
    pub discharge_capacity_ah: f64,
    /// DC internal resistance measured during the cycle (Ω).
    pub internal_resistance_ohm: f64,
    /// Lowest cell temperature during the cycle (°C).
    pub temperature_min_c: f64,
    /// Time-averaged cell temperature (°C).
    pub temperature_avg_c: f64,
    /// Highest cell temperature (°C).
    pub temperature_max_c: f64,
    /// Time spent charging (s).
    pub charge_time_s: f64,
    /// Highest terminal voltage during the cycle (V), when the cycler reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_max_v: Option<f64>,
    /// Lowest terminal voltage during the cycle (V), when the cycler reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_min_v: Option<f64>,
    /// Largest current magnitude during the cycle, charge or discharge (A), when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_max_a: Option<f64>,
    /// The discharge voltage–capacity curve, when the cycler records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discharge_curve: Option<DischargeCurve>,
}

/// Samples of a discharge: voltage falls as discharged capacity rises.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DischargeCurve {
    /// Terminal voltage at each sample (V).
    pub voltage_v: Vec<f64>,
    /// Capacity discharged so far at each sample (Ah).
    pub capacity_ah: Vec<f64>,
}

/// How far a discharge curve's voltage may rise above its running minimum (measurement noise)
/// before the curve is not a discharge (V).
pub const CURVE_RISE_TOLERANCE_V: f64 = 0.05;

impl DischargeCurve {
    /// Whether this is the shape of a discharge, and if not why: as many voltages as capacities
    /// (at least two), all finite, capacity never falling, voltage falling from first to last and
    /// never rising more than [`CURVE_RISE_TOLERANCE_V`] above its running minimum.
    pub fn check_shape(&self) -> Result<(), String> {
        let (nv, nq) = (self.voltage_v.len(), self.capacity_ah.len());
        if nv != nq {
            return Err(format!(
                "discharge_curve has {nv} voltages but {nq} capacities (they pair up one to one)"
            ));
        }
        if nv < 2 {
            return Err(format!("discharge_curve has {nv} samples (at least 2)"));
        }
        if let Some(i) =
            (0..nv).find(|&i| !self.voltage_v[i].is_finite() || !self.capacity_ah[i].is_finite())
        {
            return Err(format!("discharge_curve sample {i} is not a finite number"));
        }
        if let Some(i) = (1..nq).find(|&i| self.capacity_ah[i] < self.capacity_ah[i - 1]) {
            return Err(format!(
                "discharge_curve.capacity_ah falls at sample {i} ({} → {} Ah): it is the capacity discharged so far",
                self.capacity_ah[i - 1],
                self.capacity_ah[i]
            ));
        }
        let (first, last) = (self.voltage_v[0], self.voltage_v[nv - 1]);
        if last >= first {
            return Err(format!(
                "discharge_curve.voltage_v rises from {first} V to {last} V: a discharge's voltage falls"
            ));
        }
        let mut floor = f64::INFINITY;
        for (i, &v) in self.voltage_v.iter().enumerate() {
            if v > floor + CURVE_RISE_TOLERANCE_V {
                return Err(format!(
                    "discharge_curve.voltage_v rises to {v} V at sample {i}, {:.3} V above the {floor} V before it: a discharge's voltage falls",
                    v - floor
                ));
            }
            floor = floor.min(v);
        }
        Ok(())
    }

    /// Discharged capacity Q(V) at each voltage of `grid_v` (which must fall, like `3.6 → 2.0`), by
    /// linear interpolation — the `Qdlin` of Severson et al. Measurement noise can make the voltage
    /// rise briefly; the curve is read through its running minimum so Q(V) stays single-valued.
    /// Voltages above the first sample map to the first capacity, below the last to the last.
    pub fn capacity_at(&self, grid_v: &[f64]) -> Vec<f64> {
        let n = self.voltage_v.len().min(self.capacity_ah.len());
        if n == 0 {
            return vec![f64::NAN; grid_v.len()];
        }
        let mut v_mono = Vec::with_capacity(n);
        let mut floor = f64::INFINITY;
        for &v in &self.voltage_v[..n] {
            floor = floor.min(v);
            v_mono.push(floor);
        }
        let q = &self.capacity_ah[..n];
        let mut out = Vec::with_capacity(grid_v.len());
        let mut i = 0;
        for &v in grid_v {
            while i + 1 < n && v_mono[i + 1] > v {
                i += 1;
            }
            let value = if v >= v_mono[0] {
                q[0]
            } else if i + 1 >= n {
                q[n - 1]
            } else {
                let (v0, v1) = (v_mono[i], v_mono[i + 1]);
                let t = if v0 > v1 { (v0 - v) / (v0 - v1) } else { 1.0 };
                q[i] + t * (q[i + 1] - q[i])
            };
            out.push(value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_a_falling_curve() {
        let curve = DischargeCurve {
            voltage_v: vec![3.5, 3.3, 3.0, 2.0],
            capacity_ah: vec![0.0, 0.5, 1.0, 1.1],
        };
        let q = curve.capacity_at(&[3.6, 3.4, 3.3, 2.5, 1.9]);
        let expected = [0.0, 0.25, 0.5, 1.05, 1.1];
        for (a, b) in q.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn noise_bumps_do_not_fold_the_curve() {
        let curve = DischargeCurve {
            voltage_v: vec![3.4, 3.2, 3.25, 3.0],
            capacity_ah: vec![0.0, 0.4, 0.5, 1.0],
        };
        let q = curve.capacity_at(&[3.3, 3.1]);
        assert!((q[0] - 0.2).abs() < 1e-12);
        assert!(q[1] > 0.4 && q[1] < 1.0);
    }

    #[test]
    fn shapes_that_are_not_a_discharge_are_named() {
        let good = DischargeCurve {
            voltage_v: vec![3.5, 3.3, 3.31, 2.0],
            capacity_ah: vec![0.0, 0.5, 0.6, 1.1],
        };
        assert_eq!(good.check_shape(), Ok(()));
        let cases = [
            (vec![3.5, 2.0], vec![0.0], "1 capacities"),
            (vec![2.0, 3.5], vec![0.0, 1.0], "rises from 2 V to 3.5 V"),
            (
                vec![3.5, 3.0, 3.2, 2.0],
                vec![0.0, 0.4, 0.5, 1.0],
                "at sample 2",
            ),
            (
                vec![3.5, 3.0, 2.0],
                vec![0.0, 0.5, 0.4],
                "capacity_ah falls at sample 2",
            ),
            (
                vec![3.5, f64::NAN],
                vec![0.0, 0.5],
                "sample 1 is not a finite",
            ),
            (vec![3.5], vec![0.0], "1 samples"),
        ];
        for (voltage_v, capacity_ah, expected) in cases {
            let e = DischargeCurve {
                voltage_v,
                capacity_ah,
            }
            .check_shape()
            .unwrap_err();
            assert!(e.contains(expected), "{e} lacks {expected}");
        }
    }

    #[test]
    fn empty_curve_gives_nan() {
        assert!(DischargeCurve::default().capacity_at(&[3.0])[0].is_nan());
    }
}

/// A cycle record with its channel's sequence number, which counts from 1 without gaps for each
/// test so the receiver can detect losses and duplicates and ask for a replay. The one shape of a
/// record on the wire, in the drivers, the engine and the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Per-channel sequence number, starting at 1 for each test.
    #[serde(deserialize_with = "crate::integral::u64_lenient")]
    pub seq: u64,
    /// The measurement.
    pub record: CycleRecord,
}
