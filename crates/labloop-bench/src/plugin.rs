//! The plugin protocol's own cost: calls per second and latency through a plugin's pipes (one
//! JSON line each way), for a plugin that does nothing (`ping`) and for a measurement whose reply
//! the plugin journals before answering (what a `measure` step adds beyond the plugin's work),
//! called one at a time and by several experiments at once. Run from the repository: it starts
//! the Python SDK's example (`plugins/python/examples/lab_tools.py`) and the Rust example plugin
//! (built beside this binary, `cargo build -p labloop-plugin-example`).

use labloop_plugin::{Plugin, PluginConfig};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `labloop bench plugin`.
#[derive(clap::Args)]
pub struct PluginBenchArgs {
    /// Calls per figure.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Callers at once for the concurrent figures.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The Python that runs the SDK's example.
    #[arg(long, default_value = "python3")]
    python: String,
}

struct Subject {
    name: &'static str,
    command: Vec<String>,
    measurement: (&'static str, serde_json::Value),
}

fn subjects(args: &PluginBenchArgs) -> Vec<Subject> {
    let mut out = Vec::new();
    let script = PathBuf::from("plugins/python/examples/lab_tools.py");
    if script.exists() {
        out.push(Subject {
            name: "python (SDK, lab_tools)",
            command: vec![args.python.clone(), script.to_string_lossy().into_owned()],
            measurement: ("retention", json!({"capacity_ah": 1.05, "nominal_ah": 1.1})),
        });
    } else {
        eprintln!(
            "{} not found: run from the repository for the Python figures",
            script.display()
        );
    }
    let rust = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("labloop-plugin-example")));
    match rust {
        Some(path) if path.exists() => out.push(Subject {
            name: "rust (example, balance)",
            command: vec![path.to_string_lossy().into_owned()],
            measurement: ("mass", json!({"tare_g": 0.0})),
        }),
        _ => eprintln!(
            "labloop-plugin-example not beside this binary: `cargo build -p labloop-plugin-example` for the Rust figures"
        ),
    }
    out
}

/// Latencies of `calls` calls made by `callers` at once.
async fn timed(
    plugin: &Arc<Plugin>,
    method: &'static str,
    params: serde_json::Value,
    calls: usize,
    callers: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per = calls.div_ceil(callers);
    for c in 0..callers {
        let (plugin, params) = (Arc::clone(plugin), params.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(per);
            for i in 0..per {
                let id = format!("bench/{method}/{c}/{i}/{}", std::process::id());
                let t = Instant::now();
                plugin.call(method, &id, &params, true).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(calls);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort();
    Ok((started.elapsed(), all))
}

fn row(subject: &str, what: &str, callers: usize, wall: Duration, latencies: &[Duration]) {
    let n = latencies.len().max(1);
    let pct = |p: f64| latencies[((n - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    println!(
        "{subject:<26} {what:<22} {callers:>7} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
        latencies.len() as f64 / wall.as_secs_f64(),
        latencies.iter().sum::<Duration>().as_secs_f64() * 1e6 / n as f64,
        pct(0.5),
        pct(0.99),
    );
}

/// Runs the benchmark and prints its table.
pub fn plugin(args: &PluginBenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let scratch = std::env::temp_dir().join(format!("labloop-bench-plugin-{}", std::process::id()));
    println!(
        "{:<26} {:<22} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "plugin", "call", "callers", "calls/s", "mean µs", "p50 µs", "p99 µs"
    );
    rt.block_on(async {
        for subject in subjects(args) {
            let plugin = Arc::new(Plugin::new(PluginConfig {
                name: "bench".into(),
                command: subject.command.clone(),
                env: Vec::new(),
                dir: std::env::current_dir()?,
                campaign: "bench".into(),
                state_dir: scratch.join(subject.name.split_whitespace().next().unwrap_or("p")),
                log: None,
                call_timeout: Duration::from_secs(30),
                restarts: 0,
                backoff: Duration::from_millis(100),
            }));
            let started = Instant::now();
            plugin.hello().await?;
            println!("{:<26} {:<22} {:>7} {:>43.1}", subject.name, "start + hello (ms)", 1, started.elapsed().as_secs_f64() * 1e3);
            let (name, inputs) = &subject.measurement;
            let read = json!({"measurement": name, "inputs": inputs, "experiment": {"id": "bench", "cell_id": "bench-cell"}});
            for callers in [1, args.concurrency] {
                let (wall, lat) = timed(&plugin, "ping", serde_json::Value::Null, args.calls, callers).await?;
                row(subject.name, "ping", callers, wall, &lat);
                let (wall, lat) = timed(&plugin, "measurement.read", read.clone(), args.calls, callers).await?;
                row(subject.name, &format!("measurement {name}"), callers, wall, &lat);
            }
            plugin.shutdown().await;
        }
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "(measurement calls are journalled by the plugin, synced, before each reply; ping is the protocol alone)"
    );
    Ok(())
}
