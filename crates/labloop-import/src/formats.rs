//! The readers: the text formats share one table reader ([`TextFormat`]) and differ in where
//! their header is, the words it must hold, and their conventions; BioLogic's binary `.mpr` has
//! its own module.

use crate::columns::{ColumnMap, Defaults, Quantity, RowRules, TextEnd, read_rows};
use crate::error::Located;
use crate::text;
use crate::{CellSeries, Reader};

/// Every reader, most specific first.
pub(crate) static READERS: &[&dyn Reader] = &[
    &crate::biologic_mpr::BiologicMpr,
    &crate::neware::NewareNda,
    &crate::neware::NewareNdax,
    &crate::excel::ArbinXlsx,
    &crate::excel::ExcelTable,
    &MACCOR,
    &BIOLOGIC_MPT,
    &NOVONIX,
    &ARBIN_CSV,
    &NEWARE_CSV,
    &BATTERY_ARCHIVE,
    &BATTERYDATA,
    &BDF,
    &TABLE,
];

/// Lines looked through for a header.
const HEADER_SEARCH_LINES: usize = 200;

/// A delimited text format.
pub(crate) struct TextFormat {
    format: &'static str,
    version: &'static str,
    title: &'static str,
    /// The 0-based index (among the file's lines) of the header line, or why this is not the
    /// format.
    locate: fn(&[&str]) -> Result<usize, String>,
    defaults: Defaults,
    /// The rules given the header's separator.
    rules: fn(char) -> RowRules,
    /// Column names (normalised) the header must hold besides time, voltage and current.
    requires: &'static [Quantity],
}

impl Reader for TextFormat {
    fn format(&self) -> &'static str {
        self.format
    }
    fn version(&self) -> &'static str {
        self.version
    }
    fn title(&self) -> &'static str {
        self.title
    }

    fn recognise(&self, bytes: &[u8]) -> Result<(), String> {
        if looks_binary(bytes) {
            return Err("it is binary, not text".into());
        }
        let text = text::decode(&bytes[..bytes.len().min(64 * 1024)]);
        let header = self.header(&text).map_err(|e| e.message)?;
        match self.requires.iter().find(|q| !header.map.has(**q)) {
            Some(q) => Err(format!("its header has no {q:?} column")),
            None => Ok(()),
        }
    }

    fn read(&self, bytes: &[u8]) -> Result<Vec<CellSeries>, Located> {
        let text = text::decode(bytes);
        let Header {
            at,
            sep,
            fields,
            map,
        } = self.header(&text)?;
        let end = TextEnd {
            header_fields: fields,
            unterminated_line: (!text.ends_with('\n')).then(|| text::lines(&text).count() as u64),
        };
        let samples = read_rows(
            text::lines(&text).skip(at + 1),
            sep,
            &map,
            (self.rules)(sep),
            end,
        )?;
        Ok(vec![CellSeries {
            name: None,
            samples,
        }])
    }
}

/// Where a text's header is and what it says.
struct Header {
    /// The header's 0-based line index.
    at: usize,
    /// Its separator.
    sep: char,
    /// How many fields it has.
    fields: usize,
    /// Its columns.
    map: ColumnMap,
}

impl TextFormat {
    /// Finds the header among the text's first lines and reads its columns: one path for
    /// recognising a file and reading it.
    fn header(&self, text: &str) -> Result<Header, Located> {
        let head: Vec<&str> = text::lines(text)
            .take(HEADER_SEARCH_LINES)
            .map(|(_, l)| l)
            .collect();
        let at = (self.locate)(&head).map_err(Located::file)?;
        let line = head
            .get(at)
            .ok_or_else(|| Located::file("no header line"))?;
        let sep = text::separator(line);
        let fields = text::fields(line, sep);
        let map = ColumnMap::from_header(&fields, at as u64 + 1, self.defaults)?;
        Ok(Header {
            at,
            sep,
            fields: fields.len(),
            map,
        })
    }
}

fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(4096)].contains(&0)
}

/// Normalised names of a header line's fields (lowercase letters and digits).
fn names(line: &str) -> Vec<String> {
    text::fields(line, text::separator(line))
        .iter()
        .map(|f| {
            f.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        })
        .collect()
}

