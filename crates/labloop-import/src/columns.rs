//! What a column header means: a quantity and a unit, read from the header's own words the way
//! vendors write them (`Current(A)`, `Current (A)`, `Current / A`, `Current_A`, `current_ampere`,
//! `I/mA`, `Amp-hr`), and the table of rows those columns give.

use crate::error::Located;
use crate::series::{Counter, Sample};
use crate::text;

/// A quantity labloop reads from a time series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// Test time.
    Time,
    /// Terminal voltage.
    Voltage,
    /// Current.
    Current,
    /// Charge counter.
    ChargeCapacity,
    /// Discharge counter.
    DischargeCapacity,
    /// Signed charge counter.
    NetCapacity,
    /// Unsigned charge counter, direction by the current's sign.
    StepCapacity,
    /// Energy-in counter.
    ChargeEnergy,
    /// Energy-out counter.
    DischargeEnergy,
    /// Signed energy counter.
    NetEnergy,
    /// Unsigned energy counter.
    StepEnergy,
    /// Cell temperature.
    Temperature,
    /// DC internal resistance.
    InternalResistance,
    /// The cycler's cycle index.
    Cycle,
    /// Charge/discharge/rest state as a letter (Maccor `State`, `Md`).
    State,
}

/// Header names (lowercase letters and digits only) of each quantity, most specific first: the
/// first one a file has is used.
const NAMES: &[(Quantity, &[&str])] = &[
    (
        Quantity::Time,
        &[
            "testtime",
            "totaltime",
            "runtime",
            "elapsedtime",
            "time",
            "test",
        ],
    ),
    (
        Quantity::Voltage,
        &[
            "ecell",
            "voltage",
            "volts",
            "potential",
            "cellvoltage",
            "ewe",
        ],
    ),
    (Quantity::Current, &["current", "amps", "i"]),
    (
        Quantity::ChargeCapacity,
        &[
            "chargecapacity",
            "chargingcapacity",
            "qcharge",
            "chgcapacity",
            "chgcap",
        ],
    ),
    (
        Quantity::DischargeCapacity,
        &[
            "dischargecapacity",
            "dischargingcapacity",
            "qdischarge",
            "dchgcapacity",
            "dchgcap",
        ],
    ),
    (Quantity::NetCapacity, &["qqo", "netcapacity"]),
    (
        Quantity::StepCapacity,
        &["amphr", "stepcapacity", "capacity", "capacitance"],
    ),
    (
        Quantity::ChargeEnergy,
        &[
            "chargeenergy",
            "chargingenergy",
            "energycharge",
            "chgenergy",
        ],
    ),
    (
        Quantity::DischargeEnergy,
        &[
            "dischargeenergy",
            "dischargingenergy",
            "energydischarge",
            "dchgenergy",
        ],
    ),
    (Quantity::NetEnergy, &["netenergy"]),
    (Quantity::StepEnergy, &["watthr", "stepenergy", "energy"]),
    (
        Quantity::Temperature,
        &[
            "celltemperature",
            "temperature",
            "surfacetemperaturet1",
            "temperaturet1",
            "auxtemperature1",
            "auxtemperature",
            "temp1",
            "t1",
        ],
    ),
    (
        Quantity::InternalResistance,
        &["internalresistance", "dcir", "ir", "r", "resistance"],
    ),
    (
        Quantity::Cycle,
        &[
            "cycleindex",
            "cyclenumber",
            "cyclecount",
            "cycle",
            "cycleid",
            "cyc",
            "cyclec",
        ],
    ),
    (Quantity::State, &["state", "md"]),
];

/// A unit's dimension and its factor (and offset) to labloop's unit.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Unit {
    dimension: Dimension,
    scale: f64,
    offset: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dimension {
    Time,
    Voltage,
    Current,
    Charge,
    Energy,
    Temperature,
    Resistance,
    Count,
}

