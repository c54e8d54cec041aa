//! A campaign whose coin-cell robot is an external worker: each build is a job on the store's queue,
//! and two `labloop agent` processes (a script standing in for the robot) claim and do them while
//! `labloop run` waits. Every cell of the campaign is one the agents built, each job done once.

use labloop_store::Store;
use labloop_tests::{Killed, fresh_dir, labloop_bin, repo_root, write_queue_lab};
use std::process::{Command, Stdio};

/// The "robot": a built cell named after the job, with its QC.
const ROBOT: &str = r#"id=$(printf %s "$LABLOOP_JOB_ID" | tr / -)
printf '{"cell_id": "agent-%s", "electrolyte_ul": 70, "qc": {"ocv_v": 0.21, "mass_g": 3.2, "crimp_ok": true}}' "$id""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_go_to_agents_through_the_queue() {
    let dir = fresh_dir("queue-campaign");
    write_queue_lab(&dir, 16, 1);
    let workflow =
        std::fs::read_to_string(repo_root().join("workflows/electrolyte-formulation.yaml"))
            .unwrap()
            .replace("instruments/sim-lab.yaml", "instruments/lab.yaml")
            .replace("max_rounds: 4", "max_rounds: 2")
            .replace("max_cells: 32", "max_cells: 16");
    let path = dir.join("workflow.yaml");
    std::fs::write(&path, workflow).unwrap();
    let url = format!("sqlite://{}/store.sqlite", dir.display());

    let agents: Vec<Killed> = (0..2)
        .map(|n| {
            let log = std::fs::File::create(dir.join(format!("agent-{n}.log"))).unwrap();
            Killed(
                Command::new(labloop_bin())
                    .args(["agent", "--store", &url, "--capability", "coin-cell-robot"])
                    .args(["--exec", ROBOT, "--poll", "100ms", "--lease", "10s"])
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("labloop agent starts"),
            )
        })
        .collect();
    let out = Command::new(labloop_bin())
        .args(["run", path.to_str().unwrap(), "--store", &url, "--json"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(agents);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cells = result["cells"].as_u64().unwrap() as usize;
    assert!((8..=16).contains(&cells), "{cells} cells");
    assert_eq!(result["failed"], 0);

    let store = Store::connect(&url).await.unwrap();
    let experiments = store.experiments("electrolyte-formulation").await.unwrap();
    let jobs = store.jobs("electrolyte-formulation").await.unwrap();
    assert_eq!(jobs.len(), cells, "one job per cell");
    for e in &experiments {
        let key = format!("{}/build_cell/1", e.id);
        assert_eq!(
            e.cell_id,
            format!("agent-{}", key.replace('/', "-")),
            "built by an agent"
        );
        let job = jobs.iter().find(|j| j.id == key).expect("its job");
        assert_eq!((job.state.as_str(), job.attempts), ("completed", 1));
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
