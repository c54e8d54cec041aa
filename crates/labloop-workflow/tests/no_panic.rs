//! Property: whatever text arrives, `parse` answers with a workflow or with located diagnostics, and
//! never panics. Two generators, both seeded (reproducible): random YAML documents built from the
//! workflow's own vocabulary (so they reach deep into the checks), and random edits of the example and
//! broken workflows (lines dropped, repeated, swapped, re-indented, tokens replaced, text cut).
//! `LABLOOP_FUZZ_CASES` sets the number of cases per generator (default 45 000: with the raw-byte
//! generator at a quarter of that, 101 250 cases in all, each document at most a few kB).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

const KEYS: &[&str] = &[
    "campaign",
    "name",
    "description",
    "seed",
    "objective",
    "direction",
    "search_space",
    "charge_protocol",
    "soc_breakpoints",
    "charge_time_min",
    "free_steps",
    "last_step",
    "min_c_rate",
    "max_c_rate",
    "exclude",
    "finish",
    "c_rate",
    "cv_voltage_v",
    "formulation",
    "components",
    "min",
    "max",
    "total",
    "parameters",
    "continuous",
    "integer",
    "categorical",
    "candidates",
    "optimizer",
    "kind",
    "kernel",
    "acquisition",
    "exploration",
    "batch_size",
    "initial_design",
    "restarts",
    "stopping",
    "max_rounds",
    "max_cells",
    "max_days",
    "best_probability",
    "instruments",
    "driver",
    "transport",
    "serial",
    "port",
    "baud",
    "mqtt",
    "broker",
    "topic_prefix",
    "channels",
    "clock_acceleration",
    "safety",
    "max_voltage_v",
    "max_temperature_c",
    "experiment",
    "steps",
    "id",
    "needs",
    "timeout",
    "retries",
    "backoff",
    "on_failure",
    "resources",
    "build_cell",
    "robot",
    "electrolyte_ul",
    "rest",
    "duration",
    "formation",
    "cycles",
    "cycle",
    "discharge_c_rate",
    "protocol",
    "c_rates",
    "soc_end",
    "predict",
    "model",
    "cycle_to_eol",
    "end_fraction",
    "max_cycles",
    "nominal_capacity_ah",
    "approve",
    "message",
    "store",
    "url",
    "include",
    "variables",
    "x",
];

const WORDS: &[&str] = &[
    "maximize",
    "minimize",
    "cycle_life",
    "gaussian_process",
    "random",
    "matern52",
    "rbf",
    "thompson",
    "ucb",
    "log_ei",
    "knowledge_gradient",
    "spread",
    "sim",
    "serial",
    "mqtt",
    "cycler",
    "cell_builder",
    "abort_experiment",
    "skip",
    "pause_campaign",
    "retry",
    "severson-variance",
    "10s",
    "2d",
    "-1h",
    "1e400s",
    "cycler1",
    "robot1",
    "sqlite://x.sqlite",
    "mqtt://h:1",
    "${{ variables.x }}",
    "${{ campaign.name }}",
    "${{ steps.predict.outputs.cycle_life }}",
    "${{",
    "}}",
    "${{ }}",
    "${{ variables }}",
    "${{ variables.x.y.z }}",
    "ünïcödé",
    "",
    "~",
    "null",
    "true",
    ".nan",
    ".inf",
    "-.inf",
    "0x1F",
    "1e308",
    "-0",
    "18446744073709551616",
    "-9223372036854775809",
    "4294967296",
    "3.6",
    "0",
    "1",
    "-5",
    "0.8",
    "[]",
    "{}",
    "'quoted: value'",
    "\"a\\tb\"",
    "no-such-file.yaml",
    "../../etc/passwd",
    "instruments/sim-lab.yaml",
];

fn cases() -> usize {
    std::env::var("LABLOOP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(45_000)
}

/// Parses `text` and checks the answer: no panic, and every diagnostic names a place.
fn check(text: &str, base: &Path, case: &str) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        labloop_workflow::parse_in(text, "fuzz.yaml", base)
    }));
    let (workflow, problems) = match outcome {
        Ok(answer) => answer,
        Err(_) => panic!("parse panicked on {case}:\n{text}"),
    };
    assert!(
        workflow.is_some() || !problems.is_empty(),
        "{case}: no workflow and no problem for\n{text}"
    );
    for p in &problems {
        assert!(
            p.line > 0 && p.column > 0 && !p.message.is_empty(),
            "{case}: `{p}` names no place, for\n{text}"
        );
    }
}

fn scalar(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => WORDS[rng.random_range(0..WORDS.len())].to_owned(),
        1 => format!("{}", rng.random_range(-1000..100_000)),
        2 => format!("{:.3}", rng.random_range(-10.0..10.0)),
        _ => KEYS[rng.random_range(0..KEYS.len())].to_owned(),
    }
}

