//! `labloop bench queue`: the job queue's throughput and latency on a store. Workers are tasks of this
//! process, each with its own claims (as separate agents would make them).
//!
//! - throughput: `--jobs` jobs are queued, then `--workers` workers claim and complete them as fast
//!   as they can: claims per second (each a claim and a completion);
//! - latency: jobs are queued at `--rate` per second while the workers poll every `--poll`: the time
//!   from enqueue to completion stored (p50, p99), what a robot waiting on the queue adds.

use anyhow::{Context, Result};
use labloop_store::{NewJob, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the command line asked for.
#[derive(clap::Args)]
pub struct QueueBenchArgs {
    /// Store URL (default: a fresh SQLite file in a temporary folder); repeat to compare backends,
    /// e.g. --store sqlite:///tmp/q.sqlite --store postgres://postgres@127.0.0.1/test.
    #[arg(long)]
    store: Vec<String>,
    /// Jobs for the throughput run.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Jobs per second queued in the latency run (for 5 s).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// How often an idle worker asks again.
    #[arg(long, default_value = "10ms", value_parser = crate::duration)]
    poll: Duration,
}

/// Runs both measurements on each store and prints a table.
pub fn queue(args: &QueueBenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stores = if args.store.is_empty() {
        let dir = std::env::temp_dir().join(format!("labloop-bench-queue-{}", std::process::id()));
        vec![format!("sqlite://{}/queue.sqlite", dir.display())]
    } else {
        args.store.clone()
    };
    println!(
        "backend      workers  claims/s   latency p50   latency p99   (at {} jobs/s, poll {:?})",
        args.rate, args.poll
    );
    for url in &stores {
        let store = runtime.block_on(Store::connect(url))?;
        let (claims, p50, p99) = runtime.block_on(measure(&store, args))?;
        println!(
            "{:<12} {:>7}  {:>8.0}   {:>8.1} ms   {:>8.1} ms",
            format!("{:?}", store.backend()),
            args.workers,
            claims,
            p50 * 1e3,
            p99 * 1e3
        );
        runtime.block_on(store.close());
    }
    Ok(())
}

fn job(tag: &str, i: usize) -> NewJob {
    NewJob {
        id: format!("{tag}-{i}"),
        campaign: Some(tag.to_owned()),
        kind: "bench".into(),
        capability: tag.to_owned(),
        payload: format!(r#"{{"enqueued_ms": {}}}"#, unix_ms()),
        max_attempts: 3,
    }
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Workers claiming jobs of `capability` until `stop`; each completion's enqueue-to-stored latency (s).
async fn workers(
    store: &Store,
    capability: &str,
    count: usize,
    poll: Duration,
    stop: impl Fn() -> bool + Send + Sync + 'static,
) -> Result<Vec<f64>> {
    let stop = Arc::new(stop);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..count {
        let (store, capability, stop) = (store.clone(), capability.to_owned(), stop.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let name = format!("bench-worker-{w}");
            loop {
                match store
                    .claim(&name, &[&capability], Duration::from_secs(30))
                    .await?
                {
                    Some(job) => {
                        let payload: serde_json::Value = serde_json::from_str(&job.payload)?;
                        store
                            .complete(&job.id, &name, &job.lease_token, "{}")
                            .await?;
                        let enqueued = payload["enqueued_ms"].as_f64().unwrap_or(0.0);
                        latencies.push((unix_ms() - enqueued) / 1e3);
                    }
                    None if stop() => return anyhow::Ok(latencies),
                    None => tokio::time::sleep(poll).await,
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// Claims per second, and p50 / p99 enqueue-to-completion latency (s).
async fn measure(store: &Store, args: &QueueBenchArgs) -> Result<(f64, f64, f64)> {
    let tag = format!("bench-{}-{}", std::process::id(), unix_ms() as u64);
    let throughput_tag = format!("{tag}-t");
    for i in 0..args.jobs {
        store.enqueue(&job(&throughput_tag, i)).await?;
    }
    let started = Instant::now();
    let done = workers(store, &throughput_tag, args.workers, args.poll, || true).await?;
    let claims = done.len() as f64 / started.elapsed().as_secs_f64();

    let latency_tag = format!("{tag}-l");
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finished.clone();
    let consumers = workers(store, &latency_tag, args.workers, args.poll, move || {
        flag.load(std::sync::atomic::Ordering::Relaxed)
    });
    let producer = async {
        let total = (args.rate * 5.0).max(1.0) as usize;
        let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
        let mut tick = tokio::time::interval(interval);
        for i in 0..total {
            tick.tick().await;
            store.enqueue(&job(&latency_tag, i)).await?;
        }
        // Let the workers drain what is left, then stop them.
        while !store
            .queue_depth()
            .await?
            .iter()
            .all(|(c, _)| *c != latency_tag)
        {
            tokio::time::sleep(args.poll).await;
        }
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        anyhow::Ok(())
    };
    let (latencies, produced) = tokio::join!(consumers, producer);
    produced?;
    let mut latencies = latencies?;
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok((claims, quantile(0.5), quantile(0.99)))
}
