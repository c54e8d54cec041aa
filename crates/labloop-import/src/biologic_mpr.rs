//! BioLogic EC-Lab binary files (`.mpr`).
//!
//! The layout, as EC-Lab writes it (it is not published; these are the facts the open readers
//! agree on): a 52-byte magic (`BIO-LOGIC MODULAR FILE\x1a`, spaces to 48 bytes, four zeros),
//! then modules, each `MODULE`, a header — short name (10 bytes), long name (25), then either
//! length, version, date (8) or, from EC-Lab 11.50 on, a 0xFFFFFFFF marker, length, version, an
//! unknown word and the date — and its data. The `VMP data` module holds the point count (u32),
//! the column count (u8), the column ids (u8 or u16 by version) and the records: a packed flags
//! byte (where any flag column is), then each column in order, little-endian, with a size its id
//! fixes ([`column`]). Ids labloop does not know are refused unless the record size leaves one
//! unknown column's size unambiguous.

use crate::error::Located;
use crate::series::{Counter, Sample};
use crate::{CellSeries, Reader};

/// The reader.
pub(crate) struct BiologicMpr;

const MAGIC_TEXT: &[u8] = b"BIO-LOGIC MODULAR FILE\x1a";
const MAGIC_LEN: usize = 52;
const MODULE: &[u8] = b"MODULE";

impl Reader for BiologicMpr {
    fn format(&self) -> &'static str {
        "biologic-mpr"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn title(&self) -> &'static str {
        "BioLogic EC-Lab binary file (.mpr)"
    }

    fn recognise(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.starts_with(MAGIC_TEXT) {
            Ok(())
        } else {
            Err("it does not start with `BIO-LOGIC MODULAR FILE`".into())
        }
    }

    fn read(&self, bytes: &[u8]) -> Result<Vec<CellSeries>, Located> {
        if bytes.len() < MAGIC_LEN || !bytes.starts_with(MAGIC_TEXT) {
            return Err(Located::byte(0, Some("magic"), "not a BioLogic .mpr file"));
        }
        let data = modules(bytes)?
            .into_iter()
            .find(|m| m.short_name == "VMP data")
            .ok_or_else(|| Located::byte(MAGIC_LEN as u64, None, "no `VMP data` module"))?;
        let samples = records(bytes, &data)?;
        Ok(vec![CellSeries {
            name: None,
            samples,
        }])
    }
}

/// One module: where its data lies.
struct Module {
    short_name: String,
    version: u32,
    start: usize,
    length: usize,
}

fn u32_at(bytes: &[u8], at: usize, field: &str) -> Result<u32, Located> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| Located::byte(at as u64, Some(field), "the file ends inside this field"))
}

fn modules(bytes: &[u8]) -> Result<Vec<Module>, Located> {
    let mut out = Vec::new();
    let mut at = MAGIC_LEN;
    while at < bytes.len() {
        if bytes.get(at..at + MODULE.len()) != Some(MODULE) {
            return Err(Located::byte(
                at as u64,
                Some("module"),
                "expected `MODULE` (a truncated or damaged file?)",
            ));
        }
        let header = at + MODULE.len();
        let names = bytes.get(header..header + 35).ok_or_else(|| {
            Located::byte(
                header as u64,
                Some("module header"),
                "the file ends in a module header",
            )
        })?;
        let short_name = String::from_utf8_lossy(&names[..10]).trim().to_string();
        let newer = bytes.get(header + 35..header + 39) == Some(&[0xFF; 4][..]);
        let (length, version, header_len) = if newer {
            (
                u32_at(bytes, header + 39, "module length")?,
                u32_at(bytes, header + 43, "module version")?,
                59,
            )
        } else {
            (
                u32_at(bytes, header + 35, "module length")?,
                u32_at(bytes, header + 39, "module version")?,
                51,
            )
        };
        let start = header + header_len;
        let end = start
            .checked_add(length as usize)
            .filter(|&e| e <= bytes.len());
        let Some(end) = end else {
            return Err(Located::byte(
                start as u64,
                Some(&short_name),
                format!(
                    "module `{short_name}` declares {length} bytes, the file has {} after its header (truncated)",
                    bytes.len().saturating_sub(start)
                ),
            ));
        };
        out.push(Module {
            short_name,
            version,
            start,
            length: length as usize,
        });
        at = end;
    }
    Ok(out)
}

/// What labloop reads from a column.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Meaning {
    Time,
    Voltage,
    VoltageMean,
    CurrentMa,
    CurrentMeanMa,
    NetMah,
    DeltaMah,
    ChargeMah,
    DischargeMah,
    EnergyChargeWh,
    EnergyDischargeWh,
    Cycle,
    Temperature,
    Resistance,
    Other,
}

