//! The shipped lifetime models reproduce from the real Severson et al. cells, and reach the published
//! accuracy on the primary test set. `UPDATE_EXPECT=1` rewrites the shipped model files.

use labloop_predict::shift::{self, BatchCell};
use labloop_predict::train::{
    DISCHARGE_FEATURES, LabelledCell, TrainOptions, VARIANCE_FEATURES, evaluate, fit_elastic_net,
};
use labloop_predict::{LinearModel, ModelFile, builtin_model, severson};
use labloop_tests::{repo_root, shared_data};

fn split(name: &str) -> Vec<LabelledCell> {
    severson::load_split(&shared_data().join("severson"), name, 100).expect("severson data loads")
}

/// Train or test1-without-cell-22 cells with the cycler's per-cycle discharge capacities (the
/// paper's input for its capacity features); the data carries them for those two sets only.
fn with_cycler_capacities(name: &str) -> Vec<LabelledCell> {
    let data = shared_data().join("severson");
    let (capacities, exclude) = match name {
        "train" => ("capacity_per_cycle_train.csv", vec![]),
        _ => (
            "capacity_per_cycle_test1_no_outlier.csv",
            vec!["cell22".to_owned()],
        ),
    };
    severson::ArraySet {
        cells: &data.join(name),
        lives: &data.join(format!("cycle_lives/{name}_cycle_lives.csv")),
        capacities: Some(&data.join(capacities)),
        exclude: &exclude,
    }
    .load(100)
    .expect("severson data loads")
    .into_iter()
    .map(|(_, cell)| cell)
    .collect()
}

/// The training cells with their batches (`train_cells.csv`), with the cycler's capacities or
/// capacities read at 2.0 V.
fn train_batches(cycler_capacities: bool) -> Vec<BatchCell> {
    let data = shared_data().join("severson");
    let capacities = data.join("capacity_per_cycle_train.csv");
    let set = severson::ArraySet {
        cells: &data.join("train"),
        lives: &data.join("cycle_lives/train_cycle_lives.csv"),
        capacities: cycler_capacities.then_some(capacities.as_path()),
        exclude: &[],
    };
    severson::with_batches(set.load(100).unwrap(), &data.join("train_cells.csv")).unwrap()
}

/// Fits as `labloop predict train --batches train_cells.csv` does: the model, then its batch σ
/// measured by training on each of the training cells' two batches and scoring the other.
fn train(name: &str, features: &[&str], cells: &[LabelledCell], source: &str) -> LinearModel {
    let options = TrainOptions::severson(
        name,
        features,
        100,
        &format!("Severson et al. 2019 training cells (41), Qdlin cycles 2-100, {source}"),
    );
    let fit = |cells: &[LabelledCell]| fit_elastic_net(cells, &options).map(ModelFile::Linear);
    let mut file = fit(cells).expect("training succeeds");
    let batches = train_batches(source == "cycler capacities");
    shift::measure_batch_sigma(&mut file, &batches, &fit).expect("two batches");
    match file {
        ModelFile::Linear(m) => m,
        ModelFile::Neural(_) => unreachable!("an elastic net"),
    }
}

/// The shipped model `name` is a fresh fit (`UPDATE_EXPECT=1` rewrites it).
fn matches_shipped(name: &str, model: &LinearModel) {
    let path = repo_root().join(format!("crates/labloop-predict/models/{name}.json"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, model.to_json() + "\n").unwrap();
    }
    let shipped = builtin_model(name).unwrap();
    for (a, b) in shipped.coefficients.iter().zip(&model.coefficients) {
        assert!(
            (a - b).abs() < 1e-6,
            "shipped {name} differs from a fresh fit: run with UPDATE_EXPECT=1"
        );
    }
}

