//! Instruments on the far side of a transport: anything that carries [`Op`]s to an instrument and
//! brings back their JSON results (the MQTT and serial links) gives a [`CellBuilder`] here, so a robot
//! is driven the same way whichever wire it hangs on.

use crate::wire::{DataReply, Op};
use crate::{BuiltCell, CellBuilder, CellOrder, DriverError, Identity, LoadedTest};
use async_trait::async_trait;
use std::time::Duration;

/// How long one attempt of `identify` waits for its reply.
pub const IDENTIFY_PATIENCE: Duration = Duration::from_secs(3);

/// A connection that carries commands to one instrument and returns their results.
#[async_trait]
pub trait CommandLink: Send + Sync {
    /// The instrument's name as the workflow gives it.
    fn instrument(&self) -> &str;

    /// Sends `op` and waits up to `patience` per attempt for its result, repeating it (idempotently)
    /// when no reply comes; a refusal is the instrument's error.
    async fn command(&self, op: Op, patience: Duration) -> Result<serde_json::Value, DriverError>;

    /// Counts and logs a result that does not decode as its operation's (a protocol error).
    fn protocol_error(&self, detail: &str) {
        tracing::warn!(instrument = %self.instrument(), error = detail, "protocol error");
    }
}

/// Asks the instrument who it is (`identify`).
pub async fn identify_via<L: CommandLink + ?Sized>(
    link: &L,
    patience: Duration,
) -> Result<Identity, DriverError> {
    let result = link.command(Op::Identify, patience).await?;
    serde_json::from_value(result).map_err(|e| DriverError::Protocol {
        instrument: link.instrument().to_owned(),
        detail: format!("an identify reply is {{model, protocol, channels}}: {e}"),
    })
}

/// The test loaded on `channel` (a local name), read with a `data` command asking for no records.
pub async fn loaded_test_via<L: CommandLink + ?Sized>(
    link: &L,
    channel: &str,
    patience: Duration,
) -> Result<Option<LoadedTest>, DriverError> {
    let op = Op::Data {
        channel: channel.to_owned(),
        from_seq: 1,
        max: 0,
    };
    let result = link.command(op, patience).await?;
    let reply: DataReply = serde_json::from_value(result).map_err(|e| DriverError::Protocol {
        instrument: link.instrument().to_owned(),
        detail: format!("a data reply: {e}"),
    })?;
    Ok(reply.test_key.map(|key| LoadedTest {
        key,
        ended: reply.end_seq.is_some(),
    }))
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
        let key = order.key.clone();
        let result = match self.link.command(Op::Build { order }, self.patience).await {
            Err(DriverError::Timeout { after, .. }) => {
                // Is the robot there at all? Then the build itself stalled.
                let who = identify_via(&self.link, IDENTIFY_PATIENCE).await?;
                return Err(DriverError::Instrument {
                    instrument: self.link.instrument().to_owned(),
                    message: format!(
                        "build stalled: order {key} not finished after {after:?}, though the robot ({}) answers",
                        who.model
                    ),
                });
            }
            other => other?,
        };
        serde_json::from_value(result).map_err(|e| DriverError::Protocol {
            instrument: self.link.instrument().to_owned(),
            detail: format!("a build reply is a built cell: {e}"),
        })
    }

    async fn identify(&self) -> Result<Identity, DriverError> {
        identify_via(&self.link, IDENTIFY_PATIENCE).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A robot that answers `identify` but never finishes a build.
    struct StalledRobot;

    #[async_trait]
    impl CommandLink for StalledRobot {
        fn instrument(&self) -> &str {
            "robot1"
        }
        async fn command(
            &self,
            op: Op,
            patience: Duration,
        ) -> Result<serde_json::Value, DriverError> {
            match op {
                Op::Identify => Ok(
                    serde_json::json!({"model": "crimper-3000", "protocol": "1.1", "channels": []}),
                ),
                _ => Err(DriverError::Timeout {
                    instrument: "robot1".into(),
                    after: patience * 5,
                }),
            }
        }
    }

    #[tokio::test]
    async fn a_build_that_never_finishes_is_named_stalled() {
        let robot = RemoteCellBuilder::new(StalledRobot, Duration::from_secs(1));
        let order = CellOrder {
            key: "exp/build/1".into(),
            ..CellOrder::default()
        };
        let e = robot.build(order).await.unwrap_err().to_string();
        assert_eq!(
            e,
            "robot1: build stalled: order exp/build/1 not finished after 5s, though the robot (crimper-3000) answers"
        );
    }
}
