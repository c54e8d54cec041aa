//! Many worker processes on one queue: `labloop agent` processes claim 2 000 jobs from one store —
//! PostgreSQL (`LABLOOP_TEST_PG_URL`) and an SQLite file — while the test kills agents with SIGKILL
//! at random (seeded) and starts new ones. Every job must end completed, once: its stored result is
//! the output of the claim that completed it, no agent reports completing a job another completed,
//! and none is lost. Some jobs fail their first attempt on purpose and are retried.

use labloop_store::{NewJob, Store};
use labloop_tests::{Killed, drop_postgres, fresh_dir, fresh_postgres, labloop_bin};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOBS: usize = 2000;
const AGENTS: usize = 8;

/// The work: print the job back as JSON; jobs whose id ends in 7 fail their first attempt.
const WORK: &str = r#"case "$LABLOOP_JOB_ID" in *7) [ "$LABLOOP_JOB_ATTEMPT" = 1 ] && { echo "gripper jammed" >&2; exit 3; };; esac
printf '{"job": "%s", "attempt": %s}' "$LABLOOP_JOB_ID" "$LABLOOP_JOB_ATTEMPT""#;

fn agent(url: &str, dir: &Path, n: usize) -> Killed {
    let capabilities: &[&str] = if n.is_multiple_of(4) {
        &["--capability", "robot", "--capability", "oven"]
    } else {
        &["--capability", "robot"]
    };
    let out = std::fs::File::create(dir.join(format!("agent-{n}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("agent-{n}.log"))).unwrap();
    Killed(
        Command::new(labloop_bin())
            .args(["agent", "--store", url, "--name", &format!("agent-{n}")])
            .args(capabilities)
            .args(["--exec", WORK, "--lease", "1s", "--poll", "50ms"])
            .args(["--exit-when-idle", "3s"])
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .expect("labloop agent starts"),
    )
}

async fn agents_process_every_job_once(url: &str, dir: &Path) {
    let store = Store::connect(url).await.unwrap();
    for i in 0..JOBS {
        let job = NewJob {
            id: format!("job-{i:04}"),
            campaign: Some("queue-test".into()),
            kind: "build_cell".into(),
            capability: if i.is_multiple_of(5) { "oven" } else { "robot" }.into(),
            payload: format!(r#"{{"n": {i}}}"#),
            max_attempts: 10,
        };
        assert!(store.enqueue(&job).await.unwrap());
    }
    let started = Instant::now();
    let mut agents: Vec<Killed> = (0..AGENTS).map(|n| agent(url, dir, n)).collect();
    let mut next = AGENTS;
    let mut rng = StdRng::seed_from_u64(0x9e0e);
    let mut killed = 0;
    // Kill an agent at random every ~300 ms while work remains, and start a fresh one.
    while killed < 10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..450))).await;
        if store.queue_depth().await.unwrap().is_empty() {
            break;
        }
        let victim = rng.random_range(0..agents.len());
        let fresh = agent(url, dir, next);
        next += 1;
        drop(std::mem::replace(&mut agents[victim], fresh));
        killed += 1;
    }
    for a in &mut agents {
        let deadline = Instant::now() + Duration::from_secs(120);
        while a.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "an agent did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let elapsed = started.elapsed();
    let jobs = store.jobs("queue-test").await.unwrap();
    assert_eq!(jobs.len(), JOBS, "no job lost");
    let mut retried = 0;
    for j in &jobs {
        assert_eq!(j.state, "completed", "{}: {:?}", j.id, j.error);
        let result: serde_json::Value = serde_json::from_str(j.result.as_deref().unwrap()).unwrap();
        assert_eq!(result["job"], j.id.as_str());
        assert_eq!(
            result["attempt"], j.attempts,
            "{}: the result of the last claim",
            j.id
        );
        retried += usize::from(j.attempts > 1);
    }
    // Completions the agents acknowledged: never two for one job.
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    for n in 0..next {
        let out = std::fs::read_to_string(dir.join(format!("agent-{n}.out"))).unwrap();
        for line in out.lines() {
            let id = line.strip_prefix("completed ").expect("completed <id>");
            *acknowledged.entry(id.to_owned()).or_default() += 1;
        }
    }
    assert!(
        acknowledged.values().all(|&n| n == 1),
        "a job completed twice"
    );
    // Only an agent killed between storing and printing leaves a completion unprinted.
    assert!(
        acknowledged.len() >= JOBS - killed,
        "{} printed",
        acknowledged.len()
    );
    assert!(
        retried >= JOBS / 10,
        "the failing jobs were retried ({retried})"
    );
    println!(
        "{JOBS} jobs by {next} agents ({killed} killed) in {elapsed:?}: {:.0} jobs/s, {retried} retried",
        JOBS as f64 / elapsed.as_secs_f64()
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_sqlite_complete_every_job_once() {
    let dir = fresh_dir("queue-sqlite");
    let url = format!("sqlite://{}/queue.sqlite", dir.display());
    agents_process_every_job_once(&url, &dir).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_postgres_complete_every_job_once() {
    let Some((url, admin, name)) = fresh_postgres("queue").await else {
        return;
    };
    let dir = fresh_dir("queue-postgres");
    agents_process_every_job_once(&url, &dir).await;
    drop_postgres(&admin, &name).await;
    let _ = std::fs::remove_dir_all(dir);
}
