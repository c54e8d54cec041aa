//! A busy store delays a campaign, never ends it (issue 18: four workers flooding the queue held
//! SQLite's write lock for seconds and a running campaign exited with "database is locked", left
//! marked `running`). Another process takes the write lock for 8 s — longer than SQLite's default
//! 5 s busy timeout — in the middle of a campaign, which waits and completes.

mod common;

use common::{WORKFLOW, runner};
use labloop_sim::{SimClock, SimCycler};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_another_process_only_delays_the_campaign() {
    let db = std::env::temp_dir().join(format!("labloop-busy-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let store = labloop_store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let text = WORKFLOW
        .replace("batch_size: 48", "batch_size: 2")
        .replace("channels: 48", "channels: 2")
        .replace("max_rounds: 4", "max_rounds: 2")
        .replace("cycles: 100", "cycles: 30");
    // ~1.6 h a cycle: 30 cycles in about 2 s of real time, so the lock lands mid-campaign.
    let sim = SimCycler::new("cycler1", 2, SimClock { acceleration: 8e4 }, 1);
    let campaign = tokio::spawn(runner(&text, Arc::new(sim), &store).run());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let python = std::env::var("LABLOOP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let started = Instant::now();
    let status = tokio::process::Command::new(python)
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             time.sleep(8)\n\
             c.execute('COMMIT')\n",
        )
        .arg(&db)
        .status()
        .await
        .expect("python3 runs");
    assert!(status.success());
    eprintln!("the lock was held {:.1} s", started.elapsed().as_secs_f64());
    let result = campaign.await.unwrap().expect("the campaign completes");
    assert_eq!(result.cells, 4);
    let row = store.campaign(&result.campaign).await.unwrap().unwrap();
    assert_eq!(row.state, "completed");
    store.close().await;
    let _ = std::fs::remove_file(db);
}
