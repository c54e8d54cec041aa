//! Text files as vendors write them: UTF-8 or Latin-1 (Maccor's °), a byte-order mark, CRLF,
//! comma, tab or semicolon separated, quoted fields, decimal commas in European locales.

use std::borrow::Cow;

/// The file as text: UTF-8 when it is valid UTF-8 (a byte-order mark dropped), else Latin-1,
/// which maps every byte to a character (so a byte offset is never lost to a decoding error).
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// The lines of a text with their 1-based numbers, line ends (`\n`, `\r\n`) removed.
pub fn lines(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, line)| (i as u64 + 1, line.strip_suffix('\r').unwrap_or(line)))
}

/// The separator of a header line: tab, then semicolon, then comma, whichever splits it into the
/// most fields.
pub fn separator(header: &str) -> char {
    ['\t', ';', ',']
        .into_iter()
        .max_by_key(|&c| header.matches(c).count())
        .filter(|&c| header.contains(c))
        .unwrap_or(',')
}

/// The fields of a line: split on `sep`, a field in double quotes may hold the separator and
/// `""` for a quote. Surrounding spaces are trimmed.
pub fn fields(line: &str, sep: char) -> Vec<Cow<'_, str>> {
    if !line.contains('"') {
        return line.split(sep).map(|f| Cow::Borrowed(f.trim())).collect();
    }
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(Cow::Owned(field.trim().to_string()));
                field.clear();
            }
            c => field.push(c),
        }
    }
    out.push(Cow::Owned(field.trim().to_string()));
    out
}

/// A number as cyclers write them: `1.5`, `1.5E-3`, `1,5` where the separator is not a comma;
/// `None` for an empty field, `NaN`, `-` or `N/A` (not recorded). `Err` for anything else.
pub fn number(field: &str, decimal_comma: bool) -> Result<Option<f64>, ()> {
    let field = field.trim();
    if field.is_empty()
        || field == "-"
        || field.eq_ignore_ascii_case("nan")
        || field.eq_ignore_ascii_case("n/a")
        || field.eq_ignore_ascii_case("null")
    {
        return Ok(None);
    }
    let parsed = if decimal_comma && field.contains(',') {
        field.replace(',', ".").parse::<f64>()
    } else {
        field.parse::<f64>()
    };
    match parsed {
        Ok(x) if x.is_finite() => Ok(Some(x)),
        Ok(_) => Ok(None),
        Err(_) => Err(()),
    }
}

/// A duration written as a clock: `hh:mm:ss(.s)`, `D d hh:mm:ss(.s)` (some Maccor and Neware
/// exports) or `D.hh:mm:ss(.s)` (.NET's, in Arbin's), in seconds.
pub fn clock_seconds(field: &str) -> Option<f64> {
    let field = field.trim();
    let (days, clock) = match field.split_once('d') {
        Some((d, rest)) => (d.trim().parse::<f64>().ok()?, rest.trim()),
        None => match field.split_once(':') {
            // `1.02:03:04`: the part before the first colon is days.hours.
            Some((head, _)) if head.contains('.') => {
                let (d, _) = head.split_once('.')?;
                (d.parse::<f64>().ok()?, &field[d.len() + 1..])
            }
            _ => (0.0, field),
        },
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: f64 = parts[0].parse().ok()?;
    let m: f64 = parts[1].parse().ok()?;
    let s: f64 = parts[2].parse().ok()?;
    let total = days * 86_400.0 + h * 3600.0 + m * 60.0 + s;
    total.is_finite().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_numbers() {
        assert_eq!(fields("a, \"b,c\" ,d", ','), vec!["a", "b,c", "d"]);
        assert_eq!(separator("a\tb\tc"), '\t');
        assert_eq!(separator("a;b;c,d"), ';');
        assert_eq!(number("1,5", true), Ok(Some(1.5)));
        assert_eq!(number("1.5E-3", false), Ok(Some(0.0015)));
        assert_eq!(number("NaN", false), Ok(None));
        assert_eq!(number("abc", false), Err(()));
        assert_eq!(clock_seconds("1d 01:00:01.5"), Some(90_001.5));
        assert_eq!(clock_seconds("00:10:00"), Some(600.0));
        assert_eq!(clock_seconds("1.02:00:00.5"), Some(93_600.5));
        assert_eq!(decode(b"\xEF\xBB\xBFabc"), "abc");
        assert_eq!(decode(b"25\xB0C"), "25°C");
    }
}
