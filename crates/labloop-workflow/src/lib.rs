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

mod bounds;
mod diagnostic;
mod locate;
mod order;
mod refs;
mod schema_check;
mod secrets;
mod spec;
mod validate;

pub use diagnostic::Diagnostic;
pub use order::step_order;
pub use refs::{Reference, interpolate, references};
pub use secrets::{password_from_env, redact_secrets, url_has_password};
pub use spec::*;

use labloop_core::limits::MAX_DIAGNOSTICS;
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
    let base = Path::new(file).parent().unwrap_or(Path::new(""));
    parse_in(text, file, base)
}

/// Like [`parse`], with `include:` paths read relative to `base` rather than `file`'s folder (for a
/// workflow that does not come from a file, or is named by a shorter path in diagnostics).
pub fn parse_in(text: &str, file: &str, base: &Path) -> (Option<Workflow>, Vec<Diagnostic>) {
    parse_with(text, file, &|name, i| bounds::read_include(base, name, i))
}

/// Reads an `include:` entry's text: its name as written and its index, or why it cannot be read.
type IncludeReader<'a> = &'a dyn Fn(&str, usize) -> Result<String, String>;

fn parse_with(
    text: &str,
    file: &str,
    read_include: IncludeReader<'_>,
) -> (Option<Workflow>, Vec<Diagnostic>) {
    if let Some(d) = bounds::check_text(text, file) {
        return (None, vec![d]);
    }
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
    include_files(
        &mut root,
        &schema,
        file,
        read_include,
        &mut sources,
        &mut problems,
    );
    let mut unresolved = std::collections::HashSet::new();
    for (path, message) in refs::substitute_static(&mut root) {
        problems.push(at(text, file, &path, message));
        unresolved.insert(path);
    }
    // A value left as `${{ ... }}` because its reference failed is already reported. Only the
    // first problems are located (each location reads the file); the rest are counted.
    let mismatches: Vec<_> = SchemaChecker::check(&schema, &schema, &root)
        .into_iter()
        .filter(|m| !unresolved.contains(&m.path))
        .collect();
    let room = MAX_DIAGNOSTICS.saturating_sub(problems.len());
    let more = mismatches.len().saturating_sub(room);
    for m in mismatches.into_iter().take(room) {
        problems.push(at(text, file, &m.path, m.message));
    }
    if more > 0 {
        problems.push(at(text, file, "", format!("… and {more} more problems")));
    }
    if !problems.is_empty() {
        return (None, problems);
    }
    match serde_json::from_value::<Workflow>(root) {
        Ok(workflow) => {
            let mut problems = validate::validate(&workflow, &sources);
            if problems.len() > MAX_DIAGNOSTICS {
                let more = problems.len() - MAX_DIAGNOSTICS;
                problems.truncate(MAX_DIAGNOSTICS);
                problems.push(at(text, file, "", format!("… and {more} more problems")));
            }
            (Some(workflow), problems)
        }
        // The schema and the types come from the same code, so this is a bug if it ever shows.
        Err(e) => (None, vec![at(text, file, "", e.to_string())]),
    }
}

/// A workflow with the text of every file it includes: all a campaign needs to read its workflow
/// again anywhere. The store keeps one with each campaign, so `labloop resume` and the server read
/// the store alone, whatever their working directory; diagnostics still name each part's file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    /// The workflow's name in diagnostics (its path as given).
    pub file: String,
    /// The workflow's text.
    pub text: String,
    /// Each `include:` entry as written, with the text it named when the bundle was made.
    pub includes: Vec<IncludedText>,
    /// The workflow's folder, absolute, when the bundle was made: where its plugins' relative
    /// paths start, whatever folder the campaign is resumed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

/// One included file of a [`Bundle`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IncludedText {
    /// The entry as the workflow writes it (`instruments/sim-lab.yaml`).
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl Bundle {
    /// The workflow `text` (named `file`) with every include it names that can be read, relative
    /// to `file`'s folder (one that cannot is left out: parsing the bundle reports it).
    pub fn new(text: &str, file: &str) -> Self {
        let base = Path::new(file).parent().unwrap_or(Path::new(""));
        let names: Vec<String> = yaml_to_json(text, file)
            .ok()
            .and_then(|root| root.get("include").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let includes = names
            .into_iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let text = bounds::read_include(base, &name, i).ok()?;
                Some(IncludedText { name, text })
            })
            .collect();
        let folder = std::fs::canonicalize(if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        })
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
        Bundle {
            file: file.to_owned(),
            text: text.to_owned(),
            includes,
            folder,
        }
    }

    /// Parses and validates the workflow with its includes from the bundle, never from disk.
    pub fn parse(&self) -> (Option<Workflow>, Vec<Diagnostic>) {
        parse_with(&self.text, &self.file, &|name, i| {
            self.includes
                .iter()
                .find(|inc| inc.name == name)
                .map(|inc| inc.text.clone())
                .ok_or_else(|| {
                    format!("include[{i}] `{name}` was not readable when the campaign started")
                })
        })
    }

    /// The bundle as the store keeps it (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("text serialises")
    }

    /// A bundle the store kept.
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json)
            .map_err(|e| format!("a stored workflow bundle that does not decode: {e}"))
    }
}

