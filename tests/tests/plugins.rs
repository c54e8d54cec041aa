//! Campaigns with plugins (`plugins/PROTOCOL.md`), through the `labloop` binary with real child
//! processes and the real Python: the example workflows' Python step, measurement and
//! scikit-learn model (killed mid-call once, and nothing done twice), a cycler written in Python,
//! `labloop validate` against a plugin's input schema, and plugins that answer garbage, hang or
//! exit at once.
//!
//! Needs a Python with scikit-learn: `LABLOOP_TEST_PYTHON` (default: the virtual environment
//! `.ci/run` makes); its folder goes first on the plugins' PATH, so the workflows' `python3` is it.

use labloop_store::Store;
use labloop_tests::{fresh_dir, json_result, labloop_bin, python, repo_root, shared_data};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `labloop` command whose `python3` is the test's Python.
fn labloop(python: &Path) -> Command {
    let bin_dir = python.parent().expect("python's folder");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new(labloop_bin());
    c.current_dir(repo_root())
        .env("PATH", path)
        .env("RUST_LOG", "error");
    c
}

/// Training cells for the scikit-learn model: labloop's features of the Severson training cells.
fn training_features(python: &Path, dir: &Path) -> PathBuf {
    let data = shared_data().join("severson");
    let out = dir.join("train-features.csv");
    let status = labloop(python)
        .args(["predict", "features", "--cells"])
        .arg(data.join("train"))
        .arg("--lives")
        .arg(data.join("cycle_lives/train_cycle_lives.csv"))
        .arg("--capacities")
        .arg(data.join("capacity_per_cycle_train.csv"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 42, "a header and 41 cells");
    assert!(text.starts_with("cell,log_var_dq,"), "{}", &text[..80]);
    out
}

/// Kills the `lab-tools` plugin once while a step call is inside its handler (a `begin` in its
/// journal without a reply), as a crash would. Returns whether it did.
fn kill_once_mid_call(journal: PathBuf, pid_file: PathBuf, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&journal) {
            let mut open = None;
            for line in text.lines() {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let id = entry["id"].as_str().unwrap_or("").to_owned();
                if entry["begin"] == true && id.contains("/eis/") {
                    open = Some(id);
                } else if open.as_deref() == Some(id.as_str()) {
                    open = None;
                }
            }
            if open.is_some()
                && let Ok(pid) = std::fs::read_to_string(&pid_file)
            {
                let killed = Command::new("kill").args(["-9", pid.trim()]).status();
                return killed.is_ok_and(|s| s.success());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_python_plugins_survives_a_plugin_killed_mid_call() {
    let Some(python) = python("sklearn") else {
        return;
    };
    let dir = fresh_dir("plugins-campaign");
    let train = training_features(&python, &dir);
    let db = dir.join("store.sqlite");
    let url = format!("sqlite://{}", db.display());
    let ledger = dir.join("ledger");
    let pid_file = dir.join("lab-tools.pid");
    let journal = PathBuf::from(format!(
        "{}.fast-charge-plugins.plugins.state/lab-tools/calls.jsonl",
        db.display()
    ));
    let killer = {
        let (journal, pid_file) = (journal.clone(), pid_file.clone());
        std::thread::spawn(move || {
            kill_once_mid_call(journal, pid_file, Instant::now() + Duration::from_secs(120))
        })
    };
    let mut command = labloop(&python);
    command
        .args([
            "run",
            "workflows/fast-charge-plugins.yaml",
            "--json",
            "--store",
            &url,
        ])
        .env("SKLEARN_LIFE_TRAIN", &train)
        .env("LAB_TOOLS_LEDGER", &ledger)
        .env("LAB_TOOLS_PID", &pid_file)
        .env("LAB_TOOLS_EIS_SECONDS", "0.2");
    let result = json_result(&mut command);
    assert!(killer.join().unwrap(), "the plugin was killed mid-call");
    assert_eq!(result["cells"], 24, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(result["model"], "plugin:sklearn-life/ridge-life");

    // Every cell's spectrum was taken once, the killed call's included (its retry acted once).
    let ledger = std::fs::read_to_string(&ledger).unwrap();
    let mut experiments: Vec<&str> = ledger
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(experiments.len(), 24, "{ledger}");
    experiments.dedup();
    assert_eq!(experiments.len(), 24, "one spectrum per cell: {ledger}");
    // The restarted plugin said so about the call it was killed in.
    let calls = std::fs::read_to_string(&journal).unwrap();
    assert!(calls.contains("unknown_outcome"), "{calls}");

    // The objective is the measurement: the optimizer learnt from it, and the model's
    // predictions are recorded with it.
    let store = Store::open(&url).await.unwrap();
    let campaign = result["campaign"].as_str().unwrap();
    let measured = store
        .measured_observations(campaign, "retention_pct")
        .await
        .unwrap();
    assert_eq!(measured.len(), 24);
    for m in &measured {
        let (value, sigma) = m.measurement.unwrap();
        assert!((80.0..100.0).contains(&value), "{m:?}");
        assert_eq!(sigma, 0.1);
    }
    let predicted = store.observations(campaign).await.unwrap();
    assert_eq!(predicted.len(), 24);
    assert!(
        predicted
            .iter()
            .all(|o| o.prediction.model == "plugin:sklearn-life/ridge-life"
                && o.prediction.cycle_life > 100.0
                && o.prediction.sigma > 0.0)
    );
    let best = &result["ranking"][0];
    let best_measured = measured
        .iter()
        .map(|m| m.measurement.unwrap().0)
        .fold(f64::MIN, f64::max);
    assert!(
        best["predicted_life"].as_f64().unwrap() <= best_measured + 1.0,
        "the recommendation's estimate is a retention: {best}"
    );
    // The plugins' standard error is kept with the campaign.
    let log = std::fs::read_to_string(format!("{}.fast-charge-plugins.plugins.log", db.display()))
        .unwrap();
    assert!(log.contains("[sklearn-life] trained on 41 cells"), "{log}");
}

#[test]
fn a_campaign_runs_on_a_cycler_written_in_python() {
    let Some(python) = python("json") else {
        return;
    };
    let dir = fresh_dir("plugins-cycler");
    let url = format!("sqlite://{}", dir.join("store.sqlite").display());
    let result = json_result(labloop(&python).args([
        "run",
        "workflows/fast-charge-python-cycler.yaml",
        "--json",
        "--store",
        &url,
    ]));
    assert_eq!(result["cells"], 12, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    assert_eq!(result["records"], 12 * 60);
    // The cycler's cells keep the most capacity when charged gently: the recommendation is no
    // harsher than the space's median protocol.
    let best = result["ranking"][0]["c_rates"].as_array().unwrap().clone();
    let peak = best.iter().map(|r| r.as_f64().unwrap()).fold(0.0, f64::max);
    assert!(peak <= 7.0, "{best:?}");
}

/// A copy of the plugins workflow in `dir`, its plugin paths made absolute, `edit` applied.
fn workflow_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("workflows/fast-charge-plugins.yaml"))
        .unwrap()
        .replace(
            "../plugins/",
            &format!("{}/plugins/", repo_root().canonicalize().unwrap().display()),
        );
    let path = dir.join("workflow.yaml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[test]
fn validate_names_the_input_a_plugin_schema_rejects() {
    let Some(python) = python("sklearn") else {
        return;
    };
    let dir = fresh_dir("plugins-validate");
    let train = training_features(&python, &dir);
    let path = workflow_copy(&dir, |t| {
        t.replace("amplitude_mv: 10", "amplitude_mv: 80")
            .replace("measurement: retention", "measurement: retension")
            .replace(
                "nominal_ah: 1.1",
                "nominal_ah: ${{ steps.eis.outputs.r_ctt_ohm }}",
            )
    });
    let out = labloop(&python)
        .arg("validate")
        .arg(&path)
        .env("SKLEARN_LIFE_TRAIN", &train)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let file = path.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    let amplitude = lines
        .iter()
        .find(|l| l.contains("experiment.steps[1].run.with.amplitude_mv"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(amplitude.starts_with(&format!("{file}:")), "{amplitude}");
    assert!(
        amplitude.contains("80 is greater than the maximum of 50"),
        "{amplitude}"
    );
    // file:line:col points at the value.
    let place: Vec<&str> = amplitude[file.len() + 1..].splitn(3, ':').collect();
    let (line, column): (usize, usize) = (place[0].parse().unwrap(), place[1].parse().unwrap());
    let source = std::fs::read_to_string(&path).unwrap();
    let at = source.lines().nth(line - 1).unwrap();
    assert!(
        at[column - 1..].starts_with("amplitude_mv") || at.contains("amplitude_mv: 80"),
        "{at}"
    );
    assert!(
        text.contains("offers no measurement `retension`; it offers: retention"),
        "{text}"
    );
    assert!(
        text.contains("experiment.steps[3].measure.with.nominal_ah: step `eis` declares no output `r_ctt_ohm`; it declares: points, r_ct_ohm, r_ohmic_ohm"),
        "{text}"
    );
    // The workflow as shipped validates, both plugins started.
    let ok = labloop(&python)
        .args(["validate", "workflows/fast-charge-plugins.yaml"])
        .env("SKLEARN_LIFE_TRAIN", &train)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(said.contains("2 plugin(s) started and checked"), "{said}");
}

/// A plugin that greets properly and offers step `s`, then behaves as `body` says on calls.
fn misbehaving(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.py"));
    std::fs::write(
        &path,
        format!(
            r#"import json, sys, time
def send(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
sys.stdin.readline()
send({{"type": "hello", "protocol": "labloop-plugin/1", "name": "{name}", "version": "0",
      "persistent": True, "capabilities": {{"steps": {{"s": {{"outputs": {{}}}}}}}}}})
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "ping":
        send({{"type": "result", "id": m["id"], "value": {{}}}}); continue
{body}
"#
        ),
    )
    .unwrap();
    path
}

fn misbehaving_workflow(dir: &Path, plugin: &Path, on_failure: &str) -> PathBuf {
    let text = format!(
        r#"campaign:
  name: misbehaving
  seed: 1
  objective: {{name: cycle_life, direction: maximize}}
  search_space:
    charge_protocol:
      soc_breakpoints: [0.0, 0.2, 0.4, 0.6, 0.8]
      charge_time_min: 10
      free_steps: [[4.8, 5.6], [4.8, 5.2], [4.8, 5.2]]
      last_step: {{min_c_rate: 0.1, max_c_rate: 4.81}}
      finish: {{c_rate: 1.0, cv_voltage_v: 3.6}}
optimizer: {{kind: gaussian_process, batch_size: 2}}
stopping: {{max_rounds: 1}}
plugins:
  - name: odd
    command: [python3, {}]
    call_timeout: 2s
    restarts: 1
instruments:
  - {{name: cycler1, driver: sim, channels: 2, clock_acceleration: 1000000}}
experiment:
  steps:
    - cycle: {{cycles: 100, discharge_c_rate: 4.0}}
    - id: odd
      run: {{plugin: odd, step: s}}
      on_failure: {on_failure}
    - predict: {{model: severson-variance}}
"#,
        plugin.display()
    );
    let path = dir.join("workflow.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_to_end(python: &Path, workflow: &Path, url: &str) -> (Option<i32>, String) {
    let started = Instant::now();
    let out = labloop(python)
        .arg("run")
        .arg(workflow)
        .args(["--store", url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(120));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plugin_pauses_the_campaign_saying_why() {
    let Some(python) = python("json") else {
        return;
    };
    let dir = fresh_dir("plugins-hang");
    let plugin = misbehaving(&dir, "hangs", "    time.sleep(60)");
    let workflow = misbehaving_workflow(&dir, &plugin, "pause_campaign");
    let url = format!("sqlite://{}", dir.join("store.sqlite").display());
    let (code, said) = run_to_end(&python, &workflow, &url);
    assert_eq!(code, Some(3), "paused: {said}");
    assert!(said.contains("no reply to step.run"), "{said}");
    assert!(said.contains("wrote nothing for the call"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_answering_garbage_fails_its_step_naming_the_line() {
    let Some(python) = python("json") else {
        return;
    };
    let dir = fresh_dir("plugins-garbage");
    let plugin = misbehaving(
        &dir,
        "babbles",
        "    print('OK, measuring now...'); sys.stdout.flush()",
    );
    let workflow = misbehaving_workflow(&dir, &plugin, "abort_experiment");
    let url = format!("sqlite://{}", dir.join("store.sqlite").display());
    let (code, said) = run_to_end(&python, &workflow, &url);
    assert_ne!(code, Some(0), "{said}");
    let store = Store::open(&url).await.unwrap();
    let experiments = store.experiments("misbehaving").await.unwrap();
    assert_eq!(experiments.len(), 2);
    for e in experiments {
        assert_eq!(e.state, labloop_core::ExperimentState::Failed);
        let steps = store.step_states(&e.id).await.unwrap();
        let reason = steps["odd"].detail.clone().unwrap_or_default();
        assert!(reason.contains("not protocol messages"), "{reason}");
        assert!(reason.contains("`OK, measuring now...`"), "{reason}");
    }
}

#[test]
fn a_plugin_that_exits_at_once_stops_the_campaign_before_any_cell() {
    let Some(python) = python("json") else {
        return;
    };
    let dir = fresh_dir("plugins-exit");
    let plugin = dir.join("exits.py");
    std::fs::write(
        &plugin,
        "import sys\nprint('licence server unreachable', file=sys.stderr)\nsys.exit(3)\n",
    )
    .unwrap();
    let workflow = misbehaving_workflow(&dir, &plugin, "abort_experiment");
    let url = format!("sqlite://{}", dir.join("store.sqlite").display());
    let (code, said) = run_to_end(&python, &workflow, &url);
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("exited before answering `hello`"), "{said}");
    assert!(said.contains("licence server unreachable"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labloop_killed_during_a_plugin_step_resumes_it_without_acting_twice() {
    let Some(python) = python("sklearn") else {
        return;
    };
    let dir = fresh_dir("plugins-labloop-killed");
    let train = training_features(&python, &dir);
    let db = dir.join("store.sqlite");
    let url = format!("sqlite://{}", db.display());
    let ledger = dir.join("ledger");
    let journal = PathBuf::from(format!(
        "{}.fast-charge-plugins.plugins.state/lab-tools/calls.jsonl",
        db.display()
    ));
    let with_env = |c: &mut Command| {
        c.env("SKLEARN_LIFE_TRAIN", &train)
            .env("LAB_TOOLS_LEDGER", &ledger)
            .env("LAB_TOOLS_EIS_SECONDS", "1.5");
    };
    // Kill labloop itself (SIGKILL) while a spectrum is being taken.
    let mut first = labloop(&python);
    first
        .args([
            "run",
            "workflows/fast-charge-plugins.yaml",
            "--store",
            &url,
            "--rounds",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    with_env(&mut first);
    let mut child = first.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let in_flight = loop {
        assert!(Instant::now() < deadline, "no spectrum was begun");
        if let Ok(text) = std::fs::read_to_string(&journal)
            && let Some(line) = text.lines().find(|l| l.contains("\"begin\": true"))
        {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            break entry["id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphaned plugin finishes its call, journals the reply and exits on its closed pipes.
    std::thread::sleep(Duration::from_secs(3));

    let mut resume = labloop(&python);
    resume.args(["resume", "fast-charge-plugins", "--store", &url, "--json"]);
    with_env(&mut resume);
    let result = json_result(&mut resume);
    assert_eq!(result["cells"], 8, "{result}");
    assert_eq!(result["failed"], 0, "{result}");
    // The call in flight at the kill was asked again under its id and answered from the plugin's
    // journal: every cell's spectrum was taken once.
    let ledger = std::fs::read_to_string(&ledger).unwrap();
    let ids: Vec<&str> = ledger
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(ids.len(), 8, "{ledger}");
    assert_eq!(
        ids.iter().filter(|id| **id == in_flight).count(),
        1,
        "{ledger}"
    );
    assert!(
        ids.iter().all(|id| id.ends_with("/eis/1")),
        "no retries needed: {ledger}"
    );
}