/// The first line among `head` whose fields include all of `wanted` (normalised names, each a
/// prefix match), or why none does.
fn line_with(head: &[&str], wanted: &[&str], what: &str) -> Result<usize, String> {
    head.iter()
        .position(|line| {
            let names = names(line);
            wanted
                .iter()
                .all(|w| names.iter().any(|n| n.starts_with(w)))
        })
        .ok_or_else(|| format!("no {what} header (a line naming {})", wanted.join(", ")))
}

fn plain_rules(sep: char) -> RowRules {
    RowRules {
        decimal_comma: sep != ',',
        ..RowRules::default()
    }
}

const SECONDS: Defaults = Defaults {
    time_s: 1.0,
    current_a: 1.0,
    capacity_ah: 1.0,
    energy_wh: 1.0,
};

/// Maccor MIMS text exports, both header styles: the classic one under a `Today's Date` line
/// (`Rec#  Cyc#  Step  Test (Min)  Step (Min)  Amp-hr  Watt-hr  Amps  Volts  State ...`) and the
/// newer one (`Rec  Cycle P  Cycle C  Step  Test Time (sec)  ...  Capacity  Energy  Current
/// Voltage  Md ...`). The current is a magnitude; the state (`C`, `D`, `R`) gives its direction;
/// `Amp-hr`/`Capacity` count per step. An unlabelled test time is in seconds.
pub(crate) static MACCOR: TextFormat = TextFormat {
    format: "maccor",
    version: "1",
    title: "Maccor MIMS text export",
    locate: |head| {
        let classic = line_with(head, &["rec", "cyc", "step", "amp", "volts"], "Maccor");
        classic.or_else(|_| {
            line_with(
                head,
                &[
                    "rec", "cycle", "step", "testtime", "current", "voltage", "md",
                ],
                "Maccor",
            )
        })
    },
    defaults: SECONDS,
    rules: |sep| RowRules {
        current_from_state: true,
        decimal_comma: sep != ',',
        current_negated: false,
    },
    requires: &[Quantity::State],
};

/// BioLogic EC-Lab text export (`.mpt`): `EC-Lab ASCII FILE`, `Nb header lines : N`, the header
/// on line N, tab separated, decimal commas in some locales. Current positive on oxidation of
/// the working electrode (charge, for a cell wired positive to it).
pub(crate) static BIOLOGIC_MPT: TextFormat = TextFormat {
    format: "biologic-mpt",
    version: "1",
    title: "BioLogic EC-Lab text export (.mpt)",
    locate: |head| {
        let first = head.first().map(|l| l.trim()).unwrap_or("");
        if first != "EC-Lab ASCII FILE" && first != "BT-Lab ASCII FILE" {
            return Err("its first line is not `EC-Lab ASCII FILE`".into());
        }
        let declared = head.iter().take(5).find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("Nb header lines")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        });
        match declared {
            Some(n) if n >= 1 => Ok(n - 1),
            Some(_) => Err("`Nb header lines` is 0".into()),
            // An export without its settings block: the header is the line naming time/s.
            None => line_with(head, &["time"], "EC-Lab"),
        }
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[],
};

