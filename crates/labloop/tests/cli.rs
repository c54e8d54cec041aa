//! The `labloop` binary as users call it: bad workflows are rejected with file:line:col and a non-zero
//! exit, never a panic; the schema prints; a short campaign runs and prints JSON.

use std::path::PathBuf;

mod common;

use common::{labloop, repo};

#[test]
fn unknown_key_is_rejected_with_its_place() {
    let out = labloop()
        .arg("validate")
        .arg(repo(
            "crates/labloop-workflow/tests/bad-workflows/unknown-key.yaml",
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown-key.yaml:32:3: optimizer.batchsize: unknown key `batchsize`"),
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
            repo("crates/labloop-workflow/tests/bad-workflows/wrong-type.yaml")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "wrong-type.yaml:36:3: stopping.max_rounds: expected integer, got a string `four`"
        ),
        "{stderr}"
    );
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
        stdout.contains("ok (224 candidates, 2 steps, up to 4 rounds of 48)"),
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

#[test]
fn bench_optimize_replays_against_a_truth_table() {
    let dir = std::env::temp_dir().join(format!("labloop-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A truth table in the documented format: header, cc1..cc3 matched to the space, truth last.
    let mut table = String::from("rank,cc1,cc2,cc3,cc4,life\n");
    let workflow = repo("workflows/fast-charge-clo.yaml");
    let policies = std::fs::read_to_string(
        std::env::var_os("LABLOOP_SHARED_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo("../shared/data"))
            .join("clo/policies_all.csv"),
    )
    .unwrap();
    for (i, line) in policies.lines().skip(1).enumerate() {
        let rates: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        // A bowl with its top at 5.2-5.2-5.2.
        let life = 1200.0 - 40.0 * rates[..3].iter().map(|c| (c - 5.2).powi(2)).sum::<f64>();
        table.push_str(&format!(
            "{i},{},{},{},{},{life}\n",
            rates[0], rates[1], rates[2], rates[3]
        ));
    }
    let truth = dir.join("truth.csv");
    std::fs::write(&truth, &table).unwrap();
    let out = labloop()
        .args([
            "bench",
            "optimize",
            "--space",
            workflow.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
        ])
        .args([
            "--noise-sd",
            "50",
            "--batch",
            "8",
            "--rounds",
            "2",
            "--seeds",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|s| s["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["labloop", "clo-reference", "random"]);
    for s in &lines {
        assert_eq!(s["seeds"], 2);
        assert_eq!(s["mean_true_value_per_round"].as_array().unwrap().len(), 2);
    }

    // A bad cell is named with its place: line 4 (the third data row), column 4 (cc3).
    let bad: Vec<String> = table
        .lines()
        .enumerate()
        .map(|(n, l)| {
            if n == 3 {
                let mut f: Vec<&str> = l.split(',').collect();
                f[3] = "abc";
                f.join(",")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&truth, bad.join("\n")).unwrap();
    let out = labloop()
        .args([
            "bench",
            "optimize",
            "--space",
            workflow.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
            "--seeds",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("truth.csv:4:4: `abc` is not a number"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}
