//! A cell's observed cycle life from its per-cycle discharge capacities: the first cycle whose
//! capacity falls below the end-of-life threshold (Severson et al.: 80 % of the nominal 1.1 Ah,
//! 0.88 Ah). For cells of other types the threshold is a fraction of the cell's own initial
//! capacity, the largest discharge capacity among its first [`INITIAL_CYCLES`] cycles (formation
//! and check-up cycles start lower, so the largest, not the first).

use labloop_core::CycleRecord;

/// Cycles among which the initial capacity is looked for.
pub const INITIAL_CYCLES: u32 = 10;

/// What ends a cell's life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EndOfLife {
    /// Below this discharge capacity (Ah).
    Capacity(f64),
    /// Below this fraction of the cell's initial capacity.
    Fraction(f64),
}

impl EndOfLife {
    /// Parses what people write: a fraction of the initial capacity (`0.8`) or a capacity in Ah
    /// (`0.88Ah`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let value = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0 && v.is_finite())
        };
        match text.strip_suffix("Ah") {
            Some(ah) => value(ah).map(Self::Capacity),
            None => value(text).map(Self::Fraction),
        }
        .ok_or_else(|| {
            format!(
                "`{text}`: an end of life is a fraction of the initial capacity (0.8) or a \
                 capacity in Ah (0.88Ah)"
            )
        })
    }
}

/// The cycle life a cell's records show, or `None` while it has not reached end of life (a
/// censored cell: its life is at least its last cycle). A single cycle below the threshold
/// between two above it (a noisy reading, a check-up at another rate) does not end it: the
/// capacity must stay below for the next cycle too, where there is one.
pub fn observed_life(records: &[CycleRecord], end: EndOfLife) -> Option<u32> {
    let mut by_cycle: Vec<&CycleRecord> = records
        .iter()
        .filter(|r| r.discharge_capacity_ah.is_finite() && r.discharge_capacity_ah > 0.0)
        .collect();
    by_cycle.sort_by_key(|r| r.cycle);
    let threshold = match end {
        EndOfLife::Capacity(ah) => ah,
        EndOfLife::Fraction(f) => {
            let initial = by_cycle
                .iter()
                .filter(|r| r.cycle <= INITIAL_CYCLES)
                .map(|r| r.discharge_capacity_ah)
                .fold(f64::NAN, f64::max);
            if !initial.is_finite() {
                return None;
            }
            f * initial
        }
    };
    (0..by_cycle.len()).find_map(|i| {
        let below = |k: usize| by_cycle[k].discharge_capacity_ah < threshold;
        (below(i) && (i + 1 == by_cycle.len() || below(i + 1))).then_some(by_cycle[i].cycle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_of_life_is_a_fraction_or_a_capacity() {
        assert_eq!(EndOfLife::parse("0.8"), Ok(EndOfLife::Fraction(0.8)));
        assert_eq!(EndOfLife::parse(" 0.88Ah"), Ok(EndOfLife::Capacity(0.88)));
        for bad in ["", "Ah", "-0.8", "0", "eighty", "NaN"] {
            assert!(EndOfLife::parse(bad).is_err(), "{bad}");
        }
    }

    fn fade(capacities: &[f64]) -> Vec<CycleRecord> {
        capacities
            .iter()
            .enumerate()
            .map(|(i, &q)| CycleRecord {
                cycle: i as u32 + 1,
                charge_capacity_ah: q,
                discharge_capacity_ah: q,
                internal_resistance_ohm: f64::NAN,
                temperature_min_c: f64::NAN,
                temperature_avg_c: f64::NAN,
                temperature_max_c: f64::NAN,
                charge_time_s: f64::NAN,
                voltage_max_v: None,
                voltage_min_v: None,
                current_max_a: None,
                discharge_curve: None,
            })
            .collect()
    }

    #[test]
    fn the_first_cycle_that_stays_below() {
        let cells = fade(&[1.0, 1.05, 1.0, 0.95, 0.83, 0.9, 0.86, 0.83, 0.8]);
        assert_eq!(observed_life(&cells, EndOfLife::Fraction(0.8)), Some(8));
        assert_eq!(observed_life(&cells, EndOfLife::Capacity(0.88)), Some(7));
        assert_eq!(observed_life(&cells, EndOfLife::Capacity(0.5)), None);
    }
}
