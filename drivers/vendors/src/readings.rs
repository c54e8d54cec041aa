//! A channel's readings turned into cycle records as they arrive: the live counterpart of reading
//! a vendor's file, through the same time-series core ([`labloop_import::series`]), so a cycle
//! recorded live and the same cycle imported from the cycler's own file agree.
//!
//! Cycles follow the instrument's own cycle index: when a reading carries a new index, the cycle
//! before it is complete and becomes a record. The last reading of each cycle is kept as the next
//! one's start, so the interval across the boundary is counted once (by the series core's rule,
//! it belongs to the later cycle). Records are numbered 1, 2, 3, ... in the order their cycles
//! complete; `cycle` counts on from the cells' earlier cycles ([`CyclingTest::cycles_before`]).

use labloop_drivers::{CyclingTest, Telemetry};
use labloop_import::series::{self, Counter, Sample};
use serde::{Deserialize, Serialize};

/// How a reading counts charge or energy, as the instrument reports it (see
/// [`labloop_import::series::Counter`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    /// No counter: the current (or power) is integrated.
    Absent,
    /// One unsigned counter, its direction the current's sign (Maccor, usually reset each step).
    Unsigned(f64),
    /// Separate charge and discharge counters (Arbin).
    Separate {
        /// Charge (or energy) in.
        charge: f64,
        /// Charge (or energy) out.
        discharge: f64,
    },
}

impl Count {
    fn counter(self) -> Counter {
        match self {
            Self::Absent => Counter::Absent,
            Self::Unsigned(v) => Counter::Unsigned(v),
            Self::Separate { charge, discharge } => Counter::Separate { charge, discharge },
        }
    }
}

/// One reading of a running channel, in labloop's conventions: seconds of test time, volts,
/// amperes positive while charging, ampere-hours, watt-hours, °C.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The instrument's own number of its latest data record (Maccor `LastRecNum`); 0 where it
    /// has none.
    pub index: u64,
    /// Test time (s).
    pub time_s: f64,
    /// Terminal voltage (V).
    pub voltage_v: f64,
    /// Current (A), positive while charging.
    pub current_a: f64,
    /// The charge counter.
    pub capacity: Count,
    /// The energy counter.
    pub energy: Count,
    /// Cell temperature (°C), where an auxiliary channel measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    /// DC internal resistance (Ω), where the cycler measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_resistance_ohm: Option<f64>,
    /// The instrument's cycle index.
    pub cycle: i64,
    /// The procedure's step (0 where the instrument does not say).
    #[serde(default)]
    pub step: i64,
    /// Time since the step began (s), where the instrument says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_time_s: Option<f64>,
}

impl Reading {
    /// Where a step ended between `last` and `self` (a new step or cycle, and the instrument's
    /// step time dates its start after `last`): the last step's end, extrapolated at its current
    /// (but never past what a counter that runs on reads at `self`), and the new step's start
    /// with per-step counters at zero. A poll every second misses up to a second of each step's
    /// charge otherwise (per-step counters restart at each step), and a discharge's last second
    /// would count in the next cycle.
    fn step_edges(&self, last: &Reading) -> Option<[Reading; 2]> {
        let step_time = self.step_time_s.filter(|t| t.is_finite() && *t >= 0.0)?;
        let began = self.time_s - step_time;
        let same_step = self.step == last.step && self.cycle == last.cycle;
        if same_step || !(began > last.time_s && began <= self.time_s) {
            return None;
        }
        let hours = (began - last.time_s) / 3600.0;
        let current = last.current_a;
        let power = current * last.voltage_v;
        // A counter that runs on from `last` to `self` bounds the extrapolation; one that was
        // reset does not.
        let bounded = |from: f64, extra: f64, later: f64| {
            if later >= from {
                (from + extra).min(later)
            } else {
                from + extra
            }
        };
        let run_on = |count: Count, later: Count, rate: f64| match (count, later) {
            (Count::Unsigned(v), _) => Count::Unsigned(v + rate.abs() * hours),
            (
                Count::Separate { charge, discharge },
                Count::Separate {
                    charge: later_charge,
                    discharge: later_discharge,
                },
            ) => Count::Separate {
                charge: bounded(charge, rate.max(0.0) * hours, later_charge),
                discharge: bounded(discharge, (-rate).max(0.0) * hours, later_discharge),
            },
            (Count::Separate { charge, discharge }, _) => Count::Separate {
                charge: charge + rate.max(0.0) * hours,
                discharge: discharge + (-rate).max(0.0) * hours,
            },
            (Count::Absent, _) => Count::Absent,
        };
        let zero = |count: Count| match count {
            Count::Absent => Count::Absent,
            Count::Unsigned(_) => Count::Unsigned(0.0),
            separate => separate,
        };
        let end = Reading {
            index: 0,
            time_s: began,
            capacity: run_on(last.capacity, self.capacity, current),
            energy: run_on(last.energy, self.energy, power),
            step_time_s: None,
            ..last.clone()
        };
        let start = Reading {
            index: 0,
            time_s: began,
            capacity: zero(self.capacity),
            energy: zero(self.energy),
            step_time_s: Some(0.0),
            ..self.clone()
        };
        Some([end, start])
    }

