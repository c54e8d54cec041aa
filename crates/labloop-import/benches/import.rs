//! `cargo bench -p labloop-import`: vendor file import throughput (MB/s, cycles/s) per file and
//! format, and the same files read by navani (Python) in the same run, with the ratio.
//!
//! Files: the arguments after `--`, else every file under `$LABLOOP_SHARED_DATA/cyclers` that
//! labloop reads. navani: `LABLOOP_NAVANI_PYTHON=/path/to/python` with `navani==0.1.22`
//! installed; without it labloop's figures only. Each file is read for `LABLOOP_BENCH_SECONDS`
//! (default 1) and the median read's rate printed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

struct Args {
    files: Vec<PathBuf>,
    python: Option<PathBuf>,
    seconds: f64,
}

/// navani reading one file and summarising its cycles, timed in its own process after imports.
const NAVANI: &str = r#"
import sys, time, warnings
warnings.filterwarnings("ignore")
import navani.echem as ec
path, budget = sys.argv[1], float(sys.argv[2])
times = []
while sum(times) < budget or len(times) < 3:
    t = time.perf_counter()
    df = ec.echem_file_loader(path)
    if "half cycle" in df.columns and "state" in df.columns:
        ec.cycle_summary(df)
    times.append(time.perf_counter() - t)
times.sort()
print(times[len(times) // 2])
"#;

fn main() {
    let root = std::env::var("LABLOOP_SHARED_DATA").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let args = Args {
        files: std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .map(PathBuf::from)
            .collect(),
        python: std::env::var_os("LABLOOP_NAVANI_PYTHON").map(PathBuf::from),
        seconds: std::env::var("LABLOOP_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    };
    let files = if args.files.is_empty() {
        let mut all = Vec::new();
        for dir in [
            "navani",
            "battery-data-toolkit",
            "battery-data-toolkit/batterydata",
        ] {
            let dir = root.join("cyclers").join(dir);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                eprintln!("{} missing: no files to time", dir.display());
                continue;
            };
            for entry in entries.flatten() {
                if entry.path().is_file() {
                    all.push(entry.path());
                }
            }
        }
        all.sort();
        all
    } else {
        args.files.clone()
    };
    println!(
        "{:<58} {:<15} {:>9} {:>7} {:>10} {:>10} {:>10} {:>7}",
        "file", "format", "MB", "cycles", "labloop MB/s", "cycles/s", "navani MB/s", "ratio"
    );
    let mut ratios = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).expect("a readable file");
        let name = path.display().to_string();
        let Ok(first) = labloop_import::import(&bytes, &name, None) else {
            continue;
        };
        let cycles: usize = first.cells.iter().map(|c| c.cycles.len()).sum();
        let mut times = Vec::new();
        while times.iter().sum::<f64>() < args.seconds || times.len() < 3 {
            let t = Instant::now();
            let _ = labloop_import::import(&bytes, &name, None);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let ours = times[times.len() / 2];
        let mb = bytes.len() as f64 / 1e6;
        let navani = args.python.as_ref().and_then(|py| {
            let out = Command::new(py)
                .args(["-c", NAVANI, &name, &args.seconds.to_string()])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        });
        let ratio = navani.map(|n| n / ours);
        ratios.extend(ratio);
        println!(
            "{:<58} {:<15} {:>9.3} {:>7} {:>10.1} {:>10.0} {:>10} {:>7}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            first.format,
            mb,
            cycles,
            mb / ours,
            cycles as f64 / ours,
            navani.map_or("-".into(), |n| format!("{:.1}", mb / n)),
            ratio.map_or("-".into(), |r| format!("{r:.0}x")),
        );
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "labloop is {:.0}x navani's speed on the median file ({} files; {:.0}x to {:.0}x)",
            ratios[ratios.len() / 2],
            ratios.len(),
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}
