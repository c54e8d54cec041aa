//! The shipped lifetime models reproduce from the real Severson et al. cells, and reach the published
//! accuracy on the primary test set. `UPDATE_EXPECT=1` rewrites the shipped model files.

use labloop_predict::train::{
    DISCHARGE_FEATURES, LabelledCell, TrainOptions, VARIANCE_FEATURES, evaluate, fit_elastic_net,
};
use labloop_predict::{LinearModel, builtin_model, severson};
use labloop_tests::{repo_root, shared_data};

fn split(name: &str) -> Vec<LabelledCell> {
    severson::load_split(&shared_data().join("severson"), name, 100).expect("severson data loads")
}

fn train(name: &str, features: &[&str], cells: &[LabelledCell]) -> LinearModel {
    let options = TrainOptions::severson(
        name,
        features,
        100,
        "Severson et al. 2019 training cells (41), Qdlin cycles 2-100",
    );
    fit_elastic_net(cells, &options).expect("training succeeds")
}

/// Published primary-test RMSE (cycles) with and without the outlier cell 22 (Severson Table 1 and
/// shared/data README), per model; `tolerance` is how far above them our fit may land.
fn check(
    name: &str,
    features: &[&str],
    published_rmse: f64,
    published_rmse_no_outlier: f64,
    tolerance: f64,
) {
    let train_cells = split("train");
    let test_cells = split("test1");
    let model = train(name, features, &train_cells);
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
    let train_m = evaluate(&model, &train_cells).unwrap();
    let test_m = evaluate(&model, &test_cells).unwrap();
    let no_outlier: Vec<LabelledCell> = test_cells
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 21)
        .map(|(_, c)| c.clone())
        .collect();
    let test_no = evaluate(&model, &no_outlier).unwrap();
    println!("{name}: train {train_m:?}\n  test1 {test_m:?}\n  test1 without cell 22 {test_no:?}");
    assert!(
        test_m.rmse_cycles < published_rmse * tolerance,
        "{name} test RMSE {}",
        test_m.rmse_cycles
    );
    assert!(
        test_no.rmse_cycles < published_rmse_no_outlier * tolerance,
        "{name} RMSE w/o outlier {}",
        test_no.rmse_cycles
    );
    // σ is honest: roughly two thirds of held-out cells inside ±1σ, nearly all inside ±2σ.
    assert!(
        (0.45..=0.9).contains(&test_no.within_1_sigma),
        "{name} 1σ coverage {}",
        test_no.within_1_sigma
    );
    assert!(
        test_no.within_2_sigma >= 0.8,
        "{name} 2σ coverage {}",
        test_no.within_2_sigma
    );
}

#[test]
fn variance_model_reproduces_severson() {
    // Reproduces the paper within 10 % (measured: 139 vs 138 cycles, train 104 vs 103).
    check("severson-variance", &VARIANCE_FEATURES, 138.0, 138.0, 1.1);
}

#[test]
fn discharge_model_reproduces_severson() {
    // Not quite at the paper's accuracy (measured: 105 / 99 cycles vs 91 / 86, MAPE without the
    // outlier 9.5 %): repeated four-fold cross-validation on the 41 training cells picks a weak
    // penalty. Guarded so it cannot regress; the neural model is the one that beats 86.
    check("severson-discharge", &DISCHARGE_FEATURES, 91.0, 86.0, 1.2);
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
    assert!(
        (0.5..=0.9).contains(&in1) && in2 >= 0.85,
        "coverage {in1} / {in2}"
    );

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
}

/// The shipped neural model is what `fit_neural` gives on the training cells (f32 weights: compared
/// by prediction, within 10⁻³ log₁₀), and beats the paper's best model on the primary test set.
#[test]
fn shipped_neural_model_matches_a_fresh_fit() {
    use labloop_predict::{Compute, ModelFile, NeuralOptions, Predictor, fit_neural};
    let train_cells = split("train");
    let options = NeuralOptions::new(
        "severson-neural",
        &DISCHARGE_FEATURES,
        100,
        "Severson et al. 2019 training cells (41), Qdlin cycles 2-100",
    );
    let fresh = fit_neural(&train_cells, &options, &Compute::cpu()).unwrap();
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

/// A lab retrains on its own cells: a campaign whose cells cycle to end of life, then `labloop
/// predict train --store --campaign` fits a model on their early records and observed lives, and
/// `predict eval` scores it on the same store.
#[test]
fn trains_from_a_campaigns_observed_lives() {
    let dir = labloop_tests::fresh_dir("predict-store");
    let workflow = dir.join("eol.yaml");
    std::fs::write(
        &workflow,
        r#"campaign:
  name: eol-lives
  seed: 5
  objective: {name: cycle_life, direction: maximize}
  search_space:
    charge_protocol:
      soc_breakpoints: [0.0, 0.2, 0.4, 0.6, 0.8]
      charge_time_min: 10
      free_steps:
        - [3.6, 4.8, 6.0, 8.0]
        - [3.6, 4.8, 6.0, 7.0]
        - [3.6, 4.8, 5.6]
      last_step: {min_c_rate: 0.1, max_c_rate: 4.81}
      finish: {c_rate: 1.0, cv_voltage_v: 3.6}
optimizer: {kind: random, batch_size: 12}
stopping: {max_rounds: 1}
instruments:
  - {name: cycler1, driver: sim, channels: 12, clock_acceleration: 1000000000}
experiment:
  steps:
    - id: early
      cycle: {cycles: 100, discharge_c_rate: 4.0}
    - id: predict
      predict: {model: severson-variance}
    - id: eol
      cycle_to_eol: {end_fraction: 0.8, max_cycles: 4000}
"#,
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
