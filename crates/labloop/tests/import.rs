//! `labloop import` as users call it: `--check --json` on a vendor file, an import into a store
//! that a second run leaves alone, `export --dataset` giving back the same numbers, a refused
//! file named while the others go in, and a lifetime model trained from imported files that
//! predicts as one trained from the arrays of the same cells does.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{labloop, repo};

fn shared() -> PathBuf {
    std::env::var("LABLOOP_SHARED_DATA").map_or_else(|_| repo("../shared/data"), PathBuf::from)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("labloop-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

const ARBIN: &str = "crates/labloop-import/tests/fixtures/battery-data-toolkit/arbin_example.csv";
const NDAX: &str = "crates/labloop-import/tests/fixtures/navani/test.ndax";

#[test]
fn check_import_export_round_trip() {
    let dir = scratch("round-trip");
    let store = format!("sqlite://{}", dir.join("lab.sqlite").display());
    let checked: Value = serde_json::from_str(&ok(labloop()
        .args(["import", "--check", "--json"])
        .arg(repo(ARBIN))
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(checked["format"], "arbin-csv");
    let cycles = &checked["cells"][0]["cycles"];
    assert_eq!(cycles[1]["cycle"], 2);
    assert_eq!(cycles[1]["points"], 1282);
    for key in [
        "charge_capacity_ah",
        "discharge_capacity_ah",
        "charge_energy_wh",
        "discharge_energy_wh",
        "voltage_min_v",
        "voltage_max_v",
    ] {
        assert!(cycles[1][key].is_f64(), "{key}");
    }
    assert!(
        cycles[1].get("discharge_curve").is_none(),
        "curves only with --curves"
    );

    // Two files in, one refused by name: the good ones land, the exit code says one failed.
    let bad = dir.join("cut.csv");
    let text = std::fs::read_to_string(repo(ARBIN)).unwrap();
    std::fs::write(&bad, &text[..text.len() - 30]).unwrap();
    let out = labloop()
        .args(["import", "--store", &store, "--dataset", "legacy"])
        .arg(repo(ARBIN))
        .arg(&bad)
        .arg(repo(NDAX))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cut.csv: line ") && stderr.contains("truncated"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("arbin_example (arbin-csv reader 1) → dataset legacy: 2 cycles"),
        "{stdout}"
    );
    assert!(stdout.contains("test (neware-ndax"), "{stdout}");
    // Again: nothing added.
    let again = ok(labloop()
        .args(["import", "--store", &store, "--dataset", "legacy"])
        .arg(repo(ARBIN))
        .output()
        .unwrap());
    assert!(again.contains("already in dataset legacy"), "{again}");
    let status = ok(labloop()
        .args(["status", "--store", &store])
        .output()
        .unwrap());
    assert!(
        status.contains("dataset legacy") && status.contains("2 files, 2 cells"),
        "{status}"
    );

    // What the store gives back is what the file held.
    let exported: Value = serde_json::from_str(&ok(labloop()
        .args(["export", "--dataset", "legacy", "--store", &store])
        .output()
        .unwrap()))
    .unwrap();
    let cell = exported["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "arbin_example")
        .unwrap();
    assert_eq!(cell["format"], "arbin-csv");
    assert_eq!(cell["sha256"], checked["sha256"]);
    assert_eq!(&cell["cycles"], cycles);
}

/// Severson cells written as Arbin CSV exports from their `Qdlin` arrays: every cycle a 4C
/// charge, then the discharge sampled at every 4th voltage of the arrays' grid.
fn write_arbin_cells(arrays: &Path, out: &Path) -> usize {
    let mut n = 0;
    while let Ok(text) = std::fs::read_to_string(arrays.join(format!("cell{}.csv", n + 1))) {
        let rows: Vec<Vec<f64>> = text
            .lines()
            .map(|l| l.split(',').map(|x| x.trim().parse().unwrap()).collect())
            .collect();
        let mut csv = String::from(
            "Data_Point,Test_Time(s),Step_Index,Cycle_Index,Current(A),Voltage(V),Charge_Capacity(Ah),Discharge_Capacity(Ah)\n",
        );
        let (mut t, mut point) = (0.0_f64, 0);
        let mut row = |csv: &mut String, t: f64, step, cycle, i: f64, v: f64, qc: f64, qd: f64| {
            point += 1;
            csv.push_str(&format!("{point},{t},{step},{cycle},{i},{v},{qc},{qd}\n"));
        };
        // Column j of the arrays is cycle j + 2: Q(V) at each of the 1000 voltages.
        let curves: Vec<Vec<f64>> = (0..rows[0].len())
            .map(|j| rows.iter().map(|r| r[j]).collect())
            .collect();
        for (column, q_of_v) in curves.iter().enumerate() {
            let cycle = column + 2;
            let q_end = q_of_v[999];
            for k in 0..=4 {
                let q = q_end * f64::from(k) / 4.0;
                row(
                    &mut csv,
                    t,
                    1,
                    cycle,
                    4.4,
                    3.0 + 0.15 * f64::from(k),
                    q,
                    0.0,
                );
                t += 0.25 * q_end / 4.4 * 3600.0;
            }
            row(&mut csv, t, 2, cycle, -4.4, 3.65, q_end, 0.0);
            let mut q_before = 0.0;
            for k in (0..1000).step_by(4).chain([999]) {
                let q = q_of_v[k].max(q_before);
                t += (q - q_before) / 4.4 * 3600.0 + 1e-3;
                row(
                    &mut csv,
                    t,
                    2,
                    cycle,
                    -4.4,
                    3.6 - 1.6 * k as f64 / 999.0,
                    q_end,
                    q,
                );
                q_before = q;
            }
            t += 600.0;
        }
        std::fs::write(out.join(format!("cell{}.csv", n + 1)), csv).unwrap();
        n += 1;
    }
    n
}

fn rmse(model: &Path, severson: &Path) -> f64 {
    let json: Value = serde_json::from_str(&ok(labloop()
        .args(["predict", "eval", "--json", "--backend", "cpu", "--model"])
        .arg(model)
        .arg("--cells")
        .arg(severson.join("test1"))
        .arg("--lives")
        .arg(severson.join("cycle_lives/test1_cycle_lives.csv"))
        .args(["--exclude", "cell22"])
        .output()
        .unwrap()))
    .unwrap();
    json["rmse_cycles"].as_f64().unwrap()
}

#[test]
fn a_model_trained_from_imported_files_predicts_as_one_trained_from_the_arrays() {
    let severson = shared().join("severson");
    if !severson.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true without shared data"
        );
        return;
    }
    let dir = scratch("severson");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let cells = write_arbin_cells(&severson.join("train"), &files);
    assert_eq!(cells, 41);
    let lives_text =
        std::fs::read_to_string(severson.join("cycle_lives/train_cycle_lives.csv")).unwrap();
    let lives: Vec<String> = lives_text
        .lines()
        .enumerate()
        .map(|(i, l)| format!("cell{},{}", i + 1, l.trim()))
        .collect();
    std::fs::write(dir.join("lives.csv"), lives.join("\n") + "\n").unwrap();
    let store = format!("sqlite://{}", dir.join("lab.sqlite").display());
    let mut import = labloop();
    import.args(["import", "--store", &store, "--dataset", "severson-train"]);
    for k in 1..=cells {
        import.arg(files.join(format!("cell{k}.csv")));
    }
    ok(import.output().unwrap());
    let from_files = dir.join("files.model");
    ok(labloop()
        .args(["predict", "train", "--model", "variance", "--store", &store])
        .args(["--dataset", "severson-train", "--lives"])
        .arg(dir.join("lives.csv"))
        .arg("--out")
        .arg(&from_files)
        .output()
        .unwrap());
    let from_arrays = dir.join("arrays.model");
    ok(labloop()
        .args(["predict", "train", "--model", "variance", "--cells"])
        .arg(severson.join("train"))
        .arg("--lives")
        .arg(severson.join("cycle_lives/train_cycle_lives.csv"))
        .arg("--out")
        .arg(&from_arrays)
        .output()
        .unwrap());
    let (files_rmse, arrays_rmse) = (rmse(&from_files, &severson), rmse(&from_arrays, &severson));
    eprintln!(
        "primary test RMSE: trained from files {files_rmse:.1}, from arrays {arrays_rmse:.1}"
    );
    assert!(
        (files_rmse - arrays_rmse).abs() <= 0.03 * arrays_rmse,
        "from files {files_rmse}, from arrays {arrays_rmse}"
    );
}
