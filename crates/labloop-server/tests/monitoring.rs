//! Monitoring and control over a real socket and a real SQLite store: who may act, the dashboard's
//! cookie session, refusing clients that keep guessing tokens, live events, metrics.

mod common;

use common::{bearer, call};
use labloop_core::{CycleRecord, ExperimentState, Telemetry};
use labloop_store::{NewExperiment, RequestAction, Store};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Cycle `cycle`'s record as it arrives (its `seq` is its cycle).
fn telemetry(cycle: u32) -> Telemetry {
    Telemetry {
        seq: u64::from(cycle),
        record: record(cycle),
    }
}

fn record(cycle: u32) -> CycleRecord {
    CycleRecord {
        cycle,
        charge_capacity_ah: 1.07,
        discharge_capacity_ah: 1.07 - 1e-4 * f64::from(cycle),
        internal_resistance_ohm: 0.016,
        temperature_min_c: 30.0,
        temperature_avg_c: 31.0,
        temperature_max_c: 33.0,
        charge_time_s: 600.0,
        voltage_max_v: None,
        voltage_min_v: None,
        current_max_a: None,
        discharge_curve: None,
    }
}

async fn lab(name: &str) -> (Store, SocketAddr) {
    let path =
        std::env::temp_dir().join(format!("labloop-mon-{name}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let id = store
        .create_campaign("clo", "campaign: {}\n")
        .await
        .unwrap();
    for slot in 0..2 {
        store
            .add_experiment(&NewExperiment {
                id: format!("clo/r0/00{slot}"),
                campaign_id: id.clone(),
                round: 0,
                slot,
                candidate_index: slot as usize,
                parameters_json: "[]".into(),
                protocol_json: "{}".into(),
                protocol_label: format!("p{slot}"),
                cell_id: format!("cell{slot}"),
            })
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = labloop_server::router(store.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (store, addr)
}

#[tokio::test]
async fn every_action_needs_an_operator() {
    let (store, addr) = lab("actions").await;
    let (_, viewer) = store.create_token("viewer", "vera", &[]).await.unwrap();
    let (_, worker) = store
        .create_token("worker", "robot", &["coin-cell-robot"])
        .await
        .unwrap();
    let (_, operator) = store.create_token("operator", "olga", &[]).await.unwrap();
    let actions: [(&str, Option<&str>); 5] = [
        ("/api/campaigns/clo/pause", None),
        ("/api/campaigns/clo/resume", None),
        ("/api/campaigns/clo/abort", None),
        (
            "/api/campaigns/clo/abort-experiment",
            Some(r#"{"experiment":"clo/r0/001"}"#),
        ),
        (
            "/api/campaigns/clo/approve",
            Some(r#"{"experiment":"clo/r0/000","step":"release","approve":true}"#),
        ),
    ];
    for (path, body) in actions {
        let none = call(addr, "POST", path, &[], body).await.0;
        let wrong = call(
            addr,
            "POST",
            path,
            &[("Authorization", "Bearer llt_guess")],
            body,
        )
        .await
        .0;
        let reader = call(
            addr,
            "POST",
            path,
            &[("Authorization", &bearer(&viewer))],
            body,
        )
        .await
        .0;
        let robot = call(
            addr,
            "POST",
            path,
            &[("Authorization", &bearer(&worker))],
            body,
        )
        .await
        .0;
        assert_eq!((none, wrong, reader, robot), (401, 401, 403, 403), "{path}");
    }
    assert!(store.requests("clo", false).await.unwrap().is_empty());
    // The queue API refuses people.
    let claim = r#"{"capabilities":["coin-cell-robot"]}"#;
    let (status, _, _) = call(
        addr,
        "POST",
        "/api/queue/claim",
        &[("Authorization", &bearer(&viewer))],
        Some(claim),
    )
    .await;
    assert_eq!(status, 403);

    // An operator's requests land in the store, named after the token (not its secret).
    let op = bearer(&operator);
    for (path, body) in &actions[..4] {
        let (status, _, reply) = call(addr, "POST", path, &[("Authorization", &op)], *body).await;
        assert_eq!(status, 202, "{path}: {reply}");
        assert!(reply.contains("req_"), "{reply}");
    }
    let requests = store.requests("clo", false).await.unwrap();
    let actions: Vec<_> = requests.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        [
            RequestAction::Pause,
            RequestAction::Resume,
            RequestAction::Abort,
            RequestAction::AbortExperiment
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.requested_by.starts_with("olga (tok_"))
    );
    assert!(requests.iter().all(|r| !r.requested_by.contains(&operator)));
    // Nothing waits for approval at that step: 404, not a silent success.
    let (status, _, _) = call(
        addr,
        "POST",
        actions_path("approve"),
        &[("Authorization", &op)],
        Some(r#"{"experiment":"clo/r0/000","step":"release","approve":true}"#),
    )
    .await;
    assert_eq!(status, 404);
    // An unknown experiment is named.
    let (status, _, reply) = call(
        addr,
        "POST",
        actions_path("abort-experiment"),
        &[("Authorization", &op)],
        Some(r#"{"experiment":"clo/r9/999"}"#),
    )
    .await;
    assert_eq!(status, 404);
    assert!(reply.contains("clo/r9/999"), "{reply}");
    // A finished campaign takes no more requests.
    store
        .set_campaign_state("clo", labloop_core::CampaignState::Completed)
        .await
        .unwrap();
    let (status, _, _) = call(
        addr,
        "POST",
        actions_path("pause"),
        &[("Authorization", &op)],
        None,
    )
    .await;
    assert_eq!(status, 409);
}

fn actions_path(action: &str) -> &'static str {
    match action {
        "approve" => "/api/campaigns/clo/approve",
        "abort-experiment" => "/api/campaigns/clo/abort-experiment",
        _ => "/api/campaigns/clo/pause",
    }
}

#[tokio::test]
async fn the_dashboard_signs_in_with_a_cookie_and_guessing_is_throttled() {
    let (store, addr) = lab("session").await;
    let (_, viewer) = store.create_token("viewer", "vera", &[]).await.unwrap();
    let (status, head, page) = call(addr, "GET", "/", &[], None).await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>labloop</title>"));
    assert!(
        head.to_ascii_lowercase().contains("x-frame-options: deny"),
        "{head}"
    );
    let body = format!(r#"{{"token":"{viewer}"}}"#);
    let (status, head, reply) = call(addr, "POST", "/api/session", &[], Some(&body)).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains(r#""role":"viewer""#), "{reply}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let (status, _, list) = call(addr, "GET", "/api/campaigns", &[("Cookie", pair)], None).await;
    assert_eq!(status, 200);
    assert!(list.contains(r#""id":"clo""#));
    // No CORS: a cross-origin request gets no allowance.
    let (_, head, _) = call(
        addr,
        "GET",
        "/api/campaigns",
        &[("Cookie", pair), ("Origin", "https://evil.example")],
        None,
    )
    .await;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{head}"
    );

    // Ten wrong guesses, then further wrong ones are slowed down for a while from that address
    // (still 401, with when to try again), but a right token never is: behind a proxy every
    // client shares one address.
    for _ in 0..9 {
        let (status, _, _) = call(
            addr,
            "GET",
            "/api/campaigns",
            &[("Authorization", "Bearer llt_wrong")],
            None,
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, head, reply) = call(
        addr,
        "GET",
        "/api/campaigns",
        &[("Authorization", "Bearer llt_wrong")],
        None,
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    let (status, _, reply) = call(
        addr,
        "GET",
        "/api/campaigns",
        &[("Authorization", &bearer(&viewer))],
        None,
    )
    .await;
    assert_eq!(status, 200, "a valid token is never locked out: {reply}");
    let (status, _, _) = call(addr, "POST", "/api/session", &[], Some(&body)).await;
    assert_eq!(status, 200);
    // The health check stays open.
    assert_eq!(call(addr, "GET", "/health", &[], None).await.0, 200);
}

#[tokio::test]
async fn live_events_carry_new_records_and_state_changes() {
    let (store, addr) = lab("live").await;
    let (_, viewer) = store.create_token("viewer", "vera", &[]).await.unwrap();
    store
        .append_records("clo/r0/000", &[telemetry(1)])
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /api/campaigns/clo/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {viewer}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next_line().await.unwrap().unwrap();
    assert!(status.contains("200"), "{status}");
    // Let the watcher take its first look, then change things.
    tokio::time::sleep(Duration::from_millis(700)).await;
    store
        .append_records("clo/r0/000", &[telemetry(2), telemetry(3)])
        .await
        .unwrap();
    store
        .transition("clo/r0/001", ExperimentState::Failed, Some("channel fault"))
        .await
        .unwrap();
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if seen.contains("event: record") && seen.contains(r#""state":"failed""#) {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no events within 5 s: {seen}");
    assert!(
        seen.contains(r#""experiment":"clo/r0/000","points":[[2,"#),
        "{seen}"
    );
    assert!(!seen.contains("[1,1.0"), "only new points are sent: {seen}");
    assert!(seen.contains(r#""state":"failed""#), "{seen}");

    store
        .record_round("clo", 0, "gp-thompson", r#"{"suggest_s":0.25}"#)
        .await
        .unwrap();
    let (status, _, body) = call(
        addr,
        "GET",
        "/api/campaigns/clo/instruments",
        &[("Authorization", &bearer(&viewer))],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The SSE test's campaign has no parseable workflow ("campaign: {}"): no instruments, no error.
    assert_eq!(body, "[]");
    // The optimizer's map: 404 until a round has finished, then the latest round's posterior.
    let v = bearer(&viewer);
    let surrogate = "/api/campaigns/clo/surrogate";
    let (status, _, _) = call(addr, "GET", surrogate, &[("Authorization", &v)], None).await;
    assert_eq!(status, 404);
    for round in [0, 1] {
        let snapshot = format!(
            r#"{{"dimensions":["CC1","CC2"],"candidates":[{{"x":[3.6,4.8],"mean":{},"sd":90.0,"label":"a","cells":1}}]}}"#,
            1000 + round
        );
        store
            .record_surrogate("clo", round, &snapshot)
            .await
            .unwrap();
    }
    let (status, _, body) = call(addr, "GET", surrogate, &[("Authorization", &v)], None).await;
    assert_eq!(status, 200);
    let map: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(map["round"], 1);
    assert_eq!(map["candidates"][0]["mean"], 1001.0);

    let (status, _, text) = call(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", &bearer(&viewer))],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"labloop_cycle_records_total{campaign="clo"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"labloop_experiments{campaign="clo",state="failed"} 1"#),
        "{text}"
    );
    assert!(text.contains("labloop_live_listeners 1"), "{text}");
    assert!(
        text.contains(r#"labloop_optimizer_seconds{campaign="clo"} 0.25"#),
        "{text}"
    );
    assert_eq!(call(addr, "GET", "/metrics", &[], None).await.0, 401);
}
