//! The virtual cycler: channels that run tests on simulated cells and stream their cycle records.

use crate::degradation::SimCell;
use crate::formulation::design_factor;
use crate::journal::{Journal, JournalEntry, now_ms};
use async_trait::async_trait;
use labloop_core::{ChannelId, ChargeProtocol};
use labloop_drivers::{
    ChannelStatus, Cycler, CyclingTest, DriverError, LoadedTest, RecordBatch, Telemetry,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How fast simulated time runs: `acceleration` simulated seconds per real second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimClock {
    /// Simulated seconds per wall-clock second (1 = real time).
    pub acceleration: f64,
}

impl SimClock {
    /// Wall-clock time for `simulated` seconds.
    pub fn wall(&self, simulated_s: f64) -> Duration {
        Duration::from_secs_f64((simulated_s / self.acceleration.max(f64::MIN_POSITIVE)).max(0.0))
    }
}

/// A cell that has been on a channel, with its ground truth.
#[derive(Clone, Debug)]
pub struct SimulatedCell {
    /// The cell's id as the test named it.
    pub cell_id: String,
    /// The channel it ran on.
    pub channel: ChannelId,
    /// Its protocol.
    pub protocol: ChargeProtocol,
    /// Mean life of cells under that protocol.
    pub expected_life: f64,
    /// This cell's own life.
    pub life: f64,
}

#[derive(Default)]
struct Channel {
    /// Idempotency key of the loaded test.
    key: Option<String>,
    records: Vec<Telemetry>,
    finished: bool,
    started: bool,
    fault: Option<String>,
    task: Option<JoinHandle<()>>,
}

/// A channel's state at one moment (see [`SimCycler::snapshot`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSnapshot {
    /// The loaded test's idempotency key.
    pub key: Option<String>,
    /// Records from the asked `seq` on.
    pub records: Vec<Telemetry>,
    /// The last record's `seq` (0 for none).
    pub last_seq: u64,
    /// Whether the test has ended.
    pub finished: bool,
    /// Why it stopped, if on a fault.
    pub fault: Option<String>,
}

struct Shared {
    channels: HashMap<ChannelId, (Mutex<Channel>, watch::Sender<u64>)>,
    cells: Mutex<Vec<SimulatedCell>>,
    journal: Option<Journal>,
}

/// A virtual multi-channel cycler. Cheap to clone (clones share the instrument).
#[derive(Clone)]
pub struct SimCycler {
    name: String,
    order: Vec<ChannelId>,
    clock: SimClock,
    seed: u64,
    shared: Arc<Shared>,
}

/// Rest between charge and discharge and after discharge (s), as in the Severson protocol.
const RESTS_S: f64 = 120.0;

