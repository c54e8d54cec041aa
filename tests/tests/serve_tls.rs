//! `labloop serve --tls-cert --tls-key`: the API and dashboard over HTTPS with a certificate the test
//! makes (openssl), checked by curl against that certificate; silent clients do not hold up the
//! handshakes of others; plain HTTP to the same port gets nothing; a missing key file is named.

use labloop_tests::{Killed, fresh_dir, labloop_bin, succeeds};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (apt-get install openssl curl): {e}"))
}

#[test]
fn serves_https_with_a_configured_certificate() {
    let dir = fresh_dir("serve-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
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
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _server = Killed(
        Command::new(labloop_bin())
            .args([
                "serve",
                "--store",
                &store,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let url = format!("https://localhost:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let out = run(
            "curl",
            &[
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                cert.to_str().unwrap(),
                &url,
            ],
        );
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no HTTPS answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body, "ok");
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(
        log.contains(&format!("on https://127.0.0.1:{port}")),
        "{log}"
    );
    // A client that connects and never says hello delays nobody: handshakes run side by side.
    let _silent: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    let out = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            cert.to_str().unwrap(),
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The API still wants a token over TLS.
    let out = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            cert.to_str().unwrap(),
            &format!("https://localhost:{port}/api/campaigns"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    // Plain HTTP gets no answer from a TLS port.
    let out = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "3",
            &format!("http://127.0.0.1:{port}/health"),
        ],
    );
    assert!(!out.status.success() || out.stdout.is_empty());

    let bad = run(
        labloop_bin().to_str().unwrap(),
        &[
            "serve",
            "--store",
            &store,
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            "/nonexistent/key.pem",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/key.pem"));
}
