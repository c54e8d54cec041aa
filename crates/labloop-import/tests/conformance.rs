//! Every reader on real vendor files: the files in `tests/fixtures/` (copied from navani 0.1.22's
//! and battery-data-toolkit 0.4.6's distributions, with their licences) and the larger ones in
//! the shared data (`$LABLOOP_SHARED_DATA/cyclers`). Expected figures come from the cycler's own
//! counters where the file has them (exact), and from established readers' parses recorded in
//! `tests/reference/expected.json` by `tests/reference/reference.py` (navani, battery-data-toolkit,
//! batterydata's published summary), with the tolerance each comparison states.
//!
//! Cycle numbering differs between readers (navani counts half cycles from the first reversal;
//! labloop follows the file's own cycle index, else starts a cycle at each charge after a
//! discharge), so comparisons with navani are per half cycle or over the whole file.

use labloop_import::{CycleSummary, ImportedFile, import};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A file of the shared data's `cyclers/`; under CI it must be there.
fn shared(name: &str) -> Option<PathBuf> {
    let root = std::env::var("LABLOOP_SHARED_DATA").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let path = root.join("cyclers").join(name);
    if path.exists() {
        return Some(path);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI=true but {} is missing",
        path.display()
    );
    eprintln!("{} missing: skipped", path.display());
    None
}

fn read(path: &PathBuf) -> ImportedFile {
    let bytes = std::fs::read(path).unwrap();
    import(&bytes, &path.display().to_string(), None)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cycles(file: &ImportedFile) -> &[CycleSummary] {
    assert_eq!(file.cells.len(), 1, "one cell per file");
    &file.cells[0].cycles
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/expected.json"),
    )
    .unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[name].clone()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(what: &str, ours: f64, theirs: f64, relative: f64, absolute: f64) {
    assert!(
        (ours - theirs).abs() <= relative * theirs.abs() + absolute,
        "{what}: labloop {ours}, reference {theirs} (tolerance {relative} relative + {absolute})"
    );
}

/// Each non-empty charge (discharge) of the file in order, as navani's half cycles count them:
/// labloop's per-cycle capacities of cycles with one charge and one discharge.
fn halves(cycles: &[CycleSummary], charge: bool, floor: f64) -> Vec<f64> {
    cycles
        .iter()
        .map(|c| {
            if charge {
                c.charge_capacity_ah
            } else {
                c.discharge_capacity_ah
            }
        })
        .filter(|&q| q > floor)
        .collect()
}

fn total(cycles: &[CycleSummary], charge: bool) -> f64 {
    halves(cycles, charge, 0.0).iter().sum()
}

#[test]
fn arbin_csv_matches_the_cyclers_own_counters() {
    let file = read(&fixture("battery-data-toolkit/arbin_example.csv"));
    assert_eq!(file.format, "arbin-csv");
    let c = cycles(&file);
    assert_eq!(c.len(), 2);
    assert_eq!((c[0].points, c[1].points), (860, 1282));
    // Arbin's counters at each cycle's last row (the file starts mid-charge, at 0.88 Ah charged).
    let own = [
        (1.0719038, 1.0723603, 3.7578001, 3.254231),
        (1.0725317, 1.0729095, 3.7558255, 3.2606606),
    ];
    for (cycle, (q_in, q_out, e_in, e_out)) in c.iter().zip(own) {
        close("charge Ah", cycle.charge_capacity_ah, q_in, 0.0, 1e-6);
        close(
            "discharge Ah",
            cycle.discharge_capacity_ah,
            q_out,
            0.0,
            1e-6,
        );
        close("charge Wh", cycle.charge_energy_wh, e_in, 0.0, 1e-6);
        close("discharge Wh", cycle.discharge_energy_wh, e_out, 0.0, 1e-6);
    }
    assert_eq!(c[1].internal_resistance_ohm, Some(0.016726129));
    let t = c[1].temperature_avg_c.unwrap();
    assert!((29.0..31.0).contains(&t), "{t}");
    // battery-data-toolkit integrates the current instead: within 0.5 % on the whole cycle.
    let bdt = &expected("battery-data-toolkit/arbin_example.csv")["cycles"][1];
    for (key, ours) in [
        ("charge_capacity_ah", c[1].charge_capacity_ah),
        ("discharge_capacity_ah", c[1].discharge_capacity_ah),
        ("charge_energy_wh", c[1].charge_energy_wh),
        ("discharge_energy_wh", c[1].discharge_energy_wh),
    ] {
        close(key, ours, bdt[key].as_f64().unwrap(), 0.005, 0.0);
    }
    // The discharge curve lies on the predictor's grid and spans 3.6 → 2.0 V.
    let curve = c[1].discharge_curve.as_ref().unwrap();
    curve.check_shape().unwrap();
    assert!(curve.voltage_v[0] > 3.3 && *curve.voltage_v.last().unwrap() < 2.05);
}

#[test]
fn batterydata_raw_matches_its_published_summary() {
    let Some(path) = shared("battery-data-toolkit/batterydata/p492-13-raw.csv") else {
        return;
    };
    let file = read(&path);
    assert_eq!(file.format, "batterydata");
    let c = cycles(&file);
    let reference = expected("battery-data-toolkit/batterydata/p492-13-raw.csv");
    // Cycles with one charge and one discharge (the published summary takes each counter's
    // maximum; labloop adds every charge of a cycle, so pulse and check-up cycles 4, 5 and 7
    // carry more) and not cut short by the file's end (9).
    for n in [1_i64, 2, 3, 6, 8] {
        let ours = c.iter().find(|x| x.source_cycle == Some(n)).unwrap();
        let theirs = reference["cycles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["source_cycle"] == n)
            .unwrap();
        for (key, value) in [
            ("charge_capacity_ah", ours.charge_capacity_ah),
            ("discharge_capacity_ah", ours.discharge_capacity_ah),
            ("charge_energy_wh", ours.charge_energy_wh),
            ("discharge_energy_wh", ours.discharge_energy_wh),
        ] {
            let expected = theirs[key].as_f64().unwrap_or(0.0);
            close(&format!("cycle {n} {key}"), value, expected, 1e-4, 1e-8);
        }
    }
}

#[test]
fn maccor_text_exports_follow_the_state_column() {
    let file = read(&fixture("navani/maccor_example.txt"));
    assert_eq!(file.format, "maccor");
    let c = cycles(&file);
    // One cycle: the file's `Cyc#` stays 0 over both charge/discharge pairs.
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].source_cycle, Some(0));
    // This export's Amp-hr runs on across steps: all that passed is its last value, 1.626667e-4 Ah.
    close(
        "throughput",
        c[0].charge_capacity_ah + c[0].discharge_capacity_ah,
        0.000_162_666_7,
        0.0,
        1e-10,
    );
    close(
        "charge = discharge",
        c[0].charge_capacity_ah,
        c[0].discharge_capacity_ah,
        0.0,
        1e-9,
    );
    // navani measures each half cycle from its first row (one 30 s sample short of each).
    let navani = expected("navani/maccor_example.txt");
    let navani_charge: f64 = numbers(&navani["charge_halves_ah"]).iter().sum();
    close(
        "charge vs navani",
        c[0].charge_capacity_ah,
        navani_charge + 2.0 * 5.0833e-6,
        1e-4,
        0.0,
    );
    // The other header style's sibling (battery-data-toolkit's .001 export: rests only).
    let rest = read(&fixture("battery-data-toolkit/maccor_example.001"));
    assert_eq!(rest.format, "maccor");
    assert_eq!(cycles(&rest)[0].charge_capacity_ah, 0.0);
    assert_eq!(cycles(&rest)[0].points, 8);
}

