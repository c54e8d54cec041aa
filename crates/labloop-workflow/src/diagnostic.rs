//! Problems in a workflow file, each with its place.

use std::fmt;

/// One problem: where (file, 1-based line and column, dotted field path) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as given.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Dotted path of the field, e.g. `optimizer.batch_size` (empty for the whole file).
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at a place.
    pub fn new(
        file: &str,
        line: usize,
        column: usize,
        path: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Turns the YAML library's (syntax) error into a diagnostic.
pub(crate) fn from_yaml_error(error: &yaml_serde::Error, text: &str, file: &str) -> Diagnostic {
    let (mut line, mut column) = error
        .location()
        .map(|l| (l.line(), l.column()))
        .filter(|(line, _)| *line > 0)
        .unwrap_or_else(|| crate::locate::locate_or_start(text, ""));
    // The place goes in front, so the message need not repeat it.
    let message = without_positions(&error.to_string());
    let (path, mut message) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), message),
    };
    // The parser points at the map holding a repeated key; point at the repeat instead.
    if let Some(key) = message
        .strip_prefix("duplicate entry with key \"")
        .and_then(|k| k.strip_suffix('"'))
        && let Some(found) = second_key(text, line, column, key)
    {
        (line, column) = found;
    }
    let at_line = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    if line > 0
        && at_line.trim_end().starts_with(|c: char| c.is_whitespace())
        && at_line.contains('\t')
    {
        message.push_str("; YAML indents with spaces, not tabs");
    }
    Diagnostic {
        file: file.to_owned(),
        line,
        column,
        path,
        message,
    }
}

/// `message` without the parser's ` at line N column M` notes.
fn without_positions(message: &str) -> String {
    let mut out = message.to_owned();
    while let Some(start) = out.find(" at line ") {
        let rest = &out[start + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n = digits(rest);
        let Some(after) = rest[n..].strip_prefix(" column ") else {
            break;
        };
        let m = digits(after);
        let end = start + " at line ".len() + n + " column ".len() + m;
        out.replace_range(start..end, "");
    }
    out
}

/// Where `key` appears a second time in the block map whose first key is at (`line`, `column`).
fn second_key(text: &str, line: usize, column: usize, key: &str) -> Option<(usize, usize)> {
    let indent = column.checked_sub(1)?;
    let mut seen = 0;
    for (n, l) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let body = l.trim_start_matches(' ');
        let here = l.len() - body.len();
        if body.is_empty() || body.starts_with('#') || (here > indent) {
            continue;
        }
        let item = body.strip_prefix("- ").filter(|_| here + 2 == column);
        if here < indent && item.is_none() && n + 1 > line {
            break;
        }
        let body = if here == indent {
            body
        } else {
            item.unwrap_or("")
        };
        let name = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if name == key && body.contains(':') {
            seen += 1;
            if seen == 2 {
                return Some((n + 1, indent + 1));
            }
        }
    }
    None
}

/// The name in `names` closest to `given`, if one is close enough to be a likely typo.
pub(crate) fn did_you_mean<S: AsRef<str>>(
    given: &str,
    names: impl IntoIterator<Item = S>,
) -> Option<String> {
    names
        .into_iter()
        .map(|n| {
            let n = n.as_ref().to_owned();
            (edit_distance(given, &n), n)
        })
        .filter(|(d, n)| *d <= (n.len().max(given.len()) / 2).max(1))
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_name() {
        let names = ["kind", "batch_size", "exploration"];
        assert_eq!(
            did_you_mean("batchsize", names).as_deref(),
            Some("batch_size")
        );
        assert_eq!(did_you_mean("zzzzzzzz", names), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
