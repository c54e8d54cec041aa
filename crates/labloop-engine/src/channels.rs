//! The pool of instrument channels: an experiment holds one channel for as long as it runs, so no two
//! experiments ever share a channel.

use labloop_core::ChannelId;
use labloop_drivers::Cycler;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

/// A channel of a cycler.
#[derive(Clone)]
pub(crate) struct Channel {
    pub cycler: Arc<dyn Cycler>,
    pub id: ChannelId,
}

/// Free channels; taking one waits until one is free.
pub(crate) struct ChannelPool {
    free_tx: mpsc::UnboundedSender<Channel>,
    free_rx: Mutex<mpsc::UnboundedReceiver<Channel>>,
    size: usize,
}

impl ChannelPool {
    pub fn new(cyclers: &[Arc<dyn Cycler>]) -> Self {
        let (free_tx, free_rx) = mpsc::unbounded_channel();
        let mut size = 0;
        for cycler in cyclers {
            for id in cycler.channels() {
                free_tx
                    .send(Channel {
                        cycler: Arc::clone(cycler),
                        id,
                    })
                    .expect("receiver is alive");
                size += 1;
            }
        }
        Self {
            free_tx,
            free_rx: Mutex::new(free_rx),
            size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits for a free channel.
    pub async fn take(&self) -> Channel {
        self.free_rx
            .lock()
            .await
            .recv()
            .await
            .expect("the pool owns a sender")
    }

    /// Gives a channel back.
    pub fn give_back(&self, channel: Channel) {
        self.free_tx
            .send(channel)
            .expect("the pool owns the receiver");
    }
}
