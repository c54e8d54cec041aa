//! Property: whatever body, content type and credential arrive on whatever route, the API answers
//! with a status below 500, and every refusal is a JSON `{"error"}` (issue 18). Seeded random
//! bytes, random JSON built from the API's own field names, and byte edits of valid bodies, sent
//! in-process through the router over a real SQLite store with tokens of every role.
//! `LABLOOP_FUZZ_CASES` sets the number of cases (default 100 000; bodies of at most 2 kB, so the
//! run's memory stays that of the store and one request).

use axum::body::Body;
use axum::http::{Request, header};
use labloop_store::{NewJob, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tower_service::Service;

fn cases() -> usize {
    std::env::var("LABLOOP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/session"),
    ("DELETE", "/api/session"),
    ("POST", "/api/queue/claim"),
    ("POST", "/api/queue/jobs/clo/r0/000/build_cell/1/heartbeat"),
    ("POST", "/api/queue/jobs/clo/r0/000/build_cell/1/complete"),
    ("POST", "/api/queue/jobs/clo/r0/001/build_cell/1/fail"),
    ("POST", "/api/queue/jobs/x/explode"),
    ("POST", "/api/campaigns/clo/pause"),
    ("POST", "/api/campaigns/clo/resume"),
    ("POST", "/api/campaigns/clo/abort-experiment"),
    ("POST", "/api/campaigns/clo/approve"),
    ("POST", "/api/campaigns/nope/pause"),
    ("GET", "/api/campaigns"),
    ("GET", "/api/campaigns/clo"),
    ("GET", "/api/campaigns/clo/experiments"),
    ("GET", "/api/campaigns/clo/surrogate"),
    ("GET", "/api/campaigns/clo/instruments"),
    ("GET", "/api/queue"),
];

const FIELDS: &[&str] = &[
    "token",
    "capabilities",
    "lease_s",
    "lease_token",
    "result",
    "reason",
    "retry",
    "experiment",
    "step",
    "approve",
    "note",
    "x",
];

fn json_value(rng: &mut StdRng, depth: u32) -> serde_json::Value {
    use serde_json::Value;
    match rng.random_range(0..if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => serde_json::json!(rng.random_range(-1e6..1e6)),
        3 => serde_json::json!([0.0, -1.0, 1e308, 86_400.0, 3600.0, 1.0][rng.random_range(0..6)]),
        4 => Value::String(
            [
                "",
                "coin-cell-robot",
                "llt_wrong",
                "</title><img>",
                "clo/r0/000",
                "\u{0}",
                "'; DROP TABLE jobs",
            ][rng.random_range(0..7)]
            .into(),
        ),
        5 => Value::String(
            (0..rng.random_range(0..80))
                .map(|_| rng.random::<char>())
                .collect(),
        ),
        6 => Value::Array(
            (0..rng.random_range(0..40))
                .map(|_| json_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..5))
                .map(|_| {
                    (
                        FIELDS[rng.random_range(0..FIELDS.len())].to_owned(),
                        json_value(rng, depth + 1),
                    )
                })
                .collect(),
        ),
    }
}

fn body(rng: &mut StdRng, valid: &[String]) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 => (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect(),
        1 => json_value(rng, 0).to_string().into_bytes(),
        2 => {
            let mut b = valid[rng.random_range(0..valid.len())].clone().into_bytes();
            for _ in 0..rng.random_range(1..4) {
                if b.is_empty() {
                    break;
                }
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..3) {
                    0 => b[at] = rng.random(),
                    1 => b.truncate(at),
                    _ => b.insert(at, b"{[\",:}]"[rng.random_range(0..7)]),
                }
            }
            b
        }
        _ => valid[rng.random_range(0..valid.len())].clone().into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_breaks_the_api() {
    let path =
        std::env::temp_dir().join(format!("labloop-body-fuzz-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store
        .create_campaign("clo", "campaign: {name: clo}\n")
        .await
        .unwrap();
    for i in 0..2 {
        store
            .enqueue(&NewJob {
                id: format!("clo/r0/00{i}/build_cell/1"),
                campaign: Some("clo".into()),
                kind: "build_cell".into(),
                capability: "coin-cell-robot".into(),
                payload: "{}".into(),
                max_attempts: 1_000_000,
            })
            .await
            .unwrap();
    }
    let mut tokens = vec![String::new(), "llt_wrong".to_owned()];
    for (role, caps) in [
        ("viewer", &[][..]),
        ("operator", &[][..]),
        ("worker", &["coin-cell-robot"][..]),
        ("admin", &[][..]),
    ] {
        tokens.push(store.create_token(role, role, caps).await.unwrap().1);
    }
    let valid: Vec<String> = vec![
        format!(r#"{{"token": "{}"}}"#, tokens[2]),
        r#"{"capabilities": ["coin-cell-robot"], "lease_s": 30}"#.into(),
        r#"{"lease_token": "lease_x", "lease_s": 60}"#.into(),
        r#"{"lease_token": "lease_x", "result": {"cell_id": "c"}}"#.into(),
        r#"{"lease_token": "lease_x", "reason": "jam", "retry": true}"#.into(),
        r#"{"experiment": "clo/r0/000"}"#.into(),
        r#"{"experiment": "clo/r0/000", "step": "build", "approve": true, "note": "ok"}"#.into(),
    ];
    let content_types = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
    ];
    let mut app = labloop_server::router(store.clone());
    let mut rng = StdRng::seed_from_u64(18);
    let mut statuses = std::collections::BTreeMap::new();
    for case in 0..cases() {
        let (method, route) = ROUTES[rng.random_range(0..ROUTES.len())];
        let token = &tokens[rng.random_range(0..tokens.len())];
        let bytes = body(&mut rng, &valid);
        let mut request = Request::builder().method(method).uri(route);
        if !token.is_empty() {
            let scheme = ["Bearer", "bearer", "BEARER", "Basic"][rng.random_range(0..4)];
            request = request.header(header::AUTHORIZATION, format!("{scheme} {token}"));
        }
        let content_type = content_types[rng.random_range(0..content_types.len())];
        if !content_type.is_empty() {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let mut request = request.body(Body::from(bytes.clone())).unwrap();
        // Each case from its own address: the wrong-credential throttle (which slows an address
        // down, and has its own test) stays out of the way.
        let from =
            std::net::SocketAddr::from(([10, rng.random(), rng.random(), rng.random()], 4000));
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(labloop_server::ClientAddr(from)));
        let response = app.call(request).await.unwrap();
        let status = response.status();
        *statuses.entry(status.as_u16()).or_insert(0u32) += 1;
        let text = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(
            status.as_u16() < 500,
            "case {case}: {method} {route} answered {status}: {}\nbody: {:?}",
            String::from_utf8_lossy(&text),
            String::from_utf8_lossy(&bytes)
        );
        if status.is_client_error() {
            let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap_or_else(|_| {
                panic!(
                    "case {case}: {method} {route} {status} is not JSON: {}",
                    String::from_utf8_lossy(&text)
                )
            });
            assert!(parsed["error"].is_string(), "case {case}: {parsed}");
        }
    }
    eprintln!("{} cases; statuses: {statuses:?}", cases());
    store.close().await;
    let _ = std::fs::remove_file(path);
}
