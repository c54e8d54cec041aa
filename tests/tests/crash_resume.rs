//! Durability: the example campaign runs as a real child process, is killed with SIGKILL at seeded
//! random moments, and is resumed each time with `labloop resume`. The result must equal an
//! uninterrupted run with the same seed, every stored cycle record must be there exactly once, and no
//! experiment may have started a second test.

use labloop_store::Store;
use labloop_tests::{fresh_dir, json_result, labloop_bin, repo_root};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KILLS: usize = 10;
const ROUNDS: &str = "3";

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(labloop_bin());
    c.args(args)
        .current_dir(repo_root())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs to the end and returns the JSON result.
fn finish(args: &[&str]) -> serde_json::Value {
    json_result(&mut command(args))
}

/// Starts the command and kills it with SIGKILL after `after`; true when it was killed (not done).
fn kill_after(args: &[&str], after: Duration) -> bool {
    let mut child = command(args).spawn().expect("labloop starts");
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("child status") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            assert!(status.success(), "{args:?} exited with {status}: {stderr}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    true
}

/// Per experiment: (candidate, cycles stored, Σ discharge capacity) and the prediction.
async fn snapshot(url: &str) -> BTreeMap<String, (usize, usize, f64, Option<f64>)> {
    let store = Store::connect(url).await.expect("store opens");
    let mut out = BTreeMap::new();
    let observed: HashMap<String, f64> = store
        .observations("fast-charge-clo")
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.experiment_id, o.prediction.cycle_life))
        .collect();
    for e in store.experiments("fast-charge-clo").await.unwrap() {
        let records = store.records(&e.id).await.unwrap();
        let cycles: Vec<u32> = records.iter().map(|r| r.cycle).collect();
        let expected: Vec<u32> = (1..=records.len() as u32).collect();
        assert_eq!(
            cycles, expected,
            "{}: cycles stored out of order or with gaps",
            e.id
        );
        let sum: f64 = records.iter().map(|r| r.discharge_capacity_ah).sum();
        out.insert(
            e.id.clone(),
            (
                e.candidate_index,
                records.len(),
                sum,
                observed.get(&e.id).copied(),
            ),
        );
    }
    store.close().await;
    out
}

#[test]
fn killed_campaigns_resume_to_the_uninterrupted_result() {
    let dir = fresh_dir("crash");
    let workflow = repo_root().join("workflows/fast-charge-clo.yaml");
    let workflow = workflow.to_str().unwrap();
    let reference_url = format!("sqlite://{}/reference.sqlite", dir.display());
    let crashed_url = format!("sqlite://{}/crashed.sqlite", dir.display());

    let started = Instant::now();
    let reference = finish(&[
        "run",
        workflow,
        "--rounds",
        ROUNDS,
        "--store",
        &reference_url,
        "--json",
    ]);
    let uninterrupted = started.elapsed();

    // Kill points spread over the length of an uninterrupted run, seeded so a failure replays.
    // `LABLOOP_CRASH_SEED` explores other kill points (the default is the one CI runs).
    let seed = std::env::var("LABLOOP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_20);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    let mut first = true;
    let mut attempts = 0;
    while kills < KILLS && attempts < 4 * KILLS {
        attempts += 1;
        let after = uninterrupted.mul_f64(rng.random_range(0.02..0.09));
        let args: Vec<&str> = if first {
            vec![
                "run",
                workflow,
                "--rounds",
                ROUNDS,
                "--store",
                &crashed_url,
                "--json",
            ]
        } else {
            vec![
                "resume",
                "fast-charge-clo",
                "--store",
                &crashed_url,
                "--json",
            ]
        };
        let killed = kill_after(&args, after);
        first = false;
        if killed {
            kills += 1;
        } else {
            break;
        }
    }
    assert!(
        kills >= KILLS,
        "only {kills} kills landed before the campaign finished"
    );
    let resumed = finish(&[
        "resume",
        "fast-charge-clo",
        "--store",
        &crashed_url,
        "--json",
    ]);

    // The same answer as without crashes.
    let top = |v: &serde_json::Value| -> Vec<(String, i64)> {
        v["ranking"].as_array().unwrap()[..10]
            .iter()
            .map(|r| {
                (
                    r["protocol"].as_str().unwrap().to_owned(),
                    r["predicted_life"].as_f64().unwrap().round() as i64,
                )
            })
            .collect()
    };
    assert_eq!(top(&resumed), top(&reference));
    assert_eq!(resumed["cells"], reference["cells"]);
    assert_eq!(resumed["records"], reference["records"]);

    // Every record exactly once and equal to the uninterrupted run's; the same experiments.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(snapshot(&reference_url));
    let b = rt.block_on(snapshot(&crashed_url));
    assert_eq!(a.len(), b.len());
    for (id, (cand_a, n_a, sum_a, pred_a)) in &a {
        let (cand_b, n_b, sum_b, pred_b) = &b[id];
        assert_eq!((cand_a, n_a), (cand_b, n_b), "{id}");
        assert!((sum_a - sum_b).abs() < 1e-9, "{id}: records differ");
        assert_eq!(pred_a.map(|p| p.round()), pred_b.map(|p| p.round()), "{id}");
    }

    // No experiment started a second test: one start per step key in the instrument's journal.
    let journal =
        std::fs::read_to_string(dir.join("crashed.sqlite.fast-charge-clo.cycler1.sim.jsonl"))
            .unwrap();
    let mut starts: HashMap<String, usize> = HashMap::new();
    for line in journal.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(key) = v["start"]["test"]["key"].as_str()
        {
            *starts.entry(key.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(starts.len(), b.len(), "one test per experiment");
    assert!(
        starts.values().all(|&n| n == 1),
        "a test started twice: {starts:?}"
    );
    println!("seed {seed}: {kills} SIGKILLs, each resumed; uninterrupted run {uninterrupted:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