    fn sample(&self) -> Sample {
        Sample {
            line: self.index,
            time_s: self.time_s,
            voltage_v: self.voltage_v,
            current_a: self.current_a,
            capacity: self.capacity.counter(),
            energy: self.energy.counter(),
            temperature_c: self.temperature_c,
            internal_resistance_ohm: self.internal_resistance_ohm,
            cycle: Some(self.cycle),
        }
    }

    /// Whether the reading's numbers are all finite (a reading that is not is a protocol error).
    pub fn is_finite(&self) -> bool {
        let count = |c: Count| match c {
            Count::Absent => true,
            Count::Unsigned(v) => v.is_finite(),
            Count::Separate { charge, discharge } => charge.is_finite() && discharge.is_finite(),
        };
        self.time_s.is_finite()
            && self.voltage_v.is_finite()
            && self.current_a.is_finite()
            && count(self.capacity)
            && count(self.energy)
            && self.temperature_c.is_none_or(f64::is_finite)
    }
}

/// A cycle the log completed: its record, and the instrument's index of the cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    /// The instrument's cycle index.
    pub source_cycle: i64,
    /// The record, with its sequence number.
    pub telemetry: Telemetry,
}

/// What [`ChannelLog::push`] did with a reading.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pushed {
    /// Readings added to the cycle in progress (to be journaled as its readings).
    pub added: Vec<Reading>,
    /// The cycle the reading completed.
    pub completed: Option<Completed>,
}

/// One test's readings and the records made of them so far.
#[derive(Clone, Debug)]
pub struct ChannelLog {
    test: CyclingTest,
    /// The last reading of the previous cycle (the start of the current one's first interval).
    boundary: Option<Reading>,
    /// Readings of the cycle in progress.
    current: Vec<Reading>,
    records: Vec<Telemetry>,
    /// The instrument's index of the last cycle recorded.
    last_recorded: Option<i64>,
}

impl ChannelLog {
    /// A test with nothing recorded yet.
    pub fn new(test: CyclingTest) -> Self {
        Self {
            test,
            boundary: None,
            current: Vec::new(),
            records: Vec::new(),
            last_recorded: None,
        }
    }

    /// The test.
    pub fn test(&self) -> &CyclingTest {
        &self.test
    }

    /// The records so far, in order (`seq` 1, 2, ...).
    pub fn records(&self) -> &[Telemetry] {
        &self.records
    }

    /// The last reading of the cycle recorded last (where the cycle in progress started).
    pub fn boundary(&self) -> Option<&Reading> {
        self.boundary.as_ref()
    }

    /// Readings of the cycle in progress.
    pub fn pending(&self) -> &[Reading] {
        &self.current
    }

    /// The instrument's index of the cycle in progress, else of the last cycle recorded.
    pub fn last_cycle(&self) -> Option<i64> {
        self.current.first().map(|r| r.cycle).or(self.last_recorded)
    }

    /// Numbers a reading from an instrument that does not count cycles, by the series core's
    /// rule live: the cycle in progress, or the next one at the first charging reading after a
    /// discharge (a current beyond a thousandth of the largest seen counts as flowing).
    pub fn number(&self, reading: &mut Reading) {
        let largest = self
            .boundary
            .iter()
            .chain(&self.current)
            .chain([&*reading])
            .map(|r| r.current_a.abs())
            .fold(0.0, f64::max);
        let threshold = largest * series::ACTIVE_CURRENT_FRACTION;
        let in_progress = match (self.current.first(), self.last_recorded) {
            (Some(first), _) => first.cycle,
            (None, Some(recorded)) => recorded + 1,
            (None, None) => 0,
        };
        let last_flow = self
            .current
            .iter()
            .rev()
            .chain(self.boundary.iter())
            .map(|r| r.current_a)
            .find(|i| i.abs() > threshold);
        let after_discharge = last_flow.is_some_and(|i| i < 0.0);
        reading.cycle = if reading.current_a > threshold && after_discharge {
            in_progress + 1
        } else {
            in_progress
        };
    }

