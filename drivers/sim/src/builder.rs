//! A simulated coin-cell assembly robot: takes an order, spends the time a real robot would (on the
//! accelerated clock), checks the sealed cell (OCV, mass, crimp) and returns its id. Orders are
//! remembered by their idempotency key, so an order repeated after a crash or a lost reply yields the
//! same cell at once, never a second one; a repeat that arrives while the first is still being built
//! waits for it.

use crate::cycler::SimClock;
use async_trait::async_trait;
use labloop_drivers::{BuiltCell, CellBuilder, CellOrder, CellQc, DriverError};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use tokio::sync::{OnceCell, Semaphore};

/// Simulated seconds to crimp one coin cell (dispense, stack, crimp, check OCV).
const BUILD_S: f64 = 600.0;

/// A virtual cell builder with `capacity` cells in progress at once.
pub struct SimCellBuilder {
    name: String,
    clock: SimClock,
    slots: Semaphore,
    crimp_failure: f64,
    orders: Mutex<HashMap<String, Arc<OnceCell<BuiltCell>>>>,
}

impl SimCellBuilder {
    /// A builder called `name`.
    pub fn new(name: &str, capacity: u32, clock: SimClock) -> Self {
        Self {
            name: name.to_owned(),
            clock,
            slots: Semaphore::new(capacity.max(1) as usize),
            crimp_failure: 0.0,
            orders: Mutex::new(HashMap::new()),
        }
    }

    /// The same builder, whose crimp check fails with probability `p` per cell (decided by the
    /// order's key, so a repeated order agrees with the first).
    pub fn with_crimp_failures(mut self, p: f64) -> Self {
        self.crimp_failure = p.clamp(0.0, 1.0);
        self
    }

    async fn assemble(&self, order: &CellOrder) -> Result<BuiltCell, DriverError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| DriverError::Instrument {
                instrument: self.name.clone(),
                message: "shut down".into(),
            })?;
        tokio::time::sleep(self.clock.wall(BUILD_S)).await;
        let mut h = DefaultHasher::new();
        order.key.hash(&mut h);
        let hash = h.finish();
        let unit = |shift: u32| ((hash.rotate_left(shift) >> 11) as f64) / (1u64 << 53) as f64;
        // Stocks are the pure components: each dispenses its fraction of the volume.
        let total: f64 = order.formulation.iter().map(|(_, x)| x).sum();
        let dispensed_ul = order
            .formulation
            .iter()
            .map(|(stock, x)| (stock.clone(), order.electrolyte_ul * x / total))
            .collect();
        Ok(BuiltCell {
            cell_id: format!("{}-{:08x}", self.name, hash as u32),
            electrolyte_ul: order.electrolyte_ul,
            dispensed_ul,
            qc: CellQc {
                // A fresh graphite/NMC coin cell rests near 0.1–0.3 V before formation.
                ocv_v: Some(0.1 + 0.2 * unit(7)),
                // Can, spacer, spring, electrodes and separator, plus the electrolyte (~1.2 g/mL).
                mass_g: Some(3.10 + 0.05 * unit(19) + order.electrolyte_ul * 1.2e-3),
                crimp_ok: unit(31) >= self.crimp_failure,
            },
        })
    }
}

#[async_trait]
impl CellBuilder for SimCellBuilder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn build(&self, order: CellOrder) -> Result<BuiltCell, DriverError> {
        let refuse = |message: String| {
            Err(DriverError::Instrument {
                instrument: self.name.clone(),
                message,
            })
        };
        if !(order.electrolyte_ul > 0.0 && order.electrolyte_ul <= 200.0) {
            return refuse(format!(
                "cannot dispense {} µL (0–200 µL)",
                order.electrolyte_ul
            ));
        }
        if let Some((stock, x)) = order
            .formulation
            .iter()
            .find(|(_, x)| !(x.is_finite() && *x >= 0.0))
        {
            return refuse(format!("cannot dispense a fraction {x} of `{stock}`"));
        }
        // Fractions of one electrolyte sum to 1 (the protocol's rule); anything else is not a recipe.
        let sum: f64 = order.formulation.iter().map(|(_, x)| x).sum();
        if !order.formulation.is_empty() && (sum - 1.0).abs() > 1e-6 {
            return refuse(format!(
                "the formulation's fractions sum to {sum}, not 1: refusing to guess the recipe"
            ));
        }
        // An order without a formulation gets the robot's standard electrolyte.
        let standard = [("standard electrolyte".to_owned(), 1.0)];
        let order = if order.formulation.iter().map(|(_, x)| x).sum::<f64>() > 0.0 {
            order
        } else {
            CellOrder {
                formulation: standard.to_vec(),
                ..order
            }
        };
        let slot = self
            .orders
            .lock()
            .expect("orders lock")
            .entry(order.key.clone())
            .or_default()
            .clone();
        slot.get_or_try_init(|| self.assemble(&order))
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(key: &str) -> CellOrder {
        CellOrder {
            key: key.into(),
            formulation: vec![("EC".into(), 0.3), ("EMC".into(), 0.7)],
            parameters: Vec::new(),
            electrolyte_ul: 70.0,
            ..CellOrder::default()
        }
    }

    /// A robot following the spec refuses a "formulation" that is not fractions of one electrolyte
    /// (what a campaign's non-mixture parameter mixed in would look like).
    #[tokio::test]
    async fn fractions_that_do_not_sum_to_one_are_refused() {
        let robot = SimCellBuilder::new("robot", 1, SimClock { acceleration: 1e6 });
        let bad = CellOrder {
            formulation: vec![
                ("EC".into(), 0.3),
                ("EMC".into(), 0.7),
                ("VC_wt_pct".into(), 0.71),
            ],
            ..order("k")
        };
        let e = robot.build(bad).await.unwrap_err().to_string();
        assert!(e.contains("sum to 1.71"), "{e}");
    }

    #[tokio::test]
    async fn the_same_order_builds_the_same_cell() {
        let robot = SimCellBuilder::new("robot", 1, SimClock { acceleration: 1e6 });
        let a = robot.build(order("exp-1/build/1")).await.unwrap();
        let b = robot.build(order("exp-1/build/1")).await.unwrap();
        assert_eq!(a, b);
        let qc = &a.qc;
        assert!(qc.crimp_ok);
        assert!((0.1..0.3).contains(&qc.ocv_v.unwrap()), "{qc:?}");
        assert!((3.1..3.3).contains(&qc.mass_g.unwrap()), "{qc:?}");
        let bad = CellOrder {
            electrolyte_ul: 0.0,
            ..order("k")
        };
        assert!(
            robot
                .build(bad)
                .await
                .unwrap_err()
                .to_string()
                .contains("µL")
        );
    }

    #[tokio::test]
    async fn crimp_failures_come_at_their_rate_and_repeat_with_the_order() {
        let robot = SimCellBuilder::new("robot", 8, SimClock { acceleration: 1e9 })
            .with_crimp_failures(0.25);
        let mut failed = 0;
        for i in 0..400 {
            let key = format!("exp-{i}/build/1");
            let first = robot.build(order(&key)).await.unwrap();
            assert_eq!(robot.build(order(&key)).await.unwrap(), first);
            failed += usize::from(!first.qc.crimp_ok);
        }
        assert!((60..140).contains(&failed), "{failed} of 400 failed");
    }
}
