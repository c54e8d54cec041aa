//! The pool of instrument channels: an experiment holds one channel for as long as its cell is on
//! it, so no two experiments ever share a channel. After a restart, channels whose tests were in
//! flight are reserved for the experiments that own them.

use labloop_core::ChannelId;
use labloop_drivers::Cycler;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A channel of a cycler.
#[derive(Clone)]
pub(crate) struct Channel {
    pub cycler: Arc<dyn Cycler>,
    pub id: ChannelId,
}

struct Free {
    channels: VecDeque<Channel>,
    reserved: HashSet<ChannelId>,
}

/// Free channels; taking one waits until one is free.
pub(crate) struct ChannelPool {
    free: Mutex<Free>,
    changed: Notify,
    all: HashSet<ChannelId>,
}

impl ChannelPool {
    pub fn new(cyclers: &[Arc<dyn Cycler>]) -> Self {
        let channels: VecDeque<Channel> = cyclers
            .iter()
            .flat_map(|cycler| {
                cycler.channels().into_iter().map(|id| Channel {
                    cycler: Arc::clone(cycler),
                    id,
                })
            })
            .collect();
        Self {
            all: channels.iter().map(|c| c.id.clone()).collect(),
            free: Mutex::new(Free {
                channels,
                reserved: HashSet::new(),
            }),
            changed: Notify::new(),
        }
    }

    /// Keeps these channels for [`ChannelPool::take_specific`]: [`ChannelPool::take`] skips them.
    pub fn reserve(&self, ids: impl IntoIterator<Item = ChannelId>) {
        self.free.lock().expect("pool lock").reserved.extend(ids);
    }

    async fn take_where(&self, pick: impl Fn(&Free) -> Option<usize>) -> Channel {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut free = self.free.lock().expect("pool lock");
                if let Some(i) = pick(&free) {
                    let channel = free.channels.remove(i).expect("index is in range");
                    free.reserved.remove(&channel.id);
                    return channel;
                }
            }
            changed.await;
        }
    }

    /// Lets go of a reservation: an experiment that will not take its channel again (its channel
    /// steps are done, or it ended) must not keep it from the others.
    pub fn unreserve(&self, id: &ChannelId) {
        let mut free = self.free.lock().expect("pool lock");
        if free.reserved.remove(id) {
            drop(free);
            self.changed.notify_waiters();
        }
    }

    /// Waits for any free, unreserved channel.
    pub async fn take(&self) -> Channel {
        self.take_where(|f| f.channels.iter().position(|c| !f.reserved.contains(&c.id)))
            .await
    }

    /// Waits for one channel by id (reserved or not). A channel no cycler offers falls back to any.
    pub async fn take_specific(&self, id: &ChannelId) -> Channel {
        if !self.all.contains(id) {
            self.free.lock().expect("pool lock").reserved.remove(id);
            return self.take().await;
        }
        self.take_where(|f| f.channels.iter().position(|c| &c.id == id))
            .await
    }

    /// Gives a channel back.
    pub fn give_back(&self, channel: Channel) {
        self.free
            .lock()
            .expect("pool lock")
            .channels
            .push_back(channel);
        self.changed.notify_waiters();
    }
}
