//! How the simulator's cells respond to what they are made of. Each design variable arrives scaled to
//! [0, 1] (a mixture component as its fraction of the total, a parameter by its bounds); every
//! variable has a preferred value drawn from its name, and life falls off smoothly away from the
//! preferred point. The truth is hidden from the optimizer and differs for other component names.

use labloop_drivers::{CyclingTest, DesignParameter};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Preferred scaled value of a variable called `name`, in [0.15, 0.85].
pub fn preferred(name: &str) -> f64 {
    let mut h = DefaultHasher::new();
    ("labloop-sim formulation", name).hash(&mut h);
    0.15 + 0.7 * (h.finish() % 10_000) as f64 / 10_000.0
}

/// Multiplier on a cell's life for a formulation (1 for none): 1.3 at the preferred point, falling
/// towards 0.55 far from it.
pub fn formulation_factor(formulation: &[(String, f64)]) -> f64 {
    if formulation.is_empty() {
        return 1.0;
    }
    let distance2: f64 = formulation
        .iter()
        .map(|(name, x)| (x - preferred(name)).powi(2))
        .sum();
    0.55 + 0.75 * (-distance2 / 0.12).exp()
}

/// A design parameter on [0, 1]: a number by the range the campaign searches, a choice by its name.
fn scaled(p: &DesignParameter) -> f64 {
    match (p.value.as_f64(), p.min, p.max) {
        (Some(v), Some(low), Some(high)) if high > low => {
            ((v - low) / (high - low)).clamp(0.0, 1.0)
        }
        (Some(v), _, _) => v.clamp(0.0, 1.0),
        (None, _, _) => {
            let mut h = DefaultHasher::new();
            ("labloop-sim choice", &p.name, p.value.to_string()).hash(&mut h);
            (h.finish() % 10_000) as f64 / 10_000.0
        }
    }
}

/// [`formulation_factor`] of everything a test says the cell is made of: its mixture fractions and
/// its other design parameters.
pub fn design_factor(test: &CyclingTest) -> f64 {
    let design: Vec<(String, f64)> = test
        .formulation
        .iter()
        .cloned()
        .chain(test.parameters.iter().map(|p| (p.name.clone(), scaled(p))))
        .collect();
    formulation_factor(&design)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_at_the_preferred_point() {
        let best: Vec<(String, f64)> = ["EC", "EMC"]
            .iter()
            .map(|n| (n.to_string(), preferred(n)))
            .collect();
        assert!((formulation_factor(&best) - 1.3).abs() < 1e-12);
        let off: Vec<(String, f64)> = best.iter().map(|(n, x)| (n.clone(), 1.0 - x)).collect();
        assert!(formulation_factor(&off) < formulation_factor(&best));
        assert_eq!(formulation_factor(&[]), 1.0);
    }
}
