//! Instruments on the far side of a transport: anything that carries [`Op`]s to an instrument and
//! brings back their JSON results (the MQTT and serial links) gives a [`CellBuilder`] here, so a robot
//! is driven the same way whichever wire it hangs on.

use crate::wire::Op;
use crate::{BuiltCell, CellBuilder, CellOrder, DriverError};
use async_trait::async_trait;
use std::time::Duration;

/// A connection that carries commands to one instrument and returns their results.
#[async_trait]
pub trait CommandLink: Send + Sync {
    /// The instrument's name as the workflow gives it.
    fn instrument(&self) -> &str;

    /// Sends `op` and waits up to `patience` per attempt for its result, repeating it (idempotently)
    /// when no reply comes; a refusal is the instrument's error.
    async fn command(&self, op: Op, patience: Duration) -> Result<serde_json::Value, DriverError>;
}

/// A coin-cell builder reached through a [`CommandLink`]: `build` commands carry the order, whose
/// idempotency key makes a repeated command return the same cell.
pub struct RemoteCellBuilder<L> {
    link: L,
    patience: Duration,
}

impl<L: CommandLink> RemoteCellBuilder<L> {
    /// A builder on `link` that waits up to `patience` for one cell (dispense, stack, crimp, check).
    pub fn new(link: L, patience: Duration) -> Self {
        Self { link, patience }
    }

    /// The link underneath (for its counters).
    pub fn link(&self) -> &L {
        &self.link
    }
}

#[async_trait]
impl<L: CommandLink> CellBuilder for RemoteCellBuilder<L> {
    fn name(&self) -> &str {
        self.link.instrument()
    }

    async fn build(&self, order: CellOrder) -> Result<BuiltCell, DriverError> {
        let result = self
            .link
            .command(Op::Build { order }, self.patience)
            .await?;
        serde_json::from_value(result).map_err(|e| DriverError::Instrument {
            instrument: self.link.instrument().to_owned(),
            message: format!("protocol error: a build reply is a built cell: {e}"),
        })
    }
}
