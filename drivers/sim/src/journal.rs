//! The simulated instrument's own memory: an append-only file of the tests it started and stopped, so
//! a simulated cycler outlives the process that drives it, as a real one does.

use labloop_core::ChannelId;
use labloop_drivers::CyclingTest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of the journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JournalEntry {
    /// A test started on a channel at `started_ms` (Unix milliseconds).
    Start {
        channel: ChannelId,
        started_ms: u64,
        test: CyclingTest,
    },
    /// The channel's test was stopped.
    Stop {
        channel: ChannelId,
        /// When it stopped (0 in journals written before this was kept: the test is forgotten).
        #[serde(default)]
        stopped_ms: u64,
    },
}

/// A test that was running when the journal was last written.
pub(crate) struct Running {
    pub channel: ChannelId,
    pub started_ms: u64,
    pub test: CyclingTest,
    /// When it was stopped, if it was: it is restored with the records it had then.
    pub stopped_ms: Option<u64>,
}

pub(crate) struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Appends an entry and syncs it to disk before returning.
    pub fn append(&self, entry: &JournalEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = self.file.lock().expect("journal lock");
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }

    /// The last started, not stopped, test of each channel. A torn last line (a crash mid-write) is
    /// ignored: the command it held was never acknowledged.
    pub fn running(&self) -> std::io::Result<Vec<Running>> {
        let mut latest: HashMap<ChannelId, Option<Running>> = HashMap::new();
        let reader = BufReader::new(File::open(&self.path)?);
        for line in reader.lines() {
            let line = line?;
            match serde_json::from_str::<JournalEntry>(&line) {
                Ok(JournalEntry::Start {
                    channel,
                    started_ms,
                    test,
                }) => {
                    latest.insert(
                        channel.clone(),
                        Some(Running {
                            channel,
                            started_ms,
                            test,
                            stopped_ms: None,
                        }),
                    );
                }
                Ok(JournalEntry::Stop {
                    channel,
                    stopped_ms: 0,
                }) => {
                    latest.insert(channel, None);
                }
                Ok(JournalEntry::Stop {
                    channel,
                    stopped_ms,
                }) => {
                    if let Some(Some(r)) = latest.get_mut(&channel) {
                        r.stopped_ms = Some(stopped_ms);
                    }
                }
                Err(_) => {}
            }
        }
        let mut running: Vec<Running> = latest.into_values().flatten().collect();
        running.sort_by(|a, b| a.channel.0.cmp(&b.channel.0));
        Ok(running)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
