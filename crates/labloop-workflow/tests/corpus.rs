//! Workflow files: the examples are valid, the CLO space is exactly the published 224 protocols, and
//! bad files get the expected messages (`tests/bad-workflows/*.yaml` beside `*.expected`;
//! `UPDATE_EXPECT=1` rewrites those).

use std::fs;
use std::path::PathBuf;

/// The repository root.
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The corpus of broken workflows, beside this file.
fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad-workflows")
}

/// The shared data folder: `$LABLOOP_SHARED_DATA`, else `../shared/data` beside the repository.
fn shared_data() -> PathBuf {
    let dir = std::env::var_os("LABLOOP_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    assert!(
        dir.join("README.md").exists(),
        "shared data not found at {} (set LABLOOP_SHARED_DATA to the shared/data folder)",
        dir.display()
    );
    dir
}

#[test]
fn every_example_workflow_is_valid() {
    let dir = repo_root().join("workflows");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(problems) = labloop_workflow::load(&path) {
                panic!(
                    "{}:\n{}",
                    path.display(),
                    problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn clo_workflow_space_is_the_published_224_protocols() {
    let workflow =
        labloop_workflow::load(&repo_root().join("workflows/fast-charge-clo.yaml")).unwrap();
    let ours: Vec<Vec<f64>> = workflow
        .protocol_space()
        .expect("a charge-protocol campaign")
        .enumerate()
        .iter()
        .map(|p| p.c_rates())
        .collect();
    let text = fs::read_to_string(shared_data().join("clo/policies_all.csv")).unwrap();
    let published: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.trim().parse().unwrap()).collect())
        .collect();
    assert_eq!(published.len(), 224);
    assert_eq!(ours.len(), published.len());
    let same = |a: &Vec<f64>, b: &Vec<f64>| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
    for p in &published {
        assert!(
            ours.iter().any(|o| same(o, p)),
            "published protocol {p:?} missing"
        );
    }
    for o in &ours {
        assert!(
            published.iter().any(|p| same(o, p)),
            "protocol {o:?} is not in the published list"
        );
    }
    assert_eq!(workflow.optimizer.batch_size, 48);
    assert_eq!(workflow.cycle_step().unwrap().cycles, 100);
}

#[test]
fn bad_workflows_get_the_expected_messages() {
    let dir = corpus();
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut mismatches = Vec::new();
    let mut seen = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (_, problems) =
            labloop_workflow::parse_in(&fs::read_to_string(&path).unwrap(), &name, &dir);
        assert!(!problems.is_empty(), "{name} was accepted");
        for p in &problems {
            assert!(p.line > 0 && p.column > 0, "{name}: no location in `{p}`");
        }
        let actual: String = problems.iter().map(|p| format!("{p}\n")).collect();
        let expected_path = path.with_extension("expected");
        if update {
            fs::write(&expected_path, &actual).unwrap();
        } else if fs::read_to_string(&expected_path).unwrap_or_default() != actual {
            mismatches.push(format!("{name}: got\n{actual}"));
        }
    }
    assert!(seen >= 30, "the corpus holds {seen} files");
    assert!(
        mismatches.is_empty(),
        "run with UPDATE_EXPECT=1 to accept:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn schema_describes_the_workflow_keys() {
    let schema: serde_json::Value = serde_json::from_str(&labloop_workflow::schema()).unwrap();
    let props = &schema["properties"];
    for key in [
        "campaign",
        "optimizer",
        "stopping",
        "instruments",
        "experiment",
        "store",
    ] {
        assert!(props.get(key).is_some(), "schema lacks `{key}`");
    }
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::Bool(false)
    );
}

/// Every file in `workflows/` (and every shared instruments file in `workflows/instruments/`), as
/// written, against the schema `labloop schema` prints, by an independent JSON Schema validator:
/// what editors will check while people type.
#[test]
fn example_workflows_satisfy_the_published_schema() {
    let check = |schema: &str, dir: &std::path::Path| {
        let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        let mut seen = 0;
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let yaml: yaml_serde::Value =
                yaml_serde::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            let document = serde_json::to_value(yaml).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&document)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{}:\n{}",
                path.display(),
                errors.join("\n")
            );
            seen += 1;
        }
        seen
    };
    let root = repo_root().join("workflows");
    assert!(check(&labloop_workflow::schema(), &root) >= 3);
    assert!(
        check(
            &labloop_workflow::include_schema(),
            &root.join("instruments")
        ) >= 1
    );
}

/// The schema is strict, not a rubber stamp: the same validator rejects the broken files whose
/// mistakes are about shape (unknown keys, wrong types, unknown words).
#[test]
fn published_schema_rejects_misshapen_workflows() {
    let schema: serde_json::Value = serde_json::from_str(&labloop_workflow::schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for name in [
        "unknown-key",
        "wrong-type",
        "unknown-driver",
        "direction-spelling",
        "bad-on-failure",
        "step-unknown-action",
        "negative-retries",
        "missing-section",
    ] {
        let path = corpus().join(format!("{name}.yaml"));
        let yaml: yaml_serde::Value =
            yaml_serde::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let document = serde_json::to_value(yaml).unwrap();
        assert!(!validator.is_valid(&document), "{name} passed the schema");
    }
}
