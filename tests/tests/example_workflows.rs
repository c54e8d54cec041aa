//! The example workflows other than fast charging run on the simulator through the `labloop` binary,
//! as a user runs them: an electrolyte formulation campaign (robot-built coin cells, mixture plus
//! continuous and categorical parameters) and a coin-cell build + formation workflow whose approve
//! step is answered by a "person" through the store while the campaign runs.

use labloop_core::ExperimentState;
use labloop_store::{Approval, Store};
use labloop_tests::{fresh_dir, json_result, labloop_bin, repo_root};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn store_url(name: &str) -> (String, std::path::PathBuf) {
    let dir = fresh_dir(&format!("examples-{name}"));
    let db = dir.join("store.sqlite");
    (format!("sqlite://{}", db.display()), dir)
}

fn run_command(workflow: &str, url: &str) -> Command {
    let mut c = Command::new(labloop_bin());
    c.args(["run", workflow, "--store", url, "--json"])
        .current_dir(repo_root())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `EC 0.3 · EMC 0.7 · additive VC` → name → value.
fn label_values(label: &str) -> BTreeMap<String, String> {
    label
        .split(" · ")
        .map(|part| {
            let (name, value) = part.rsplit_once(' ').expect("`name value`");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electrolyte_formulation_runs_on_the_simulator() {
    let (url, dir) = store_url("formulation");
    let result = json_result(&mut run_command(
        "workflows/electrolyte-formulation.yaml",
        &url,
    ));
    let cells = result["cells"].as_u64().unwrap();
    assert!(
        (8..=32).contains(&cells),
        "8 per round, at most 32: {cells}"
    );
    assert_eq!(result["failed"], 0);
    assert!(
        ["max_rounds", "max_cells", "best_probability"]
            .iter()
            .any(|r| result["stopped_by"].as_str().unwrap().starts_with(r)),
        "{}",
        result["stopped_by"]
    );

    let store = Store::connect(&url).await.unwrap();
    let experiments = store.experiments("electrolyte-formulation").await.unwrap();
    assert_eq!(experiments.len() as u64, cells);
    let predictions = store.observations("electrolyte-formulation").await.unwrap();
    assert_eq!(predictions.len() as u64, cells, "every cell is predicted");
    let bounds = [
        ("EC", 0.10, 0.50),
        ("EMC", 0.20, 0.80),
        ("DMC", 0.0, 0.40),
        ("FEC", 0.0, 0.15),
    ];
    for e in &experiments {
        assert_eq!(e.state, ExperimentState::Completed, "{}", e.id);
        assert!(
            e.cell_id.starts_with("robot1-"),
            "{}: cell {} was not built by the robot",
            e.id,
            e.cell_id
        );
        // Two formation cycles, then the 100 early cycles; numbered 1..=102, each once.
        let records = store.records(&e.id).await.unwrap();
        let numbers: Vec<u32> = records.iter().map(|r| r.cycle).collect();
        assert_eq!(numbers, (1..=102).collect::<Vec<u32>>(), "{}", e.id);
        let values = label_values(&e.protocol_label);
        let mut total = 0.0;
        for (name, low, high) in bounds {
            let x: f64 = values[name].parse().unwrap();
            assert!(
                (low - 1e-4..=high + 1e-4).contains(&x),
                "{name} {x} outside [{low}, {high}]"
            );
            total += x;
        }
        assert!(
            (total - 1.0).abs() < 1e-3,
            "{}: fractions sum to {total}",
            e.id
        );
        let molar: f64 = values["LiPF6_molar"].parse().unwrap();
        assert!((0.8..=1.6).contains(&molar));
        assert!(["none", "VC", "LiDFOB", "PES"].contains(&values["additive"].as_str()));
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coin_cell_build_and_formation_waits_for_a_person() {
    let (url, dir) = store_url("coin-cell");
    // Nothing reads the child's output while it runs, so it goes to files, not pipes that fill up.
    let stderr_path = dir.join("stderr.txt");
    let mut child = run_command("workflows/coin-cell-formation.yaml", &url)
        .stdout(std::fs::File::create(dir.join("stdout.json")).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let campaign = "coin-cell-formation";
    let rejected = format!("{campaign}/r0/001");
    let mut answered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the campaign did not finish: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        // A person answers what waits: one cell is rejected, the others released.
        if let Ok(store) = Store::connect(&url).await {
            for p in store.pending_approvals(campaign).await.unwrap_or_default() {
                assert!(
                    p.message.starts_with("Cell robot1-")
                        && p.message.contains(" Ah at coulombic efficiency 0."),
                    "{}",
                    p.message
                );
                let approved = p.experiment_id != rejected;
                let answer = Approval {
                    by: "test".into(),
                    approved,
                    note: (!approved).then(|| "electrolyte leaked".into()),
                };
                store
                    .approve(&p.experiment_id, &p.step, &answer)
                    .await
                    .unwrap();
                answered.push(p.experiment_id);
            }
            store.close().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    assert_eq!(answered.len(), 8, "two rounds of four cells: {answered:?}");

    let store = Store::connect(&url).await.unwrap();
    let experiments = store.experiments(campaign).await.unwrap();
    assert_eq!(experiments.len(), 8);
    let observed: BTreeMap<String, (f64, bool)> = store
        .observations(campaign)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|o| Some((o.experiment_id, o.observed?)))
        .collect();
    for e in &experiments {
        let steps = store.step_states(&e.id).await.unwrap();
        if e.id == rejected {
            assert_ne!(e.state, ExperimentState::Completed);
            let release = &steps["release"];
            assert_eq!(release.state, "failed");
            assert!(
                release
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains("rejected by test: electrolyte leaked")),
                "{release:?}"
            );
            assert!(
                !steps.contains_key("early"),
                "a rejected cell is not cycled"
            );
            assert!(
                store.records(&e.id).await.unwrap().len() == 3,
                "formation only"
            );
            continue;
        }
        assert_eq!(e.state, ExperimentState::Completed, "{}", e.id);
        for step in [
            "build",
            "wetting",
            "formation",
            "release",
            "early",
            "predict",
            "to_end_of_life",
        ] {
            assert_eq!(
                steps[step].state, "succeeded",
                "{} {step}: {:?}",
                e.id, steps[step]
            );
        }
        let (life, censored) = observed[&e.id];
        assert!(!censored && life > 100.0, "{}: observed life {life}", e.id);
        // Formation, early cycles and the rest to end of life: one record per cycle, in order.
        let numbers: Vec<u32> = store
            .records(&e.id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.cycle)
            .collect();
        assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<u32>>());
        assert!(
            numbers.len() as f64 >= 3.0 + life,
            "{}: {} records",
            e.id,
            numbers.len()
        );
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