    /// Puts back a record the journal kept (on reopening).
    pub fn restore_record(&mut self, source_cycle: i64, telemetry: Telemetry) {
        if telemetry.seq == self.records.len() as u64 + 1 {
            self.records.push(telemetry);
            self.last_recorded = Some(source_cycle);
        }
    }

    /// Puts back a reading the journal kept; readings of cycles already recorded are dropped
    /// (the journal may hold a cycle's readings and its record both, after a crash between the
    /// two writes).
    pub fn restore_reading(&mut self, reading: Reading) {
        if self.last_recorded.is_some_and(|c| reading.cycle <= c) {
            self.boundary = Some(reading);
            return;
        }
        self.current.push(reading);
    }

    /// Adds a reading. Returns the readings the cycle in progress holds anew (the reading, after
    /// the step edges it implies) and the cycle it completed, if it starts a new one; nothing
    /// for a reading that is not new (the same data record read twice, or an older one).
    pub fn push(&mut self, reading: Reading) -> Pushed {
        let mut pushed = Pushed::default();
        let Some(last) = self.current.last().or(self.boundary.as_ref()).cloned() else {
            pushed.completed = self.push_one(reading.clone());
            pushed.added.push(reading);
            return pushed;
        };
        let same = reading.index != 0 && reading.index == last.index;
        if same || reading.time_s <= last.time_s || reading.cycle < last.cycle {
            return pushed;
        }
        let edges = reading.step_edges(&last).into_iter().flatten();
        for r in edges.chain([reading]) {
            if let Some(c) = self.push_one(r.clone()) {
                pushed.completed = Some(c);
                pushed.added.clear();
            }
            pushed.added.push(r);
        }
        pushed
    }

    fn push_one(&mut self, reading: Reading) -> Option<Completed> {
        let completed = match self.current.first() {
            Some(first) if reading.cycle != first.cycle => self.complete(),
            _ => None,
        };
        self.current.push(reading);
        completed
    }

    /// Ends the cycle in progress because the test ended: it becomes a record if it holds a
    /// discharge (a cycle cut short during its charge is not a cycle).
    pub fn close(&mut self) -> Option<Completed> {
        let completed = self.complete()?;
        if completed.telemetry.record.discharge_capacity_ah > 0.0 {
            Some(completed)
        } else {
            self.records.pop();
            None
        }
    }