/// Novonix cycler CSV: a `[Summary]` block, then `[Data]` and the header (`Date and Time, Cycle
/// Number, Step Type, Run Time (h), Step Time (h), Current (A), Potential (V), Capacity (Ah),
/// Temperature (°C), ... Energy (Wh)`). Capacity and energy count per step; the current is
/// signed.
pub(crate) static NOVONIX: TextFormat = TextFormat {
    format: "novonix",
    version: "1",
    title: "Novonix cycler CSV",
    locate: |head| {
        if let Some(at) = head.iter().position(|l| l.trim() == "[Data]") {
            return Ok(at + 1);
        }
        line_with(
            head,
            &["runtime", "steptime", "potential", "capacity"],
            "Novonix",
        )
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[],
};

/// Arbin MITS Pro CSV export (the data sheet as CSV, old `Test_Time(s)` and new `Test Time (s)`
/// headers): charge and discharge counters per cycle, current signed, A/Ah/Wh when unlabelled.
pub(crate) static ARBIN_CSV: TextFormat = TextFormat {
    format: "arbin-csv",
    version: "1",
    title: "Arbin MITS Pro CSV export",
    locate: |head| {
        line_with(
            head,
            &[
                "datapoint",
                "testtime",
                "stepindex",
                "cycleindex",
                "current",
                "voltage",
            ],
            "Arbin",
        )
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[
        Quantity::Cycle,
        Quantity::ChargeCapacity,
        Quantity::DischargeCapacity,
    ],
};

/// Neware BTS CSV export (`Record ID`/`DataPoint`, `Cycle ID`/`Cycle Index`, `Step Type`,
/// `Current(mA)` or `(A)`, `Voltage(V)`, `Chg. Cap.(mAh)`, `DChg. Cap.(mAh)`, energies, `Total
/// Time` as a clock): current negative on discharge.
pub(crate) static NEWARE_CSV: TextFormat = TextFormat {
    format: "neware-csv",
    version: "1",
    title: "Neware BTS CSV export",
    locate: |head| {
        line_with(
            head,
            &["cycle", "step", "current", "voltage", "chgcap", "dchgcap"],
            "Neware",
        )
        .or_else(|_| {
            line_with(
                head,
                &["recordid", "cycleid", "stepid", "current", "voltage"],
                "Neware",
            )
        })
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[],
};

/// Battery Archive time series (and BEEP's structured CSV): `Date_Time, Test_Time (s),
/// Cycle_Index, Current (A), Voltage (V), Charge_Capacity (Ah), Discharge_Capacity (Ah), ...`.
pub(crate) static BATTERY_ARCHIVE: TextFormat = TextFormat {
    format: "battery-archive",
    version: "1",
    title: "Battery Archive / BEEP time-series CSV",
    locate: |head| {
        line_with(
            head,
            &[
                "testtime",
                "cycleindex",
                "current",
                "voltage",
                "chargecapacity",
                "dischargecapacity",
            ],
            "Battery Archive",
        )
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[
        Quantity::Cycle,
        Quantity::ChargeCapacity,
        Quantity::DischargeCapacity,
    ],
};

/// batterydata.energy.gov raw CSV: `Cycle_Index, Step, Time_s, Amphr, Watthr, Current_A,
/// Voltage_V, Cell_Temperature_C, ..., Charge_Capacity_Ah, Discharge_Capacity_Ah,
/// Charge_Energy_Wh, Discharge_Energy_Wh, ...`.
pub(crate) static BATTERYDATA: TextFormat = TextFormat {
    format: "batterydata",
    version: "1",
    title: "batterydata.energy.gov raw CSV",
    locate: |head| {
        head.iter()
            .position(|l| {
                let f = text::fields(l, text::separator(l));
                ["Time_s", "Current_A", "Voltage_V"]
                    .iter()
                    .all(|w| f.iter().any(|x| x == w))
            })
            .ok_or_else(|| "no batterydata header (Time_s, Current_A, Voltage_V)".into())
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[],
};

/// Battery Data Format (BDF) CSV, human (`Test Time / s`, `Voltage / V`, `Current / A`, ...) or
/// machine-readable (`test_time_second`, `voltage_volt`, `current_ampere`, ...) headers.
pub(crate) static BDF: TextFormat = TextFormat {
    format: "bdf",
    version: "1",
    title: "Battery Data Format CSV",
    locate: |head| {
        let Some(first) = head.first() else {
            return Err("empty".into());
        };
        let f = text::fields(first, text::separator(first));
        let has = |w: &str| f.iter().any(|x| x.as_ref() == w);
        // Its test-time column says BDF; the table reader then names what else is missing.
        if has("Test Time / s") || has("test_time_second") {
            Ok(0)
        } else {
            Err(
                "its first line is not a BDF header (Test Time / s, Voltage / V, Current / A)"
                    .into(),
            )
        }
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[],
};

/// Any delimited table with a header naming test time, voltage and current (with units, or in
/// s/V/A): the last resort of detection, and what a lab's own scripts can write.
pub(crate) static TABLE: TextFormat = TextFormat {
    format: "table",
    version: "1",
    title: "delimited table with time, voltage and current columns",
    locate: |head| {
        head.iter()
            .position(|l| {
                let sep = text::separator(l);
                ColumnMap::from_header(&text::fields(l, sep), 1, SECONDS).is_ok()
            })
            .ok_or_else(|| "no header naming time, voltage and current".into())
    },
    defaults: SECONDS,
    rules: plain_rules,
    requires: &[],
};
