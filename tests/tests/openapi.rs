//! The OpenAPI document validates against the OpenAPI Initiative's 3.1 schema (a real JSON Schema
//! validator), is served by `labloop serve`, and every path it documents is a route the server
//! answers (no 404 or 405), so the document cannot drift from the code unseen.

use labloop_tests::{Killed, fresh_dir, labloop_bin, repo_root, succeeds};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_openapi_document_validates_and_matches_the_routes() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("tests/data/openapi/oas-3.1-schema-2022-10-07.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the OAS 3.1 schema compiles");

    let dir = fresh_dir("openapi");
    let store = format!("sqlite://{}", dir.join("s.sqlite").display());
    // `serve` opens a store that exists (a mistyped path is an error, not an empty dashboard):
    // making a token first creates it, as a lab would.
    succeeds(Command::new(labloop_bin()).args([
        "token", "create", "--role", "viewer", "--name", "t", "--store", &store,
    ]));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Killed(
        Command::new(labloop_bin())
            .args([
                "serve",
                "--store",
                &store,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "labloop serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = request(port, "GET", "/api/openapi.json");
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));

    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 19, "{} paths", paths.len());
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "nope")
            .replace("{job}", "job-1")
            .replace("{action}", "heartbeat");
        for method in item.as_object().unwrap().keys() {
            let (status, _) = request(port, &method.to_uppercase(), &concrete);
            assert!(
                status != 404 && status != 405,
                "{method} {path} is documented but the server answers {status}"
            );
        }
    }
}
