//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromedriver`, spoken to over
//! the WebDriver protocol): a simulated campaign runs as its own process, `labloop serve` serves the
//! page, a viewer signs in and watches the fade plot gain points as cycle records arrive, and is
//! refused when they press Pause; an operator's Pause reaches the engine, which pauses the campaign.
//! The run leaves a screenshot (its path is printed); the campaign's saved report then renders from
//! its file alone.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/run` installs them); without them the
//! test fails when CI=true and says so otherwise.

use labloop_tests::{Killed, fresh_dir, labloop_bin, succeeds};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session on chromedriver, over plain HTTP/1.1.
struct Browser {
    driver: SocketAddr,
    session: String,
}

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut stream = TcpStream::connect(addr).expect("chromedriver answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps connections open: read the head, then exactly Content-Length bytes.
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8_lossy(&body);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("WebDriver reply {body}: {e}"))
}

impl Browser {
    fn start(driver: SocketAddr, profile: &Path) -> Self {
        let reply = http(
            driver,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync",
                             "--window-size=1400,1000",
                             format!("--user-data-dir={}", profile.display())],
                }
            }}})),
        );
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}"))
            .to_owned();
        Self { driver, session }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let reply = http(
            self.driver,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        );
        assert!(
            reply["value"].get("error").is_none(),
            "WebDriver {path}: {reply}"
        );
        reply["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({"url": url})));
    }

    fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element id")
            .to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({"text": text})),
        );
    }

    /// Polls `script` until it returns true.
    fn wait_for(&self, what: &str, script: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.run(script) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn text(&self, css: &str) -> String {
        self.run(&format!(
            "return document.querySelector('{css}').textContent;"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn screenshot(&self, path: &Path) {
        use base64_png::decode;
        let png = self.call("GET", "/screenshot", None);
        std::fs::write(path, decode(png.as_str().expect("base64 PNG"))).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

/// A small base64 decoder (WebDriver screenshots are base64 PNG).
mod base64_png {
    pub fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => 0,
            }
        };
        let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        let mut out = Vec::with_capacity(clean.len() * 3 / 4);
        for chunk in clean.chunks(4) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
            let real = chunk.iter().filter(|&&c| c != b'=').count();
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..real.saturating_sub(1)]);
        }
        out
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether Debian's Chromium and ChromeDriver are there; without them a test skips, and fails
/// under CI=true.
fn browser_installed() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let message =
        "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)";
    assert!(std::env::var("CI").is_err(), "{message}");
    eprintln!("skipped: {message}");
    false
}