/// Scores a model on held-out cells: RMSE below `published × tolerance` and an honest σ (at least
/// half the cells inside ±1σ, nearly all inside ±2σ). These cells come from the training cells'
/// own batches, so σ, which carries the spread of a new batch, is wide here: no upper bound.
fn check_test(
    name: &str,
    model: &LinearModel,
    cells: &[LabelledCell],
    published: f64,
    tolerance: f64,
) {
    let m = evaluate(model, cells).unwrap();
    println!("{name} on {} test cells: {m:?}", cells.len());
    assert!(
        m.rmse_cycles < published * tolerance,
        "{name} test RMSE {} vs published {published}",
        m.rmse_cycles
    );
    assert!(m.within_1_sigma >= 0.45, "{name} 1σ coverage {m:?}");
    assert!(m.within_2_sigma >= 0.8, "{name} 2σ coverage {m:?}");
}

#[test]
fn variance_model_reproduces_severson() {
    // Reproduces the paper within 10 % (measured: 139 vs 138 cycles, train 104 vs 103).
    let model = train(
        "severson-variance",
        &VARIANCE_FEATURES,
        &split("train"),
        "capacities at 2.0 V",
    );
    matches_shipped("severson-variance", &model);
    let test = split("test1");
    check_test("severson-variance", &model, &test, 138.0, 1.1);
    let no_outlier: Vec<LabelledCell> = test
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 21)
        .map(|(_, c)| c)
        .collect();
    check_test("severson-variance", &model, &no_outlier, 138.0, 1.1);
}

#[test]
fn discharge_model_reproduces_severson() {
    // With the cycler's discharge capacities, as in the paper (measured: 91 vs 86 cycles on the
    // primary test set without its outlier, train 67 vs 76). The data has no cycler capacities
    // for the outlier cell, so the with-outlier figure (paper 91) cannot be reproduced.
    let model = train(
        "severson-discharge",
        &DISCHARGE_FEATURES,
        &with_cycler_capacities("train"),
        "cycler capacities",
    );
    matches_shipped("severson-discharge", &model);
    check_test(
        "severson-discharge",
        &model,
        &with_cycler_capacities("test1"),
        86.0,
        1.1,
    );
}

/// The neural ensemble, through the CLI as a user scripts it: trained on the training cells (CPU
/// backend), scored on the primary test set without its outlier. It must beat the paper's best
/// model there (discharge, 86 cycles) with an honest σ, and `predict run` must give the same
/// predictions from the same file.
#[test]
fn neural_model_beats_the_published_models_through_the_cli() {
    let data = shared_data().join("severson");
    let dir = labloop_tests::fresh_dir("neural-cli");
    let model = dir.join("neural.model");
    labloop_tests::succeeds(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args(["predict", "train", "--model", "neural", "--backend", "cpu"])
            .arg("--cells")
            .arg(data.join("train"))
            .arg("--lives")
            .arg(data.join("cycle_lives/train_cycle_lives.csv"))
            .arg("--batches")
            .arg(data.join("train_cells.csv"))
            .arg("--out")
            .arg(&model),
    );
    let eval = labloop_tests::json_result(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args([
                "predict",
                "eval",
                "--json",
                "--backend",
                "cpu",
                "--exclude",
                "cell22",
            ])
            .arg("--model")
            .arg(&model)
            .arg("--cells")
            .arg(data.join("test1"))
            .arg("--lives")
            .arg(data.join("cycle_lives/test1_cycle_lives.csv")),
    );
    println!("{eval:#}");
    let rmse = eval["rmse_cycles"].as_f64().unwrap();
    assert_eq!(eval["cells"], 42);
    assert!(rmse < 86.0, "neural RMSE {rmse} does not beat 86 cycles");
    let in1 = eval["within_1_sigma"].as_f64().unwrap();
    let in2 = eval["within_2_sigma"].as_f64().unwrap();
    // σ carries a new batch's spread, so on cells of the training batches it is wide.
    assert!(in1 >= 0.5 && in2 >= 0.85, "coverage {in1} / {in2}");

    let run = labloop_tests::json_result(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args(["predict", "run", "--json", "--backend", "cpu"])
            .arg("--model")
            .arg(&model)
            .arg("--cells")
            .arg(data.join("test1")),
    );
    let ran = run["predictions"].as_array().unwrap();
    assert_eq!(ran.len(), 43);
    for p in eval["predictions"].as_array().unwrap() {
        let same = ran.iter().find(|r| r["cell"] == p["cell"]).unwrap();
        assert_eq!(same["cycle_life"], p["cycle_life"]);
        assert_eq!(same["sigma"], p["sigma"]);
    }
    // Provenance travels in the file.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(file["format"], "labloop-neural-model/1");
    assert_eq!(file["training_data_sha256"].as_str().unwrap().len(), 64);
    assert!(
        file["feature_definition"]
            .as_str()
            .unwrap()
            .starts_with("severson-2019/")
    );
    // The batch σ was measured on the training cells' two batches, not assumed.
    let source = file["trust"]["batch_sigma_source"].as_str().unwrap();
    assert!(
        source.contains("by-batch") && source.contains("5/12/17"),
        "{source}"
    );
}

