//! The queue API over real HTTP on loopback: tokens gate it (none, a wrong one and a viewer's are
//! refused), and a worker claims, renews, completes and fails jobs whose ids contain slashes.

use labloop_store::{NewJob, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Posts `body` to `path`; the status code and the response body.
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{auth}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_use_the_queue_over_http_and_nobody_else_can() {
    let db = std::env::temp_dir().join(format!("labloop-queue-api-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (_, worker) = store
        .create_token("worker", "robot-cell-2", &["coin-cell-robot"])
        .await
        .unwrap();
    let (_, viewer) = store.create_token("viewer", "alice", &[]).await.unwrap();
    let (revoked_row, revoked) = store
        .create_token("worker", "old", &["coin-cell-robot"])
        .await
        .unwrap();
    assert!(store.revoke_token(&revoked_row.id).await.unwrap());
    for i in 0..2 {
        store
            .enqueue(&NewJob {
                id: format!("clo/r0/00{i}/build_cell/1"),
                campaign: Some("clo".into()),
                kind: "build_cell".into(),
                capability: "coin-cell-robot".into(),
                payload: format!(r#"{{"electrolyte_ul": 7{i}}}"#),
                max_attempts: 3,
            })
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, labloop_server::router(store.clone())).into_future());

    let claim = r#"{"capabilities": ["coin-cell-robot"], "lease_s": 30}"#;
    for (token, status) in [
        (None, 401),
        (Some("llt_wrong"), 401),
        (Some(revoked.as_str()), 401),
        (Some(viewer.as_str()), 403),
    ] {
        let (code, body) = post(addr, "/api/queue/claim", token, claim).await;
        assert_eq!(code, status, "{token:?}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    for path in [
        "/api/queue/jobs/clo/r0/000/build_cell/1/complete",
        "/api/queue/jobs/x/fail",
    ] {
        let (code, _) = post(addr, path, Some(&viewer), r#"{"lease_token": "t"}"#).await;
        assert_eq!(code, 403, "{path}");
    }

    let (code, body) = post(addr, "/api/queue/claim", Some(&worker), claim).await;
    assert_eq!(code, 200, "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(job["id"], "clo/r0/000/build_cell/1");
    assert_eq!(job["payload"]["electrolyte_ul"], 70);
    let lease = job["lease_token"].as_str().unwrap();
    let base = format!("/api/queue/jobs/{}", job["id"].as_str().unwrap());
    let with_lease = |extra: &str| format!(r#"{{"lease_token": "{lease}"{extra}}}"#);
    let (code, _) = post(
        addr,
        &format!("{base}/heartbeat"),
        Some(&worker),
        &with_lease(r#", "lease_s": 60"#),
    )
    .await;
    assert_eq!(code, 204);
    let result = with_lease(r#", "result": {"cell_id": "c-1", "electrolyte_ul": 70}"#);
    let (code, body) = post(addr, &format!("{base}/complete"), Some(&worker), &result).await;
    assert_eq!((code, body.as_str()), (200, r#"{"completed":"new"}"#));
    let (code, body) = post(addr, &format!("{base}/complete"), Some(&worker), &result).await;
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"completed":"again"}"#),
        "a retried completion"
    );
    let stored = store.job("clo/r0/000/build_cell/1").await.unwrap().unwrap();
    assert_eq!(
        stored.result.as_deref(),
        Some(r#"{"cell_id":"c-1","electrolyte_ul":70}"#)
    );
    assert_eq!(
        stored
            .worker
            .as_deref()
            .map(|w| w.starts_with("robot-cell-2 (tok_")),
        Some(true)
    );

    // The second job: a stale lease is a conflict, an unknown job 404; then a failure with retry.
    let (_, body) = post(addr, "/api/queue/claim", Some(&worker), claim).await;
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();
    let base = format!("/api/queue/jobs/{}", second["id"].as_str().unwrap());
    let (code, _) = post(
        addr,
        &format!("{base}/complete"),
        Some(&worker),
        r#"{"lease_token": "stale"}"#,
    )
    .await;
    assert_eq!(code, 409);
    let (code, _) = post(
        addr,
        "/api/queue/jobs/nope/complete",
        Some(&worker),
        r#"{"lease_token": "x"}"#,
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = post(
        addr,
        &format!("{base}/explode"),
        Some(&worker),
        r#"{"lease_token": "x"}"#,
    )
    .await;
    assert_eq!(code, 404);
    let fail = format!(
        r#"{{"lease_token": "{}", "reason": "gripper jammed"}}"#,
        second["lease_token"].as_str().unwrap()
    );
    let (code, _) = post(addr, &format!("{base}/fail"), Some(&worker), &fail).await;
    assert_eq!(code, 204);
    assert_eq!(
        store
            .job("clo/r0/001/build_cell/1")
            .await
            .unwrap()
            .unwrap()
            .state,
        "queued"
    );
    let (code, body) = post(addr, "/api/queue/claim", Some(&worker), claim).await;
    assert_eq!(code, 200, "the failed job comes back: {body}");
    let (code, _) = post(
        addr,
        "/api/queue/claim",
        Some(&worker),
        r#"{"capabilities": ["oven"]}"#,
    )
    .await;
    assert_eq!(code, 403, "this worker is not registered for ovens");
    store.close().await;
    let _ = std::fs::remove_file(db);
}