/// A stored campaign's workflow, read from the store alone: from its bundle (JSON, see
/// [`Bundle`]) when the store kept one; a campaign of a store older than bundles from its text,
/// includes read relative to the working directory as then. `campaign` names it in diagnostics.
pub fn parse_stored(
    workflow_yaml: &str,
    bundle: Option<&str>,
    campaign: &str,
) -> (Option<Workflow>, Vec<Diagnostic>) {
    let name = format!("{campaign} (stored workflow)");
    match bundle.map(Bundle::from_json) {
        Some(Ok(bundle)) => bundle.parse(),
        Some(Err(e)) => (None, vec![Diagnostic::new(&name, 0, 0, "", e)]),
        None => parse(workflow_yaml, &name),
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
    let (line, column) = locate::locate_or_start(text, path);
    Diagnostic::new(file, line, column, path, message)
}

fn yaml_to_json(text: &str, file: &str) -> Result<Value, Diagnostic> {
    let yaml: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| diagnostic::from_yaml_error(&e, text, file))?;
    serde_json::to_value(&yaml)
        .map_err(|e| at(text, file, "", format!("cannot be read as data: {e}")))
}

/// Reads each `include:` file, checks it against the instruments' schema (problems located in that
/// file) and appends its instruments.
fn include_files(
    root: &mut Value,
    schema: &Value,
    file: &str,
    read_include: IncludeReader<'_>,
    sources: &mut Vec<Source>,
    problems: &mut Vec<Diagnostic>,
) {
    let Some(includes) = root.get("include").and_then(Value::as_array).cloned() else {
        return;
    };
    let include_schema = include_schema_value(schema);
    for (i, name) in includes.iter().enumerate() {
        let Some(name) = name.as_str() else { continue };
        // Named in diagnostics as seen from the including file's name.
        let shown = Path::new(file)
            .parent()
            .unwrap_or(Path::new(""))
            .join(name)
            .display()
            .to_string();
        let text = match read_include(name, i) {
            Ok(t) => t,
            Err(e) => {
                let text = &sources[0].text;
                problems.push(at(text, file, &format!("include[{i}]"), e));
                continue;
            }
        };
        if let Some(d) = bounds::check_text(&text, &shown) {
            problems.push(d);
            continue;
        }
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
                    .take(MAX_DIAGNOSTICS)
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

/// A diagnostic at the field `path` (dotted, e.g. `experiment.steps[2].run.with.amplitude_mv`)
/// of `text`, the file `file`, located as the workflow's own checks locate theirs (for checks
/// made outside this crate, such as a plugin's schema).
pub fn diagnostic_at(text: &str, file: &str, path: &str, message: impl Into<String>) -> Diagnostic {
    let (line, column) = locate::locate_or_start(text, path);
    Diagnostic::new(file, line, column, path, message)
}

/// Reads a workflow file: a regular file (not a device or a FIFO) of at most
/// `labloop_core::limits::MAX_WORKFLOW_BYTES` (a longer one reads one byte over, which [`parse`]
/// refuses); `Err` says why not.
pub fn read_file(path: &Path) -> Result<String, String> {
    bounds::read_workflow(path)
}

/// Reads, parses and validates a workflow file; `Err` holds every problem.
pub fn load(path: &Path) -> Result<Workflow, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = read_file(path).map_err(|e| {
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

/// An `include:`d file: an `instruments:` list (its `$ref`s resolve in the workflow's schema).
fn include_schema_value(workflow_schema: &Value) -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {"instruments": workflow_schema["properties"]["instruments"]},
        "required": ["instruments"],
        "additionalProperties": false,
    })
}

/// The JSON Schema of workflow files, pretty-printed, as editors use it: wherever a number, a
/// boolean or a list is expected, a `${{ ... }}` reference is accepted too (checked by `labloop
/// validate` once resolved).
pub fn schema() -> String {
    pretty(for_editors(schema_value()))
}

/// The JSON Schema of shared instrument files (`include:`), pretty-printed, as editors use it.
pub fn include_schema() -> String {
    let workflow = schema_value();
    let mut schema = include_schema_value(&workflow);
    schema["$schema"] = workflow["$schema"].clone();
    schema["title"] = Value::String("Instruments".into());
    schema["$defs"] = workflow["$defs"].clone();
    pretty(for_editors(schema))
}

fn pretty(schema: Value) -> String {
    serde_json::to_string_pretty(&schema).expect("a schema always serialises")
}

/// Lets every number, boolean and list in `schema` be a `${{ ... }}` reference instead.
fn for_editors(mut schema: Value) -> Value {
    fn allow_references(node: &mut Value) {
        match node {
            Value::Object(map) => {
                let typed = map.get("type").is_some_and(|t| {
                    let kinds: Vec<&str> = match t {
                        Value::String(k) => vec![k.as_str()],
                        Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
                        _ => Vec::new(),
                    };
                    kinds
                        .iter()
                        .any(|k| matches!(*k, "integer" | "number" | "boolean" | "array"))
                });
                for (key, child) in map.iter_mut() {
                    if !matches!(key.as_str(), "default" | "examples" | "const" | "enum") {
                        allow_references(child);
                    }
                }
                if typed {
                    let mut value = serde_json::Map::new();
                    for key in ["description", "default"] {
                        if let Some(v) = map.remove(key) {
                            value.insert(key.into(), v);
                        }
                    }
                    let plain = Value::Object(std::mem::take(map));
                    value.insert(
                        "anyOf".into(),
                        serde_json::json!([plain, {"$ref": "#/$defs/Reference"}]),
                    );
                    *map = value;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(allow_references),
            _ => {}
        }
    }
    allow_references(&mut schema);
    schema["$defs"]["Reference"] = serde_json::json!({
        "description": "A reference resolved when the workflow is read, e.g. `${{ variables.cycles }}`.",
        "type": "string",
        "pattern": r"^\s*\$\{\{[^}]*\}\}\s*$",
    });
    schema
}