/// Copies test1's `cellN.csv` to `dir`, with ΔQ₁₀₀₋₁₀(V) multiplied by `amplify` (cycle 100's
/// column rebuilt from cycle 10's).
fn copy_cell(n: usize, dir: &std::path::Path, amplify: f64) {
    let source = shared_data().join(format!("severson/test1/cell{n}.csv"));
    let text = std::fs::read_to_string(source).unwrap();
    let rows: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut v: Vec<f64> = line.split(',').map(|x| x.trim().parse().unwrap()).collect();
            v[98] = v[8] + amplify * (v[98] - v[8]);
            v.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
        })
        .collect();
    std::fs::write(dir.join(format!("cell{n}.csv")), rows.join("\n")).unwrap();
}

/// A cell far outside the training domain is flagged on stderr and in `--json`, with a wider σ
/// than the same cell in domain; and `predict adapt` on five cells of one batch writes a model
/// that predicts them better, recording what it was adapted on.
#[test]
fn out_of_domain_cells_are_flagged_and_a_model_adapts_through_the_cli() {
    let dir = labloop_tests::fresh_dir("ood-cli");
    let (plain, far) = (dir.join("plain"), dir.join("far"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&far).unwrap();
    copy_cell(1, &plain, 1.0);
    copy_cell(1, &far, 40.0);
    let run = |cells: &std::path::Path| {
        let out = labloop_tests::succeeds(
            std::process::Command::new(labloop_tests::labloop_bin())
                .args(["predict", "run", "--json", "--model", "severson-variance"])
                .arg("--cells")
                .arg(cells),
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            json["predictions"][0].clone(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (inside, quiet) = run(&plain);
    let (outside, warned) = run(&far);
    assert_eq!(inside["out_of_domain"], false, "{quiet}");
    assert!(!quiet.contains("warning"), "{quiet}");
    assert_eq!(outside["out_of_domain"], true);
    let named = &outside["domain"]["outside"][0];
    assert_eq!(named["feature"], "log_var_dq", "{outside}");
    assert!(named["by_std"].as_f64().unwrap() > 1.0, "{outside}");
    assert!(inside.get("domain").is_none(), "{inside}");
    assert!(
        warned.contains("outside severson-variance's training domain")
            && warned.contains("log_var_dq"),
        "{warned}"
    );
    assert!(
        outside["sigma_log10"].as_f64().unwrap() > 2.0 * inside["sigma_log10"].as_f64().unwrap(),
        "{inside} vs {outside}"
    );

    // Five cells of test1's 6/30/17 batch (cells 23-27), with their lives.
    let batch = dir.join("batch");
    std::fs::create_dir_all(&batch).unwrap();
    let lives = [335, 480, 561, 458, 485];
    for (i, n) in (23..=27).enumerate() {
        std::fs::copy(
            shared_data().join(format!("severson/test1/cell{n}.csv")),
            batch.join(format!("cell{}.csv", i + 1)),
        )
        .unwrap();
    }
    let lives_file = dir.join("lives.csv");
    std::fs::write(&lives_file, lives.map(|l| l.to_string()).join("\n")).unwrap();
    let adapted = dir.join("adapted.json");
    labloop_tests::succeeds(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args(["predict", "adapt", "--model", "severson-variance"])
            .arg("--cells")
            .arg(&batch)
            .arg("--lives")
            .arg(&lives_file)
            .arg("--out")
            .arg(&adapted),
    );
    let rmse = |model: &std::path::Path| {
        labloop_tests::json_result(
            std::process::Command::new(labloop_tests::labloop_bin())
                .args(["predict", "eval", "--json", "--model"])
                .arg(model)
                .arg("--cells")
                .arg(&batch)
                .arg("--lives")
                .arg(&lives_file),
        )["rmse_cycles"]
            .as_f64()
            .unwrap()
    };
    let before = rmse(std::path::Path::new("severson-variance"));
    let after = rmse(&adapted);
    assert!(after < 0.8 * before, "RMSE {before} → {after}");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&adapted).unwrap()).unwrap();
    let adaptation = &file["trust"]["adaptation"];
    assert_eq!(adaptation["cells"], 5);
    assert!(
        adaptation["adapted_on"].as_str().unwrap().contains("batch"),
        "{adaptation}"
    );
    assert_eq!(adaptation["cells_sha256"].as_str().unwrap().len(), 64);
    // The model's own training provenance is kept.
    assert!(
        file["trained_on"]
            .as_str()
            .unwrap()
            .contains("training cells")
    );
}

#[test]
fn bad_prediction_inputs_are_named() {
    let data = shared_data().join("severson");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(labloop_tests::labloop_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let lives = data.join("cycle_lives/test1_cycle_lives.csv");
    let test1 = data.join("test1");
    let err = run(&[
        "predict",
        "eval",
        "--model",
        "severson-variance",
        "--exclude",
        "cell99",
        "--cells",
        test1.to_str().unwrap(),
        "--lives",
        lives.to_str().unwrap(),
    ]);
    assert!(err.contains("--exclude cell99: no such cell"), "{err}");
    let dir = labloop_tests::fresh_dir("bad-lives");
    std::fs::write(dir.join("lives.csv"), "1200\nmany\n").unwrap();
    let err = run(&[
        "predict",
        "eval",
        "--model",
        "severson-variance",
        "--cells",
        test1.to_str().unwrap(),
        "--lives",
        dir.join("lives.csv").to_str().unwrap(),
    ]);
    assert!(err.contains("lives.csv:2: `many` is not a number"), "{err}");
    let err = run(&[
        "predict",
        "train",
        "--model",
        "full",
        "--out",
        dir.join("m").to_str().unwrap(),
        "--cells",
        test1.to_str().unwrap(),
        "--lives",
        lives.to_str().unwrap(),
    ]);
    assert!(err.contains("charge_time_first5"), "{err}");
    // Capacity rows follow the cells used: test1's file has none for the outlier.
    let capacities = data.join("capacity_per_cycle_test1_no_outlier.csv");
    let err = run(&[
        "predict",
        "eval",
        "--model",
        "severson-discharge",
        "--cells",
        test1.to_str().unwrap(),
        "--lives",
        lives.to_str().unwrap(),
        "--capacities",
        capacities.to_str().unwrap(),
    ]);
    assert!(
        err.contains(
            "capacity_per_cycle_test1_no_outlier.csv:42: 42 rows of capacities for 43 cells"
        ),
        "{err}"
    );
}

/// The shipped neural model is what `fit_neural` gives on the training cells (f32 weights: compared
/// by prediction, within 10⁻³ log₁₀), and beats the paper's best model on the primary test set.
#[test]
fn shipped_neural_model_matches_a_fresh_fit() {
    use labloop_predict::{Compute, NeuralOptions, Predictor, fit_neural};
    let train_cells = split("train");
    let options = NeuralOptions::new(
        "severson-neural",
        &DISCHARGE_FEATURES,
        100,
        "Severson et al. 2019 training cells (41), Qdlin cycles 2-100, capacities at 2.0 V",
    );
    let fit = |cells: &[LabelledCell]| {
        fit_neural(cells, &options, &Compute::cpu()).map(ModelFile::Neural)
    };
    let mut file = fit(&train_cells).unwrap();
    shift::measure_batch_sigma(&mut file, &train_batches(false), &fit).unwrap();
    let ModelFile::Neural(fresh) = file else {
        unreachable!("a neural model")
    };
    let path = repo_root().join("crates/labloop-predict/models/severson-neural.json");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, fresh.to_json() + "\n").unwrap();
    }
    let Some(ModelFile::Neural(shipped)) = ModelFile::builtin("severson-neural") else {
        panic!("severson-neural is a built-in neural model");
    };
    let test_cells: Vec<LabelledCell> = split("test1")
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 21)
        .map(|(_, c)| c)
        .collect();
    let features: Vec<_> = test_cells.iter().map(|c| c.features.clone()).collect();
    let a = shipped.predict(&features).unwrap();
    let b = fresh.predict(&features).unwrap();
    for (a, b) in a.iter().zip(&b) {
        assert!(
            (a.log10_life - b.log10_life).abs() < 1e-3,
            "shipped severson-neural differs from a fresh fit: run with UPDATE_EXPECT=1"
        );
    }
    let m = evaluate(&shipped, &test_cells).unwrap();
    println!("severson-neural on test1 without cell 22: {m:?}");
    assert!(m.rmse_cycles < 86.0, "{m:?}");
}

