//! `labloop export`: a campaign's experiments and cycle records as Parquet and CSV with the documented
//! columns. pandas reads the Parquet files when it is installed (`python3 -c 'import pandas'`);
//! otherwise the test reads them back with the parquet crate.

use labloop_tests::{fresh_dir, labloop_bin, repo_root};
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::path::Path;
use std::process::Command;

const EXPERIMENT_COLUMNS: [&str; 16] = [
    "experiment_id",
    "round",
    "candidate_index",
    "protocol",
    "cell_id",
    "channel_id",
    "state",
    "predicted_life",
    "predicted_sigma",
    "prediction_model",
    "prediction_out_of_domain",
    "remade_life",
    "remade_sigma",
    "remade_adapted_on",
    "observed_life",
    "observed_censored",
];
const CYCLE_COLUMNS: [&str; 12] = [
    "experiment_id",
    "cycle",
    "charge_capacity_ah",
    "discharge_capacity_ah",
    "internal_resistance_ohm",
    "temperature_min_c",
    "temperature_avg_c",
    "temperature_max_c",
    "charge_time_s",
    "voltage_max_v",
    "voltage_min_v",
    "current_max_a",
];

fn labloop(args: &[&str], dir: &Path) {
    let out = Command::new(labloop_bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "labloop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Column names and row count of a Parquet file, read with the parquet crate.
fn parquet_shape(path: &Path) -> (Vec<String>, i64) {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let meta = reader.metadata();
    let names = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    (names, meta.file_metadata().num_rows())
}

#[test]
fn a_campaign_exports_to_parquet_and_csv_that_pandas_reads() {
    let dir = fresh_dir("export");
    let workflow = repo_root().join("workflows/fast-charge-clo.yaml");
    let url = format!("sqlite://{}/store.sqlite", dir.display());
    labloop(
        &[
            "run",
            workflow.to_str().unwrap(),
            "--rounds",
            "1",
            "--store",
            &url,
            "--json",
        ],
        &dir,
    );
    let parquet = dir.join("parquet");
    let csv = dir.join("csv");
    labloop(
        &[
            "export",
            "fast-charge-clo",
            "--store",
            &url,
            "--out",
            parquet.to_str().unwrap(),
        ],
        &dir,
    );
    labloop(
        &[
            "export",
            "fast-charge-clo",
            "--store",
            &url,
            "--out",
            csv.to_str().unwrap(),
            "--format",
            "csv",
        ],
        &dir,
    );
    for (table, columns, rows) in [
        ("experiments", &EXPERIMENT_COLUMNS[..], 48),
        ("cycles", &CYCLE_COLUMNS[..], 4800),
    ] {
        let (names, count) = parquet_shape(&parquet.join(format!("{table}.parquet")));
        assert_eq!(names, columns.to_vec(), "{table}.parquet columns");
        assert_eq!(count, rows, "{table}.parquet rows");
        let text = std::fs::read_to_string(csv.join(format!("{table}.csv"))).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            columns.join(","),
            "{table}.csv header"
        );
        assert_eq!(lines.count() as i64, rows, "{table}.csv rows");
    }
    let pandas = Command::new("python3")
        .args(["-c", "import pandas, pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if pandas {
        let script = format!(
            "import pandas as pd\n\
             e = pd.read_parquet('{p}/experiments.parquet'); c = pd.read_parquet('{p}/cycles.parquet')\n\
             assert e.shape == (48, 12) and c.shape == (4800, 12), (e.shape, c.shape)\n\
             assert e['predicted_life'].notna().all() and (e['predicted_life'] > 0).all()\n\
             assert c.groupby('experiment_id')['cycle'].apply(lambda s: list(s) == list(range(1, 101))).all()\n\
             ec = pd.read_csv('{q}/experiments.csv')\n\
             assert (ec['predicted_life'] - e['predicted_life']).abs().max() == 0\n",
            p = parquet.display(),
            q = csv.display()
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pandas: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("pandas/pyarrow not installed: read back with the parquet crate only");
    }
    let _ = std::fs::remove_dir_all(dir);
}
