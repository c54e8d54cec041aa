//! A vendor adapter's memory beside the store: which test labloop started on which channel, the
//! records it made of the readings, and the readings of each cycle still in progress. The
//! instrument does not know labloop's test keys, and its live readings are gone once read, so a
//! restarted labloop reads them back from here: no second start of a test, and no cycle lost or
//! repeated.
//!
//! The journal is an append-only file of JSON lines, each synced before the call that wrote it
//! returns: a test's start is written *before* the command goes to the instrument (and confirmed
//! after), a record before it is handed to the engine. The readings of the cycle in progress go
//! to one small file per channel, emptied each time its cycle becomes a record (written, not
//! synced: a crash of labloop keeps them, a power cut may lose the last few points of one cycle),
//! opened by the last reading of the cycle before, from which counters that run over the whole
//! test are counted on.

use crate::readings::Reading;
use labloop_core::CycleRecord;
use labloop_drivers::{CyclingTest, Telemetry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of the journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    /// labloop is about to start `test` on the channel, under the instrument's test name.
    Start {
        channel: String,
        test: CyclingTest,
        test_name: String,
    },
    /// The instrument accepted the start.
    Confirmed { channel: String, key: String },
    /// A cycle of the test became a record.
    Record {
        channel: String,
        key: String,
        source_cycle: i64,
        seq: u64,
        /// The record, its unmeasured quantities (`NaN`) written as `null`.
        record: serde_json::Value,
    },
    /// The test ended: ran out, stopped, or faulted.
    End {
        channel: String,
        key: String,
        fault: Option<String>,
    },
}

/// What the journal holds of one channel's latest test.
#[derive(Clone, Debug)]
pub struct JournaledTest {
    /// The test.
    pub test: CyclingTest,
    /// Its name on the instrument.
    pub test_name: String,
    /// Whether the instrument accepted the start (a start never confirmed may or may not have
    /// reached it: ask the instrument).
    pub confirmed: bool,
    /// Its records with the instrument's cycle index of each.
    pub records: Vec<(i64, Telemetry)>,
    /// Readings of the cycle in progress.
    pub readings: Vec<Reading>,
    /// `Some` once the test ended, with the fault it ended on.
    pub ended: Option<Option<String>>,
}

/// The journal of one instrument.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    readings: Mutex<BTreeMap<String, File>>,
}

