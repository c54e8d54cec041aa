//! What `labloop validate` (and a campaign, before its first cell) asks of a workflow's plugins:
//! each starts and greets labloop, and offers what the workflow uses of it — step kinds and
//! measurements whose declared JSON Schema accepts the workflow's inputs, models, instruments,
//! and the output the objective is read from.

use crate::Plugins;
use crate::protocol::{Hello, Operation};
use labloop_workflow::{
    Diagnostic, DriverKind, InstrumentKind, StepAction, TransportSpec, Workflow,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A problem: the dotted path of the field in the workflow, and what is wrong.
pub type Problem = (String, String);

/// [`check`] for `labloop validate`: starts each plugin of the workflow read from `path` (in a
/// scratch state folder, removed after), checks the workflow's use of it against its `hello`, and
/// shuts it down; the problems located in the file (file:line:col).
pub async fn check_file(workflow: &Workflow, path: &Path) -> Vec<Diagnostic> {
    if workflow.plugins.is_empty() {
        return Vec::new();
    }
    let file = path.display().to_string();
    let located = |problems: Vec<Problem>| -> Vec<Diagnostic> {
        let text = labloop_workflow::read_file(path).unwrap_or_default();
        problems
            .into_iter()
            .map(|(at, message)| labloop_workflow::diagnostic_at(&text, &file, &at, message))
            .collect()
    };
    let scratch = std::env::temp_dir().join(format!("labloop-validate-{}", std::process::id()));
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let plugins = match Plugins::of(workflow, folder, &scratch, None) {
        Ok(p) => p,
        Err(e) => return located(vec![("plugins".into(), e)]),
    };
    let problems = check(workflow, &plugins).await;
    plugins.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    located(problems)
}

/// Starts every plugin of `workflow` and checks the workflow's use of each against its `hello`.
pub async fn check(workflow: &Workflow, plugins: &Plugins) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut hellos: BTreeMap<&str, Hello> = BTreeMap::new();
    for (i, spec) in workflow.plugins.iter().enumerate() {
        let hello = match plugins.get(&spec.name) {
            Ok(plugin) => plugin.hello().await,
            Err(e) => Err(e),
        };
        match hello {
            Ok(hello) => {
                hellos.insert(&spec.name, hello);
            }
            Err(e) => problems.push((format!("plugins[{i}].command"), e.to_string())),
        }
    }
    let ids = workflow.step_ids();
    for (i, step) in workflow.experiment.steps.iter().enumerate() {
        let path = format!("experiment.steps[{i}]");
        for action in step.actions() {
            let Some(hello) = action.plugin().and_then(|p| hellos.get(p)) else {
                continue;
            };
            let here = format!("{path}.{}", action.key());
            match action {
                StepAction::Run(run) => {
                    let offered = &hello.capabilities.steps;
                    match offered.get(&run.step) {
                        Some(op) => check_inputs(&mut problems, &here, op, &run.inputs),
                        None => problems.push((
                            format!("{here}.step"),
                            missing("step kind", &run.step, &run.plugin, offered.keys()),
                        )),
                    }
                }
                StepAction::Measure(m) => {
                    let offered = &hello.capabilities.measurements;
                    match offered.get(&m.measurement) {
                        Some(op) => check_inputs(&mut problems, &here, op, &m.inputs),
                        None => problems.push((
                            format!("{here}.measurement"),
                            missing("measurement", &m.measurement, &m.plugin, offered.keys()),
                        )),
                    }
                }
                StepAction::Predict(p) => {
                    let offered = &hello.capabilities.models;
                    match offered.get(&p.model) {
                        Some(model) => {
                            let early = workflow.cycle_step().map_or(0, |c| c.cycles);
                            if model.window > early {
                                problems.push((
                                    format!("{here}.model"),
                                    format!(
                                        "model `{}` predicts from the first {} cycles; the cycle step runs {early}",
                                        p.model, model.window
                                    ),
                                ));
                            }
                        }
                        None => problems.push((
                            format!("{here}.model"),
                            missing(
                                "model",
                                &p.model,
                                p.plugin.as_deref().unwrap_or(""),
                                offered.keys(),
                            ),
                        )),
                    }
                }
                _ => {}
            }
        }
    }
    for (i, inst) in workflow.instruments.iter().enumerate() {
        let (DriverKind::Plugin, Some(TransportSpec::Plugin { name })) =
            (inst.driver, &inst.transport)
        else {
            continue;
        };
        let Some(hello) = hellos.get(name.as_str()) else {
            continue;
        };
        let (offered, what) = match inst.kind {
            InstrumentKind::Cycler => (hello.capabilities.cycler.is_some(), "cycler"),
            InstrumentKind::CellBuilder => {
                (hello.capabilities.cell_builder.is_some(), "cell_builder")
            }
        };
        if !offered {
            problems.push((
                format!("instruments[{i}].transport.plugin.name"),
                format!("plugin `{name}` does not declare the `{what}` capability in its hello"),
            ));
        }
    }
    // References to a plugin step's outputs (in `approve` messages and other steps' `with:`)
    // must name outputs it declares.
    let declared_outputs = |id: &str| -> Option<Vec<String>> {
        let i = ids.iter().position(|s| s == id)?;
        let op = match workflow.experiment.steps[i].action() {
            StepAction::Run(r) => hellos
                .get(r.plugin.as_str())?
                .capabilities
                .steps
                .get(&r.step),
            StepAction::Measure(m) => hellos
                .get(m.plugin.as_str())?
                .capabilities
                .measurements
                .get(&m.measurement),
            _ => None,
        }?;
        Some(op.outputs.keys().cloned().collect())
    };
    for (i, step) in workflow.experiment.steps.iter().enumerate() {
        let texts: Vec<(String, String)> = match step.action() {
            StepAction::Approve(a) => vec![(
                format!("experiment.steps[{i}].approve.message"),
                a.message.clone(),
            )],
            StepAction::Run(r) => {
                inputs_text(&format!("experiment.steps[{i}].run.with"), &r.inputs)
            }
            StepAction::Measure(m) => {
                inputs_text(&format!("experiment.steps[{i}].measure.with"), &m.inputs)
            }
            _ => Vec::new(),
        };
        for (path, text) in texts {
            for r in labloop_workflow::references(&text).unwrap_or_default() {
                let parts: Vec<&str> = r.expr.split('.').collect();
                if let ["steps", id, "outputs", name] = parts.as_slice()
                    && let Some(outputs) = declared_outputs(id)
                    && !outputs.iter().any(|o| o == name)
                {
                    problems.push((
                        path.clone(),
                        format!(
                            "step `{id}` declares no output `{name}`; it declares: {}",
                            outputs.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    // A measured objective's output must be one its step declares.
    if let Some((step, output)) = workflow.campaign.objective.measured()
        && let Some(i) = ids.iter().position(|id| id == step)
    {
        let spec = &workflow.experiment.steps[i];
        let declared = match spec.action() {
            StepAction::Run(r) => hellos
                .get(r.plugin.as_str())
                .and_then(|h| h.capabilities.steps.get(&r.step)),
            StepAction::Measure(m) => hellos
                .get(m.plugin.as_str())
                .and_then(|h| h.capabilities.measurements.get(&m.measurement)),
            _ => None,
        };
        match (spec.action().outputs(), declared) {
            (None, Some(op)) if !op.outputs.contains_key(output) => problems.push((
                "campaign.objective.from".into(),
                format!(
                    "step `{step}` declares no output `{output}`; it declares: {}",
                    op.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
            (Some(builtin), _) if !builtin.contains(&output) => problems.push((
                "campaign.objective.from".into(),
                format!(
                    "step `{step}` has no output `{output}`; it offers: {}",
                    builtin.join(", ")
                ),
            )),
            _ => {}
        }
    }
    problems
}

/// The string inputs of a step, each with its field path.
fn inputs_text(path: &str, inputs: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    inputs
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (format!("{path}.{k}"), s.to_owned())))
        .collect()
}

fn missing<'a>(
    what: &str,
    name: &str,
    plugin: &str,
    offered: impl Iterator<Item = &'a String>,
) -> String {
    let offered: Vec<&str> = offered.map(String::as_str).collect();
    format!(
        "plugin `{plugin}` offers no {what} `{name}`; it offers: {}",
        if offered.is_empty() {
            "none".to_owned()
        } else {
            offered.join(", ")
        }
    )
}

/// Checks `inputs` (the workflow's `with:`) against the operation's declared schema. Values that
/// are references (`${{ ... }}`), known only when the step runs, are checked then.
fn check_inputs(
    problems: &mut Vec<Problem>,
    here: &str,
    op: &Operation,
    inputs: &BTreeMap<String, Value>,
) {
    let known: serde_json::Map<String, Value> = inputs
        .iter()
        .filter(|(_, v)| !v.as_str().is_some_and(|s| s.contains("${{")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deferred = known.len() < inputs.len();
    for (pointer, message) in input_errors(op, &Value::Object(known)) {
        // A `required` input given as a reference is there; only its value waits.
        if deferred && message.contains("is a required property") {
            continue;
        }
        problems.push((format!("{here}.with{}", dotted(&pointer)), message));
    }
}

/// Where and why `inputs` fail the operation's declared schema (JSON pointer, message); a schema
/// that does not compile is one problem at the root.
pub fn input_errors(op: &Operation, inputs: &Value) -> Vec<(String, String)> {
    let Some(schema) = &op.inputs else {
        return Vec::new();
    };
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => {
            return vec![(
                String::new(),
                format!("the plugin's input schema does not compile: {e}"),
            )];
        }
    };
    validator
        .iter_errors(inputs)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect()
}

/// A JSON pointer (`/a/0/b`) as a dotted path suffix (`.a[0].b`).
fn dotted(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|part| {
            let part = part.replace("~1", "/").replace("~0", "~");
            if part.parse::<usize>().is_ok() {
                format!("[{part}]")
            } else {
                format!(".{part}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_are_checked_against_the_declared_schema() {
        let op = Operation {
            inputs: Some(json!({
                "type": "object",
                "properties": {"amplitude_mv": {"type": "number", "maximum": 50}},
                "required": ["amplitude_mv"],
                "additionalProperties": false
            })),
            ..Operation::default()
        };
        let mut problems = Vec::new();
        let mut with = BTreeMap::new();
        with.insert("amplitude_mv".to_owned(), json!(80));
        with.insert("colour".to_owned(), json!("red"));
        check_inputs(&mut problems, "experiment.steps[2].run", &op, &with);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert!(
            paths.contains(&"experiment.steps[2].run.with.amplitude_mv"),
            "{problems:?}"
        );
        assert!(
            paths.contains(&"experiment.steps[2].run.with"),
            "{problems:?}"
        );
        // A reference is checked when the step runs.
        let mut problems = Vec::new();
        let mut with = BTreeMap::new();
        with.insert("amplitude_mv".to_owned(), json!("${{ steps.a.outputs.x }}"));
        check_inputs(&mut problems, "p", &op, &with);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(dotted("/a/0/b~1c"), ".a[0].b/c");
    }
}
