//! The API over a real socket and a real SQLite store.

use labloop_store::{NewExperiment, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn lists_campaigns_and_experiments() {
    let path = std::env::temp_dir().join(format!("labloop-api-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let id = store.create_campaign("clo", "").await.unwrap();
    store
        .add_experiment(&NewExperiment {
            id: "clo/r0/000".into(),
            campaign_id: id.clone(),
            round: 0,
            slot: 0,
            candidate_index: 1,
            parameters_json: "[]".into(),
            protocol_json: "{}".into(),
            protocol_label: "4.8-5.2-5.2-4.16".into(),
            cell_id: "cell".into(),
        })
        .await
        .unwrap();
    let (_, viewer) = store.create_token("viewer", "alice", &[]).await.unwrap();
    let (_, worker) = store
        .create_token("worker", "robot", &["coin-cell-robot"])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, labloop_server::router(store))
            .await
            .unwrap()
    });

    assert_eq!(get(addr, "/health", None).await, (200, "ok".into()));
    // Everything but the health check needs a token that may read.
    for path in ["/api/campaigns", "/api/campaigns/clo/experiments"] {
        assert_eq!(get(addr, path, None).await.0, 401, "{path}");
        assert_eq!(get(addr, path, Some("llt_guess")).await.0, 401, "{path}");
        assert_eq!(get(addr, path, Some(&worker)).await.0, 403, "{path}");
    }
    let v = Some(viewer.as_str());
    let (status, body) = get(addr, "/api/campaigns", v).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""id":"clo""#) && body.contains(r#""state":"running""#),
        "{body}"
    );
    let (status, body) = get(addr, "/api/campaigns/clo/experiments", v).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""protocol":"4.8-5.2-5.2-4.16""#) && body.contains(r#""state":"proposed""#),
        "{body}"
    );
    let (status, body) = get(addr, "/api/campaigns/nope/experiments", v).await;
    assert_eq!(status, 404);
    assert!(body.contains("no campaign `nope`"));
}
