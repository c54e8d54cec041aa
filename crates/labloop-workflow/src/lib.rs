//! Workflow files: YAML that names a campaign's search space and objective, the optimizer, the
//! instruments, the steps of one experiment and when to stop.
//!
//! [`parse`] never fails outright: it returns the workflow it could build (if any) together with every
//! problem found, each as a [`Diagnostic`] naming `file:line:col`, the field, and what was expected —
//! so a file with five mistakes gets five messages at once. [`schema`] prints the JSON Schema of the
//! same types, for editors to autocomplete from.
//!
//! The YAML library sits behind this crate's one `parse` function (DESIGN.md: a maintained
//! serde_yaml successor), so swapping it touches one file.

mod diagnostic;
mod locate;
mod refs;
mod schema_check;
mod spec;
mod validate;

pub use diagnostic::Diagnostic;
pub use refs::{Reference, interpolate, references};
pub use spec::*;

use schema_check::SchemaChecker;
use serde_json::Value;
use std::path::Path;

/// Parses and validates a workflow. `file` names the source in diagnostics; `include:` paths are
/// read relative to its folder.
///
/// ```
/// let (workflow, problems) = labloop_workflow::parse("campaign: {name: x}\n", "w.yaml");
/// assert!(workflow.is_none());
/// assert!(problems[0].to_string().starts_with("w.yaml:1:"));
/// ```
pub fn parse(text: &str, file: &str) -> (Option<Workflow>, Vec<Diagnostic>) {
    let mut root = match yaml_to_json(text, file) {
        Ok(v) => v,
        Err(d) => return (None, vec![d]),
    };
    let schema = schema_value();
    let mut problems = Vec::new();
    let mut sources = vec![Source {
        file: file.to_owned(),
        text: text.to_owned(),
        first_instrument: 0,
    }];
    if !root.is_object() {
        let found = if root.is_null() {
            "an empty file"
        } else {
            "something else"
        };
        return (
            None,
            vec![Diagnostic::new(
                file,
                1,
                1,
                "",
                format!(
                    "expected a map with `campaign`, `optimizer`, `stopping`, `instruments` and `experiment`, got {found}"
                ),
            )],
        );
    }
    include_files(&mut root, &schema, file, &mut sources, &mut problems);
    for (path, message) in refs::substitute_static(&mut root) {
        problems.push(at(text, file, &path, message));
    }
    for m in SchemaChecker::check(&schema, &schema, &root) {
        problems.push(at(text, file, &m.path, m.message));
    }
    if !problems.is_empty() {
        return (None, problems);
    }
    match serde_json::from_value::<Workflow>(root) {
        Ok(workflow) => {
            let problems = validate::validate(&workflow, &sources);
            (Some(workflow), problems)
        }
        // The schema and the types come from the same code, so this is a bug if it ever shows.
        Err(e) => (None, vec![Diagnostic::new(file, 0, 0, "", e.to_string())]),
    }
}

/// Where part of a workflow came from: the file itself, or an included file.
pub(crate) struct Source {
    pub file: String,
    pub text: String,
    /// Index in `instruments` of this file's first instrument.
    pub first_instrument: usize,
}

fn at(text: &str, file: &str, path: &str, message: String) -> Diagnostic {
    let (mut line, mut column) = locate::locate(text, path);
    if line == 0 {
        // The whole file, or a place the block-style search cannot find: its first content line.
        line = text
            .lines()
            .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map_or(1, |n| n + 1);
        column = 1;
    }
    Diagnostic::new(file, line, column, path, message)
}

fn yaml_to_json(text: &str, file: &str) -> Result<Value, Diagnostic> {
    let yaml: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| diagnostic::from_yaml_error(&e, text, file))?;
    serde_json::to_value(&yaml)
        .map_err(|e| Diagnostic::new(file, 0, 0, "", format!("cannot be read as data: {e}")))
}

/// Reads each `include:` file, checks it against the instruments' schema (problems located in that
/// file) and appends its instruments.
fn include_files(
    root: &mut Value,
    schema: &Value,
    file: &str,
    sources: &mut Vec<Source>,
    problems: &mut Vec<Diagnostic>,
) {
    let Some(includes) = root.get("include").and_then(Value::as_array).cloned() else {
        return;
    };
    let base = Path::new(file).parent().unwrap_or(Path::new(""));
    let include_schema = serde_json::json!({
        "type": "object",
        "properties": {"instruments": schema["properties"]["instruments"]},
        "required": ["instruments"],
        "additionalProperties": false,
    });
    for (i, name) in includes.iter().enumerate() {
        let Some(name) = name.as_str() else { continue };
        let path = base.join(name);
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let text = &sources[0].text;
                problems.push(at(
                    text,
                    file,
                    &format!("include[{i}]"),
                    format!("cannot read `{shown}`: {e}"),
                ));
                continue;
            }
        };
        let doc = match yaml_to_json(&text, &shown) {
            Ok(d) => d,
            Err(d) => {
                problems.push(d);
                continue;
            }
        };
        let mismatches = SchemaChecker::check(schema, &include_schema, &doc);
        if !mismatches.is_empty() {
            problems.extend(
                mismatches
                    .into_iter()
                    .map(|m| at(&text, &shown, &m.path, m.message)),
            );
            continue;
        }
        let Some(list) = root
            .as_object_mut()
            .map(|m| {
                m.entry("instruments")
                    .or_insert_with(|| Value::Array(Vec::new()))
            })
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        sources.push(Source {
            file: shown,
            text,
            first_instrument: list.len(),
        });
        list.extend(doc["instruments"].as_array().cloned().unwrap_or_default());
    }
}

/// Reads, parses and validates a workflow file; `Err` holds every problem.
pub fn load(path: &Path) -> Result<Workflow, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::new(
            &file,
            0,
            0,
            "",
            format!("cannot read the file: {e}"),
        )]
    })?;
    match parse(&text, &file) {
        (Some(workflow), problems) if problems.is_empty() => Ok(workflow),
        (_, problems) => Err(problems),
    }
}

fn schema_value() -> Value {
    serde_json::to_value(schemars::schema_for!(Workflow)).expect("a schema is JSON")
}

/// The JSON Schema of workflow files, pretty-printed.
pub fn schema() -> String {
    serde_json::to_string_pretty(&schema_value()).expect("a schema always serialises")
}
