//! The conformance checker (`labloop check-instrument`) against real bridges: `labloop-sim` on both
//! transports and the Python reference bridge (`drivers/examples/python-mqtt-cycler`) pass every
//! rule, restarts included; the reference bridge told to break one rule fails exactly that rule.
//!
//! Through a real Mosquitto (`LABLOOP_TEST_MQTT_URL`). The Python bridge runs on the interpreter at
//! `LABLOOP_TEST_PYTHON` (default: the virtual environment `.ci/run` makes, with paho-mqtt); without
//! it these tests fail under `CI=true` and say so elsewhere.

mod common;

use common::{Killed, broker_url, unique, unique_prefix};
use labloop_drivers::conformance::{self, CheckOptions, MqttProbe, Outcome, RuleResult, Target};
use labloop_drivers::mqtt::BrokerAddress;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn options(restart_hook: Option<String>) -> CheckOptions {
    CheckOptions {
        channel: None,
        cycles: 3,
        reply_timeout: Duration::from_secs(2),
        wait: Duration::from_secs(30),
        restart_hook,
    }
}

async fn check_mqtt(prefix: &str, restart_hook: Option<String>) -> Vec<RuleResult> {
    let address = BrokerAddress::parse(&broker_url()).unwrap();
    let probe = MqttProbe::connect(&address, prefix).await.unwrap();
    // The bridge's retained status arrives right after subscribing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    conformance::check(&Target::Mqtt(probe), &options(restart_hook)).await
}

fn failed(results: &[RuleResult]) -> Vec<&'static str> {
    results
        .iter()
        .filter(|r| r.outcome == Outcome::Fail)
        .map(|r| r.rule)
        .collect()
}

fn outcome(results: &[RuleResult], rule: &str) -> Outcome {
    results
        .iter()
        .find(|r| r.rule == rule)
        .unwrap_or_else(|| panic!("no rule {rule}"))
        .outcome
}

/// A shell line that kills the process whose pid is in `pid` (if any) and starts `command` in the
/// background in its place, logging to `log`.
fn restart_line(pid: &std::path::Path, command: &str, log: &str) -> String {
    let pid = pid.display();
    format!(
        "[ -f {pid} ] && kill $(cat {pid}) && sleep 0.3; {command} >{log} 2>&1 & echo $! > {pid}"
    )
}

