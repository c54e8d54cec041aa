//! Safety interlocks: whether a cycle record lies beyond its instrument's limits.

use labloop_core::CycleRecord;
use labloop_workflow::{InstrumentSpec, RecordField, SafetyLimits};

/// An instrument's limits, and whether its records carry the cell's temperature (a cycler
/// without a temperature probe, declared so by the workflow's `records`, cannot have its
/// temperature limit checked here: its own protection holds it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Interlock {
    /// The workflow's limits.
    pub limits: SafetyLimits,
    /// Whether a record without a temperature is a fault (true unless the workflow says the
    /// instrument does not record temperature).
    pub measures_temperature: bool,
}

impl Interlock {
    /// The interlock of a workflow's instrument.
    pub fn of(instrument: &InstrumentSpec) -> Self {
        Self {
            limits: instrument.safety,
            measures_temperature: instrument
                .records
                .as_ref()
                .is_none_or(|r| r.contains(&RecordField::Temperature)),
        }
    }

    /// Why `record` breaks the limits, if it does ([`violation`]); a temperature that is not a
    /// number is a fault only where the instrument measures temperature.
    pub fn violation(&self, instrument: &str, record: &CycleRecord) -> Option<String> {
        if !self.measures_temperature && record.temperature_max_c.is_nan() {
            let unmeasured = CycleRecord {
                temperature_max_c: f64::NEG_INFINITY,
                ..record.clone()
            };
            return violation(&self.limits, instrument, &unmeasured);
        }
        if self.measures_temperature && record.temperature_max_c.is_nan() {
            return Some(format!(
                "safety: cycle {} reported no temperature; if {instrument} does not measure the cell's temperature, say so (`records:` without `temperature`) and let its own protection hold the limit",
                record.cycle
            ));
        }
        violation(&self.limits, instrument, record)
    }
}

/// Why `record` (of cycle `record.cycle` on `instrument`) breaks `limits`, if it does: temperature,
/// highest and lowest voltage, largest current. Readings the cycler does not report are not checked.
pub fn violation(limits: &SafetyLimits, instrument: &str, record: &CycleRecord) -> Option<String> {
    let cycle = record.cycle;
    let above = |what: &str, value: f64, unit: &str, limit: f64| {
        format!(
            "safety: cycle {cycle} reached {what} {value:.3} {unit}, above {instrument}'s limit of {limit} {unit}"
        )
    };
    if record.temperature_max_c > limits.max_temperature_c {
        return Some(above(
            "a temperature of",
            record.temperature_max_c,
            "°C",
            limits.max_temperature_c,
        ));
    }
    if let Some(v) = record.voltage_max_v
        && v > limits.max_voltage_v
    {
        return Some(above("a voltage of", v, "V", limits.max_voltage_v));
    }
    if let (Some(v), Some(min)) = (record.voltage_min_v, limits.min_voltage_v)
        && v < min
    {
        return Some(format!(
            "safety: cycle {cycle} fell to a voltage of {v:.3} V, below {instrument}'s limit of {min} V"
        ));
    }
    if let (Some(i), Some(max)) = (record.current_max_a, limits.max_current_a)
        && i.abs() > max
    {
        return Some(above("a current of", i.abs(), "A", max));
    }
    // A reading that is not a number cannot be shown to be safe.
    let readings = [
        Some(record.temperature_max_c),
        record.voltage_max_v,
        record.voltage_min_v,
        record.current_max_a,
    ];
    if readings.iter().flatten().any(|x| x.is_nan()) {
        return Some(format!(
            "safety: cycle {cycle} reported a reading that is not a number"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CycleRecord {
        CycleRecord {
            cycle: 41,
            charge_capacity_ah: 1.07,
            discharge_capacity_ah: 1.069,
            internal_resistance_ohm: 0.0165,
            temperature_min_c: 30.0,
            temperature_avg_c: 33.0,
            temperature_max_c: 36.0,
            charge_time_s: 600.0,
            voltage_max_v: Some(3.6),
            voltage_min_v: Some(2.0),
            current_max_a: Some(6.6),
            discharge_curve: None,
        }
    }

    #[test]
    fn each_limit_trips_on_its_own_reading() {
        let limits = SafetyLimits {
            min_voltage_v: Some(1.9),
            max_current_a: Some(8.0),
            ..SafetyLimits::default()
        };
        assert_eq!(violation(&limits, "c1", &record()), None);
        type Spoil = fn(&mut CycleRecord);
        let cases: [(Spoil, &str); 5] = [
            (
                |r| r.temperature_max_c = 81.25,
                "81.250 °C, above c1's limit of 75 °C",
            ),
            (
                |r| r.voltage_max_v = Some(4.6),
                "4.600 V, above c1's limit of 4.5 V",
            ),
            (
                |r| r.voltage_min_v = Some(1.5),
                "1.500 V, below c1's limit of 1.9 V",
            ),
            (
                |r| r.current_max_a = Some(-9.0),
                "9.000 A, above c1's limit of 8 A",
            ),
            (|r| r.voltage_max_v = Some(f64::NAN), "not a number"),
        ];
        for (spoil, expected) in cases {
            let mut r = record();
            spoil(&mut r);
            let why = violation(&limits, "c1", &r).expect("a violation");
            assert!(why.starts_with("safety: cycle 41 "), "{why}");
            assert!(why.contains(expected), "{why}");
        }
        // Unset limits and unreported readings are not checked.
        let mut r = record();
        r.current_max_a = Some(100.0);
        r.voltage_min_v = Some(0.1);
        assert_eq!(violation(&SafetyLimits::default(), "c1", &r), None);
        r.voltage_max_v = None;
        assert_eq!(violation(&SafetyLimits::default(), "c1", &r), None);
    }

    #[test]
    fn a_missing_temperature_is_a_fault_only_where_one_is_measured() {
        let mut r = record();
        r.temperature_max_c = f64::NAN;
        let probed = Interlock {
            measures_temperature: true,
            ..Interlock::default()
        };
        let why = probed.violation("c1", &r).expect("a fault");
        assert!(why.contains("reported no temperature"), "{why}");
        let unprobed = Interlock::default();
        assert_eq!(unprobed.violation("c1", &r), None);
        // The other limits still hold without a temperature.
        r.voltage_max_v = Some(4.6);
        assert!(unprobed.violation("c1", &r).unwrap().contains("4.600 V"));
    }
}