/// A one-round campaign of `cells` random CLO protocols on a simulated cycler with one channel per
/// cell (`instrument` appends to its entry), 100 early cycles predicted by the variance model, then
/// `steps` (YAML list items).
fn small_campaign(name: &str, cells: u32, instrument: &str, steps: &str) -> String {
    format!(
        r#"campaign:
  name: {name}
  seed: 5
  objective: {{name: cycle_life, direction: maximize}}
  search_space:
    charge_protocol:
      soc_breakpoints: [0.0, 0.2, 0.4, 0.6, 0.8]
      charge_time_min: 10
      free_steps:
        - [3.6, 4.8, 6.0, 8.0]
        - [3.6, 4.8, 6.0, 7.0]
        - [3.6, 4.8, 5.6]
      last_step: {{min_c_rate: 0.1, max_c_rate: 4.81}}
      finish: {{c_rate: 1.0, cv_voltage_v: 3.6}}
optimizer: {{kind: random, batch_size: {cells}}}
stopping: {{max_rounds: 1}}
instruments:
  - {{name: cycler1, driver: sim, channels: {cells}, clock_acceleration: 1000000000{instrument}}}
experiment:
  steps:
    - id: early
      cycle: {{cycles: 100, discharge_c_rate: 4.0}}
    - id: predict
      predict: {{model: severson-variance}}
{steps}"#
    )
}