fn unit(word: &str) -> Option<Unit> {
    use Dimension::*;
    let w = word.trim().to_lowercase().replace(['·', ' ', '_', '-'], "");
    let (dimension, scale, offset) = match w.as_str() {
        "s" | "sec" | "second" | "seconds" => (Time, 1.0, 0.0),
        // A clock (`01:02:03.5`): read as a duration whatever the header says.
        "h:min:s.ms" | "h:min:s" | "hh:mm:ss" | "hh:mm:ss.ms" => (Time, 1.0, 0.0),
        "ms" => (Time, 1e-3, 0.0),
        "min" | "minute" | "minutes" => (Time, 60.0, 0.0),
        "h" | "hr" | "hour" | "hours" => (Time, 3600.0, 0.0),
        "v" | "volt" | "volts" => (Voltage, 1.0, 0.0),
        "mv" => (Voltage, 1e-3, 0.0),
        "a" | "amp" | "amps" | "ampere" => (Current, 1.0, 0.0),
        "ma" | "milliampere" => (Current, 1e-3, 0.0),
        "µa" | "ua" => (Current, 1e-6, 0.0),
        "ah" | "a.h" | "amphr" | "amperehour" => (Charge, 1.0, 0.0),
        "mah" | "ma.h" => (Charge, 1e-3, 0.0),
        "µah" | "uah" | "µa.h" | "ua.h" => (Charge, 1e-6, 0.0),
        "wh" | "w.h" | "watthr" | "watthour" => (Energy, 1.0, 0.0),
        "mwh" | "mw.h" => (Energy, 1e-3, 0.0),
        "c" | "°c" | "ºc" | "ｰc" | "degc" | "celsius" | "degreecelsius" => {
            (Temperature, 1.0, 0.0)
        }
        "k" | "kelvin" => (Temperature, 1.0, -273.15),
        "ohm" | "ohms" | "ω" => (Resistance, 1.0, 0.0),
        "mohm" | "mω" => (Resistance, 1e-3, 0.0),
        "1" => (Count, 1.0, 0.0),
        _ => return None,
    };
    Some(Unit {
        dimension,
        scale,
        offset,
    })
}

fn dimension_of(q: Quantity) -> Dimension {
    use Quantity::*;
    match q {
        Time => Dimension::Time,
        Voltage => Dimension::Voltage,
        Current => Dimension::Current,
        ChargeCapacity | DischargeCapacity | NetCapacity | StepCapacity => Dimension::Charge,
        ChargeEnergy | DischargeEnergy | NetEnergy | StepEnergy => Dimension::Energy,
        Temperature => Dimension::Temperature,
        InternalResistance => Dimension::Resistance,
        Cycle | State => Dimension::Count,
    }
}

/// A header split into its name (lowercase letters and digits) and its unit, if it writes one
/// labloop knows: `Test_Time(s)`, `Voltage / V`, `Charge_Capacity_Ah`, `test_time_second`,
/// `(Q-Qo)/mA.h`, `Temperature [°C]`.
fn split_header(header: &str) -> (String, Option<Unit>) {
    let h = header.trim();
    // (name, unit, whether a bare `1` may be the unit: only BDF's `Cycle Count / 1` writes it;
    // `Aux_Temperature_1` is a name).
    let candidates: Vec<(&str, &str, bool)> = [
        h.strip_suffix(')')
            .and_then(|s| s.rsplit_once('('))
            .map(|(n, u)| (n, u, false)),
        h.strip_suffix(']')
            .and_then(|s| s.rsplit_once('['))
            .map(|(n, u)| (n, u, false)),
        h.rsplit_once('/').map(|(n, u)| (n, u, true)),
        h.strip_suffix("_ampere_hour").map(|n| (n, "ah", false)),
        h.strip_suffix("_watt_hour").map(|n| (n, "wh", false)),
        h.strip_suffix("_degree_celsius")
            .map(|n| (n, "degc", false)),
        h.rsplit_once('_').map(|(n, u)| (n, u, false)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (name, unit_word, count_allowed) in candidates {
        if unit_word.trim() == "1" && !count_allowed {
            continue;
        }
        if let Some(u) = unit(unit_word) {
            let name = normalise(name);
            if !name.is_empty() {
                return (name, Some(u));
            }
        }
    }
    (normalise(h), None)
}

/// Lowercase letters and digits only: `Test_Time` → `testtime`, `Cyc#` → `cyc`.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Units a format writes without saying (Arbin's `Current` is in A, Maccor's `Amps` too).
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// Seconds per unit of an unlabelled time column.
    pub time_s: f64,
    /// Amperes per unit of an unlabelled current.
    pub current_a: f64,
    /// Ampere-hours per unit of an unlabelled capacity.
    pub capacity_ah: f64,
    /// Watt-hours per unit of an unlabelled energy.
    pub energy_wh: f64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            time_s: 1.0,
            current_a: 1.0,
            capacity_ah: 1.0,
            energy_wh: 1.0,
        }
    }
}