/// A column id's value type and meaning, or `None` for an id labloop does not know.
fn column(id: u16) -> Option<(Kind, Meaning)> {
    use Kind::*;
    use Meaning::*;
    Some(match id {
        4 => (F64, Time),
        6 => (F32, Voltage),
        77 | 174 => (F32, VoltageMean),
        8 => (F32, CurrentMa),
        11 => (F64, CurrentMeanMa),
        76 => (F32, CurrentMeanMa),
        13 => (F64, NetMah),
        7 | 23 => (F64, DeltaMah),
        498 => (F64, ChargeMah),
        499 => (F64, DischargeMah),
        123 => (F64, EnergyChargeWh),
        124 => (F64, EnergyDischargeWh),
        24 => (F64, Cycle),
        462 => (F32, Temperature),
        69 => (F32, Resistance),
        5
        | 9
        | 16
        | 17
        | 19
        | 20
        | 26
        | 27
        | 32..=38
        | 70
        | 75
        | 78
        | 96
        | 98..=101
        | 163
        | 168
        | 169
        | 172
        | 173
        | 178
        | 179
        | 217
        | 218
        | 220
        | 221
        | 223
        | 224
        | 230..=242
        | 249
        | 271
        | 272
        | 301
        | 302
        | 331
        | 332
        | 361
        | 362
        | 391
        | 392
        | 422..=426
        | 430..=435
        | 441
        | 471
        | 473
        | 474
        | 476
        | 477
        | 479
        | 480
        | 486..=497
        | 505 => (F32, Other),
        74 | 125 | 126 | 182 | 211 | 438 | 467 | 500 | 501 | 502 => (F64, Other),
        39 | 131 => (U16, Other),
        212 | 213 | 468 | 469 => (U32, Other),
        253 | 509 => (U8, Other),
        1 | 2 | 3 | 21 | 31 | 65 => (Flag, Other),
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    F64,
    F32,
    U32,
    U16,
    U8,
    /// A bit of the one flags byte.
    Flag,
    /// An id labloop does not know, of a size the record leaves.
    Unknown(usize),
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F64 => 8,
            Kind::F32 | Kind::U32 => 4,
            Kind::U16 => 2,
            Kind::U8 => 1,
            Kind::Flag => 0,
            Kind::Unknown(n) => n,
        }
    }
}

