//! Neware BTS binary files: `.nda` (BTS 7/8, file version 29) and `.ndax` (BTS 8, a zip whose
//! `data.ndc` holds the records, ndc versions 2 and 5).
//!
//! Neware does not publish the layout; these are the facts the open readers agree on. Both hold
//! fixed-size little-endian records marked by `0x55`: index (u32), cycle (u32, from 0), step
//! index, status, step time (u64, ms), voltage (i32, 0.1 mV), current (i32), charge and
//! discharge capacity and energy (4 × i64) and the current range (i32), whose value fixes the
//! scale of current (× scale mA) and of the counters (× scale / 3600 mAh, mWh). The counters
//! restart at each step, and so does the time: the test time is the step times laid end to end.

use crate::error::Located;
use crate::series::{Counter, Sample};
use crate::{CellSeries, Reader};
use std::io::{Cursor, Read};

/// `.nda`.
pub(crate) struct NewareNda;
/// `.ndax`.
pub(crate) struct NewareNdax;

/// Where a record's fields lie (offsets from the record's start).
struct Layout {
    index: usize,
    cycle: usize,
    status: usize,
    time: usize,
    voltage: usize,
    current: usize,
    counters: usize,
    range: usize,
    len: usize,
}

const NDA_29: Layout = Layout {
    index: 2,
    cycle: 6,
    status: 12,
    time: 14,
    voltage: 22,
    current: 26,
    counters: 38,
    range: 78,
    len: 86,
};

const NDC: Layout = Layout {
    index: 8,
    cycle: 12,
    status: 17,
    time: 23,
    voltage: 31,
    current: 35,
    counters: 43,
    range: 82,
    len: 87,
};

/// The current scale (mA per count) of a range setting.
fn range_scale(range: i32) -> Option<f64> {
    Some(match range {
        -100_000_000 => 10.0,
        -200_000..=-1000 => 1e-2,
        -500 | -100 => 1e-3,
        -50 | -25 | -20 | -10 => 1e-4,
        -5 | -2 | -1 => 1e-5,
        0 => 0.0,
        1 | 2 | 5 => 1e-4,
        10 | 20 | 25 | 50 => 1e-3,
        100 | 200 | 250 | 500 => 1e-2,
        1000..=200_000 => 1e-1,
        _ => return None,
    })
}

fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().expect("in the record")
}

/// Decodes one record at `offset` (in the file, for errors); `None` for a record the cycler
/// marks empty (index or status 0).
fn record(rec: &[u8], layout: &Layout, offset: u64) -> Result<Option<Raw>, Located> {
    let index = u32::from_le_bytes(le(rec, layout.index));
    let status = rec[layout.status];
    if index == 0 || status == 0 {
        return Ok(None);
    }
    let range = i32::from_le_bytes(le(rec, layout.range));
    let scale = range_scale(range).ok_or_else(|| {
        Located::byte(
            offset + layout.range as u64,
            Some("current range"),
            format!("record {index}: unknown current range {range}"),
        )
    })?;
    let counter = |k: usize| {
        i64::from_le_bytes(le(rec, layout.counters + 8 * k)) as f64 * scale / 3600.0 / 1000.0
    };
    Ok(Some(Raw {
        index,
        cycle: u32::from_le_bytes(le(rec, layout.cycle)),
        step_time_s: u64::from_le_bytes(le(rec, layout.time)) as f64 / 1000.0,
        voltage_v: i32::from_le_bytes(le(rec, layout.voltage)) as f64 / 10_000.0,
        current_a: i32::from_le_bytes(le(rec, layout.current)) as f64 * scale / 1000.0,
        charge_ah: counter(0),
        discharge_ah: counter(1),
        charge_wh: counter(2),
        discharge_wh: counter(3),
    }))
}

struct Raw {
    index: u32,
    cycle: u32,
    step_time_s: f64,
    voltage_v: f64,
    current_a: f64,
    charge_ah: f64,
    discharge_ah: f64,
    charge_wh: f64,
    discharge_wh: f64,
}

/// Records in index order (duplicates dropped) as samples, the step times laid end to end.
fn samples(mut raws: Vec<Raw>) -> Vec<Sample> {
    raws.sort_by_key(|r| r.index);
    raws.dedup_by_key(|r| r.index);
    let mut out = Vec::with_capacity(raws.len());
    let mut offset = 0.0;
    let mut previous_step_time: Option<f64> = None;
    for r in raws {
        if let Some(p) = previous_step_time
            && r.step_time_s < p
        {
            offset += p;
        }
        previous_step_time = Some(r.step_time_s);
        out.push(Sample {
            line: r.index as u64,
            time_s: offset + r.step_time_s,
            voltage_v: r.voltage_v,
            current_a: r.current_a,
            capacity: Counter::Separate {
                charge: r.charge_ah,
                discharge: r.discharge_ah,
            },
            energy: Counter::Separate {
                charge: r.charge_wh,
                discharge: r.discharge_wh,
            },
            temperature_c: None,
            internal_resistance_ohm: None,
            cycle: Some(r.cycle as i64 + 1),
        });
    }
    out
}

