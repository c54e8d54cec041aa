//! `labloop bench serve`: the monitoring server under load on loopback. A simulated campaign ingests
//! cycle records into the store while N clients hold live-event streams open and a paced load of
//! API reads (campaign list, experiments, a campaign's detail) runs at a target rate; prints the
//! achieved rate, latency percentiles, errors, and the events each stream received.

use anyhow::{Context, Result};
use labloop_engine::{CampaignRunner, resolve_model};
use labloop_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the command line asked for.
#[derive(clap::Args)]
pub struct ServeBenchArgs {
    /// Clients holding a live-event stream open.
    #[arg(long, default_value_t = 200)]
    pub sse_clients: usize,
    /// API requests per second to aim for.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// How long the load runs, seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Store URL (default: a fresh SQLite file in a temporary folder).
    #[arg(long)]
    pub store: Option<String>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn workflow(name: &str) -> String {
    format!(
        r#"campaign:
  name: {name}
  seed: 3
  objective: {{name: cycle_life, direction: maximize}}
  search_space:
    formulation:
      components:
        - {{name: EC, min: 0.1, max: 0.5}}
        - {{name: EMC, min: 0.5, max: 0.9}}
      candidates: 400
optimizer: {{kind: random, batch_size: 48}}
stopping: {{max_rounds: 20}}
instruments:
  - {{name: cycler1, driver: sim, channels: 48, clock_acceleration: 20000}}
experiment:
  steps:
    - cycle:
        cycles: 100
        discharge_c_rate: 1.0
        protocol: {{c_rates: [3.0], finish: {{c_rate: 1.0, cv_voltage_v: 3.6}}}}
    - predict: {{model: severson-variance}}
"#
    )
}

/// One GET over a fresh connection; its status.
async fn get(addr: SocketAddr, path: &str, token: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response)
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// Holds a live-event stream open, counting the events it receives.
async fn listen(addr: SocketAddr, path: String, token: String, events: Arc<AtomicU64>) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        events.fetch_add(text.matches("event: ").count() as u64, Ordering::Relaxed);
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the bench and prints its figures.
pub fn serve(args: &ServeBenchArgs) -> Result<()> {
    let name = format!("serve-bench-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/store.sqlite", dir.display()));
    let text = workflow(&name);
    let wf = labloop_workflow::parse(&text, "serve-bench.yaml")
        .0
        .context("the bench workflow is valid")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (instruments, _) =
        rt.block_on(async { labloop_engine::instruments::build(&wf, &url, &Default::default()) })?;
    let figures = rt.block_on(async {
        let store = Store::connect(&url).await?;
        let (_, token) = store.create_token("viewer", "serve-bench", &[]).await?;
        let runner = CampaignRunner::new(
            wf.clone(),
            text,
            store.clone(),
            instruments,
            Arc::new(resolve_model("severson-variance")?),
        );
        let engine = tokio::spawn(runner.run());
        // The campaign's id once it exists.
        let campaign = loop {
            if let Some(c) = store
                .campaigns()
                .await?
                .into_iter()
                .find(|c| c.name == name)
            {
                break c.id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = labloop_server::router(store.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let events = Arc::new(AtomicU64::new(0));
        let mut streams = Vec::new();
        for _ in 0..args.sse_clients {
            streams.push(tokio::spawn(listen(
                addr,
                format!("/api/campaigns/{campaign}/events"),
                token.clone(),
                Arc::clone(&events),
            )));
        }
        let records_before = store.count_records(&campaign).await?;
        let paths = [
            "/api/campaigns".to_owned(),
            format!("/api/campaigns/{campaign}/experiments"),
            format!("/api/campaigns/{campaign}"),
        ];
        let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        let mut requests = Vec::new();
        let mut i = 0usize;
        while started.elapsed() < Duration::from_secs(args.seconds) {
            ticker.tick().await;
            let path = paths[i % paths.len()].clone();
            let token = token.clone();
            i += 1;
            requests.push(tokio::spawn(async move {
                let t = Instant::now();
                let status = get(addr, &path, &token).await.unwrap_or(0);
                (status, t.elapsed().as_secs_f64() * 1e3)
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        for r in requests {
            let (status, ms) = r.await?;
            if status == 200 {
                latencies.push(ms);
            } else {
                errors += 1;
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let records = store.count_records(&campaign).await? - records_before;
        let received = events.load(Ordering::Relaxed);
        let listeners_alive = streams.iter().filter(|s| !s.is_finished()).count();
        for s in &streams {
            s.abort();
        }
        engine.abort();
        latencies.sort_by(f64::total_cmp);
        anyhow::Ok(serde_json::json!({
            "sse_clients": args.sse_clients,
            "sse_clients_connected_at_end": listeners_alive,
            "sse_events_received": received,
            "events_per_client": received as f64 / args.sse_clients.max(1) as f64,
            "target_rate": args.rate,
            "requests": latencies.len() + errors,
            "errors": errors,
            "achieved_rate": (latencies.len() + errors) as f64 / wall,
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
            "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
            "records_ingested": records,
            "records_per_s": records as f64 / wall,
            "store": labloop_store::redact(&url).split("://").next().unwrap_or("").to_owned(),
        }))
    })?;
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!(
            "serve bench ({} store): {} live-event clients ({} still connected, {:.0} events each) and {:.0} API requests/s (target {}) for {} s while the campaign ingested {} records ({:.0}/s)",
            figures["store"].as_str().unwrap_or(""),
            args.sse_clients,
            figures["sse_clients_connected_at_end"],
            figures["events_per_client"].as_f64().unwrap_or(0.0),
            figures["achieved_rate"].as_f64().unwrap_or(0.0),
            args.rate,
            args.seconds,
            figures["records_ingested"],
            figures["records_per_s"].as_f64().unwrap_or(0.0),
        );
        println!(
            "API latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} errors of {} requests",
            figures["p50_ms"].as_f64().unwrap_or(f64::NAN),
            figures["p99_ms"].as_f64().unwrap_or(f64::NAN),
            figures["max_ms"].as_f64().unwrap_or(f64::NAN),
            figures["errors"],
            figures["requests"]
        );
    }
    Ok(())
}
