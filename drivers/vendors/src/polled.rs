//! The part of every vendor adapter that is not the vendor's: a [`Cycler`] over a
//! [`VendorLink`](crate::vendor::VendorLink), polling running channels, making cycle records of their readings and keeping
//! the [`Journal`](crate::journal::Journal) that lets a restarted labloop carry on.

use crate::journal::Journal;
use crate::readings::{ChannelLog, Completed, Reading};
use crate::vendor::{PolledOptions, VendorLink, VendorState};
use async_trait::async_trait;
use labloop_core::ChannelId;
use labloop_drivers::{
    ChannelStatus, Cycler, CyclingTest, DriverError, Identity, LoadedTest, RecordBatch,
    channel_ids, wire_name,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One channel's test as the adapter holds it.
#[derive(Default)]
struct Slot {
    log: Option<ChannelLog>,
    test_name: String,
    /// The instrument accepted the start.
    confirmed: bool,
    /// `Some` once the test ended, with its fault.
    ended: Option<Option<String>>,
    /// The instrument has been seen running the test (an idle channel before that is a start
    /// still on its way, not an end).
    seen_running: bool,
    started_at: Option<Instant>,
}

struct Inner<L> {
    name: String,
    link: L,
    options: PolledOptions,
    journal: Option<Journal>,
    slots: Vec<Mutex<Slot>>,
    changed: watch::Sender<u64>,
    poller: AtomicBool,
    last_reply: Mutex<Instant>,
}

/// A vendor's cycler behind labloop's [`Cycler`].
pub struct PolledCycler<L: VendorLink> {
    channels: Vec<ChannelId>,
    inner: Arc<Inner<L>>,
}

/// The instrument's name for a test of `key`: at most 25 ASCII letters, digits and dashes (the
/// most a Maccor takes), unique per key.
pub fn test_name(key: &str) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let readable: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let tail: String = readable
        .chars()
        .rev()
        .take(16)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{tail}-{:08x}", hash as u32)
}

impl<L: VendorLink> PolledCycler<L> {
    /// An adapter for `channels` channels over `link`, its journal at `journal` (none: a
    /// restarted labloop cannot tell its tests from others').
    pub fn new(
        name: &str,
        channels: u32,
        link: L,
        options: PolledOptions,
        journal: Option<&Path>,
    ) -> std::io::Result<Self> {
        let journal = journal.map(Journal::open).transpose()?;
        let mut slots: Vec<Slot> = (0..channels).map(|_| Slot::default()).collect();
        if let Some(journal) = &journal {
            for (wire, kept) in journal.tests()? {
                let Some(index) = channel_index(&wire).filter(|&i| (i as u32) < channels) else {
                    continue;
                };
                let mut log = ChannelLog::new(kept.test);
                for (source_cycle, telemetry) in kept.records {
                    log.restore_record(source_cycle, telemetry);
                }
                for reading in kept.readings {
                    log.restore_reading(reading);
                }
                slots[index] = Slot {
                    log: Some(log),
                    test_name: kept.test_name,
                    confirmed: kept.confirmed,
                    ended: kept.ended,
                    seen_running: false,
                    started_at: Some(Instant::now()),
                };
            }
        }
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            link,
            options,
            journal,
            slots: slots.into_iter().map(Mutex::new).collect(),
            changed: watch::channel(0).0,
            poller: AtomicBool::new(false),
            last_reply: Mutex::new(Instant::now()),
        });
        Ok(Self {
            channels: channel_ids(name, channels),
            inner,
        })
    }

    /// The link (for tests and diagnostics).
    pub fn link(&self) -> &L {
        &self.inner.link
    }

    fn index(&self, channel: &ChannelId) -> Result<usize, DriverError> {
        self.channels
            .iter()
            .position(|c| c == channel)
            .ok_or_else(|| DriverError::UnknownChannel {
                instrument: self.inner.name.clone(),
                channel: channel.clone(),
            })
    }

    /// Starts the poller the first time a caller needs it (inside the caller's runtime).
    fn ensure_poller(&self) {
        if self.inner.poller.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(poll_forever(weak));
    }
}