/// A lab retrains on its own cells: a campaign whose cells cycle to end of life, then `labloop
/// predict train --store --campaign` fits a model on their early records and observed lives, and
/// `predict eval` scores it on the same store.
#[test]
fn trains_from_a_campaigns_observed_lives() {
    let dir = labloop_tests::fresh_dir("predict-store");
    let workflow = dir.join("eol.yaml");
    std::fs::write(
        &workflow,
        small_campaign(
            "eol-lives",
            12,
            "",
            "    - id: eol\n      cycle_to_eol: {end_fraction: 0.8, max_cycles: 4000}\n",
        ),
    )
    .unwrap();
    let store = format!("sqlite://{}", dir.join("eol.sqlite").display());
    labloop_tests::succeeds(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args(["run", "--json", "--store", &store])
            .arg(&workflow),
    );
    let model = dir.join("retrained.json");
    labloop_tests::succeeds(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args(["predict", "train", "--model", "variance", "--store", &store])
            .args(["--campaign", "eol-lives", "--out"])
            .arg(&model),
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert!(
        file["trained_on"]
            .as_str()
            .unwrap()
            .starts_with("12 cells from campaign eol-lives"),
        "{file}"
    );
    let eval = labloop_tests::json_result(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args([
                "predict",
                "eval",
                "--json",
                "--store",
                &store,
                "--campaign",
                "eol-lives",
            ])
            .arg("--model")
            .arg(&model),
    );
    assert_eq!(eval["cells"], 12);
    let rmse = eval["rmse_cycles"].as_f64().unwrap();
    assert!(rmse.is_finite() && rmse > 0.0, "{eval}");
    // The cells are named by experiment id.
    assert!(
        eval["predictions"][0]["cell"]
            .as_str()
            .unwrap()
            .contains("eol-lives"),
        "{eval}"
    );
}

/// Under the by-batch split of the Severson cells (train on one batch, score the other, both
/// ways), every built-in model's ±2σ covers at least 85 % of the true lives, and adapting to five
/// labelled cells of the held-out batch cuts the error.
#[test]
fn every_built_in_keeps_its_sigma_honest_under_batch_shift() {
    let report = labloop_tests::json_result(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args([
                "predict",
                "eval",
                "--split",
                "by-batch",
                "--json",
                "--backend",
                "cpu",
            ])
            .arg("--severson")
            .arg(shared_data().join("severson")),
    );
    let models = report.as_array().unwrap();
    assert_eq!(models.len(), 3, "{report:#}");
    for m in models {
        let directions = m["directions"].as_array().unwrap();
        assert_eq!(directions.len(), 2, "{m:#}");
        for d in directions {
            let in2 = d["metrics"]["within_2_sigma"].as_f64().unwrap();
            assert!(
                in2 >= 0.85,
                "{} on {}: ±2σ {in2}",
                m["model"],
                d["scored_on"]
            );
        }
        let curve = m["adaptation"].as_array().unwrap();
        let rmse = |k: u64| {
            curve.iter().find(|p| p["labelled"] == k).unwrap()["rmse_cycles"]
                .as_f64()
                .unwrap()
        };
        assert!(rmse(5) < 0.8 * rmse(0), "{}: {curve:?}", m["model"]);
    }
}

/// A cycler declared not to record discharge curves cannot feed the variance model (its ΔQ(V)
/// feature): `labloop run` refuses the campaign before any cell is cycled, naming the model, the
/// feature, the instrument and what it records.
#[test]
fn a_campaign_whose_cycler_cannot_feed_its_model_is_refused_up_front() {
    let dir = labloop_tests::fresh_dir("records-refused");
    let workflow = dir.join("no-curves.yaml");
    std::fs::write(
        &workflow,
        small_campaign(
            "no-curves",
            4,
            ", records: [internal_resistance, temperature]",
            "",
        ),
    )
    .unwrap();
    let store = format!("sqlite://{}", dir.join("no-curves.sqlite").display());
    let out = std::process::Command::new(labloop_tests::labloop_bin())
        .args(["run", "--store", &store])
        .arg(&workflow)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for part in [
        "severson-variance",
        "log_var_dq",
        "discharge_curve",
        "cycler1",
    ] {
        assert!(stderr.contains(part), "`{part}` missing from: {stderr}");
    }
    // Declaring the curves makes the same campaign run.
    let text = std::fs::read_to_string(&workflow).unwrap();
    std::fs::write(
        &workflow,
        text.replace(
            "records: [internal_resistance, temperature]",
            "records: [discharge_curve]",
        ),
    )
    .unwrap();
    let store = format!("sqlite://{}", dir.join("curves.sqlite").display());
    labloop_tests::succeeds(
        std::process::Command::new(labloop_tests::labloop_bin())
            .args(["run", "--store", &store])
            .arg(&workflow),
    );
}