#[test]
fn biologic_mpr_half_cycles_match_navani() {
    let Some(path) = shared("navani/jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data_C09.mpr") else {
        return;
    };
    let file = read(&path);
    assert_eq!(file.format, "biologic-mpr");
    let c = cycles(&file);
    let navani = expected("navani/jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data_C09.mpr");
    for (charge, key) in [(true, "charge_halves_ah"), (false, "discharge_halves_ah")] {
        let theirs = numbers(&navani[key]);
        let ours = halves(c, charge, 1e-6);
        assert_eq!(ours.len(), theirs.len(), "{key}: {ours:?} vs {theirs:?}");
        for (a, b) in ours.iter().zip(&theirs) {
            close(key, *a, *b, 0.002, 0.0);
        }
    }
    // A GCPL file without a current column: the current is the charge counter's rate.
    assert!(c.iter().all(|x| x.current_max_a > 0.0 || x.points < 2));
    // An open-circuit record has no current and no counter to derive one: refused by offset.
    let ocv = std::fs::read(fixture("navani/00_test_01_OCV_C01.mpr")).unwrap();
    let err = import(&ocv, "ocv.mpr", None).unwrap_err().to_string();
    assert!(
        err.contains("ocv.mpr: byte") && err.contains("no voltage or no current"),
        "{err}"
    );
    let mb = read(&fixture("navani/00_test_02_MB_C01.mpr"));
    assert_eq!(mb.cells[0].points, 11);
}