/// A shell line that (re)starts `labloop-sim mqtt` on `prefix` with a journal, killing the last.
fn sim_restart_script(prefix: &str, dir: &std::path::Path) -> String {
    let command = format!(
        "{sim} mqtt --broker {url} --prefix {prefix} --channels 2 --acceleration 2000 --journal {journal}",
        sim = env!("CARGO_BIN_EXE_labloop-sim"),
        url = broker_url(),
        journal = dir.join("journal").display()
    );
    restart_line(&dir.join("sim.pid"), &command, "/dev/null")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labloop_sim_passes_over_mqtt_restart_included() {
    let prefix = unique_prefix("conform-sim");
    let dir = std::env::temp_dir().join(unique("conform-sim"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = sim_restart_script(&prefix, &dir);
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap()
            .success()
    );
    let results = check_mqtt(&prefix, Some(script)).await;
    let pid = std::fs::read_to_string(dir.join("sim.pid")).unwrap();
    let _ = Command::new("kill").arg(pid.trim()).status();
    assert_eq!(
        failed(&results),
        Vec::<&str>::new(),
        "{}",
        conformance::report(&results)
    );
    assert_eq!(outcome(&results, "restart-persistence"), Outcome::Pass);
    assert_eq!(outcome(&results, "busy"), Outcome::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labloop_sim_passes_over_serial() {
    let link = std::env::temp_dir().join(unique("conform-tty"));
    let _sim = Killed(
        Command::new(env!("CARGO_BIN_EXE_labloop-sim"))
            .args(["serial", "--link", link.to_str().unwrap()])
            .args(["--channels", "2", "--acceleration", "2000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if link.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let target = Target::Serial(Box::new(labloop_drivers::serial::SerialLink::new(
        "sim",
        link.to_str().unwrap(),
        115_200,
        labloop_drivers::serial::SerialOptions::default(),
    )));
    let results = conformance::check(&target, &options(None)).await;
    assert_eq!(
        failed(&results),
        Vec::<&str>::new(),
        "{}",
        conformance::report(&results)
    );
    assert_eq!(outcome(&results, "data-from-seq"), Outcome::Pass);
}

fn python() -> Option<PathBuf> {
    let path = std::env::var("LABLOOP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/labloop-venv/bin/python"));
    let has_paho = Command::new(&path)
        .args(["-c", "import paho.mqtt.client"])
        .status()
        .is_ok_and(|s| s.success());
    if has_paho {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no Python with paho-mqtt at {} (.ci/run makes it; LABLOOP_TEST_PYTHON overrides)",
        path.display()
    );
    eprintln!("skipped: no Python with paho-mqtt at {}", path.display());
    None
}

fn bridge_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python-mqtt-cycler/bridge.py")
}

/// A shell line that (re)starts the Python bridge on `prefix`, breaking `breaks`.
fn bridge_restart_script(
    python: &std::path::Path,
    prefix: &str,
    dir: &std::path::Path,
    breaks: &[&str],
) -> String {
    let breaks: String = breaks.iter().map(|b| format!(" --break {b}")).collect();
    let command = format!(
        "{python} {script} --broker {url} --prefix {prefix} --channels 2 --cycle-seconds 0.3 --state {state}{breaks}",
        python = python.display(),
        script = bridge_script().display(),
        url = broker_url(),
        state = dir.join("state.json").display(),
    );
    restart_line(
        &dir.join("bridge.pid"),
        &command,
        &dir.join("bridge.log").display().to_string(),
    )
}

async fn check_python(python: &std::path::Path, breaks: &[&str], restart: bool) -> Vec<RuleResult> {
    let prefix = unique_prefix("conform-py");
    let dir = std::env::temp_dir().join(unique("conform-py"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = bridge_restart_script(python, &prefix, &dir, breaks);
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap()
            .success()
    );
    // paho connects and publishes its status within a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let results = check_mqtt(&prefix, restart.then(|| script.clone())).await;
    let pid = std::fs::read_to_string(dir.join("bridge.pid")).unwrap();
    let _ = Command::new("kill").arg(pid.trim()).status();
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reference_bridge_passes_every_rule() {
    let Some(python) = python() else { return };
    let results = check_python(&python, &[], true).await;
    assert_eq!(
        failed(&results),
        Vec::<&str>::new(),
        "{}",
        conformance::report(&results)
    );
    let skipped: Vec<_> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Skip)
        .map(|r| r.rule)
        .collect();
    assert_eq!(
        skipped,
        Vec::<&str>::new(),
        "{}",
        conformance::report(&results)
    );
}

/// One broken rule at a time: the checker fails that rule, with a message saying how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_bridge_fails_the_rule_it_breaks() {
    let Some(python) = python() else { return };
    let cases = [
        ("wrong-protocol", "identify", "major versions must match"),
        ("no-status", "retained-status", "nothing retained on"),
        (
            "no-unknown-channel",
            "unknown-channel",
            "for a channel it does not have",
        ),
        ("ignore-bad-command", "bad-command", "no reply with id"),
        (
            "not-idempotent",
            "start-idempotent-by-key",
            "started the test over",
        ),
        (
            "no-id-memory",
            "command-id-replay",
            "must get its first reply",
        ),
        (
            "no-busy",
            "busy",
            "started a second test over a running one",
        ),
        ("seq-gap", "data-from-seq", "expected 1..=3"),
        ("bad-curve", "data-from-seq", "a discharge's voltage falls"),
        (
            "no-replay-end",
            "replay-from-seq",
            "no end message after the replay",
        ),
        (
            "stop-clears",
            "stop-finished",
            "status after stopping a finished test",
        ),
        (
            "forget-on-restart",
            "restart-persistence",
            "after the restart the channel holds None",
        ),
    ];
    let mut wrong = Vec::new();
    for (broken, rule, says) in cases {
        let results = check_python(&python, &[broken], broken == "forget-on-restart").await;
        let r = results.iter().find(|r| r.rule == rule).unwrap();
        if r.outcome != Outcome::Fail || !r.detail.contains(says) {
            wrong.push(format!(
                "--break {broken}: {rule} {:?}: {}\n{}",
                r.outcome,
                r.detail,
                conformance::report(&results)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labloop_sim_builder_passes_the_builder_rules() {
    let prefix = format!("labloop-test/{}/robot1", unique("conform-robot"));
    let _sim = Killed(
        Command::new(env!("CARGO_BIN_EXE_labloop-sim"))
            .args([
                "mqtt",
                "--broker",
                &broker_url(),
                "--prefix",
                &prefix,
                "--builder",
            ])
            .args(["--channels", "1", "--acceleration", "2000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let results = check_mqtt(&prefix, None).await;
    assert_eq!(
        failed(&results),
        Vec::<&str>::new(),
        "{}",
        conformance::report(&results)
    );
    for rule in [
        "identify",
        "build",
        "build-idempotent-by-key",
        "command-id-replay",
    ] {
        assert_eq!(
            outcome(&results, rule),
            Outcome::Pass,
            "{}",
            conformance::report(&results)
        );
    }
}
