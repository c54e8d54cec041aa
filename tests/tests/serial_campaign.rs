//! A whole campaign over a serial line: `labloop run` drives `labloop-sim serial` (a separate process
//! on a real pseudo-terminal) while the simulator sends noise, loses, repeats and delays replies, and
//! its port vanishes for seconds at a time. Every cycle record must be in the store exactly once, in
//! order, and the campaign must finish with every cell.

use labloop_tests::{
    Killed, assert_every_record_once, fresh_dir, json_result, labloop_bin, repo_root, workspace_bin,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_over_serial_stores_every_record_once_while_the_port_vanishes() {
    let dir = fresh_dir("serial-campaign");
    let port = dir.join("cycler1.tty");

    // The example workflow on this test's port, two rounds of eight cells.
    let text = std::fs::read_to_string(repo_root().join("workflows/fast-charge-clo-serial.yaml"))
        .unwrap()
        .replace("/tmp/labloop-cycler1.tty", port.to_str().unwrap())
        .replace("batch_size: 16", "batch_size: 8")
        .replace("channels: 16", "channels: 8")
        .replace("max_rounds: 3", "max_rounds: 2")
        .replace("clock_acceleration: 100000", "clock_acceleration: 300000")
        .replace("      timeout: 30d\n", "");
    let workflow = dir.join("workflow.yaml");
    std::fs::write(&workflow, &text).unwrap();

    let log = std::fs::File::create(dir.join("sim.log")).unwrap();
    let _sim = Killed(
        Command::new(workspace_bin("labloop-sim"))
            .args([
                "serial",
                "--link",
                port.to_str().unwrap(),
                "--name",
                "cycler1",
            ])
            .args([
                "--channels",
                "8",
                "--acceleration",
                "300000",
                "--seed",
                "2020",
            ])
            .args(["--garbage", "0.02", "--drop-reply", "0.03"])
            .args(["--duplicate-reply", "0.03", "--delay-reply", "0.03"])
            .args(["--vanish-every", "4s", "--vanish-for", "2s"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("labloop-sim starts"),
    );
    let started = Instant::now();
    while !port.exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "no port");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("sqlite://{}/store.sqlite", dir.display());
    let result = json_result(
        Command::new(labloop_bin())
            .args(["run", workflow.to_str().unwrap(), "--store", &url, "--json"])
            .env("RUST_LOG", "error"),
    );
    println!("campaign over serial in {:?}", started.elapsed());
    assert_eq!(result["cells"], 16);
    assert_eq!(result["failed"], 0);
    assert_eq!(result["records"], 1600);
    assert_every_record_once(&url, "fast-charge-clo-serial", 16, 100).await;
    let sim_log = std::fs::read_to_string(dir.join("sim.log")).unwrap();
    assert!(
        sim_log.contains("the port vanishes"),
        "the port never vanished during the campaign: {sim_log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
