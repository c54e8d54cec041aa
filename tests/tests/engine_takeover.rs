//! Two engines, one store: engine A runs a campaign, engine B stands by (`labloop resume --wait`);
//! A is killed with SIGKILL mid-campaign and B takes the campaign over once A's lease runs out,
//! finishing it with every record stored once. On PostgreSQL (`LABLOOP_TEST_PG_URL`) and on SQLite.

use labloop_store::Store;
use labloop_tests::{
    Killed, assert_every_record_once, drop_postgres, fresh_dir, fresh_postgres, labloop_bin,
    repo_root,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn engine(dir: &Path, args: &[&str], name: &str) -> Killed {
    let out = std::fs::File::create(dir.join(format!("{name}.json"))).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Killed(
        Command::new(labloop_bin())
            .args(args)
            .args(["--owner", name, "--lease", "2s", "--json"])
            .current_dir(dir)
            .env("RUST_LOG", "labloop_engine=warn,error")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("labloop starts"),
    )
}

async fn standby_takes_over(url: &str, dir: &Path) {
    let text = std::fs::read_to_string(repo_root().join("workflows/fast-charge-clo.yaml"))
        .unwrap()
        .replace("batch_size: 48", "batch_size: 16")
        .replace("channels: 48", "channels: 16")
        .replace("max_rounds: 4", "max_rounds: 3");
    let workflow = dir.join("workflow.yaml");
    std::fs::write(&workflow, text).unwrap();
    let mut a = engine(
        dir,
        &["run", workflow.to_str().unwrap(), "--store", url],
        "engine-a",
    );
    let store = Store::connect(url).await.unwrap();
    let started = Instant::now();
    while store.count_records("fast-charge-clo").await.unwrap_or(0) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "engine A never started cycling"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut b = engine(
        dir,
        &["resume", "fast-charge-clo", "--store", url, "--wait"],
        "engine-b",
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        b.0.try_wait().unwrap().is_none(),
        "the standby did not wait for engine A"
    );
    assert!(
        a.0.try_wait().unwrap().is_none(),
        "engine A ended before it could be killed"
    );
    assert_eq!(
        store
            .campaign_owner("fast-charge-clo")
            .await
            .unwrap()
            .unwrap()
            .owner,
        "engine-a"
    );
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let killed_at = Instant::now();
    let status = b.0.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("engine-b.log")).unwrap();
    assert!(status.success(), "engine B failed: {log}");
    assert!(
        log.contains("took over after the previous engine's lease ran out"),
        "{log}"
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("engine-b.json")).unwrap()).unwrap();
    assert_eq!(result["cells"], 48);
    assert_eq!(result["failed"], 0);
    assert_every_record_once(url, "fast-charge-clo", 48, 100).await;
    println!(
        "engine B finished {:?} after engine A was killed",
        killed_at.elapsed()
    );
    assert!(
        store
            .campaign_owner("fast-charge-clo")
            .await
            .unwrap()
            .is_none(),
        "released"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_engine_takes_over_on_postgres() {
    let Some((url, admin, name)) = fresh_postgres("takeover").await else {
        return;
    };
    let dir = fresh_dir("takeover-postgres");
    standby_takes_over(&url, &dir).await;
    drop_postgres(&admin, &name).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_engine_takes_over_on_sqlite() {
    let dir = fresh_dir("takeover-sqlite");
    let url = format!("sqlite://{}/store.sqlite", dir.display());
    standby_takes_over(&url, &dir).await;
    let _ = std::fs::remove_dir_all(dir);
}
