//! The plugin host against real child processes: the Python SDK's example plugins and small
//! misbehaving plugins (garbage, silence, early exits), and the Rust example plugin.

use labloop_plugin::{Plugin, PluginConfig, PluginError};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Python that runs the plugins: `LABLOOP_TEST_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("LABLOOP_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "labloop-plugin-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(name: &str, command: Vec<String>, dir: &Path) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        command,
        env: Vec::new(),
        dir: dir.to_path_buf(),
        campaign: "test".into(),
        state_dir: dir.join("state"),
        log: Some(dir.join("plugins.log")),
        call_timeout: Duration::from_secs(20),
        restarts: 3,
        backoff: Duration::from_millis(50),
    }
}

fn lab_tools(dir: &Path) -> PluginConfig {
    let script = repo().join("plugins/python/examples/lab_tools.py");
    let mut c = config(
        "lab-tools",
        vec![python(), script.to_string_lossy().into_owned()],
        dir,
    );
    c.env = vec![
        (
            "LAB_TOOLS_LEDGER".into(),
            dir.join("ledger").to_string_lossy().into_owned(),
        ),
        (
            "LAB_TOOLS_PID".into(),
            dir.join("pid").to_string_lossy().into_owned(),
        ),
    ];
    c
}

/// A plugin written inline in Python.
fn inline(dir: &Path, name: &str, source: &str) -> Plugin {
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, source).unwrap();
    let mut c = config(
        name,
        vec![python(), path.to_string_lossy().into_owned()],
        dir,
    );
    c.call_timeout = Duration::from_secs(2);
    c.restarts = 2;
    Plugin::new(c)
}

const HELLO: &str = r#"
import json, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
first = json.loads(sys.stdin.readline())
send({"type": "hello", "protocol": "labloop-plugin/1", "name": "t", "version": "0",
      "persistent": PERSISTENT, "capabilities": {"steps": {"s": {"outputs": {}}}}})
"#;

fn with_hello(persistent: bool, rest: &str) -> String {
    format!(
        "{}{rest}",
        HELLO.replace("PERSISTENT", if persistent { "True" } else { "False" })
    )
}

fn kill(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_repeated_after_the_plugin_was_killed_is_answered_from_its_journal() {
    let dir = scratch("journal");
    let plugin = Plugin::new(lab_tools(&dir));
    let hello = plugin.hello().await.unwrap();
    assert_eq!(hello.name, "lab-tools");
    assert!(hello.persistent);
    assert!(hello.capabilities.steps.contains_key("eis"));
    assert!(hello.capabilities.measurements.contains_key("retention"));
    let params = json!({"step": "eis", "inputs": {"amplitude_mv": 10},
                        "experiment": {"id": "c-r0-e0", "c_rates": [4.8, 5.2, 5.2, 4.16]}});
    let first = plugin
        .call("step.run", "c-r0-e0/eis/1", &params, false)
        .await
        .unwrap();
    assert!(first["r_ct_ohm"].as_f64().unwrap() > 0.0, "{first}");
    kill(&dir.join("pid"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next call finds the process gone, starts another, and is answered from the journal.
    let again = plugin
        .call("step.run", "c-r0-e0/eis/1", &params, false)
        .await
        .unwrap();
    assert_eq!(again, first);
    let ledger = std::fs::read_to_string(dir.join("ledger")).unwrap();
    assert_eq!(ledger.lines().count(), 1, "done once: {ledger}");
    assert_eq!(
        plugin
            .counters()
            .starts
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // A new id acts again.
    plugin
        .call("step.run", "c-r0-e0/eis/2", &params, false)
        .await
        .unwrap();
    let ledger = std::fs::read_to_string(dir.join("ledger")).unwrap();
    assert_eq!(ledger.lines().count(), 2);
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_killed_inside_a_step_is_asked_again_and_says_the_outcome_is_unknown() {
    let dir = scratch("mid-call");
    let mut c = lab_tools(&dir);
    c.env.push(("LAB_TOOLS_EIS_SECONDS".into(), "2".into()));
    let plugin = std::sync::Arc::new(Plugin::new(c));
    plugin.hello().await.unwrap();
    let params = json!({"step": "eis", "inputs": {"amplitude_mv": 10}, "experiment": {"id": "e1"}});
    let calling = {
        let plugin = std::sync::Arc::clone(&plugin);
        let params = params.clone();
        tokio::spawn(async move { plugin.call("step.run", "e1/eis/1", &params, false).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    kill(&dir.join("pid"));
    let outcome = calling.await.unwrap();
    match outcome {
        Err(PluginError::Refused { code, message, .. }) => {
            assert_eq!(code, "unknown_outcome", "{message}");
        }
        other => panic!("expected unknown_outcome, got {other:?}"),
    }
    assert!(!dir.join("ledger").exists(), "the step never acted");
    plugin.shutdown().await;
}

#[tokio::test]
async fn garbage_instead_of_hello_is_named_by_line_and_byte() {
    let dir = scratch("garbage-hello");
    let plugin = inline(
        &dir,
        "garbage",
        "import sys\nprint('Hello, labloop!')\nsys.stdout.flush()\nimport time\ntime.sleep(5)\n",
    );
    let e = plugin.hello().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PluginError::Hello { .. }), "{text}");
    assert!(text.contains("line 1, byte 0"), "{text}");
    assert!(text.contains("Hello, labloop!"), "{text}");
}

#[tokio::test]
async fn a_plugin_that_exits_at_once_says_so_with_its_last_words() {
    let dir = scratch("exits");
    let plugin = inline(
        &dir,
        "exits",
        "import sys\nprint('no licence for the potentiostat', file=sys.stderr)\nsys.exit(4)\n",
    );
    let e = plugin.hello().await.unwrap_err().to_string();
    assert!(e.contains("exited before answering `hello`"), "{e}");
    assert!(e.contains("no licence for the potentiostat"), "{e}");
}

#[tokio::test]
async fn a_plugin_that_does_not_exist_cannot_start() {
    let dir = scratch("missing");
    let plugin = Plugin::new(config("missing", vec!["./no-such-plugin".into()], &dir));
    let e = plugin.hello().await.unwrap_err();
    assert!(matches!(e, PluginError::Start { .. }), "{e}");
    assert!(e.to_string().contains("no-such-plugin"), "{e}");
}

#[tokio::test]
async fn a_hung_plugin_times_out_with_its_cause_and_is_restarted() {
    let dir = scratch("hangs");
    let plugin = inline(
        &dir,
        "hangs",
        &with_hello(true, "import time\ntime.sleep(60)\n"),
    );
    let started = std::time::Instant::now();
    let e = plugin
        .call("step.run", "x/s/1", &json!({"step": "s"}), false)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = e.to_string();
    assert!(matches!(e, PluginError::Timeout { .. }), "{text}");
    assert!(text.contains("wrote nothing for the call"), "{text}");
}

#[tokio::test]
async fn garbage_after_hello_is_the_cause_of_the_timeout() {
    let dir = scratch("garbage-after");
    let plugin = inline(
        &dir,
        "babbles",
        &with_hello(
            true,
            "for line in sys.stdin:\n    sys.stdout.write('{\"type\": \"result\", \"id\": 7}\\n'); sys.stdout.flush()\n",
        ),
    );
    let e = plugin
        .call("step.run", "x/s/1", &json!({"step": "s"}), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not protocol messages"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    assert_eq!(
        plugin
            .counters()
            .garbage
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_plugin_that_keeps_nothing_is_not_asked_twice_to_act() {
    let dir = scratch("forgetful");
    let plugin = inline(
        &dir,
        "forgetful",
        &with_hello(false, "sys.stdin.readline()\nsys.exit(1)\n"),
    );
    let e = plugin
        .call("step.run", "x/s/1", &json!({"step": "s"}), false)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PluginError::Interrupted { .. }), "{text}");
    assert!(text.contains("exited with status 1"), "{text}");
    // A call that changes nothing is asked again of the restarted plugin (which dies again),
    // until its restarts are spent.
    let e = plugin
        .call("measurement.read", "x/m/1", &json!({}), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than its 2 restarts"), "{e}");
}

#[tokio::test]
async fn a_refusal_is_the_plugins_own_error() {
    let dir = scratch("refuses");
    let plugin = Plugin::new(lab_tools(&dir));
    let e = plugin
        .call(
            "step.run",
            "x/eis/1",
            &json!({"step": "eis", "inputs": {"amplitude_mv": 5, "f_min_hz": 10, "f_max_hz": 1}}),
            false,
        )
        .await
        .unwrap_err();
    match e {
        PluginError::Refused { code, message, .. } => {
            assert_eq!(code, "bad_request");
            assert!(message.contains("f_min_hz"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    plugin.health(Duration::from_secs(5)).await.unwrap();
    plugin.shutdown().await;
}

#[tokio::test]
async fn the_rust_example_plugin_weighs_a_cell_and_keeps_its_reply() {
    // Built by `cargo test --workspace` (a member of the workspace).
    let binary = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join("debug/labloop-plugin-example");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("debug/labloop-plugin-example"))
        .unwrap_or(binary);
    if !target.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "labloop-plugin-example"])
            .status()
            .unwrap();
        assert!(built.success());
    }
    let dir = scratch("rust");
    let plugin = Plugin::new(config(
        "balance",
        vec![target.to_string_lossy().into_owned()],
        &dir,
    ));
    let hello = plugin.hello().await.unwrap();
    assert!(hello.persistent);
    let op = &hello.capabilities.measurements["mass"];
    assert!(labloop_plugin::check::input_errors(op, &json!({"tare_g": -1})).len() == 1);
    let params = json!({"measurement": "mass", "inputs": {"tare_g": 0.5}, "experiment": {"cell_id": "cell-7"}});
    let first: Value = plugin
        .call("measurement.read", "e/mass/1", &params, true)
        .await
        .unwrap();
    let mass = first["mass_g"].as_f64().unwrap();
    assert!((2.6..2.8).contains(&mass), "{first}");
    let replies = std::fs::read_to_string(dir.join("state/balance/replies.jsonl"))
        .or_else(|_| std::fs::read_to_string(dir.join("state/replies.jsonl")))
        .unwrap();
    assert!(replies.contains("e/mass/1"), "{replies}");
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_instruments_are_labloops_cycler_and_cell_builder() {
    use labloop_drivers::link_cycler::{LinkCycler, PollTiming};
    use labloop_drivers::remote::RemoteCellBuilder;
    use labloop_drivers::{CellBuilder, CellOrder, Cycler, CyclingTest, DriverError};
    let dir = scratch("instruments");
    let script = repo().join("plugins/python/examples/python_cycler.py");
    let cycler_plugin = std::sync::Arc::new(Plugin::new(config(
        "python-cycler",
        vec![
            python(),
            script.to_string_lossy().into_owned(),
            "--channels".into(),
            "2".into(),
            "--cycle-seconds".into(),
            "0.01".into(),
        ],
        &dir,
    )));
    let timing = PollTiming {
        command_timeout: Duration::from_secs(10),
        poll_min: Duration::from_millis(5),
        poll_max: Duration::from_millis(100),
        max_records: 50,
    };
    let cycler = LinkCycler::on(
        labloop_plugin::PluginLink::new(cycler_plugin.clone(), "cycler1"),
        2,
        timing,
    );
    let identity = cycler.identify().await.unwrap();
    assert_eq!(identity.channels, vec!["ch01", "ch02"]);
    let channel = cycler.channels()[0].clone();
    let test = CyclingTest {
        key: "e1/cycle/1".into(),
        cell_id: "cell-1".into(),
        cycles_before: 0,
        formulation: Vec::new(),
        parameters: Vec::new(),
        protocol: labloop_core::ChargeProtocol::equal_steps(
            &[4.8, 5.2, 5.2, 4.16],
            0.8,
            labloop_core::CcCvFinish {
                c_rate: 1.0,
                cv_voltage_v: 3.6,
            },
        ),
        discharge_c_rate: 4.0,
        cycles: 20,
    };
    cycler.start(&channel, test.clone()).await.unwrap();
    // Idempotent by key; another key on the busy channel is refused with BUSY.
    cycler.start(&channel, test.clone()).await.unwrap();
    let other = CyclingTest {
        key: "e2/cycle/1".into(),
        ..test.clone()
    };
    assert!(matches!(
        cycler.start(&channel, other).await,
        Err(DriverError::Busy { .. })
    ));
    let mut seen = Vec::new();
    loop {
        let batch = cycler
            .records(&channel, seen.len() as u64 + 1)
            .await
            .unwrap();
        seen.extend(batch.records);
        if batch.finished {
            break;
        }
    }
    assert_eq!(seen.len(), 20);
    assert!(seen.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(seen[19].record.discharge_capacity_ah < seen[0].record.discharge_capacity_ah);
    cycler_plugin.shutdown().await;

    let builder_script = dir.join("builder.py");
    std::fs::write(
        &builder_script,
        format!(
            r#"import sys
sys.path.insert(0, {sdk:?})
from labloop_plugin import Plugin, PluginError
plugin = Plugin("robot", version="1")
built = {{}}
class Robot:
    def handle(self, op):
        if op["op"] == "identify":
            return {{"model": "python crimper", "protocol": "1.1", "channels": []}}
        if op["op"] == "build":
            order = op["order"]
            cell = built.setdefault(order["key"], "cell-%d" % (len(built) + 1))
            return {{"cell_id": cell, "electrolyte_ul": order["electrolyte_ul"],
                     "qc": {{"ocv_v": 3.1, "mass_g": 3.2, "crimp_ok": True}}}}
        raise PluginError("BAD_COMMAND", "unknown op")
plugin.cell_builder(Robot())
plugin.run()
"#,
            sdk = repo().join("plugins/python").to_string_lossy()
        ),
    )
    .unwrap();
    let robot_plugin = std::sync::Arc::new(Plugin::new(config(
        "robot",
        vec![python(), builder_script.to_string_lossy().into_owned()],
        &dir,
    )));
    let robot = RemoteCellBuilder::new(
        labloop_plugin::PluginLink::new(robot_plugin.clone(), "robot1"),
        Duration::from_secs(10),
    );
    assert_eq!(robot.identify().await.unwrap().model, "python crimper");
    let order = CellOrder {
        key: "e1/build/1".into(),
        formulation: vec![("EC".into(), 0.3), ("EMC".into(), 0.7)],
        parameters: Vec::new(),
        electrolyte_ul: 70.0,
        cathode: "NMC811".into(),
        anode: "graphite".into(),
        separator: "Celgard-2325".into(),
    };
    let cell = robot.build(order.clone()).await.unwrap();
    assert_eq!(cell.cell_id, "cell-1");
    assert!(cell.qc.crimp_ok);
    assert_eq!(
        robot.build(order).await.unwrap().cell_id,
        "cell-1",
        "idempotent by key"
    );
    robot_plugin.shutdown().await;
}