/// One column's place and conversion.
#[derive(Clone, Debug)]
struct Column {
    index: usize,
    header: String,
    scale: f64,
    offset: f64,
}

/// Which column holds which quantity.
#[derive(Clone, Debug, Default)]
pub struct ColumnMap {
    columns: Vec<(Quantity, Column)>,
}

impl ColumnMap {
    /// Reads a header row. Time, voltage and current are required; a column whose unit
    /// contradicts its quantity (a capacity in volts) is refused by name; other columns are
    /// ignored (cyclers write many labloop does not use).
    pub fn from_header(
        headers: &[impl AsRef<str>],
        line: u64,
        defaults: Defaults,
    ) -> Result<Self, Located> {
        let parsed: Vec<(String, Option<Unit>)> =
            headers.iter().map(|h| split_header(h.as_ref())).collect();
        let mut map = ColumnMap::default();
        for &(quantity, names) in NAMES {
            let found = names.iter().find_map(|wanted| {
                parsed.iter().enumerate().find(|(_, (name, unit))| {
                    name == wanted
                        // A bare "Test" column is a test's name; Maccor's "Test (Min)" a time.
                        && (*wanted != "test" || unit.is_some())
                        && unit.is_none_or(|u| {
                            u.dimension == dimension_of(quantity)
                                // "Step (Min)" is a step's time, not a step number.
                                || (quantity == Quantity::Time && u.dimension == Dimension::Time)
                        })
                })
            });
            let Some((index, (_, unit))) = found else {
                continue;
            };
            let header = headers[index].as_ref().to_string();
            if map.columns.iter().any(|(_, c)| c.index == index) {
                continue;
            }
            let (scale, offset) = match unit {
                Some(u) => (u.scale, u.offset),
                None => (
                    match dimension_of(quantity) {
                        Dimension::Time => defaults.time_s,
                        Dimension::Current => defaults.current_a,
                        Dimension::Charge => defaults.capacity_ah,
                        Dimension::Energy => defaults.energy_wh,
                        _ => 1.0,
                    },
                    0.0,
                ),
            };
            map.columns.push((
                quantity,
                Column {
                    index,
                    header,
                    scale,
                    offset,
                },
            ));
        }
        for required in [Quantity::Time, Quantity::Voltage, Quantity::Current] {
            if map.get(required).is_none() {
                return Err(Located::line(
                    line,
                    None,
                    format!(
                        "no {} column (header: {})",
                        match required {
                            Quantity::Time => "test time",
                            Quantity::Voltage => "voltage",
                            _ => "current",
                        },
                        headers
                            .iter()
                            .map(|h| h.as_ref())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(map)
    }

    fn get(&self, q: Quantity) -> Option<&Column> {
        self.columns.iter().find(|(k, _)| *k == q).map(|(_, c)| c)
    }

    /// Whether the file has this quantity.
    pub fn has(&self, q: Quantity) -> bool {
        self.get(q).is_some()
    }

    /// The header of a quantity's column.
    pub fn header(&self, q: Quantity) -> Option<&str> {
        self.get(q).map(|c| c.header.as_str())
    }
}

/// How a format's rows become samples beyond their columns.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowRules {
    /// The current is a magnitude and the `State` column (C, D, R) gives its direction.
    pub current_from_state: bool,
    /// Decimal commas (a separator other than the comma).
    pub decimal_comma: bool,
    /// The current's sign is the other way round (positive on discharge).
    pub current_negated: bool,
}

/// Where a text's data ends: the number of fields its header has and, when the text does not
/// end with a line end, its last line (a line cut short there means a truncated file).
#[derive(Clone, Copy, Debug, Default)]
pub struct TextEnd {
    /// Fields of the header line.
    pub header_fields: usize,
    /// The text's last line when it has no line end.
    pub unterminated_line: Option<u64>,
}

/// The samples of data lines under a header. Stops at the first empty line after data (some
/// exports end with a footer) and refuses a field that is not a number, by line and column, and
/// a last line cut short.
pub fn read_rows<'a>(
    lines: impl Iterator<Item = (u64, &'a str)>,
    sep: char,
    map: &ColumnMap,
    rules: RowRules,
    end: TextEnd,
) -> Result<Vec<Sample>, Located> {
    let get = |fields: &[std::borrow::Cow<'_, str>], q: Quantity, line: u64| {
        value(fields, map.get(q), q, line, rules.decimal_comma)
    };
    let capacity_kind = counter_kind(
        map,
        [
            Quantity::ChargeCapacity,
            Quantity::DischargeCapacity,
            Quantity::NetCapacity,
            Quantity::StepCapacity,
        ],
    );
    let energy_kind = counter_kind(
        map,
        [
            Quantity::ChargeEnergy,
            Quantity::DischargeEnergy,
            Quantity::NetEnergy,
            Quantity::StepEnergy,
        ],
    );
    let mut samples = Vec::new();
    for (line, raw) in lines {
        if raw.trim().is_empty() {
            if samples.is_empty() {
                continue;
            }
            break;
        }
        let fields = text::fields(raw, sep);
        if end.unterminated_line == Some(line) && fields.len() < end.header_fields {
            return Err(Located::line(
                line,
                None,
                format!(
                    "the last line is cut short ({} of {} fields, no line end): the file is truncated",
                    fields.len(),
                    end.header_fields
                ),
            ));
        }
        let required = |q: Quantity| -> Result<f64, Located> {
            get(&fields, q, line)?.ok_or_else(|| {
                Located::line(line, map.header(q), "empty or not a number (required)")
            })
        };
        let time_s = required(Quantity::Time)?;
        let voltage_v = required(Quantity::Voltage)?;
        let mut current_a = required(Quantity::Current)?;
        if rules.current_negated {
            current_a = -current_a;
        }
        if rules.current_from_state
            && let Some(col) = map.get(Quantity::State)
        {
            match fields.get(col.index).map(|s| s.trim()) {
                Some("C") | Some("c") => current_a = current_a.abs(),
                Some("D") | Some("d") => current_a = -current_a.abs(),
                _ => {}
            }
        }
        let capacity = counter(capacity_kind, &fields, map, line, rules, false)?;
        let energy = counter(energy_kind, &fields, map, line, rules, true)?;
        let cycle = match get(&fields, Quantity::Cycle, line)? {
            Some(c) if c.fract() == 0.0 => Some(c as i64),
            Some(_) => {
                return Err(Located::line(
                    line,
                    map.header(Quantity::Cycle),
                    "a cycle index must be a whole number",
                ));
            }
            None => None,
        };
        samples.push(Sample {
            line,
            time_s,
            voltage_v,
            current_a,
            capacity,
            energy,
            temperature_c: get(&fields, Quantity::Temperature, line)?,
            internal_resistance_ohm: get(&fields, Quantity::InternalResistance, line)?,
            cycle,
        });
    }
    Ok(samples)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Absent,
    Separate,
    Signed,
    Unsigned,
}

fn counter_kind(map: &ColumnMap, [charge, discharge, net, step]: [Quantity; 4]) -> Kind {
    if map.has(charge) && map.has(discharge) {
        Kind::Separate
    } else if map.has(net) {
        Kind::Signed
    } else if map.has(step) {
        Kind::Unsigned
    } else {
        Kind::Absent
    }
}

fn counter(
    kind: Kind,
    fields: &[std::borrow::Cow<'_, str>],
    map: &ColumnMap,
    line: u64,
    rules: RowRules,
    energy: bool,
) -> Result<Counter, Located> {
    let q = |quantity: Quantity| -> Result<f64, Located> {
        Ok(value(
            fields,
            map.get(quantity),
            quantity,
            line,
            rules.decimal_comma,
        )?
        .unwrap_or(f64::NAN))
    };
    let [charge, discharge, net, step] = if energy {
        [
            Quantity::ChargeEnergy,
            Quantity::DischargeEnergy,
            Quantity::NetEnergy,
            Quantity::StepEnergy,
        ]
    } else {
        [
            Quantity::ChargeCapacity,
            Quantity::DischargeCapacity,
            Quantity::NetCapacity,
            Quantity::StepCapacity,
        ]
    };
    Ok(match kind {
        Kind::Absent => Counter::Absent,
        // Some exports write the discharge counter negative; its size is what passed.
        Kind::Separate => Counter::Separate {
            charge: q(charge)?.abs(),
            discharge: q(discharge)?.abs(),
        },
        Kind::Signed => Counter::Signed(if rules.current_negated {
            -q(net)?
        } else {
            q(net)?
        }),
        Kind::Unsigned => Counter::Unsigned(q(step)?.abs()),
    })
}

fn value(
    fields: &[std::borrow::Cow<'_, str>],
    column: Option<&Column>,
    q: Quantity,
    line: u64,
    decimal_comma: bool,
) -> Result<Option<f64>, Located> {
    let Some(col) = column else {
        return Ok(None);
    };
    let Some(field) = fields.get(col.index) else {
        return Err(Located::line(
            line,
            Some(&col.header),
            format!(
                "the line has {} fields, the header {} or more (a truncated line?)",
                fields.len(),
                col.index + 1
            ),
        ));
    };
    match text::number(field, decimal_comma) {
        Ok(v) => Ok(v.map(|x| x * col.scale + col.offset)),
        Err(()) if q == Quantity::Time => match text::clock_seconds(field) {
            Some(s) => Ok(Some(s)),
            None => Err(Located::line(
                line,
                Some(&col.header),
                format!("`{field}` is not a number or a duration"),
            )),
        },
        Err(()) if q == Quantity::State => Ok(None),
        Err(()) => Err(Located::line(
            line,
            Some(&col.header),
            format!("`{field}` is not a number"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(headers: &[&str]) -> ColumnMap {
        ColumnMap::from_header(headers, 1, Defaults::default()).expect("a header")
    }

    #[test]
    fn headers_as_vendors_write_them() {
        let arbin = map(&[
            "Data_Point",
            "Test_Time(s)",
            "Step_Time(s)",
            "Cycle_Index",
            "Current(A)",
            "Voltage(V)",
            "Charge_Capacity(Ah)",
            "Discharge_Capacity(Ah)",
        ]);
        assert_eq!(arbin.header(Quantity::Time), Some("Test_Time(s)"));
        assert_eq!(arbin.header(Quantity::Cycle), Some("Cycle_Index"));
        let maccor = map(&[
            "Rec#",
            "Cyc#",
            "Step",
            "Test (Min)",
            "Step (Min)",
            "Amp-hr",
            "Watt-hr",
            "Amps",
            "Volts",
            "State",
        ]);
        assert_eq!(maccor.header(Quantity::Time), Some("Test (Min)"));
        assert_eq!(maccor.get(Quantity::Time).unwrap().scale, 60.0);
        assert_eq!(maccor.header(Quantity::StepCapacity), Some("Amp-hr"));
        let biologic = map(&["time/s", "Ewe/V", "<I>/mA", "(Q-Qo)/mA.h", "cycle number"]);
        assert_eq!(biologic.get(Quantity::Current).unwrap().scale, 1e-3);
        assert_eq!(biologic.header(Quantity::NetCapacity), Some("(Q-Qo)/mA.h"));
        let bdf = map(&["test_time_second", "voltage_volt", "current_ampere"]);
        assert!(bdf.has(Quantity::Current));
        let batterydata = map(&["Time_s", "Current_A", "Voltage_V", "Charge_Capacity_Ah"]);
        assert_eq!(
            batterydata.header(Quantity::ChargeCapacity),
            Some("Charge_Capacity_Ah")
        );
        let err = ColumnMap::from_header(&["Time", "Voltage"], 3, Defaults::default()).unwrap_err();
        assert!(err.message.contains("no current column"), "{err:?}");
    }
}
