//! End-to-end tests of the whole loop live in `tests/`; this library holds what they share.

use std::path::{Path, PathBuf};

/// The team's shared data folder: `$LABLOOP_SHARED_DATA`, else `../shared/data` beside the checkout.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("LABLOOP_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    assert!(
        dir.join("README.md").exists(),
        "shared data not found at {} (set LABLOOP_SHARED_DATA to the shared/data folder)",
        dir.display()
    );
    dir
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `labloop` binary `cargo test --workspace` built beside the test binaries.
pub fn labloop_bin() -> PathBuf {
    workspace_bin("labloop")
}

/// A binary of the workspace (`labloop`, `labloop-sim`) built beside the test binaries.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not built (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// The Python with `module` importable: `LABLOOP_TEST_PYTHON` (default: the virtual environment
/// `.ci/run` makes); `None` (the test skips) outside CI, a failure under CI=true.
pub fn python(module: &str) -> Option<PathBuf> {
    let path = std::env::var("LABLOOP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/labloop-venv/bin/python"));
    let found = std::process::Command::new(&path)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no Python with {module} at {} (.ci/run installs it; LABLOOP_TEST_PYTHON overrides)",
        path.display()
    );
    eprintln!("skipped: no Python with {module} at {}", path.display());
    None
}

/// An empty folder for one test, `<tmp>/labloop-<tag>-<pid>` (emptied if a run before left it).
pub fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("labloop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary folder");
    dir
}

/// Runs a `labloop ... --json` command to its end: it must succeed (else its stderr is shown), and
/// its stdout is the JSON result.
pub fn json_result(command: &mut std::process::Command) -> serde_json::Value {
    serde_json::from_slice(&succeeds(command).stdout).expect("JSON result")
}

/// How long one command of a test may run before it is killed and the test fails: 10 minutes, or
/// `LABLOOP_TEST_COMMAND_TIMEOUT_S` seconds. A hung command then fails loudly with what it printed
/// instead of holding up the whole suite.
pub fn command_deadline() -> std::time::Duration {
    let secs = std::env::var("LABLOOP_TEST_COMMAND_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    std::time::Duration::from_secs(secs)
}

/// Runs a command to its end; it must succeed within [`command_deadline`] (else it is killed and
/// its stderr shown). Returns its output.
pub fn succeeds(command: &mut std::process::Command) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command runs");
    // Both pipes are drained while it runs, so a chatty command never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + command_deadline();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the command's status") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = std::process::Output {
        status: status.unwrap_or_default(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "{command:?} still ran after {:?}; killed. Its stderr: {}",
        command_deadline(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process (a simulator, a broker) killed when the test lets go of it.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks a finished campaign in the store at `url`: `cells` experiments, each with cycle records
/// 1..=`cycles` exactly once and in order, and an observation for each.
pub async fn assert_every_record_once(url: &str, campaign: &str, cells: usize, cycles: u32) {
    let store = labloop_store::Store::connect(url)
        .await
        .expect("the store opens");
    let experiments = store.experiments(campaign).await.expect("experiments");
    assert_eq!(experiments.len(), cells);
    for e in &experiments {
        let stored: Vec<u32> = store
            .records(&e.id)
            .await
            .expect("records")
            .iter()
            .map(|r| r.cycle)
            .collect();
        assert_eq!(stored, (1..=cycles).collect::<Vec<u32>>(), "{}", e.id);
    }
    assert_eq!(
        store
            .observations(campaign)
            .await
            .expect("observations")
            .len(),
        cells
    );
    store.close().await;
}

/// A fresh PostgreSQL database for one test on the server at `LABLOOP_TEST_PG_URL`, as
/// `(url, admin URL, name)`; `None` when no server is configured outside CI (under `CI=true` a missing
/// server fails the test). Drop it with [`drop_postgres`].
pub async fn fresh_postgres(tag: &str) -> Option<(String, String, String)> {
    let Ok(base) = std::env::var("LABLOOP_TEST_PG_URL") else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true but LABLOOP_TEST_PG_URL is not set"
        );
        eprintln!("LABLOOP_TEST_PG_URL not set: skipping the PostgreSQL half");
        return None;
    };
    let name = format!(
        "labloop_{tag}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("PostgreSQL at LABLOOP_TEST_PG_URL is reachable");
    // `name` is ours (letters, digits, underscores), not user input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("a test database can be created");
    admin.close().await;
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("LABLOOP_TEST_PG_URL has no database part: {base}"),
    };
    Some((url, base, name))
}

/// Drops a database [`fresh_postgres`] made.
pub async fn drop_postgres(admin_url: &str, name: &str) {
    let admin = sqlx::AnyPool::connect(admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

/// Writes `<dir>/instruments/lab.yaml`: the example simulated lab (`workflows/instruments/sim-lab.yaml`)
/// with `cycler_channels` channels, whose robot is instead external workers on the store's queue
/// (capability `coin-cell-robot`, `robot_channels` builds at once). The robot keeps the simulator's
/// clock, since a campaign runs at its slowest instrument's pace.
pub fn write_queue_lab(dir: &Path, cycler_channels: u32, robot_channels: u32) {
    let lab = std::fs::read_to_string(repo_root().join("workflows/instruments/sim-lab.yaml"))
        .expect("the example lab file")
        .replace("channels: 16", &format!("channels: {cycler_channels}"))
        .replace(
            "  - name: robot1\n    kind: cell_builder\n    driver: sim\n    channels: 4           # cells assembled at once\n    clock_acceleration: 1000000",
            &format!(
                "  - name: robot1\n    kind: cell_builder\n    driver: queue\n    transport:\n      queue: {{capability: coin-cell-robot}}\n    channels: {robot_channels}\n    clock_acceleration: 1000000"
            ),
        );
    assert!(
        lab.contains("driver: queue"),
        "the example lab file changed"
    );
    std::fs::create_dir_all(dir.join("instruments")).expect("instruments folder");
    std::fs::write(dir.join("instruments/lab.yaml"), lab).expect("lab file");
}
