//! The crate's one error type: what is wrong, in which file, and where in it.

use std::fmt;

/// Where in a file a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A line of a text file (1-based), and the column by its header name when one is to blame.
    Line {
        /// 1-based line.
        line: u64,
        /// The column's header, as the file writes it.
        column: Option<String>,
    },
    /// A byte offset of a binary file, and the field being read there.
    Byte {
        /// Offset from the file's start.
        offset: u64,
        /// What was being read (a module, a column id).
        field: Option<String>,
    },
    /// The file as a whole (empty, unknown format).
    File,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line { line, column: None } => write!(f, "line {line}"),
            Place::Line {
                line,
                column: Some(c),
            } => write!(f, "line {line}, column `{c}`"),
            Place::Byte {
                offset,
                field: None,
            } => write!(f, "byte {offset}"),
            Place::Byte {
                offset,
                field: Some(field),
            } => write!(f, "byte {offset} ({field})"),
            Place::File => write!(f, "whole file"),
        }
    }
}

/// A reader's refusal, before the file's name is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Where.
    pub place: Place,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Located {
    /// A problem on a line, optionally in a named column.
    pub fn line(line: u64, column: Option<&str>, message: impl Into<String>) -> Self {
        Located {
            place: Place::Line {
                line,
                column: column.map(str::to_string),
            },
            message: message.into(),
        }
    }

    /// A problem at a byte offset of a binary file.
    pub fn byte(offset: u64, field: Option<&str>, message: impl Into<String>) -> Self {
        Located {
            place: Place::Byte {
                offset,
                field: field.map(str::to_string),
            },
            message: message.into(),
        }
    }

    /// A problem with the file as a whole.
    pub fn file(message: impl Into<String>) -> Self {
        Located {
            place: Place::File,
            message: message.into(),
        }
    }
}

/// Why a file was not imported. Nothing of a refused file is kept.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {place}: {message}")]
pub struct ImportError {
    /// The file's name as given.
    pub file: String,
    /// Where in it.
    pub place: Place,
    /// What is wrong.
    pub message: String,
}

impl ImportError {
    /// The reader's refusal, named with its file.
    pub fn in_file(file: &str, located: Located) -> Self {
        ImportError {
            file: file.to_string(),
            place: located.place,
            message: located.message,
        }
    }
}
