//! A simulated coin-cell assembly robot: takes an order, spends the time a real robot would (on the
//! accelerated clock), and returns the cell's id. The id is derived from the order's idempotency key,
//! so an order repeated after a crash yields the same cell, never a second one.

use crate::cycler::SimClock;
use async_trait::async_trait;
use labloop_drivers::{BuiltCell, CellBuilder, CellOrder, DriverError};
use std::hash::{DefaultHasher, Hash, Hasher};
use tokio::sync::Semaphore;

/// Simulated seconds to crimp one coin cell (dispense, stack, crimp, check OCV).
const BUILD_S: f64 = 600.0;

/// A virtual cell builder with `capacity` cells in progress at once.
pub struct SimCellBuilder {
    name: String,
    clock: SimClock,
    slots: Semaphore,
}

impl SimCellBuilder {
    /// A builder called `name`.
    pub fn new(name: &str, capacity: u32, clock: SimClock) -> Self {
        Self {
            name: name.to_owned(),
            clock,
            slots: Semaphore::new(capacity.max(1) as usize),
        }
    }
}

#[async_trait]
impl CellBuilder for SimCellBuilder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn build(&self, order: CellOrder) -> Result<BuiltCell, DriverError> {
        if !(order.electrolyte_ul > 0.0 && order.electrolyte_ul <= 200.0) {
            return Err(DriverError::Instrument {
                instrument: self.name.clone(),
                message: format!("cannot dispense {} µL (0–200 µL)", order.electrolyte_ul),
            });
        }
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
        Ok(BuiltCell {
            cell_id: format!("{}-{:08x}", self.name, h.finish() as u32),
            electrolyte_ul: order.electrolyte_ul,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_order_builds_the_same_cell() {
        let robot = SimCellBuilder::new("robot", 1, SimClock { acceleration: 1e6 });
        let order = CellOrder {
            key: "exp-1/build/1".into(),
            formulation: vec![("EC".into(), 0.3)],
            electrolyte_ul: 70.0,
        };
        let a = robot.build(order.clone()).await.unwrap();
        let b = robot.build(order).await.unwrap();
        assert_eq!(a, b);
        let bad = CellOrder {
            key: "k".into(),
            formulation: Vec::new(),
            electrolyte_ul: 0.0,
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
}
