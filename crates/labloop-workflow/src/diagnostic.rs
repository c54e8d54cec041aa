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
    let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut message = error.to_string();
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    let (path, mut message) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), message),
    };
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