/// `ch03` → 2.
fn channel_index(wire: &str) -> Option<usize> {
    wire.strip_prefix("ch")?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

impl<L: VendorLink> Inner<L> {
    fn journal_error(&self, e: std::io::Error) -> DriverError {
        DriverError::Instrument {
            instrument: self.name.clone(),
            message: format!("cannot write the adapter's journal: {e}"),
        }
    }

    fn wire(index: usize) -> String {
        format!("ch{:02}", index + 1)
    }

    /// Keeps a completed cycle, with the reading the next one counts from: journal first, then
    /// the waiting callers hear of it.
    fn keep(
        &self,
        index: usize,
        key: &str,
        completed: &Completed,
        boundary: Option<&Reading>,
    ) -> Result<(), DriverError> {
        if let Some(journal) = &self.journal {
            journal
                .record(
                    &Self::wire(index),
                    key,
                    completed.source_cycle,
                    &completed.telemetry,
                    boundary,
                )
                .map_err(|e| self.journal_error(e))?;
        }
        Ok(())
    }

    fn end(&self, index: usize, slot: &mut Slot, fault: Option<String>) -> Result<(), DriverError> {
        let Some(log) = slot.log.as_mut() else {
            return Ok(());
        };
        if slot.ended.is_some() {
            return Ok(());
        }
        let key = log.test().key.clone();
        if let Some(last) = log.close() {
            self.keep(index, &key, &last, None)?;
        }
        if let Some(journal) = &self.journal {
            journal
                .end(&Self::wire(index), &key, fault.clone())
                .map_err(|e| self.journal_error(e))?;
        }
        slot.ended = Some(fault);
        Ok(())
    }

    /// The channel's state and latest reading, the time of the reply noted (for [`Self::offline`]).
    async fn read(&self, index: usize) -> Result<(VendorState, Option<Reading>), DriverError> {
        let answer = self.link.read(index as u32).await?;
        *self.last_reply.lock().expect("reply lock") = Instant::now();
        Ok(answer)
    }

    /// One reading of one running channel, taken in.
    async fn poll_channel(&self, index: usize) {
        let running = {
            let slot = self.slots[index].lock().expect("slot lock");
            slot.log.is_some() && slot.confirmed && slot.ended.is_none()
        };
        if !running {
            return;
        }
        let (state, reading) = match self.read(index).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(instrument = %self.name, channel = index + 1, error = %e, "reading a channel failed");
                return;
            }
        };
        let mut stop = false;
        let result = {
            let mut slot = self.slots[index].lock().expect("slot lock");
            self.take_in(index, &mut slot, state, reading, &mut stop)
        };
        if let Err(e) = result {
            tracing::error!(instrument = %self.name, channel = index + 1, error = %e, "keeping a reading failed");
        }
        if stop {
            // The test has all its cycles: the procedure may run on (it cannot know labloop's
            // count), so the channel is reset.
            if let Err(e) = self.link.stop(index as u32).await {
                tracing::warn!(instrument = %self.name, channel = index + 1, error = %e, "resetting a channel whose test is complete failed");
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    fn take_in(
        &self,
        index: usize,
        slot: &mut Slot,
        state: VendorState,
        reading: Option<Reading>,
        stop: &mut bool,
    ) -> Result<(), DriverError> {
        if slot.ended.is_some() {
            return Ok(());
        }
        let Some(log) = slot.log.as_mut() else {
            return Ok(());
        };
        let key = log.test().key.clone();
        let wire = Self::wire(index);
        // A running channel's reading, and the last one of a completed test (it dates the last
        // step's end).
        let live = matches!(state, VendorState::Running | VendorState::Completed);
        if let Some(mut reading) = reading.filter(|r| live && r.is_finite()) {
            if !self.link.counts_cycles() {
                log.number(&mut reading);
            }
            if let Some(last) = log.last_cycle().filter(|&c| reading.cycle > c + 1) {
                let fault = format!(
                    "records lost: the instrument's cycles {}–{} ran while labloop was not reading the channel (import the cycler's data file for them)",
                    last + 1,
                    reading.cycle - 1
                );
                return self.end(index, slot, Some(fault));
            }
            slot.seen_running = true;
            let log = slot.log.as_mut().expect("checked above");
            let pushed = log.push(reading);
            // The record first (it empties the readings file), then the new cycle's readings.
            if let Some(completed) = &pushed.completed {
                self.keep(index, &key, completed, log.boundary())?;
            }
            if let Some(journal) = &self.journal {
                for reading in &pushed.added {
                    journal
                        .reading(&wire, reading)
                        .map_err(|e| self.journal_error(e))?;
                }
            }
            if pushed.completed.is_some() && log.records().len() as u32 >= log.test().cycles {
                *stop = state == VendorState::Running;
                return self.end(index, slot, None);
            }
            if state == VendorState::Running {
                return Ok(());
            }
        }
        if state == VendorState::Running {
            slot.seen_running = true;
            return Ok(());
        }
        let has_records = slot.log.as_ref().is_some_and(|l| !l.records().is_empty());
        match state {
            VendorState::Running => Ok(()),
            VendorState::Completed => self.end(index, slot, None),
            VendorState::Faulted(reason) => self.end(index, slot, Some(reason)),
            VendorState::Idle if slot.seen_running || has_records => self.end(index, slot, None),
            VendorState::Idle => {
                let waited = slot.started_at.map_or(Duration::ZERO, |t| t.elapsed());
                if waited > self.options.offline_after {
                    let fault = format!(
                        "the instrument never ran test {}: the channel stayed idle for {:?} after the start",
                        slot.test_name, waited
                    );
                    return self.end(index, slot, Some(fault));
                }
                Ok(())
            }
        }
    }

    /// Why the instrument is not answering, once it has not for `offline_after`.
    fn offline(&self) -> Option<String> {
        let since = self.last_reply.lock().expect("reply lock").elapsed();
        (since > self.options.offline_after).then(|| {
            let why = self.link.health().unwrap_or_else(|| "no reply".to_owned());
            format!("no reply for {since:.0?}: {why}")
        })
    }
}

/// Polls every running channel at the workflow's rate until the adapter is dropped.
async fn poll_forever<L: VendorLink>(weak: Weak<Inner<L>>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let interval = inner.options.poll_interval;
        for index in 0..inner.slots.len() {
            inner.poll_channel(index).await;
        }
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

#[async_trait]
impl<L: VendorLink> Cycler for PolledCycler<L> {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn channels(&self) -> Vec<ChannelId> {
        self.channels.clone()
    }

    async fn identify(&self) -> Result<Identity, DriverError> {
        let model = self.inner.link.identify().await?;
        // The adapter is in-process: it speaks labloop's operations itself (the vendor's own
        // protocol is its business), so it answers with labloop's version, the vendor's words
        // in `model`.
        Ok(Identity {
            model,
            protocol: labloop_drivers::wire::PROTOCOL_VERSION.to_owned(),
            channels: self
                .channels
                .iter()
                .map(|c| wire_name(c).to_owned())
                .collect(),
        })
    }

    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError> {
        let index = self.index(channel)?;
        let inner = &self.inner;
        let busy = || DriverError::Busy {
            instrument: inner.name.clone(),
            channel: channel.clone(),
        };
        let (started_already, unconfirmed_name) = {
            let slot = inner.slots[index].lock().expect("slot lock");
            let same = slot.log.as_ref().is_some_and(|l| l.test().key == test.key);
            if !same && slot.log.is_some() && slot.ended.is_none() {
                return Err(busy());
            }
            // A start of this key whose reply never came (not one the instrument refused) may
            // be running there.
            let in_doubt = same && !slot.confirmed && slot.ended.is_none();
            (
                same && slot.confirmed,
                in_doubt.then(|| slot.test_name.clone()),
            )
        };
        if started_already {
            // The same command again (a retry after a crash or a lost reply): nothing new starts.
            self.ensure_poller();
            return Ok(());
        }
        let (state, _) = inner.read(index).await?;
        if state == VendorState::Running {
            let Some(name) = unconfirmed_name else {
                // Someone else's test (or one labloop has no journal of).
                return Err(busy());
            };
            // A start labloop sent before a crash (or whose reply was lost), which the
            // instrument did take: its numbers are set again, then it is labloop's.
            inner.link.configure(index as u32, &test).await?;
            self.confirm(index, &test.key, &name)?;
            return Ok(());
        }
        let name = test_name(&test.key);
        if let Some(journal) = &inner.journal {
            journal
                .start(&Inner::<L>::wire(index), &test, &name)
                .map_err(|e| inner.journal_error(e))?;
        }
        {
            let mut slot = inner.slots[index].lock().expect("slot lock");
            *slot = Slot {
                log: Some(ChannelLog::new(test.clone())),
                test_name: name.clone(),
                confirmed: false,
                ended: None,
                seen_running: false,
                started_at: Some(Instant::now()),
            };
        }
        let started = match inner.link.start(index as u32, &test, &name).await {
            // No reply in time: the start itself may have been taken. A channel now running
            // took it (this is the test the slot holds); an idle one is sent it once more.
            Err(DriverError::Timeout { .. }) => {
                let (state, _) = inner.read(index).await?;
                if state == VendorState::Running {
                    Ok(())
                } else {
                    inner.link.start(index as u32, &test, &name).await
                }
            }
            other => other,
        };
        if let Err(e) = started {
            if let DriverError::Instrument { message, .. } = &e {
                // Refused, not lost: the channel holds no test of labloop's (a lost reply
                // leaves the start unconfirmed, for a retry to find running or send again).
                let mut slot = inner.slots[index].lock().expect("slot lock");
                inner.end(
                    index,
                    &mut slot,
                    Some(format!("the start was refused: {message}")),
                )?;
            }
            return Err(e);
        }
        // Configuring is idempotent: a reply lost in time is asked for once more.
        match inner.link.configure(index as u32, &test).await {
            Err(DriverError::Timeout { .. }) => inner.link.configure(index as u32, &test).await?,
            other => other?,
        }
        self.confirm(index, &test.key, &name)
    }

    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError> {
        let index = self.index(channel)?;
        let (ours, running) = {
            let slot = self.inner.slots[index].lock().expect("slot lock");
            (
                slot.log.is_some(),
                slot.log.is_some() && slot.ended.is_none(),
            )
        };
        if !running {
            // A test of labloop's that ended here but runs on there (the stop that ended it
            // failed): stopped now. Someone else's test is never stopped.
            if ours && self.inner.link.read(index as u32).await?.0 == VendorState::Running {
                self.inner.link.stop(index as u32).await?;
            }
            return Ok(());
        }
        self.inner.link.stop(index as u32).await?;
        let mut slot = self.inner.slots[index].lock().expect("slot lock");
        self.inner.end(index, &mut slot, None)?;
        drop(slot);
        self.inner.changed.send_modify(|v| *v += 1);
        Ok(())
    }

    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError> {
        let index = self.index(channel)?;
        let slot = self.inner.slots[index].lock().expect("slot lock");
        let cycles = slot.log.as_ref().map_or(0, |l| l.records().len() as u32);
        Ok(match (&slot.log, &slot.ended) {
            (None, _) => ChannelStatus::Idle,
            (Some(_), Some(Some(reason))) => ChannelStatus::Faulted {
                reason: reason.clone(),
            },
            (Some(_), Some(None)) => ChannelStatus::Finished { cycles },
            (Some(_), None) => ChannelStatus::Running { cycle: cycles },
        })
    }

    fn health(&self) -> Option<String> {
        self.inner.offline().or_else(|| self.inner.link.health())
    }

    async fn loaded_test(&self, channel: &ChannelId) -> Result<Option<LoadedTest>, DriverError> {
        let index = self.index(channel)?;
        let slot = self.inner.slots[index].lock().expect("slot lock");
        Ok(slot.log.as_ref().map(|l| LoadedTest {
            key: l.test().key.clone(),
            ended: slot.ended.is_some(),
        }))
    }

    async fn records(
        &self,
        channel: &ChannelId,
        from_seq: u64,
    ) -> Result<RecordBatch, DriverError> {
        let index = self.index(channel)?;
        self.ensure_poller();
        let deadline = tokio::time::Instant::now() + self.inner.options.wait;
        let mut changed = self.inner.changed.subscribe();
        loop {
            {
                let slot = self.inner.slots[index].lock().expect("slot lock");
                let Some(log) = &slot.log else {
                    return Err(DriverError::Instrument {
                        instrument: self.inner.name.clone(),
                        message: format!("no test on {channel}"),
                    });
                };
                let records: Vec<_> = log
                    .records()
                    .iter()
                    .filter(|t| t.seq >= from_seq)
                    .cloned()
                    .collect();
                if !records.is_empty() || slot.ended.is_some() {
                    return Ok(RecordBatch {
                        records,
                        finished: slot.ended.is_some(),
                        fault: slot.ended.clone().flatten(),
                    });
                }
            }
            if let Some(why) = self.inner.offline() {
                return Err(DriverError::Offline {
                    instrument: self.inner.name.clone(),
                    detail: why,
                });
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Ok(RecordBatch::default());
            }
        }
    }
}

impl<L: VendorLink> PolledCycler<L> {
    fn confirm(&self, index: usize, key: &str, name: &str) -> Result<(), DriverError> {
        if let Some(journal) = &self.inner.journal {
            journal
                .confirm(&Inner::<L>::wire(index), key)
                .map_err(|e| self.inner.journal_error(e))?;
        }
        {
            let mut slot = self.inner.slots[index].lock().expect("slot lock");
            slot.confirmed = true;
            slot.test_name = name.to_owned();
        }
        self.ensure_poller();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labloop_core::{CcCvFinish, ChargeProtocol};

    /// What becomes of a fake instrument's first start (every later one runs).
    #[derive(Default, Clone, Copy)]
    enum FirstStart {
        /// Refused, in the instrument's words.
        #[default]
        Refused,
        /// Taken, but its reply is lost (no reply in time).
        TakenReplyLost,
        /// Lost on the way: not taken, no reply.
        Lost,
    }

    /// An instrument whose first start goes as `first` says and whose first configuration's reply
    /// is lost when `lose_first_configure`.
    #[derive(Default)]
    struct Scripted {
        first: FirstStart,
        lose_first_configure: bool,
        starts: Mutex<u32>,
        configures: Mutex<u32>,
        running: Mutex<bool>,
    }

    fn no_reply() -> DriverError {
        DriverError::Timeout {
            instrument: "fake".into(),
            after: Duration::from_millis(100),
        }
    }

    #[async_trait]
    impl VendorLink for Scripted {
        async fn identify(&self) -> Result<String, DriverError> {
            Ok("fake".into())
        }
        async fn start(&self, _: u32, _: &CyclingTest, _: &str) -> Result<(), DriverError> {
            let mut starts = self.starts.lock().unwrap();
            *starts += 1;
            if *starts == 1 {
                match self.first {
                    FirstStart::Refused => {
                        return Err(DriverError::Instrument {
                            instrument: "fake".into(),
                            message: "schedule name not found".into(),
                        });
                    }
                    FirstStart::TakenReplyLost => {
                        *self.running.lock().unwrap() = true;
                        return Err(no_reply());
                    }
                    FirstStart::Lost => return Err(no_reply()),
                }
            }
            *self.running.lock().unwrap() = true;
            Ok(())
        }
        async fn configure(&self, _: u32, _: &CyclingTest) -> Result<(), DriverError> {
            let mut configures = self.configures.lock().unwrap();
            *configures += 1;
            if *configures == 1 && self.lose_first_configure {
                return Err(no_reply());
            }
            Ok(())
        }
        async fn stop(&self, _: u32) -> Result<(), DriverError> {
            *self.running.lock().unwrap() = false;
            Ok(())
        }
        async fn read(&self, _: u32) -> Result<(VendorState, Option<Reading>), DriverError> {
            let running = *self.running.lock().unwrap();
            Ok((
                if running {
                    VendorState::Running
                } else {
                    VendorState::Idle
                },
                None,
            ))
        }
        fn health(&self) -> Option<String> {
            None
        }
    }

    fn test(key: &str) -> CyclingTest {
        CyclingTest {
            key: key.into(),
            cell_id: "c".into(),
            cycles_before: 0,
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
            cycles: 3,
        }
    }

    #[tokio::test]
    async fn a_refused_start_leaves_the_channel_free_and_is_sent_again() {
        let cycler = PolledCycler::new(
            "fake",
            1,
            Scripted::default(),
            PolledOptions::default(),
            None,
        )
        .unwrap();
        let ch = ChannelId::from("fake/ch01");
        let refused = cycler.start(&ch, test("e1/cycle/1")).await.unwrap_err();
        assert!(refused.to_string().contains("schedule name not found"));
        // Retried under the same key: sent again (not taken for a start in doubt), and runs.
        cycler
            .start(&ch, test("e1/cycle/1"))
            .await
            .expect("started");
        assert_eq!(*cycler.link().starts.lock().unwrap(), 2);
        assert!(matches!(
            cycler.status(&ch).await.unwrap(),
            ChannelStatus::Running { .. }
        ));
        // Another experiment's test is refused while this one runs.
        let busy = cycler.start(&ch, test("e2/cycle/1")).await.unwrap_err();
        assert!(matches!(busy, DriverError::Busy { .. }));
    }

    #[tokio::test]
    async fn a_start_whose_reply_is_lost_runs_once() {
        // Taken with its reply lost: found running, not sent again. Lost on the way: sent once
        // more. Either way the configuration whose reply is lost is sent again and the test runs.
        for (first, starts) in [(FirstStart::TakenReplyLost, 1), (FirstStart::Lost, 2)] {
            let link = Scripted {
                first,
                lose_first_configure: true,
                ..Scripted::default()
            };
            let cycler =
                PolledCycler::new("fake", 1, link, PolledOptions::default(), None).unwrap();
            let ch = ChannelId::from("fake/ch01");
            cycler
                .start(&ch, test("e1/cycle/1"))
                .await
                .expect("started");
            assert_eq!(*cycler.link().starts.lock().unwrap(), starts);
            assert_eq!(*cycler.link().configures.lock().unwrap(), 2);
            assert!(matches!(
                cycler.status(&ch).await.unwrap(),
                ChannelStatus::Running { .. }
            ));
        }
    }

    #[test]
    fn test_names_fit_a_maccor_and_differ_by_key() {
        let a = test_name("exp-0042-some-long-experiment-id/cycle/1");
        let b = test_name("exp-0042-some-long-experiment-id/cycle/2");
        assert!(a.len() <= 25 && a.is_ascii(), "{a}");
        assert_ne!(a, b);
        assert_eq!(channel_index("ch03"), Some(2));
        assert_eq!(channel_index("x"), None);
    }
}