/// A chromedriver of the test's own (its log in `dir`), once it and the `labloop serve` on
/// `port` both answer.
fn chromedriver(dir: &Path, port: u16) -> (Killed, SocketAddr) {
    let driver_port = free_port();
    let process = Killed(spawn_logged(
        Command::new(CHROMEDRIVER).arg(format!("--port={driver_port}")),
        &dir.join("chromedriver.log"),
    ));
    let driver: SocketAddr = format!("127.0.0.1:{driver_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(driver).is_err() || TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver or labloop serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (process, driver)
}

fn token(store: &str, role: &str, name: &str) -> String {
    let out = succeeds(Command::new(labloop_bin()).args([
        "token", "create", "--store", store, "--role", role, "--name", name,
    ]));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    command
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap()
}

#[test]
fn a_viewer_watches_live_and_an_operator_pauses_from_the_page() {
    if !browser_installed() {
        return;
    }
    let dir = fresh_dir("dashboard-browser");
    let store = format!("sqlite://{}", dir.join("lab.sqlite").display());
    // Four cells, a cycle every ~2 s each: records keep arriving while the page is open.
    let workflow =
        std::fs::read_to_string(labloop_tests::repo_root().join("workflows/fast-charge-clo.yaml"))
            .unwrap()
            .replace("batch_size: 48", "batch_size: 4")
            .replace("channels: 48", "channels: 4")
            .replace("max_rounds: 4", "max_rounds: 2")
            .replace("clock_acceleration: 100000", "clock_acceleration: 3000");
    std::fs::write(dir.join("live.yaml"), workflow).unwrap();
    let viewer = token(&store, "viewer", "vera");
    let operator = token(&store, "operator", "olga");

    let engine = Killed(spawn_logged(
        Command::new(labloop_bin())
            .arg("run")
            .arg(dir.join("live.yaml"))
            .args(["--store", &store]),
        &dir.join("engine.log"),
    ));
    let port = free_port();
    let serve = |log: &str| {
        Killed(spawn_logged(
            // Debug logging: even then no token's secret may appear in the log.
            Command::new(labloop_bin()).args([
                "-vv",
                "serve",
                "--store",
                &store,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ]),
            &dir.join(log),
        ))
    };
    let mut server = serve("serve.log");
    let (_driver, driver) = chromedriver(&dir, port);
    // Wait for the campaign to exist before the page lists campaigns.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(labloop_bin())
            .args(["status", "--store", &store])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("fast-charge-clo") {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not start");
        std::thread::sleep(Duration::from_millis(200));
    }

    let browser = Browser::start(driver, &dir.join("profile"));
    let page = format!("http://127.0.0.1:{port}/");
    browser.go(&page);
    browser.wait_for(
        "the sign-in form",
        "return !document.getElementById('login').hidden;",
        Duration::from_secs(10),
    );
    browser.type_into("#token", &viewer);
    browser.click("#signin");
    browser.wait_for(
        "the fade plot's first points",
        "return Number(document.getElementById('fade').dataset.points) > 0;",
        Duration::from_secs(30),
    );
    let first = browser.run("return Number(document.getElementById('fade').dataset.points);");
    browser.wait_for(
        "new points to arrive live",
        &format!("return Number(document.getElementById('fade').dataset.points) > {first};"),
        Duration::from_secs(30),
    );
    assert_eq!(browser.text("#who"), "vera (viewer)");

    // The server restarts under the page: it says it is reconnecting, reconnects by itself (no
    // reload) and new records arrive again.
    browser.wait_for(
        "the live indicator",
        "return document.getElementById('live').textContent === 'live';",
        Duration::from_secs(10),
    );
    drop(server);
    browser.wait_for(
        "the page to notice the dropped stream",
        "return document.getElementById('live').textContent.startsWith('reconnecting');",
        Duration::from_secs(20),
    );
    browser.run("window.notReloaded = true; return true;");
    server = serve("serve-again.log");
    browser.wait_for(
        "the page to reconnect by itself",
        "return document.getElementById('live').textContent === 'live' && window.notReloaded === true;",
        Duration::from_secs(30),
    );
    let before = browser.run("return Number(document.getElementById('fade').dataset.points);");
    browser.wait_for(
        "records to arrive after the reconnect",
        &format!("return Number(document.getElementById('fade').dataset.points) > {before};"),
        Duration::from_secs(30),
    );

    // A viewer's Pause is refused, and nothing reaches the engine.
    browser.click("#pause");
    browser.wait_for(
        "the refusal",
        "return document.getElementById('message').textContent.includes('refused');",
        Duration::from_secs(10),
    );
    assert!(
        browser
            .text("#message")
            .contains("a viewer token may not do this")
    );

    // The operator signs in and pauses; the engine pauses the campaign.
    browser.run("fetch('/api/session', {method: 'DELETE'}); return true;");
    browser.go(&page);
    browser.wait_for(
        "the sign-in form again",
        "return !document.getElementById('login').hidden;",
        Duration::from_secs(10),
    );
    browser.type_into("#token", &operator);
    browser.click("#signin");
    browser.wait_for(
        "the operator's board",
        "return document.getElementById('who').textContent === 'olga (operator)';",
        Duration::from_secs(10),
    );
    let instruments = browser
        .run("return fetch('/api/campaigns/fast-charge-clo/instruments').then((r) => r.json());");
    assert_eq!(instruments[0]["name"], "cycler1", "{instruments}");
    assert_eq!(instruments[0]["channels"], 4, "{instruments}");
    assert!(
        instruments[0]["busy"].as_u64().unwrap() >= 1,
        "{instruments}"
    );
    browser.click("#pause");
    browser.wait_for(
        "the campaign to show paused (live)",
        "return document.getElementById('campaign-state').textContent === 'paused';",
        Duration::from_secs(60),
    );
    // The pause is an alarm too: a banner says what happened and where.
    browser.wait_for(
        "the alarm banner",
        "return !document.getElementById('banner').hidden;",
        Duration::from_secs(20),
    );
    assert_eq!(browser.text("#banner-what"), "Campaign paused");
    assert!(
        browser
            .text("#banner-text")
            .contains("campaign fast-charge-clo")
    );
    let shot = dir.join("dashboard.png");
    browser.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());

    // The campaign's report is one file that renders with no server.
    let report = dir.join("report.html");
    succeeds(
        Command::new(labloop_bin())
            .args(["report", "fast-charge-clo", "--store", &store, "--out"])
            .arg(&report),
    );
    browser.go(&format!("file://{}", report.display()));
    browser.wait_for(
        "the report's fade plot",
        "return Number(document.getElementById('fade').dataset.points) > 0;",
        Duration::from_secs(10),
    );
    assert!(
        browser
            .text("#who")
            .starts_with("report of fast-charge-clo")
    );
    assert_eq!(browser.text("#campaign-state"), "paused");
    browser.screenshot(&dir.join("report.png"));
    drop(browser);

    let log = std::fs::read_to_string(dir.join("engine.log")).unwrap_or_default();
    assert!(log.contains("paused by olga"), "{log}");
    drop(engine);
    drop(server);
    let serve_log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("serve-again.log")).unwrap_or_default();
    assert!(
        serve_log.contains("DEBUG"),
        "the server logged at debug level: {serve_log}"
    );
    for secret in [&viewer, &operator] {
        assert!(
            !serve_log.contains(secret.as_str()),
            "a token's secret was logged"
        );
    }
}