impl Reader for NewareNda {
    fn format(&self) -> &'static str {
        "neware-nda"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn title(&self) -> &'static str {
        "Neware BTS binary file (.nda, version 29)"
    }
    fn recognise(&self, bytes: &[u8]) -> Result<(), String> {
        if !bytes.starts_with(b"NEWARE") {
            return Err("it does not start with `NEWARE`".into());
        }
        match bytes.get(14) {
            Some(29) => Ok(()),
            Some(v) => Err(format!("nda version {v}: labloop reads version 29")),
            None => Err("the file ends in its header".into()),
        }
    }
    fn read(&self, bytes: &[u8]) -> Result<Vec<CellSeries>, Located> {
        self.recognise(bytes)
            .map_err(|why| Located::byte(0, Some("header"), why))?;
        const MARK: &[u8] = b"\x00\x00\x00\x00\x55\x00";
        let start = bytes
            .windows(MARK.len())
            .position(|w| w == MARK)
            .map(|p| p + 4)
            .ok_or_else(|| Located::byte(0, Some("records"), "no data record in the file"))?;
        if !(bytes.len() - start).is_multiple_of(NDA_29.len) {
            let cut = start + (bytes.len() - start) / NDA_29.len * NDA_29.len;
            return Err(Located::byte(
                cut as u64,
                Some("records"),
                format!(
                    "the file ends inside a record ({} of {} bytes): truncated",
                    bytes.len() - cut,
                    NDA_29.len
                ),
            ));
        }
        let mut raws = Vec::new();
        let mut at = start;
        while at + NDA_29.len <= bytes.len() {
            let rec = &bytes[at..at + NDA_29.len];
            if rec[0] == 0x55 && rec[1] == 0 && rec[82..86] == [0; 4] {
                raws.extend(record(rec, &NDA_29, at as u64)?);
            }
            at += NDA_29.len;
        }
        Ok(vec![CellSeries {
            name: None,
            samples: samples(raws),
        }])
    }
}

fn ndc(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut file = zip
        .by_name("data.ndc")
        .map_err(|_| "no data.ndc in the archive".to_string())?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

impl Reader for NewareNdax {
    fn format(&self) -> &'static str {
        "neware-ndax"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn title(&self) -> &'static str {
        "Neware BTS archive (.ndax, ndc versions 2 and 5)"
    }
    fn recognise(&self, bytes: &[u8]) -> Result<(), String> {
        if !bytes.starts_with(b"PK\x03\x04") {
            return Err("it is not a zip archive (an .ndax is)".into());
        }
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
        if zip.by_name("data.ndc").is_err() {
            return Err("no data.ndc in the archive".into());
        }
        Ok(())
    }
    fn read(&self, bytes: &[u8]) -> Result<Vec<CellSeries>, Located> {
        let data = ndc(bytes).map_err(|e| Located::file(format!("data.ndc: {e}")))?;
        let in_ndc = |e: Located| Located {
            message: format!("data.ndc: {}", e.message),
            ..e
        };
        if data.len() < 3 {
            return Err(in_ndc(Located::byte(
                0,
                Some("ndc header"),
                "data.ndc is empty",
            )));
        }
        let (filetype, version) = (data[0], data[2]);
        let mut raws = Vec::new();
        match (version, filetype) {
            (5, 1) => {
                if !data.len().is_multiple_of(4096) {
                    return Err(in_ndc(Located::byte(
                        (data.len() / 4096 * 4096) as u64,
                        Some("records"),
                        "data.ndc ends inside a 4096-byte page: truncated",
                    )));
                }
                // 4096-byte pages after a 4096-byte header; records of 87 bytes between a page's
                // 125-byte head and 56-byte tail, marked 0x55 at their 8th byte.
                let mut page = 4096;
                while page + 4096 <= data.len() {
                    let mut at = page + 125;
                    while at + NDC.len <= page + 4096 - 56 {
                        let rec = &data[at..at + NDC.len];
                        if rec[7] == 0x55 {
                            raws.extend(record(rec, &NDC, at as u64).map_err(in_ndc)?);
                        }
                        at += NDC.len;
                    }
                    page += 4096;
                }
            }
            (2, 1) => {
                // Records of 94 bytes, each starting with the 8 bytes found at offset 517.
                let mark = data
                    .get(517..525)
                    .ok_or_else(|| in_ndc(Located::byte(517, Some("records"), "truncated")))?
                    .to_vec();
                let mut at = 517;
                while at + 94 <= data.len() {
                    if data[at..at + 8] == mark[..] && data[at] == 0x55 {
                        raws.extend(record(&data[at..at + 94], &NDC, at as u64).map_err(in_ndc)?);
                        at += 94;
                    } else {
                        at += 1;
                    }
                }
            }
            _ => {
                return Err(in_ndc(Located::byte(
                    0,
                    Some("ndc header"),
                    format!(
                        "ndc version {version}, file type {filetype}: labloop reads versions 2 and 5 (type 1)"
                    ),
                )));
            }
        }
        Ok(vec![CellSeries {
            name: None,
            samples: samples(raws),
        }])
    }
}
