//! A campaign whose workflow includes other files is read again from the store alone: run from
//! one folder, killed with SIGKILL, resumed from a folder that holds none of its files, it ends
//! as the uninterrupted run does.

use labloop_tests::{fresh_dir, json_result, labloop_bin, repo_root};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn labloop(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(labloop_bin());
    c.args(args)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The workflow and the instrument file it includes, copied into `dir` (as a lab keeps them).
fn copy_workflow(dir: &Path) {
    std::fs::create_dir_all(dir.join("instruments")).unwrap();
    for file in ["electrolyte-formulation.yaml", "instruments/sim-lab.yaml"] {
        std::fs::copy(repo_root().join("workflows").join(file), dir.join(file)).unwrap();
    }
}

#[test]
fn an_include_using_campaign_resumes_from_another_folder() {
    let root = fresh_dir("resume-elsewhere");
    let (lab, elsewhere) = (root.join("lab"), root.join("elsewhere"));
    copy_workflow(&lab);
    std::fs::create_dir_all(&elsewhere).unwrap();

    let whole = format!("sqlite://{}", root.join("whole.sqlite").display());
    let uninterrupted = json_result(&mut labloop(
        &lab,
        &[
            "run",
            "electrolyte-formulation.yaml",
            "--store",
            &whole,
            "--json",
        ],
    ));

    let killed = format!("sqlite://{}", root.join("killed.sqlite").display());
    let mut child = labloop(
        &lab,
        &[
            "run",
            "electrolyte-formulation.yaml",
            "--store",
            &killed,
            "--json",
        ],
    )
    .spawn()
    .unwrap();
    let started = Instant::now();
    // Kill once the campaign is under way (its store exists and holds experiments).
    while started.elapsed() < Duration::from_secs(3) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let was_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        was_running,
        "the run ended before it could be killed: nothing tested"
    );
    // The lab's folder is gone: only the store is left.
    std::fs::remove_dir_all(&lab).unwrap();

    let resumed = json_result(&mut labloop(
        &elsewhere,
        &[
            "resume",
            "electrolyte-formulation",
            "--store",
            &killed,
            "--json",
        ],
    ));
    for key in ["cells", "failed", "stopped_by", "ranking"] {
        assert_eq!(resumed[key], uninterrupted[key], "{key}");
    }
}