impl SimCycler {
    /// A cycler called `name` with `channels` channels (`<name>/ch01`, ...). `seed` fixes every cell's
    /// draw and noise, so a campaign replays exactly.
    pub fn new(name: &str, channels: u32, clock: SimClock, seed: u64) -> Self {
        let order = labloop_drivers::channel_ids(name, channels);
        let map = order
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    (Mutex::new(Channel::default()), watch::channel(0).0),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            channels: map,
            cells: Mutex::new(Vec::new()),
            journal: None,
        });
        Self {
            name: name.to_owned(),
            order,
            clock,
            seed,
            shared,
        }
    }

    /// Like [`SimCycler::new`], but the instrument outlives the process: every start and stop is
    /// appended to the journal file at `path`, and tests found running there are resumed as if the
    /// instrument had kept cycling while this process was away (their records wait to be fetched).
    pub fn with_journal(
        name: &str,
        channels: u32,
        clock: SimClock,
        seed: u64,
        path: &Path,
    ) -> std::io::Result<Self> {
        let mut cycler = Self::new(name, channels, clock, seed);
        let journal = Journal::open(path)?;
        let running = journal.running()?;
        Arc::get_mut(&mut cycler.shared)
            .expect("not shared yet")
            .journal = Some(journal);
        for entry in running {
            if cycler.shared.channels.contains_key(&entry.channel) {
                let elapsed = Duration::from_millis(now_ms().saturating_sub(entry.started_ms));
                let until = entry
                    .stopped_ms
                    .map(|s| Duration::from_millis(s.saturating_sub(entry.started_ms)));
                cycler.launch(&entry.channel, entry.test, elapsed, until);
            }
        }
        Ok(cycler)
    }

    /// What a channel holds now, without waiting: its test's key, the records with `seq >=
    /// from_seq`, whether the test has ended and on what fault (for protocol servers that publish the
    /// records and answer replays).
    pub fn snapshot(
        &self,
        channel: &ChannelId,
        from_seq: u64,
    ) -> Result<ChannelSnapshot, DriverError> {
        let (slot, _) = self.channel(channel)?;
        let state = slot.lock().expect("channel lock");
        Ok(ChannelSnapshot {
            key: state.key.clone(),
            records: state
                .records
                .iter()
                .filter(|t| t.seq >= from_seq)
                .cloned()
                .collect(),
            last_seq: state.records.last().map_or(0, |t| t.seq),
            finished: state.finished,
            fault: state.fault.clone(),
        })
    }

    /// Every cell this cycler has run, with its ground truth.
    pub fn cells(&self) -> Vec<SimulatedCell> {
        self.shared.cells.lock().expect("cells lock").clone()
    }

    fn channel(
        &self,
        id: &ChannelId,
    ) -> Result<&(Mutex<Channel>, watch::Sender<u64>), DriverError> {
        self.shared
            .channels
            .get(id)
            .ok_or_else(|| DriverError::UnknownChannel {
                instrument: self.name.clone(),
                channel: id.clone(),
            })
    }

    fn cell_seed(&self, cell_id: &str) -> u64 {
        let mut h = DefaultHasher::new();
        (self.seed, cell_id).hash(&mut h);
        h.finish()
    }
    /// Loads `test` on `channel` and cycles it, `elapsed` of wall time after it started; a test
    /// stopped `until` after its start ends with the cycles it had completed by then.
    fn launch(
        &self,
        channel: &ChannelId,
        test: CyclingTest,
        elapsed: Duration,
        until: Option<Duration>,
    ) {
        let (slot, notify) = &self.shared.channels[channel];
        let mut state = slot.lock().expect("channel lock");
        if let Some(task) = state.task.take() {
            task.abort();
        }
        let mut rng = StdRng::seed_from_u64(self.cell_seed(&test.cell_id));
        let mut cell = SimCell::new(&test.protocol, test.discharge_c_rate, &mut rng);
        let design = design_factor(&test);
        cell.life *= design;
        // The cell's earlier cycles happened (on this or another test): draw past them.
        for cycle in 1..=test.cycles_before {
            let _ = cell.record(cycle, &mut rng);
        }
        self.shared
            .cells
            .lock()
            .expect("cells lock")
            .push(SimulatedCell {
                cell_id: test.cell_id.clone(),
                channel: channel.clone(),
                protocol: test.protocol.clone(),
                expected_life: cell.stress.expected_life * design,
                life: cell.life,
            });
        *state = Channel {
            key: Some(test.key.clone()),
            started: true,
            ..Channel::default()
        };
        notify.send_modify(|v| *v += 1);
        let cycle_s = cell.stress.charge_time_s + 3600.0 / test.discharge_c_rate + RESTS_S;
        let step = self.clock.wall(cycle_s);
        let shared = Arc::clone(&self.shared);
        let id = channel.clone();
        let now = Instant::now();
        let begun = now.checked_sub(elapsed).unwrap_or(now);
        state.task = Some(tokio::spawn(async move {
            for n in 1..=test.cycles {
                if until.is_some_and(|u| step * n > u) {
                    break;
                }
                tokio::time::sleep_until(begun + step * n).await;
                let record = cell.record(test.cycles_before + n, &mut rng);
                let (slot, notify) = &shared.channels[&id];
                slot.lock().expect("channel lock").records.push(Telemetry {
                    seq: u64::from(n),
                    record,
                });
                notify.send_modify(|v| *v += 1);
            }
            let (slot, notify) = &shared.channels[&id];
            slot.lock().expect("channel lock").finished = true;
            notify.send_modify(|v| *v += 1);
        }));
    }
}

#[async_trait]
impl Cycler for SimCycler {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> Vec<ChannelId> {
        self.order.clone()
    }

    async fn start(&self, channel: &ChannelId, test: CyclingTest) -> Result<(), DriverError> {
        let (slot, _) = self.channel(channel)?;
        {
            let state = slot.lock().expect("channel lock");
            if state.key.as_deref() == Some(test.key.as_str()) {
                // The same command again (a retry after a crash or a lost reply): nothing new starts.
                return Ok(());
            }
            if state.started && !state.finished {
                return Err(DriverError::Busy {
                    instrument: self.name.clone(),
                    channel: channel.clone(),
                });
            }
        }
        if let Some(journal) = &self.shared.journal {
            journal
                .append(&JournalEntry::Start {
                    channel: channel.clone(),
                    started_ms: now_ms(),
                    test: test.clone(),
                })
                .map_err(|e| DriverError::Instrument {
                    instrument: self.name.clone(),
                    message: format!("cannot write the journal: {e}"),
                })?;
        }
        self.launch(channel, test, Duration::ZERO, None);
        Ok(())
    }

    async fn stop(&self, channel: &ChannelId) -> Result<(), DriverError> {
        let (slot, notify) = self.channel(channel)?;
        {
            let state = slot.lock().expect("channel lock");
            // An idle channel, or a test that has ended: nothing changes (its records stay).
            if !state.started || state.finished {
                return Ok(());
            }
        }
        if let Some(journal) = &self.shared.journal {
            journal
                .append(&JournalEntry::Stop {
                    channel: channel.clone(),
                    stopped_ms: now_ms(),
                })
                .map_err(|e| DriverError::Instrument {
                    instrument: self.name.clone(),
                    message: format!("cannot write the journal: {e}"),
                })?;
        }
        let mut state = slot.lock().expect("channel lock");
        if let Some(task) = state.task.take() {
            task.abort();
        }
        state.finished = true;
        notify.send_modify(|v| *v += 1);
        Ok(())
    }

