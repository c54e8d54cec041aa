//! Truncated, damaged and random input never panics a reader: it is read or refused with a
//! located error, and whatever is read is finite (it serialises to JSON and back). Seeded.

use labloop_import::{ImportedFile, import, readers};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for dir in ["navani", "battery-data-toolkit"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != "LICENSE" {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Read or refused; if read, every number is finite and the file round-trips through JSON.
fn survives(bytes: &[u8], format: Option<&str>) -> bool {
    match import(bytes, "case", format) {
        Ok(file) => {
            let json = serde_json::to_string(&file).expect("finite numbers serialise");
            let back: ImportedFile = serde_json::from_str(&json).expect("and read back");
            assert_eq!(back.cells.len(), file.cells.len());
            true
        }
        Err(e) => {
            assert!(e.to_string().starts_with("case: "), "{e}");
            false
        }
    }
}

#[test]
fn truncated_and_damaged_files_are_refused_or_read_never_panic() {
    let mut rng = StdRng::seed_from_u64(20);
    let mut cases = 0;
    for (name, bytes) in fixtures() {
        // Every fixture reads whole (the OCV record and the BDF without current are refused).
        let whole = survives(&bytes, None);
        assert_eq!(
            whole,
            !name.contains("OCV") && !name.contains("missing_required"),
            "{name}"
        );
        let rounds = if bytes.len() > 100_000 { 60 } else { 2000 };
        for _ in 0..rounds {
            let cut = rng.random_range(0..bytes.len());
            survives(&bytes[..cut], None);
            let mut damaged = bytes.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..damaged.len());
                damaged[at] = rng.random();
            }
            survives(&damaged, None);
            cases += 2;
        }
        // A truncated binary file is refused, never read short.
        if name.ends_with(".nda") || name.ends_with(".mpr") || name.ends_with(".ndax") {
            for _ in 0..20 {
                let cut = rng.random_range(1..bytes.len() - 1);
                let outcome = import(&bytes[..cut], "case", None);
                assert!(outcome.is_err(), "{name} cut at {cut} was read");
                cases += 1;
            }
        }
    }
    // Garbage behind each format's magic, read as every format.
    let magics: [&[u8]; 6] = [
        b"BIO-LOGIC MODULAR FILE\x1a",
        b"NEWARE20200325\x1d",
        b"PK\x03\x04",
        b"EC-Lab ASCII FILE\r\nNb header lines : 3\r\n",
        b"Today's Date 01/15/2025\nRec#\tCyc#\tStep\tTest (Min)\tAmp-hr\tAmps\tVolts\tState\n",
        b"\x1f\x8b\x08\x00",
    ];
    for _ in 0..3000 {
        let mut bytes = magics[rng.random_range(0..magics.len())].to_vec();
        let n = rng.random_range(0..600);
        bytes.extend((0..n).map(|_| rng.random::<u8>()));
        survives(&bytes, None);
        let format = readers()[rng.random_range(0..readers().len())].format();
        survives(&bytes, Some(format));
        cases += 2;
    }
    assert!(cases > 45_000, "{cases}");
}

#[test]
fn a_cut_last_line_is_refused_as_truncated() {
    let text = "Test Time / s,Voltage / V,Current / A\n0,3.0,0.001\n1,3.1,0.001\n2,3.2";
    let err = import(text.as_bytes(), "cut.bdf", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cut.bdf: line 4") && err.contains("truncated"),
        "{err}"
    );
}
