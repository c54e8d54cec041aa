//! Excel exports (`.xlsx`): Arbin's (the data split over `Channel…` sheets, each with its
//! header) and any other workbook whose sheet holds a table with time, voltage and current
//! (Neware's `record` sheet, Landt's). Each sheet's cells become delimited lines read by the
//! text formats' one table reader, so a column means the same in a CSV and in a workbook; errors
//! name the sheet and its row.

use crate::columns::{ColumnMap, Defaults, RowRules, TextEnd, read_rows};
use crate::error::{Located, Place};
use crate::series::Sample;
use crate::{CellSeries, Reader};
use calamine::{Data, Range, Reader as _, Xlsx};
use std::io::Cursor;

/// Arbin MITS Pro Excel export.
pub(crate) struct ArbinXlsx;
/// Any workbook with a time/voltage/current table.
pub(crate) struct ExcelTable;

fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

fn open(bytes: &[u8]) -> Result<Xlsx<Cursor<&[u8]>>, String> {
    if !is_zip(bytes) {
        return Err("it is not a zip archive (an .xlsx is)".into());
    }
    Xlsx::new(Cursor::new(bytes)).map_err(|e| format!("not a readable workbook: {e}"))
}

fn arbin_sheets(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.starts_with("Channel") && !n.contains("Chart"))
        .cloned()
        .collect()
}

impl Reader for ArbinXlsx {
    fn format(&self) -> &'static str {
        "arbin-xlsx"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn title(&self) -> &'static str {
        "Arbin MITS Pro Excel export"
    }
    fn recognise(&self, bytes: &[u8]) -> Result<(), String> {
        let book = open(bytes)?;
        if arbin_sheets(&book.sheet_names()).is_empty() {
            return Err("no `Channel…` data sheet".into());
        }
        Ok(())
    }
    fn read(&self, bytes: &[u8]) -> Result<Vec<CellSeries>, Located> {
        let mut book = open(bytes).map_err(Located::file)?;
        let mut samples = Vec::new();
        for sheet in arbin_sheets(&book.sheet_names()) {
            samples.extend(read_sheet(&mut book, &sheet)?);
        }
        Ok(vec![CellSeries {
            name: None,
            samples,
        }])
    }
}

impl Reader for ExcelTable {
    fn format(&self) -> &'static str {
        "excel-table"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn title(&self) -> &'static str {
        "Excel workbook with a time, voltage and current table"
    }
    fn recognise(&self, bytes: &[u8]) -> Result<(), String> {
        let mut book = open(bytes)?;
        data_sheet(&mut book).map(|_| ())
    }
    fn read(&self, bytes: &[u8]) -> Result<Vec<CellSeries>, Located> {
        let mut book = open(bytes).map_err(Located::file)?;
        // The sheet found is read as found: parsing a workbook's sheet is most of its cost.
        let (sheet, range) = data_sheet(&mut book).map_err(Located::file)?;
        Ok(vec![CellSeries {
            name: None,
            samples: sheet_rows(&sheet, &range)?,
        }])
    }
}

/// The first sheet whose first row is a header naming time, voltage and current, with its cells.
fn data_sheet(book: &mut Xlsx<Cursor<&[u8]>>) -> Result<(String, Range<Data>), String> {
    for name in book.sheet_names() {
        let Ok(range) = book.worksheet_range(&name) else {
            continue;
        };
        let is_table = range.rows().next().is_some_and(|first| {
            let header: Vec<String> = first.iter().map(cell_text).collect();
            ColumnMap::from_header(&header, 1, Defaults::default()).is_ok()
        });
        if is_table {
            return Ok((name, range));
        }
    }
    Err("no sheet starts with a header naming time, voltage and current".into())
}

fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Int(i) => i.to_string(),
        Data::Float(f) => f.to_string(),
        Data::String(s) => s.replace(['\t', '\n', '\r'], " "),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => d.as_f64().to_string(),
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(_) | Data::Empty => String::new(),
    }
}

/// One sheet's rows as samples; a refusal names the sheet and its row.
fn read_sheet(book: &mut Xlsx<Cursor<&[u8]>>, sheet: &str) -> Result<Vec<Sample>, Located> {
    let range = book
        .worksheet_range(sheet)
        .map_err(|e| Located::file(format!("sheet `{sheet}`: {e}")))?;
    sheet_rows(sheet, &range)
}

/// A sheet's cells as samples, its first row the header.
fn sheet_rows(sheet: &str, range: &Range<Data>) -> Result<Vec<Sample>, Located> {
    let first_row = range.start().map_or(0, |(r, _)| r as u64);
    let lines: Vec<String> = range
        .rows()
        .map(|row| row.iter().map(cell_text).collect::<Vec<_>>().join("\t"))
        .collect();
    let in_sheet = |mut e: Located| {
        if let Place::Line { line, .. } = &mut e.place {
            *line += first_row;
        }
        e.message = format!("sheet `{sheet}`: {}", e.message);
        e
    };
    let Some(header) = lines.first() else {
        return Ok(Vec::new());
    };
    let fields: Vec<&str> = header.split('\t').collect();
    let map = ColumnMap::from_header(&fields, 1, Defaults::default()).map_err(in_sheet)?;
    let rows = lines
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, l)| (i as u64 + 1, l.as_str()));
    let end = TextEnd {
        header_fields: fields.len(),
        unterminated_line: None,
    };
    read_rows(rows, '\t', &map, RowRules::default(), end).map_err(in_sheet)
}