    async fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, DriverError> {
        let (slot, _) = self.channel(channel)?;
        let state = slot.lock().expect("channel lock");
        let cycles = state.records.len() as u32;
        Ok(match (&state.fault, state.started, state.finished) {
            (Some(reason), _, _) => ChannelStatus::Faulted {
                reason: reason.clone(),
            },
            (None, false, _) => ChannelStatus::Idle,
            (None, true, false) => ChannelStatus::Running { cycle: cycles },
            (None, true, true) => ChannelStatus::Finished { cycles },
        })
    }

    async fn loaded_test(&self, channel: &ChannelId) -> Result<Option<LoadedTest>, DriverError> {
        let snap = self.snapshot(channel, u64::MAX)?;
        Ok(snap.key.map(|key| LoadedTest {
            key,
            ended: snap.finished,
        }))
    }

    async fn records(
        &self,
        channel: &ChannelId,
        from_seq: u64,
    ) -> Result<RecordBatch, DriverError> {
        let (slot, notify) = self.channel(channel)?;
        let mut changes = notify.subscribe();
        loop {
            {
                let state = slot.lock().expect("channel lock");
                let records: Vec<Telemetry> = state
                    .records
                    .iter()
                    .filter(|t| t.seq >= from_seq)
                    .cloned()
                    .collect();
                if !records.is_empty() || state.finished {
                    return Ok(RecordBatch {
                        records,
                        finished: state.finished,
                        fault: state.fault.clone().filter(|_| state.finished),
                    });
                }
            }
            if changes.changed().await.is_err() {
                return Err(DriverError::Instrument {
                    instrument: self.name.clone(),
                    message: "shut down".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labloop_core::{CcCvFinish, ChargeStep};

    fn test(cell: &str, cycles: u32) -> CyclingTest {
        let steps = vec![ChargeStep {
            soc_from: 0.0,
            soc_to: 0.8,
            c_rate: 4.8,
        }];
        CyclingTest {
            key: format!("key-{cell}"),
            cell_id: cell.into(),
            cycles_before: 0,
            formulation: Vec::new(),
            parameters: Vec::new(),
            protocol: ChargeProtocol {
                steps,
                finish: CcCvFinish {
                    c_rate: 1.0,
                    cv_voltage_v: 3.6,
                },
            },
            discharge_c_rate: 4.0,
            cycles,
        }
    }

    #[tokio::test]
    async fn streams_every_cycle_once_and_replays() {
        let cycler = SimCycler::new("sim", 2, SimClock { acceleration: 1e7 }, 1);
        let ch = cycler.channels()[0].clone();
        assert_eq!(cycler.status(&ch).await.unwrap(), ChannelStatus::Idle);
        cycler.start(&ch, test("cell-a", 20)).await.unwrap();
        assert!(matches!(
            cycler.start(&ch, test("cell-b", 5)).await,
            Err(DriverError::Busy { .. })
        ));
        let mut next = 1;
        loop {
            let batch = cycler.records(&ch, next).await.unwrap();
            for t in &batch.records {
                assert_eq!(t.seq, next);
                assert_eq!(t.record.cycle as u64, t.seq);
                next += 1;
            }
            if batch.finished && batch.records.is_empty() {
                break;
            }
        }
        assert_eq!(next, 21);
        assert_eq!(
            cycler.status(&ch).await.unwrap(),
            ChannelStatus::Finished { cycles: 20 }
        );
        let replay = cycler.records(&ch, 5).await.unwrap();
        assert_eq!(replay.records.len(), 16);
        assert_eq!(cycler.cells().len(), 1);
    }

    #[tokio::test]
    async fn same_seed_same_cell() {
        let a = SimCycler::new("sim", 1, SimClock { acceleration: 1e7 }, 9);
        let b = SimCycler::new("sim", 1, SimClock { acceleration: 1e7 }, 9);
        for c in [&a, &b] {
            let ch = c.channels()[0].clone();
            c.start(&ch, test("cell-x", 3)).await.unwrap();
            while !c.records(&ch, 4).await.unwrap().finished {}
        }
        let ra = a.records(&a.channels()[0], 1).await.unwrap();
        let rb = b.records(&b.channels()[0], 1).await.unwrap();
        assert_eq!(ra, rb);
    }

    #[tokio::test]
    async fn unknown_channels_are_named() {
        let cycler = SimCycler::new("sim", 1, SimClock { acceleration: 1.0 }, 1);
        let err = cycler.stop(&ChannelId::from("sim/ch99")).await.unwrap_err();
        assert_eq!(err.to_string(), "sim: no channel sim/ch99");
    }
}
