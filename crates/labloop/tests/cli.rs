//! The `labloop` binary as users call it: bad workflows are rejected with file:line:col and a non-zero
//! exit, never a panic; the schema prints; a short campaign runs and prints JSON.

use std::path::PathBuf;
use std::process::Command;

fn labloop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labloop"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn unknown_key_is_rejected_with_its_place() {
    let out = labloop()
        .arg("validate")
        .arg(repo("tests/data/bad-workflows/unknown-key.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown-key.yaml:32:3: optimizer: unknown field `batchsize`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `batch_size`?"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn wrong_type_stops_run_before_anything_starts() {
    let dir = std::env::temp_dir().join(format!("labloop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = labloop()
        .current_dir(&dir)
        .args([
            "run",
            repo("tests/data/bad-workflows/wrong-type.yaml")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("wrong-type.yaml:36:15: stopping.max_rounds: invalid type: string \"four\", expected u32"), "{stderr}");
    assert!(
        !dir.join("labloop-data").exists(),
        "a rejected workflow must not create a store"
    );
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let out = labloop()
        .args(["run", "/no/such/workflow.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("error: reading /no/such/workflow.yaml"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn schema_is_json() {
    let out = labloop().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "Workflow");
}

#[test]
fn example_workflows_validate() {
    let out = labloop()
        .arg("validate")
        .arg(repo("workflows/fast-charge-clo.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok (224 protocols, 4 rounds of 48)"),
        "{stdout}"
    );
}

#[test]
fn a_short_campaign_prints_json_and_lands_in_the_store() {
    let dir = std::env::temp_dir().join(format!("labloop-cli-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(repo("workflows/fast-charge-clo.yaml"))
        .unwrap()
        .replace("batch_size: 48", "batch_size: 8")
        .replace("clock_acceleration: 100000", "clock_acceleration: 10000000");
    let workflow = dir.join("small.yaml");
    std::fs::write(&workflow, text).unwrap();
    let out = labloop()
        .current_dir(&dir)
        .args(["run", "small.yaml", "--rounds", "2", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["cells"], 16);
    assert_eq!(result["records"], 1600);
    assert_eq!(result["ranking"].as_array().unwrap().len(), 224);
    assert_eq!(
        result["store"],
        "sqlite://labloop-data/fast-charge-clo.sqlite"
    );
    assert!(
        result["simulator_truth"]["recommended_true_rank"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let status = labloop()
        .current_dir(&dir)
        .args([
            "status",
            "--store",
            "sqlite://labloop-data/fast-charge-clo.sqlite",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&status.stdout);
    assert!(
        listing.contains("fast-charge-clo")
            && listing.contains("completed")
            && listing.contains("1600 records"),
        "{listing}"
    );
}