impl Journal {
    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            readings: Mutex::new(BTreeMap::new()),
        })
    }

    fn readings_path(&self, channel: &str) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{channel}.readings.jsonl"));
        PathBuf::from(name)
    }

    fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = self.file.lock().expect("journal lock");
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }

    /// Writes that `test` is about to start on `channel` as `test_name`.
    pub fn start(&self, channel: &str, test: &CyclingTest, test_name: &str) -> std::io::Result<()> {
        self.replace_readings(channel, None)?;
        self.append(&Entry::Start {
            channel: channel.to_owned(),
            test: test.clone(),
            test_name: test_name.to_owned(),
        })
    }

    /// Writes that the instrument accepted the start of the test `key`.
    pub fn confirm(&self, channel: &str, key: &str) -> std::io::Result<()> {
        self.append(&Entry::Confirmed {
            channel: channel.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Writes a record, then replaces the channel's readings (they are the record now) by
    /// `boundary`, the recorded cycle's last reading, where the next cycle's counting starts.
    pub fn record(
        &self,
        channel: &str,
        key: &str,
        source_cycle: i64,
        telemetry: &Telemetry,
        boundary: Option<&Reading>,
    ) -> std::io::Result<()> {
        self.append(&Entry::Record {
            channel: channel.to_owned(),
            key: key.to_owned(),
            source_cycle,
            seq: telemetry.seq,
            record: serde_json::to_value(&telemetry.record).map_err(std::io::Error::other)?,
        })?;
        self.replace_readings(channel, boundary)
    }

    /// Writes that the test `key` ended, with the fault it ended on.
    pub fn end(&self, channel: &str, key: &str, fault: Option<String>) -> std::io::Result<()> {
        self.append(&Entry::End {
            channel: channel.to_owned(),
            key: key.to_owned(),
            fault,
        })
    }

    /// Adds a reading of the cycle in progress.
    pub fn reading(&self, channel: &str, reading: &Reading) -> std::io::Result<()> {
        let mut line = serde_json::to_string(reading).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut files = self.readings.lock().expect("readings lock");
        if !files.contains_key(channel) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.readings_path(channel))?;
            files.insert(channel.to_owned(), file);
        }
        files
            .get_mut(channel)
            .expect("opened above")
            .write_all(line.as_bytes())
    }

    /// Replaces the channel's readings file by `first` alone (or nothing), atomically: a crash
    /// leaves the old file or the new one, never an empty file where a boundary belonged.
    fn replace_readings(&self, channel: &str, first: Option<&Reading>) -> std::io::Result<()> {
        let mut files = self.readings.lock().expect("readings lock");
        files.remove(channel);
        let path = self.readings_path(channel);
        let mut temporary = path.clone().into_os_string();
        temporary.push(".tmp");
        let named =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut content = String::new();
        if let Some(reading) = first {
            content = serde_json::to_string(reading).map_err(std::io::Error::other)?;
            content.push('\n');
        }
        std::fs::write(&temporary, content).map_err(named)?;
        std::fs::rename(&temporary, &path).map_err(named)
    }

    /// The latest test of each channel, by the channel's wire name. A torn last line (a crash
    /// mid-write) is ignored: what it held was never acknowledged.
    pub fn tests(&self) -> std::io::Result<BTreeMap<String, JournaledTest>> {
        let mut tests: BTreeMap<String, JournaledTest> = BTreeMap::new();
        for line in BufReader::new(File::open(&self.path)?).lines() {
            let Ok(entry) = serde_json::from_str::<Entry>(&line?) else {
                continue;
            };
            match entry {
                Entry::Start {
                    channel,
                    test,
                    test_name,
                } => {
                    tests.insert(
                        channel,
                        JournaledTest {
                            test,
                            test_name,
                            confirmed: false,
                            records: Vec::new(),
                            readings: Vec::new(),
                            ended: None,
                        },
                    );
                }
                Entry::Confirmed { channel, key } => {
                    if let Some(t) = tests.get_mut(&channel).filter(|t| t.test.key == key) {
                        t.confirmed = true;
                    }
                }
                Entry::Record {
                    channel,
                    key,
                    source_cycle,
                    seq,
                    record,
                } => {
                    if let Some(t) = tests.get_mut(&channel).filter(|t| t.test.key == key)
                        && let Some(record) = decode_record(record)
                    {
                        t.records.push((source_cycle, Telemetry { seq, record }));
                    }
                }
                Entry::End {
                    channel,
                    key,
                    fault,
                } => {
                    if let Some(t) = tests.get_mut(&channel).filter(|t| t.test.key == key) {
                        t.ended = Some(fault);
                    }
                }
            }
        }
        for (channel, test) in &mut tests {
            let path = self.readings_path(channel);
            if test.ended.is_some() || !path.exists() {
                continue;
            }
            for line in BufReader::new(File::open(&path)?).lines() {
                if let Ok(reading) = serde_json::from_str::<Reading>(&line?) {
                    test.readings.push(reading);
                }
            }
        }
        Ok(tests)
    }
}

/// A record as [`Journal::record`] wrote it: JSON has no `NaN`, so quantities the cycler did not
/// measure were written as `null` and become `NaN` again.
fn decode_record(mut value: serde_json::Value) -> Option<CycleRecord> {
    let object = value.as_object_mut()?;
    let unmeasured: Vec<String> = object
        .iter()
        .filter(|(_, v)| v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    for key in &unmeasured {
        object.insert(key.clone(), serde_json::json!(0.0));
    }
    let mut record: CycleRecord = serde_json::from_value(value).ok()?;
    for key in unmeasured {
        let field = match key.as_str() {
            "charge_capacity_ah" => &mut record.charge_capacity_ah,
            "discharge_capacity_ah" => &mut record.discharge_capacity_ah,
            "internal_resistance_ohm" => &mut record.internal_resistance_ohm,
            "temperature_min_c" => &mut record.temperature_min_c,
            "temperature_avg_c" => &mut record.temperature_avg_c,
            "temperature_max_c" => &mut record.temperature_max_c,
            "charge_time_s" => &mut record.charge_time_s,
            _ => continue,
        };
        *field = f64::NAN;
    }
    Some(record)
}