/// Where the browser tests leave their screenshots: `$LABLOOP_ARTIFACTS`, else
/// `target/test-artifacts` in the checkout.
fn artifacts() -> std::path::PathBuf {
    let dir = std::env::var_os("LABLOOP_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| labloop_tests::repo_root().join("target/test-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_page_shows_the_clis_recommendation_and_ranking_and_picks_out_a_protocol() {
    if !browser_installed() {
        return;
    }
    let dir = fresh_dir("dashboard-ranking");
    let store = format!("sqlite://{}", dir.join("lab.sqlite").display());
    let workflow =
        std::fs::read_to_string(labloop_tests::repo_root().join("workflows/fast-charge-clo.yaml"))
            .unwrap()
            .replace("batch_size: 48", "batch_size: 8")
            .replace("channels: 48", "channels: 8")
            .replace("max_rounds: 4", "max_rounds: 3");
    std::fs::write(dir.join("small.yaml"), workflow).unwrap();
    let out = succeeds(
        Command::new(labloop_bin())
            .arg("run")
            .arg(dir.join("small.yaml"))
            .args(["--store", &store, "--json"]),
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let viewer = token(&store, "viewer", "vera");
    let port = free_port();
    let _server = Killed(spawn_logged(
        Command::new(labloop_bin()).args([
            "serve",
            "--store",
            &store,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]),
        &dir.join("serve.log"),
    ));
    let (_driver, driver) = chromedriver(&dir, port);
    let browser = Browser::start(driver, &dir.join("profile"));
    browser.call(
        "POST",
        "/window/rect",
        Some(&json!({"width": 1440, "height": 1000})),
    );
    browser.go(&format!("http://127.0.0.1:{port}/"));
    browser.wait_for(
        "the sign-in form",
        "return !document.getElementById('login').hidden;",
        Duration::from_secs(10),
    );
    browser.type_into("#token", &viewer);
    browser.click("#signin");
    browser.wait_for(
        "the recommendation",
        "return !!document.getElementById('rec-protocol');",
        Duration::from_secs(20),
    );

    // The recommendation and the ranking are the CLI's: same order, same numbers.
    let best = &cli["ranking"][0];
    assert_eq!(
        browser.text("#rec-protocol"),
        best["protocol"].as_str().unwrap()
    );
    let shown = browser.run("return ranking;");
    assert_eq!(shown["final"], true, "{shown}");
    let rows = shown["ranking"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        cli["ranking"].as_array().unwrap().len().min(100)
    );
    for (page, cli) in rows.iter().zip(cli["ranking"].as_array().unwrap()) {
        for field in [
            "rank",
            "protocol",
            "predicted_life",
            "sigma",
            "cells",
            "mean_predicted",
        ] {
            assert_eq!(page[field], cli[field], "{field} of {}", cli["protocol"]);
        }
    }
    assert_eq!(shown["best_probability"], cli["best_probability"]);
    assert_eq!(
        browser.run(&format!(
            "return num({}) === document.getElementById('rec-value').textContent;",
            best["predicted_life"]
        )),
        json!(true)
    );
    let table: Vec<String> = browser
        .run("return [...document.querySelectorAll('#ranking tbody tr')].slice(0, 10).map((r) => r.dataset.protocol);")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = cli["ranking"].as_array().unwrap()[..10]
        .iter()
        .map(|r| r["protocol"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(table, expected);
    // Sorting by a column and back.
    browser.click("#ranking thead button[data-key='cells']");
    browser.click("#ranking thead button[data-key='cells']");
    let first = browser.run("return document.querySelector('#ranking tbody tr').dataset.protocol;");
    let most = cli["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cells"].as_u64().unwrap())
        .max()
        .unwrap();
    let first_cells = cli["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["protocol"] == first)
        .unwrap()["cells"]
        .as_u64()
        .unwrap();
    assert_eq!(first_cells, most, "sorted by cells, most first");
    browser.click("#ranking thead button[data-key='rank']");

    // Picking a tested protocol in the ranking picks out its cells in the fade plot and its point
    // on the map.
    let tested = cli["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"].as_u64().unwrap() > 0)
        .unwrap();
    let protocol = tested["protocol"].as_str().unwrap();
    let cells = tested["cells"].as_u64().unwrap();
    browser.click(&format!("#ranking tbody tr[data-protocol='{protocol}']"));
    browser.wait_for(
        "the protocol's cells to be picked out",
        &format!("return Number(document.getElementById('fade').dataset.highlighted) === {cells};"),
        Duration::from_secs(10),
    );
    assert_eq!(
        browser.run("return document.querySelectorAll('#fade polyline.selected').length;"),
        json!(cells)
    );
    assert_eq!(
        browser.run(&format!("return [...document.querySelectorAll('#map circle.selected')].some((c) => c.dataset.labels.split('|').includes('{protocol}'));")),
        json!(true)
    );
    // Plots have titled axes and tick labels.
    let labels = browser
        .run("return [...document.querySelectorAll('#fade text')].map((t) => t.textContent);");
    let labels: Vec<&str> = labels
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        labels.contains(&"cycle") && labels.contains(&"discharge capacity (Ah)"),
        "{labels:?}"
    );
    assert!(labels.len() > 8, "tick labels: {labels:?}");

    let out = artifacts();
    let wide = out.join("dashboard-1440.png");
    browser.screenshot(&wide);
    browser.call(
        "POST",
        "/window/rect",
        Some(&json!({"width": 390, "height": 844})),
    );
    browser.wait_for(
        "the phone layout",
        "return window.innerWidth <= 400;",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        browser.run("return document.documentElement.scrollWidth <= window.innerWidth + 1;"),
        json!(true),
        "nothing wider than a phone's screen"
    );
    let phone = out.join("dashboard-390.png");
    browser.screenshot(&phone);
    for shot in [&wide, &phone] {
        let png = std::fs::read(shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{}",
            shot.display()
        );
        println!("screenshot: {}", shot.display());
    }
}