#[test]
fn excel_exports_match_navani() {
    let (Some(arbin), Some(landt)) = (
        shared("navani/bs542_004_gr_li_50ua_50mv_1v_191020_Channel_11.xlsx"),
        shared("navani/NJK_CC_156_C30_C_x30.xlsx"),
    ) else {
        return;
    };
    let arbin_file = read(&arbin);
    assert_eq!(arbin_file.format, "arbin-xlsx");
    let navani = expected("navani/bs542_004_gr_li_50ua_50mv_1v_191020_Channel_11.xlsx");
    // One cycle index throughout: compare over the file.
    for (charge, key) in [(true, "charge_halves_ah"), (false, "discharge_halves_ah")] {
        let theirs: f64 = numbers(&navani[key]).iter().sum();
        close(key, total(cycles(&arbin_file), charge), theirs, 0.002, 0.0);
    }
    let landt_file = read(&landt);
    assert_eq!(landt_file.format, "excel-table");
    let c = cycles(&landt_file);
    let navani = expected("navani/NJK_CC_156_C30_C_x30.xlsx");
    for (charge, key) in [(true, "charge_halves_ah"), (false, "discharge_halves_ah")] {
        let theirs = numbers(&navani[key]);
        let ours = halves(c, charge, 1e-9);
        assert_eq!(ours.len(), theirs.len(), "{key}");
        for (a, b) in ours.iter().zip(&theirs) {
            // Landt writes capacities to 0.1 µAh.
            close(key, *a, *b, 0.0, 1.5e-7);
        }
    }
}

#[test]
fn neware_binaries_match_navani() {
    for (name, format) in [
        ("navani/test.nda", "neware-nda"),
        ("navani/test.ndax", "neware-ndax"),
    ] {
        let file = read(&fixture(name));
        assert_eq!(file.format, format);
        let navani = expected(name);
        for (charge, key) in [(true, "charge_halves_ah"), (false, "discharge_halves_ah")] {
            let theirs: f64 = numbers(&navani[key]).iter().sum();
            close(
                &format!("{name} {key}"),
                total(cycles(&file), charge),
                theirs,
                0.002,
                1e-9,
            );
        }
    }
    let ndax = read(&fixture("navani/test.ndax"));
    let c = &cycles(&ndax)[0];
    assert!((c.voltage_min_v - 1.4995).abs() < 1e-4 && (c.voltage_max_v - 4.3998).abs() < 1e-4);
}

#[test]
fn bdf_and_battery_archive_tables() {
    let with = read(&fixture("navani/test_with_capacity.bdf"));
    assert_eq!(with.format, "bdf");
    let c = cycles(&with);
    // The file's own counters: 0.4 mAh in, 0.5 mAh out.
    close("bdf charge", c[0].charge_capacity_ah, 0.0004, 0.0, 1e-12);
    close(
        "bdf discharge",
        c[0].discharge_capacity_ah,
        0.0005,
        0.0,
        1e-12,
    );
    // Without counters the current is integrated: 9 mA·s in all, as navani finds.
    let without = read(&fixture("navani/test_without_capacity.bdf"));
    let navani = expected("navani/test_without_capacity.bdf");
    let theirs: f64 = numbers(&navani["charge_halves_ah"]).iter().sum::<f64>()
        + numbers(&navani["discharge_halves_ah"]).iter().sum::<f64>();
    let c = cycles(&without);
    close(
        "throughput",
        c[0].charge_capacity_ah + c[0].discharge_capacity_ah,
        theirs,
        1e-9,
        0.0,
    );
    let machine = read(&fixture("navani/test_machine_readable.bdf"));
    assert_eq!(machine.format, "bdf");
    // A BDF file without current: refused, naming what is missing.
    let missing = std::fs::read(fixture("navani/test_missing_required.bdf")).unwrap();
    let err = import(&missing, "m.bdf", Some("bdf"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.bdf") && err.contains("no current column"),
        "{err}"
    );
    let ba = read(&fixture(
        "battery-data-toolkit/CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv",
    ));
    assert_eq!(ba.format, "battery-archive");
    close(
        "battery archive charge",
        cycles(&ba)[0].charge_capacity_ah,
        0.059,
        0.0,
        1e-9,
    );
    close(
        "battery archive energy",
        cycles(&ba)[0].charge_energy_wh,
        0.236,
        0.0,
        1e-9,
    );
}

#[test]
fn a_format_is_told_by_content_not_by_name() {
    let bytes = std::fs::read(fixture("battery-data-toolkit/arbin_example.csv")).unwrap();
    assert_eq!(
        import(&bytes, "misnamed.mpr", None).unwrap().format,
        "arbin-csv"
    );
    let err = import(&bytes, "x.csv", Some("maccor"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a Maccor MIMS text export"), "{err}");
    let err = import(&bytes, "x.csv", Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown format `nope`"), "{err}");
}

#[test]
fn a_bad_number_is_named_by_line_and_column() {
    let text = std::fs::read_to_string(fixture("battery-data-toolkit/arbin_example.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[41] = lines[41].replacen("3.", "3.x", 1);
    let bad = lines.join("\n");
    let err = import(bad.as_bytes(), "cell.csv", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cell.csv: line 42, column `Voltage`"),
        "{err}"
    );
}
