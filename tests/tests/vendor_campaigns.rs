//! Whole campaigns on vendors' cyclers: `labloop run workflows/fast-charge-clo-maccor.yaml`
//! against pymacnet's own `MaccorSpoofer`, `workflows/fast-charge-clo-arbin.yaml` against
//! pycti-arbin's own `ArbinSpoofer` (both from the Python registry) and
//! `workflows/fast-charge-clo-neware.yaml` against a BTS 8 built from captured responses, their
//! channels cycling cells by the harnesses in `drivers/vendors/tests/`, while the harness sends a garbage or truncated
//! reply now and then. Every cycle record must be in the store exactly once, in order, every test
//! started once, and the campaign must finish with every cell.
//!
//! Needs a Python with the simulators: `LABLOOP_TEST_PYTHON` (default: the virtual environment
//! `.ci/run` makes); under CI=true a missing one fails the test.

use labloop_tests::python;
use labloop_tests::{
    Killed, assert_every_record_once, fresh_dir, json_result, labloop_bin, repo_root,
};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One vendor's campaign: its harness, its example workflow on the harness's port, one round of
/// eight cells.
struct Vendor {
    module: &'static str,
    harness: &'static str,
    harness_args: &'static [&'static str],
    workflow: &'static str,
    port_in_workflow: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// The harness's clock against the wall clock's: slow enough that the polls of eight
    /// channels land in both ends of every discharge (pycti-arbin's spoofer answers slowest).
    acceleration: &'static str,
}

/// One campaign at a time: each polls its harness every few milliseconds, and two cores shared
/// by three would stretch the polls past a step of the harnesses' fast clock.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn campaign(vendor: Vendor) {
    let Some(python) = python(vendor.module) else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = fresh_dir(vendor.workflow);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let state = dir.join("harness-state.json");
    let mut harness = Command::new(&python)
        .arg(
            repo_root()
                .join("drivers/vendors/tests")
                .join(vendor.harness),
        )
        .args(["--port", &port.to_string(), "--channels", "8"])
        .args(["--acceleration", vendor.acceleration, "--state"])
        .arg(&state)
        .args(vendor.harness_args)
        .args(["--garbage-every", "997", "--truncate-every", "1499"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the harness");
    let mut ready = String::new();
    BufReader::new(harness.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), format!("READY {port}"));
    let _harness = Killed(harness);

    // One round of eight cells, polled fast enough for the harness's clock (2 500× the wall
    // clock's: a 4C discharge lasts 0.36 s, its first and last 50 ms are the curve's ends; 1 000×
    // for the slower Arbin spoofer, whose eight channels' polls took longer than the curve's end
    // at 1 500× on a loaded machine), and a reply cut short given up on after 0.1 s so no whole
    // step passes unread.
    let name = vendor.workflow;
    let text = std::fs::read_to_string(repo_root().join(format!("workflows/{name}.yaml")))
        .unwrap()
        .replace(vendor.port_in_workflow, &format!("port: {port}"))
        .replace("batch_size: 16", "batch_size: 8")
        .replace("channels: 16", "channels: 8")
        .replace("max_rounds: 3", "max_rounds: 1")
        .replace(
            "poll_interval_s: 1.0",
            "poll_interval_s: 0.002\n      reply_timeout_s: 0.1",
        )
        .replace("      timeout: 30d\n", "")
        .replace(
            "step_dir: /tmp/labloop-neware-steps",
            &format!("step_dir: {}", dir.join("steps").display()),
        );
    let workflow = dir.join("workflow.yaml");
    std::fs::write(&workflow, &text).unwrap();
    let url = format!("sqlite://{}/store.sqlite", dir.display());
    let started = Instant::now();
    let mut run = Command::new(labloop_bin());
    run.args(["run", workflow.to_str().unwrap(), "--store", &url, "--json"])
        .env("RUST_LOG", "error");
    for (key, value) in vendor.env {
        run.env(key, value);
    }
    let result = json_result(&mut run);
    println!("{name} in {:?}", started.elapsed());
    assert_eq!(result["cells"], 8, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(result["records"], 800, "{result}");
    assert_every_record_once(&url, name, 8, 100).await;
    // One start per test on each of the eight channels.
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let starts: Vec<u64> = (0..8)
        .map(|ch| seen[ch.to_string()]["starts"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(starts, vec![1; 8], "{seen}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_on_a_maccor_stores_every_record_once() {
    campaign(Vendor {
        module: "pymacnet.maccorspoofer",
        harness: "maccor_harness.py",
        harness_args: &[],
        workflow: "fast-charge-clo-maccor",
        port_in_workflow: "port: 57570",
        env: &[],
        acceleration: "2500",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_on_an_arbin_stores_every_record_once() {
    campaign(Vendor {
        module: "pyctiarbin.arbinspoofer.arbin_spoofer",
        harness: "arbin_harness.py",
        harness_args: &["--username", "labloop", "--password", "s3cret"],
        workflow: "fast-charge-clo-arbin",
        port_in_workflow: "port: 9031",
        env: &[("LABLOOP_ARBIN_PASSWORD", "s3cret")],
        acceleration: "1000",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_on_a_neware_stores_every_record_once() {
    campaign(Vendor {
        module: "xml.etree.ElementTree",
        harness: "neware_harness.py",
        harness_args: &["--username", "admin", "--password", "s3cret"],
        workflow: "fast-charge-clo-neware",
        port_in_workflow: "port: 502",
        env: &[("LABLOOP_NEWARE_PASSWORD", "s3cret")],
        acceleration: "2500",
    })
    .await;
}