    /// The cycle in progress as a record (it is then the boundary's side of the next cycle).
    fn complete(&mut self) -> Option<Completed> {
        let first = self.current.first()?;
        let source_cycle = first.cycle;
        if self.last_recorded.is_some_and(|c| source_cycle <= c) {
            self.boundary = self.current.pop();
            self.current.clear();
            return None;
        }
        let samples: Vec<Sample> = self
            .boundary
            .iter()
            .chain(&self.current)
            .map(Reading::sample)
            .collect();
        let summary = series::cycles(&samples).pop()?;
        let seq = self.records.len() as u64 + 1;
        let mut record = summary.to_record();
        record.cycle = self.test.cycles_before + seq as u32;
        let telemetry = Telemetry { seq, record };
        self.records.push(telemetry.clone());
        self.last_recorded = Some(source_cycle);
        self.boundary = self.current.pop();
        self.current.clear();
        Some(Completed {
            source_cycle,
            telemetry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labloop_core::{CcCvFinish, ChargeProtocol};

    fn test() -> CyclingTest {
        CyclingTest {
            key: "e1/cycle/1".into(),
            cell_id: "c1".into(),
            cycles_before: 3,
            formulation: Vec::new(),
            parameters: Vec::new(),
            protocol: ChargeProtocol::equal_steps(
                &[1.0],
                0.8,
                CcCvFinish {
                    c_rate: 1.0,
                    cv_voltage_v: 3.6,
                },
            ),
            discharge_c_rate: 1.0,
            cycles: 10,
        }
    }

    /// Readings every 60 s of a 1 A cell: one hour's charge then one hour's discharge per cycle,
    /// the counter reset at each step as a Maccor does.
    fn readings(cycles: i64) -> Vec<Reading> {
        let mut out = Vec::new();
        let mut index = 0;
        for cycle in 0..cycles {
            for (sign, step) in [(1.0, 0), (-1.0, 1)] {
                for k in 0..=60 {
                    index += 1;
                    let t = (cycle * 2 + step) as f64 * 3600.0 + f64::from(k) * 60.0;
                    out.push(Reading {
                        index,
                        time_s: t,
                        voltage_v: 3.0 + sign * 0.001 * f64::from(k),
                        current_a: sign,
                        capacity: Count::Unsigned(f64::from(k) / 60.0),
                        energy: Count::Absent,
                        temperature_c: None,
                        internal_resistance_ohm: None,
                        cycle,
                        step: cycle * 2 + step,
                        step_time_s: Some(f64::from(k) * 60.0),
                    });
                }
            }
        }
        out
    }

    #[test]
    fn cycles_become_records_numbered_after_the_earlier_cycles() {
        let mut log = ChannelLog::new(test());
        let mut done = Vec::new();
        for r in readings(3) {
            done.extend(log.push(r.clone()).completed);
            // A reading read twice adds nothing.
            assert_eq!(log.push(r), Pushed::default());
        }
        done.extend(log.close());
        assert_eq!(done.len(), 3);
        for (i, c) in done.iter().enumerate() {
            assert_eq!(c.source_cycle, i as i64);
            assert_eq!(c.telemetry.seq, i as u64 + 1);
            assert_eq!(c.telemetry.record.cycle, 4 + i as u32);
            assert!((c.telemetry.record.charge_capacity_ah - 1.0).abs() < 1e-9);
            assert!((c.telemetry.record.discharge_capacity_ah - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn a_restored_log_goes_on_without_repeating_a_cycle() {
        let all = readings(3);
        let mut first = ChannelLog::new(test());
        let mut kept = Vec::new();
        let mut pending = Vec::new();
        for r in &all[..150] {
            let pushed = first.push(r.clone());
            if let Some(c) = pushed.completed {
                kept.push(c);
                pending.clear();
            }
            pending.extend(pushed.added);
        }
        assert_eq!(kept.len(), 1);
        // Reopened from what a journal holds: the records, and the readings since (including,
        // as after a crash between the two writes, a reading of the recorded cycle).
        let mut second = ChannelLog::new(test());
        for c in &kept {
            second.restore_record(c.source_cycle, c.telemetry.clone());
        }
        second.restore_reading(all[121].clone());
        for r in pending {
            second.restore_reading(r);
        }
        let mut later: Vec<Completed> = all[150..]
            .iter()
            .filter_map(|r| second.push(r.clone()).completed)
            .collect();
        later.extend(second.close());
        assert_eq!(
            later.iter().map(|c| c.telemetry.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!((later[0].telemetry.record.discharge_capacity_ah - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_step_end_between_two_polls_is_counted_at_the_step_current() {
        // Every 7th reading only: the steps' ends fall between polls.
        let mut log = ChannelLog::new(test());
        let mut done = Vec::new();
        for r in readings(3).into_iter().step_by(7) {
            done.extend(log.push(r).completed);
        }
        done.extend(log.close());
        // The last cycle ends between two polls as well: it is closed at the last reading.
        for c in &done[..2] {
            assert!(
                (c.telemetry.record.charge_capacity_ah - 1.0).abs() < 1e-9,
                "{c:?}"
            );
            assert!(
                (c.telemetry.record.discharge_capacity_ah - 1.0).abs() < 1e-9,
                "{c:?}"
            );
        }
    }

    #[test]
    fn an_instrument_without_a_cycle_count_has_its_cycles_numbered() {
        let mut log = ChannelLog::new(test());
        let mut done = Vec::new();
        for mut r in readings(3) {
            r.cycle = 0;
            r.capacity = Count::Absent;
            log.number(&mut r);
            done.extend(log.push(r).completed);
        }
        done.extend(log.close());
        assert_eq!(
            done.iter().map(|c| c.source_cycle).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        for c in &done {
            assert!(
                (c.telemetry.record.discharge_capacity_ah - 1.0).abs() < 0.02,
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_test_cut_short_in_its_charge_leaves_no_record() {
        let mut log = ChannelLog::new(test());
        for r in readings(2).into_iter().take(122 + 30) {
            log.push(r);
        }
        assert_eq!(log.records().len(), 1);
        assert!(log.close().is_none());
        assert_eq!(log.records().len(), 1);
    }
}
