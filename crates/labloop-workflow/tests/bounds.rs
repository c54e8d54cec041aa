//! Small workflow files that once exhausted the machine or leaked what they should not (issue 18):
//! each is now refused with a located diagnostic naming the bound (`labloop_core::limits`), in time
//! and memory linear in the file. Times are printed, not asserted (speed lives in benchmarks).

use std::time::Instant;

const CLO: &str = include_str!("../../../workflows/fast-charge-clo.yaml");

/// Parses `text` (as `file` in `dir`), printing how long it took; the diagnostics as text.
fn problems_in(text: &str, dir: &std::path::Path, what: &str) -> Vec<String> {
    let started = Instant::now();
    let (_, problems) = labloop_workflow::parse(text, &dir.join("w.yaml").display().to_string());
    eprintln!(
        "{what}: {} bytes, {} diagnostics in {:.3} s",
        text.len(),
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    problems.iter().map(ToString::to_string).collect()
}

fn problems(text: &str, what: &str) -> Vec<String> {
    problems_in(text, &std::env::temp_dir(), what)
}

fn says(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no diagnostic says `{needle}`: {problems:#?}"
    );
}

#[test]
fn a_search_space_too_large_to_enumerate_is_refused_before_enumerating() {
    let grid = format!(
        "[{}]",
        (0..16)
            .map(|i| format!("{}", 3.0 + 0.1 * f64::from(i)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let steps: String = (0..8).map(|_| format!("        - {grid}\n")).collect();
    let text = CLO
        .replace(
            "soc_breakpoints: [0.0, 0.2, 0.4, 0.6, 0.8]",
            "soc_breakpoints: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]",
        )
        .replace(
            "        - [3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0, 8.0]   # CC1\n        - [3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0]        # CC2\n        - [3.6, 4.0, 4.4, 4.8, 5.2, 5.6]                  # CC3\n",
            &steps,
        )
        .replace("        - [4.8, 4.8, 4.8, 4.8]                          # the baseline\n", "")
        .replace("      exclude:\n", "");
    let p = problems(&text, "8 free steps x 16 values");
    says(&p, "4294967296 protocols, more than the limit of 1000000");
    says(&p, "w.yaml:19:");
}

#[test]
fn a_formulation_asking_for_billions_of_candidates_is_refused() {
    let text = include_str!("../../../workflows/electrolyte-formulation.yaml")
        .replace("candidates: 2000", "candidates: 4294967295");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let p = problems_in(&text, &dir, "candidates: 4294967295");
    says(&p, "4294967295 candidates: at most 1000000");
}

#[test]
fn references_cannot_multiply_a_variable_into_gigabytes() {
    let big = "x".repeat(1 << 20);
    let refs = "${{ variables.big }}".repeat(4000);
    let text =
        format!("variables:\n  big: {big}\n{}", CLO.replace(
        "description: Find the 10-minute fast-charging protocol with the longest cycle life.",
        &format!("description: \"{refs}\""),
    ));
    let p = problems(&text, "1 MB variable referenced 4000 times");
    says(&p, "expand the document by more than 16777216 bytes");
}

#[test]
fn many_variables_and_bad_references_give_a_bounded_report() {
    let vars: String = (0..20_000).map(|i| format!("  v{i}: {i}\n")).collect();
    let p = problems(&format!("variables:\n{vars}{CLO}"), "20 000 variables");
    says(&p, "20000 variables: at most 1000");

    let vars: String = (0..1000).map(|i| format!("  v{i}: {i}\n")).collect();
    let bad: String = (0..20_000)
        .map(|i| format!("${{{{ variables.w{i} }}}}"))
        .collect();
    let text =
        format!("variables:\n{vars}{}", CLO.replace(
        "description: Find the 10-minute fast-charging protocol with the longest cycle life.",
        &format!("description: \"{bad}\""),
    ));
    let p = problems(&text, "20 000 bad references");
    assert!(p.len() <= 101, "{} diagnostics", p.len());
    says(&p, "and 19900 more unknown references");
    says(&p, "and 990 more");
}

#[test]
fn includes_are_regular_files_inside_the_workflow_folder() {
    let dir = std::env::temp_dir().join(format!("labloop-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.yaml");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (include, needle) in [
        ("/dev/zero", "is not inside the workflow's folder"),
        ("/etc/passwd", "is not inside the workflow's folder"),
        (
            "../../../../etc/passwd",
            "is not inside the workflow's folder",
        ),
        ("fifo.yaml", "is not a regular file"),
    ] {
        let text = format!("include:\n  - {include}\n{CLO}");
        let p = problems_in(&text, &dir, include);
        says(&p, needle);
        assert!(
            !p.iter().any(|d| d.contains("root:")),
            "an include outside the folder was read: {p:#?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn long_step_chains_and_many_unknown_keys_are_bounded() {
    let mut steps = String::from("experiment:\n  steps:\n");
    for i in 0..20_000 {
        steps.push_str(&format!("    - id: s{i}\n"));
        if i > 0 {
            steps.push_str(&format!("      needs: [s{}]\n", i - 1));
        }
        steps.push_str("      rest: {duration: 1s}\n");
    }
    let head = &CLO[..CLO.find("experiment:").unwrap()];
    let p = problems(&format!("{head}{steps}"), "20 000-step chain");
    says(&p, "20000 steps: at most 1000");

    let keys: String = (0..100_000).map(|i| format!("  k{i}: 1\n")).collect();
    let text = CLO.replace("stopping:\n", &format!("stopping:\n{keys}"));
    let p = problems(&text, "100 000 unknown keys");
    assert!(p.len() <= 101, "{} diagnostics", p.len());
    says(&p, "more problems");
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let text = format!("{CLO}x: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
    let p = problems(&text, "200 000-deep flow list");
    says(&p, "nested more than 64 levels deep");
}

#[test]
fn names_that_are_markup_and_inline_credentials_are_refused() {
    let text = include_str!("../../../workflows/electrolyte-formulation.yaml").replace(
        "categorical: [none, VC, LiDFOB, PES]",
        "categorical: [none, VC, \"</title><img src=x onerror=alert(1)>\"]",
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let p = problems_in(&text, &dir, "markup in a categorical choice");
    says(&p, "is not a plain name");
    says(&p, "categorical[2]");

    let text = format!("{CLO}store:\n  url: postgres://lab:hunter2@db:5432/labloop\n");
    let p = problems(&text, "a password in store.url");
    says(&p, "store.url: a password in the store URL");

    let mqtt = include_str!("../../../workflows/fast-charge-clo-mqtt.yaml");
    let broker = mqtt
        .lines()
        .find_map(|l| l.split_once("broker: ").map(|(_, b)| b.trim().to_owned()))
        .expect("the MQTT example names a broker");
    let with_password = broker.replacen("mqtt://", "mqtt://lab:hunter2@", 1);
    let text = mqtt.replace(&broker, &with_password);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows");
    let p = problems_in(&text, &dir, "a password in the broker URL");
    says(&p, "a password in the broker URL");
}