fn records(bytes: &[u8], module: &Module) -> Result<Vec<Sample>, Located> {
    let data = &bytes[module.start..module.start + module.length];
    let base = module.start as u64;
    let points = u32_at(data, 0, "point count").map_err(|e| shift(e, base))? as usize;
    let n_columns = *data
        .get(4)
        .ok_or_else(|| Located::byte(base + 4, Some("column count"), "the module ends here"))?
        as usize;
    let (ids, records_at): (Vec<u16>, usize) = match module.version {
        0 if data.get(5).is_some_and(|&b| b != 0) => (
            (0..n_columns)
                .map(|k| data.get(5 + k).map(|&b| b as u16))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Located::byte(base + 5, Some("column ids"), "the module ends here")
                })?,
            100,
        ),
        0 => (u16_ids(data, 6, n_columns, base)?, 1007),
        2 => (u16_ids(data, 5, n_columns, base)?, 405),
        3 => (u16_ids(data, 5, n_columns, base)?, 406),
        v => {
            return Err(Located::byte(
                base,
                Some("VMP data"),
                format!("data module version {v}: labloop reads versions 0, 2 and 3"),
            ));
        }
    };
    let body = data.get(records_at..).unwrap_or(&[]);
    // The layout: the flags byte sits where the first flag column is listed.
    let mut layout: Vec<(u16, Kind, Meaning)> = Vec::new();
    let mut flags_placed = false;
    let mut unknown: Vec<usize> = Vec::new();
    for &id in &ids {
        match column(id) {
            Some((Kind::Flag, _)) if flags_placed => {}
            Some((Kind::Flag, _)) => {
                flags_placed = true;
                layout.push((id, Kind::U8, Meaning::Other));
            }
            Some((kind, meaning)) => layout.push((id, kind, meaning)),
            None => {
                unknown.push(layout.len());
                layout.push((id, Kind::Unknown(0), Meaning::Other));
            }
        }
    }
    let known: usize = layout.iter().map(|(_, k, _)| k.size()).sum();
    if let Some(per_point) = body.len().checked_div(points) {
        match unknown.as_slice() {
            [] => {}
            [one] if per_point > known && [1, 2, 4, 8].contains(&(per_point - known)) => {
                layout[*one].1 = Kind::Unknown(per_point - known);
            }
            _ => {
                let listed: Vec<String> =
                    unknown.iter().map(|&k| layout[k].0.to_string()).collect();
                return Err(Located::byte(
                    base + 5,
                    Some("column ids"),
                    format!(
                        "unknown column id(s) {} (their sizes cannot be told from the record size)",
                        listed.join(", ")
                    ),
                ));
            }
        }
    }
    let size: usize = layout.iter().map(|(_, k, _)| k.size()).sum();
    if size == 0 || body.len() < points * size {
        return Err(Located::byte(
            base + records_at as u64 + body.len() as u64,
            Some("records"),
            format!(
                "{points} records of {size} bytes need {} bytes, the module holds {} (truncated)",
                points * size,
                body.len()
            ),
        ));
    }
    let has = |m: Meaning| layout.iter().any(|(_, _, x)| *x == m);
    for (need, what) in [(Meaning::Time, "time/s")] {
        if !has(need) {
            return Err(Located::byte(
                base + 5,
                Some("column ids"),
                format!("no {what} column"),
            ));
        }
    }
    let voltage = if has(Meaning::Voltage) {
        Meaning::Voltage
    } else {
        Meaning::VoltageMean
    };
    let current = if has(Meaning::CurrentMa) {
        Meaning::CurrentMa
    } else {
        Meaning::CurrentMeanMa
    };
    // Some GCPL files carry no current column: the current is the charge counter's rate, as
    // EC-Lab itself derives it (the first record rests).
    let derive_current = !has(current) && (has(Meaning::DeltaMah) || has(Meaning::NetMah));
    if !has(voltage) || (!has(current) && !derive_current) {
        return Err(Located::byte(
            base + 5,
            Some("column ids"),
            "no voltage or no current column (an open-circuit or impedance record, not cycling)",
        ));
    }
    let separate = has(Meaning::ChargeMah) && has(Meaning::DischargeMah);
    let energy_separate = has(Meaning::EnergyChargeWh) && has(Meaning::EnergyDischargeWh);
    let mut running_net = 0.0;
    let mut previous: Option<(f64, f64)> = None;
    let mut out = Vec::with_capacity(points);
    for p in 0..points {
        let record = &body[p * size..(p + 1) * size];
        let mut values = [f64::NAN; 15];
        let mut offset = 0;
        for &(_, kind, meaning) in &layout {
            let raw = &record[offset..offset + kind.size()];
            offset += kind.size();
            let v = match kind {
                Kind::F64 => f64::from_le_bytes(raw.try_into().expect("8 bytes")),
                Kind::F32 => f64::from(f32::from_le_bytes(raw.try_into().expect("4 bytes"))),
                _ => continue,
            };
            if values[meaning as usize].is_nan() {
                values[meaning as usize] = v;
            }
        }
        let get = |m: Meaning| values[m as usize];
        let at = base + (records_at + p * size) as u64;
        let checked: &[(Meaning, &str)] = if derive_current {
            &[(Meaning::Time, "time/s"), (voltage, "Ewe/V")]
        } else {
            &[
                (Meaning::Time, "time/s"),
                (voltage, "Ewe/V"),
                (current, "I/mA"),
            ]
        };
        for &(m, name) in checked {
            if !get(m).is_finite() {
                return Err(Located::byte(
                    at,
                    Some(name),
                    format!("record {p}: not a finite number"),
                ));
            }
        }
        let capacity = if separate {
            Counter::Separate {
                charge: get(Meaning::ChargeMah) / 1000.0,
                discharge: get(Meaning::DischargeMah) / 1000.0,
            }
        } else if has(Meaning::NetMah) {
            Counter::Signed(get(Meaning::NetMah) / 1000.0)
        } else if has(Meaning::DeltaMah) {
            running_net += get(Meaning::DeltaMah) / 1000.0;
            Counter::Signed(running_net)
        } else {
            Counter::Absent
        };
        let energy = if energy_separate {
            Counter::Separate {
                charge: get(Meaning::EnergyChargeWh),
                discharge: get(Meaning::EnergyDischargeWh),
            }
        } else {
            Counter::Absent
        };
        let net_ah = if has(Meaning::NetMah) {
            get(Meaning::NetMah) / 1000.0
        } else {
            running_net
        };
        let current_a = if derive_current {
            let rate = previous.map_or(0.0, |(t, q)| {
                let hours = (get(Meaning::Time) - t) / 3600.0;
                if hours > 0.0 {
                    (net_ah - q) / hours
                } else {
                    0.0
                }
            });
            if rate.is_finite() { rate } else { 0.0 }
        } else {
            get(current) / 1000.0
        };
        previous = Some((get(Meaning::Time), net_ah));
        let cycle = get(Meaning::Cycle);
        out.push(Sample {
            line: p as u64 + 1,
            time_s: get(Meaning::Time),
            voltage_v: get(voltage),
            current_a,
            capacity,
            energy,
            temperature_c: Some(get(Meaning::Temperature)).filter(|t| t.is_finite()),
            internal_resistance_ohm: Some(get(Meaning::Resistance)).filter(|r| r.is_finite()),
            cycle: (cycle.is_finite() && cycle >= 0.0).then_some(cycle as i64),
        });
    }
    Ok(out)
}

fn u16_ids(data: &[u8], at: usize, n: usize, base: u64) -> Result<Vec<u16>, Located> {
    (0..n)
        .map(|k| {
            data.get(at + 2 * k..at + 2 * k + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        })
        .collect::<Option<_>>()
        .ok_or_else(|| Located::byte(base + at as u64, Some("column ids"), "the module ends here"))
}

fn shift(mut e: Located, base: u64) -> Located {
    if let crate::error::Place::Byte { offset, .. } = &mut e.place {
        *offset += base;
    }
    e
}
