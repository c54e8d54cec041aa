//! A lab on one PostgreSQL: two engines (one runs the campaign, one stands by) and eight `labloop
//! agent` processes acting as the coin-cell robot, on a campaign of 2 000 cells (8 rounds of 250):
//! 2 000 build jobs at least. Agents are killed at random and replaced, and the running engine is
//! killed mid-campaign; the standby takes the campaign over and finishes it. Every cell is built by
//! exactly one completed job, none is lost, and no job is completed twice. (About 2 minutes here.)

use labloop_store::Store;
use labloop_tests::{
    Killed, drop_postgres, fresh_dir, fresh_postgres, labloop_bin, repo_root, write_queue_lab,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The robot: the built cell, named after its job.
const ROBOT: &str = r#"id=$(printf %s "$LABLOOP_JOB_ID" | tr / -)
printf '{"cell_id": "agent-%s", "electrolyte_ul": 70}' "$id""#;

fn spawn(dir: &Path, args: &[&str], name: &str) -> Killed {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Killed(
        Command::new(labloop_bin())
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("labloop starts"),
    )
}

fn agent(dir: &Path, url: &str, n: usize) -> Killed {
    spawn(
        dir,
        &[
            "agent",
            "--store",
            url,
            "--capability",
            "coin-cell-robot",
            "--exec",
            ROBOT,
            "--lease",
            "2s",
            "--poll",
            "100ms",
            "--name",
            &format!("agent-{n}"),
        ],
        &format!("agent-{n}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_and_agents_share_a_lab_through_postgres() {
    let Some((url, admin, name)) = fresh_postgres("cluster").await else {
        return;
    };
    let dir = fresh_dir("lab-cluster");
    write_queue_lab(&dir, 250, 8);
    let workflow =
        std::fs::read_to_string(repo_root().join("workflows/electrolyte-formulation.yaml"))
            .unwrap()
            .replace("instruments/sim-lab.yaml", "instruments/lab.yaml")
            .replace("batch_size: 8", "batch_size: 250")
            .replace("max_rounds: 4", "max_rounds: 8")
            .replace("max_cells: 32", "max_cells: 2000")
            .replace("  best_probability: 0.9\n", "");
    std::fs::write(dir.join("workflow.yaml"), workflow).unwrap();

    let mut agents: Vec<Killed> = (0..8).map(|n| agent(&dir, &url, n)).collect();
    let mut next_agent = 8;
    let engine_args = |owner: &str| {
        vec![
            "--owner".to_owned(),
            owner.to_owned(),
            "--lease".into(),
            "2s".into(),
            "--json".into(),
        ]
    };
    let mut run = vec![
        "run".to_owned(),
        "workflow.yaml".into(),
        "--store".into(),
        url.clone(),
    ];
    run.extend(engine_args("engine-a"));
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let mut a = spawn(&dir, &run, "engine-a");
    let store = Store::connect(&url).await.unwrap();
    let campaign = "electrolyte-formulation";
    let started = Instant::now();
    while store.campaign(campaign).await.unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "engine A never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut resume = vec![
        "resume".to_owned(),
        campaign.into(),
        "--store".into(),
        url.clone(),
        "--wait".into(),
    ];
    resume.extend(engine_args("engine-b"));
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    let mut b = spawn(&dir, &resume, "engine-b");

    let mut rng = StdRng::seed_from_u64(0xc1a5);
    let mut engine_killed = false;
    let mut agents_killed = 0;
    while b.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the campaign did not finish"
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..600))).await;
        let done = store
            .jobs(campaign)
            .await
            .unwrap()
            .iter()
            .filter(|j| j.state == "completed")
            .count();
        if !engine_killed && done >= 300 {
            assert!(
                a.0.try_wait().unwrap().is_none(),
                "engine A ended before it was killed"
            );
            a.0.kill().unwrap();
            a.0.wait().unwrap();
            engine_killed = true;
        }
        if agents_killed < 8 {
            let victim = rng.random_range(0..agents.len());
            let fresh = agent(&dir, &url, next_agent);
            next_agent += 1;
            drop(std::mem::replace(&mut agents[victim], fresh));
            agents_killed += 1;
        }
    }
    assert!(engine_killed, "engine A was never killed");
    let status = b.0.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("engine-b.log")).unwrap();
    assert!(status.success(), "engine B failed: {log}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("engine-b.out")).unwrap()).unwrap();
    assert_eq!(result["cells"], 2000);
    assert_eq!(result["failed"], 0);

    // A build whose worker died may time out and be retried under a new key: a cell may have had
    // more than one job, but it is the product of exactly one completed job of its own.
    let jobs = store.jobs(campaign).await.unwrap();
    assert!(jobs.len() >= 2000, "{} jobs", jobs.len());
    for e in store.experiments(campaign).await.unwrap() {
        let own: Vec<_> = jobs
            .iter()
            .filter(|j| j.id.starts_with(&format!("{}/build_cell/", e.id)))
            .collect();
        let makers = own
            .iter()
            .filter(|j| j.state == "completed")
            .filter(|j| {
                let built: serde_json::Value =
                    serde_json::from_str(j.result.as_deref().unwrap()).unwrap();
                built["cell_id"] == e.cell_id.as_str()
            })
            .count();
        assert_eq!(
            makers,
            1,
            "{}: its cell from one completed job of {}",
            e.id,
            own.len()
        );
    }
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    for n in 0..next_agent {
        let out = std::fs::read_to_string(dir.join(format!("agent-{n}.out"))).unwrap();
        for id in out.lines().filter_map(|l| l.strip_prefix("completed ")) {
            *acknowledged.entry(id.to_owned()).or_default() += 1;
        }
    }
    assert!(
        acknowledged.values().all(|&n| n == 1),
        "a job completed twice"
    );
    println!(
        "2000 cells, {} jobs, {agents_killed} agents killed, engine A killed; finished in {:?}",
        jobs.len(),
        started.elapsed()
    );
    store.close().await;
    drop(agents);
    drop_postgres(&admin, &name).await;
    let _ = std::fs::remove_dir_all(dir);
}