/// A random block-style YAML value at `indent`, as the lines after a `key:`.
fn value(rng: &mut StdRng, indent: usize, depth: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match if depth > 5 { 0 } else { rng.random_range(0..6) } {
        0 | 1 => out.push_str(&format!(" {}\n", scalar(rng))),
        2 => {
            // A flow list of scalars.
            let items: Vec<String> = (0..rng.random_range(0..5)).map(|_| scalar(rng)).collect();
            out.push_str(&format!(" [{}]\n", items.join(", ")));
        }
        3 => {
            out.push('\n');
            for _ in 0..rng.random_range(1..4) {
                out.push_str(&format!("{pad}- "));
                if rng.random_bool(0.5) {
                    out.push_str(&format!("{}\n", scalar(rng)));
                } else {
                    let key = KEYS[rng.random_range(0..KEYS.len())];
                    out.push_str(&format!("{key}:"));
                    value(rng, indent + 2, depth + 1, out);
                }
            }
        }
        _ => {
            out.push('\n');
            map(rng, indent, depth + 1, out);
        }
    }
}

fn map(rng: &mut StdRng, indent: usize, depth: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for _ in 0..rng.random_range(1..6) {
        let key = KEYS[rng.random_range(0..KEYS.len())];
        out.push_str(&format!("{pad}{key}:"));
        value(rng, indent + 2, depth, out);
    }
}

#[test]
fn random_documents_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x1ab_100f);
    let base = examples_dir();
    for case in 0..cases() {
        let mut text = String::new();
        // Mostly documents with the real top-level sections, so the deeper checks run.
        if rng.random_bool(0.7) {
            for section in [
                "campaign",
                "optimizer",
                "stopping",
                "instruments",
                "experiment",
            ] {
                if rng.random_bool(0.9) {
                    text.push_str(&format!("{section}:"));
                    value(&mut rng, 2, 1, &mut text);
                }
            }
        } else {
            map(&mut rng, 0, 0, &mut text);
        }
        check(&text, &base, &format!("random document {case}"));
    }
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../workflows")
}

/// The example workflows and the broken corpus: the texts the edits start from.
fn seeds() -> Vec<(String, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in [
        root.join("workflows"),
        root.join("crates/labloop-workflow/tests/bad-workflows"),
    ] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        for p in paths {
            out.push((std::fs::read_to_string(&p).unwrap(), dir.clone()));
        }
    }
    assert!(out.len() >= 10);
    out
}

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for _ in 0..rng.random_range(1..4) {
        if lines.is_empty() {
            break;
        }
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..8) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let copy = lines[i].clone();
                lines.insert(i, copy);
            }
            2 => {
                let j = rng.random_range(0..lines.len());
                lines.swap(i, j);
            }
            3 => {
                let shift = rng.random_range(1..4);
                if rng.random_bool(0.5) {
                    lines[i] = format!("{}{}", " ".repeat(shift), lines[i]);
                } else {
                    lines[i] = lines[i].chars().skip(shift).collect();
                }
            }
            4 => {
                // Replace the value after a key with a random scalar.
                if let Some((key, _)) = lines[i].split_once(':') {
                    lines[i] = format!("{key}: {}", scalar(rng));
                }
            }
            5 => {
                // Replace a word with another word of the vocabulary.
                let words: Vec<&str> = lines[i].split_whitespace().collect();
                if !words.is_empty() {
                    let w = words[rng.random_range(0..words.len())].to_owned();
                    let new = WORDS[rng.random_range(0..WORDS.len())];
                    lines[i] = lines[i].replacen(&w, new, 1);
                }
            }
            6 => {
                let noise = [
                    "\t", ":", "- ", "{", "[", "&a ", "*a", "!!str ", "\"", "'", "#", "?",
                ];
                let at = lines[i]
                    .char_indices()
                    .map(|(k, _)| k)
                    .nth(rng.random_range(0..=lines[i].chars().count().max(1) - 1))
                    .unwrap_or(0);
                lines[i].insert_str(at, noise[rng.random_range(0..noise.len())]);
            }
            _ => {
                lines.truncate(i);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[test]
fn edited_workflows_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xed17);
    let seeds = seeds();
    for case in 0..cases() {
        let (text, dir) = &seeds[case % seeds.len()];
        let edited = mutate(&mut rng, text);
        check(&edited, dir, &format!("edit {case}"));
    }
}

#[test]
fn raw_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xb17e5);
    let base = examples_dir();
    for case in 0..cases() / 4 {
        let len = rng.random_range(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        check(
            &String::from_utf8_lossy(&bytes),
            &base,
            &format!("bytes {case}"),
        );
    }
}
