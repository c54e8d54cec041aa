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
mod spec;
mod validate;

pub use diagnostic::Diagnostic;
pub use spec::*;

/// Parses and validates a workflow. `file` names the source in diagnostics.
///
/// ```
/// let (workflow, problems) = labloop_workflow::parse("campaign: {name: x}\n", "w.yaml");
/// assert!(workflow.is_none());
/// assert!(problems[0].to_string().starts_with("w.yaml:1:"));
/// ```
pub fn parse(text: &str, file: &str) -> (Option<Workflow>, Vec<Diagnostic>) {
    match yaml_serde::from_str::<Workflow>(text) {
        Ok(workflow) => {
            let problems = validate::validate(&workflow, text, file);
            (Some(workflow), problems)
        }
        Err(error) => (None, vec![diagnostic::from_yaml_error(&error, text, file)]),
    }
}

/// Reads, parses and validates a workflow file; `Err` holds every problem.
pub fn load(path: &std::path::Path) -> Result<Workflow, Vec<Diagnostic>> {
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

/// The JSON Schema of workflow files, pretty-printed.
pub fn schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Workflow))
        .expect("a schema always serialises")
}
