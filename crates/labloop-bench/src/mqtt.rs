//! `labloop bench mqtt`: cycle records ingested end to end — simulated cycler → MQTT broker → driver →
//! store — as the engine ingests them (each batch stored before the next is asked for).
//!
//! Two figures: throughput (every channel's records available at once, how many records/s reach the
//! store) and latency at a steady rate (each channel yields about one record per second; the time from
//! the instrument publishing a record to its being stored, p50/p99/max). The latency side listens to
//! the telemetry topics with a second client to learn when each record was published.

use anyhow::{Context, Result, bail};
use labloop_core::{CcCvFinish, ChannelId, ChargeProtocol, ChargeStep};
use labloop_drivers::mqtt::{BrokerAddress, MqttCycler, MqttOptionsExt};
use labloop_drivers::wire::{TelemetryMessage, Topics, decode};
use labloop_drivers::{Cycler, CyclingTest};
use labloop_sim::mqtt_server::{Faults, serve};
use labloop_sim::{SimClock, SimCycler};
use labloop_store::{NewExperiment, Store};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the command line asked for.
#[derive(clap::Args)]
pub struct MqttBenchArgs {
    /// The broker (a real one: records cross the network stack).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Channels in the throughput run.
    #[arg(long, default_value_t = 64)]
    pub channels: u32,
    /// Records per channel in the throughput run.
    #[arg(long, default_value_t = 200)]
    pub records: u32,
    /// Channel counts to try at about one record per second each (latency runs).
    #[arg(long, value_delimiter = ',', default_value = "64,256,512")]
    pub steady: Vec<u32>,
    /// Seconds each latency run lasts.
    #[arg(long, default_value_t = 15)]
    pub seconds: u32,
}

fn test(i: u32, cycles: u32, run: &str) -> CyclingTest {
    CyclingTest {
        key: format!("{run}/exp-{i}/cycle/1"),
        cell_id: format!("{run}-cell-{i}"),
        cycles_before: 0,
        formulation: Vec::new(),
        parameters: Vec::new(),
        protocol: ChargeProtocol {
            steps: vec![ChargeStep {
                soc_from: 0.0,
                soc_to: 0.8,
                c_rate: 4.8,
            }],
            finish: CcCvFinish {
                c_rate: 1.0,
                cv_voltage_v: 3.6,
            },
        },
        discharge_c_rate: 4.0,
        cycles,
    }
}

/// Simulated seconds one cycle of [`test`] takes (charge, discharge, rests).
async fn cycle_seconds() -> Result<f64> {
    let probe = SimCycler::new("probe", 1, SimClock { acceleration: 1e12 }, 1);
    let ch = probe.channels()[0].clone();
    probe.start(&ch, test(0, 1, "probe")).await?;
    let batch = probe.records(&ch, 1).await?;
    let record = batch.records.first().context("the probe cycled")?;
    Ok(record.record.charge_time_s + 3600.0 / 4.0 + 120.0)
}

struct Run {
    records: u64,
    wall_s: f64,
    /// Records stored per second once every channel was going.
    steady_rate: f64,
    latencies_ms: Vec<f64>,
}

/// One run: `channels` channels of `cycles` cycles on a simulator at `acceleration`, ingested into a
/// fresh store; stops after `limit` if given.
async fn run(
    broker: &str,
    channels: u32,
    cycles: u32,
    acceleration: f64,
    limit: Option<Duration>,
) -> Result<Run> {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let prefix = format!("labloop-bench/{tag}/cycler1");
    let sim = SimCycler::new("cycler1", channels, SimClock { acceleration }, 1);
    let address = BrokerAddress::parse(broker).map_err(anyhow::Error::msg)?;
    let server = tokio::spawn({
        let (address, prefix) = (address.clone(), prefix.clone());
        async move {
            serve(
                labloop_sim::station::Station::Cycler(sim),
                &address,
                &prefix,
                Faults::default(),
                1,
            )
            .await
        }
    });
    // When each record was published, from a listener of our own.
    let published: Arc<Mutex<HashMap<(String, u64), Instant>>> = Arc::default();
    let mut options = address
        .options(&format!("labloop-bench-listener-{tag}"))
        .map_err(anyhow::Error::msg)?;
    options.set_clean_session(true);
    let (listener, mut events) = AsyncClient::new(options, 4096);
    let topics = Topics::new(&prefix);
    listener
        .subscribe(topics.all_telemetry(), QoS::AtMostOnce)
        .await?;
    let listening = tokio::spawn({
        let (published, topics) = (published.clone(), topics.clone());
        async move {
            while let Ok(event) = events.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event
                    && let Some(channel) = topics.channel_of(&p.topic)
                    && let Ok(m) = decode::<TelemetryMessage>(&p.topic, &p.payload)
                    && let Some(seq) = m.seq
                {
                    published
                        .lock()
                        .expect("published lock")
                        .entry((channel.to_owned(), seq))
                        .or_insert_with(Instant::now);
                }
            }
        }
    });
    let driver = MqttCycler::connect(
        "cycler1",
        channels,
        broker,
        &prefix,
        MqttOptionsExt::default(),
    )?;
    let dir = std::env::temp_dir().join(format!("labloop-bench-mqtt-{tag}"));
    let store = Store::connect(&format!("sqlite://{}/store.sqlite", dir.display())).await?;
    let campaign = store.create_campaign("bench", "{}").await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // both clients subscribed
    // Each channel is followed from its start; the rate counts from when all are going.
    let start = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stored_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut ingest = Vec::new();
    for i in 0..channels {
        let ch = ChannelId::from(format!("cycler1/ch{:02}", i + 1).as_str());
        let experiment = format!("{campaign}/r0/{i:03}");
        store
            .add_experiment(&NewExperiment {
                id: experiment.clone(),
                campaign_id: campaign.clone(),
                round: 0,
                slot: i,
                candidate_index: i as usize,
                parameters_json: "[]".into(),
                protocol_json: "{}".into(),
                protocol_label: "bench".into(),
                cell_id: format!("cell-{i}"),
            })
            .await?;
        driver.start(&ch, test(i, cycles, &tag)).await?;
        let (driver, store, published) = (driver.clone(), store.clone(), published.clone());
        let (stored_count, stop) = (stored_count.clone(), stop.clone());
        ingest.push(tokio::spawn(async move {
            let local = ch.as_str().rsplit('/').next().unwrap_or("").to_owned();
            let mut next = 1;
            let mut latencies = Vec::new();
            loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let wait = Duration::from_millis(250);
                let Ok(batch) = tokio::time::timeout(wait, driver.records(&ch, next)).await else {
                    continue;
                };
                let batch = batch?;
                let fresh = batch.records;
                if let Some(last) = fresh.last().map(|t| t.seq) {
                    store.append_records(&experiment, &fresh).await?;
                    let stored = Instant::now();
                    stored_count
                        .fetch_add(fresh.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let published = published.lock().expect("published lock");
                    for t in &fresh {
                        if let Some(at) = published.get(&(local.clone(), t.seq)) {
                            latencies.push(stored.duration_since(*at).as_secs_f64() * 1e3);
                        }
                    }
                    next = last + 1;
                }
                if batch.finished {
                    break;
                }
            }
            anyhow::Ok((next - 1, latencies))
        }));
    }
    let all_started = Instant::now();
    let before = stored_count.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(limit) = limit {
        tokio::time::sleep(limit).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let mut records = 0;
    let mut latencies_ms = Vec::new();
    for task in ingest {
        let (n, l) = task.await??;
        records += n;
        latencies_ms.extend(l);
    }
    let wall_s = start.elapsed().as_secs_f64();
    let steady_rate = (records - before) as f64 / all_started.elapsed().as_secs_f64();
    server.abort();
    listening.abort();
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(Run {
        records,
        wall_s,
        steady_rate,
        latencies_ms,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

/// Runs the bench and prints its figures.
pub fn mqtt(args: &MqttBenchArgs) -> Result<()> {
    if args.channels == 0 || args.records == 0 {
        bail!("--channels and --records must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let t = run(&args.broker, args.channels, args.records, 1e12, None)
            .await
            .context("throughput run")?;
        println!(
            "mqtt ingest, throughput: {} channels × {} records = {} records stored in {:.2} s: {:.0} records/s (simulator → {} → driver → SQLite)",
            args.channels,
            args.records,
            t.records,
            t.wall_s,
            t.records as f64 / t.wall_s,
            args.broker
        );
        let acceleration = cycle_seconds().await?;
        for &channels in &args.steady {
            let limit = Duration::from_secs(u64::from(args.seconds));
            let r = run(&args.broker, channels, 100_000, acceleration, Some(limit))
                .await
                .with_context(|| format!("steady run with {channels} channels"))?;
            let mut l = r.latencies_ms.clone();
            l.sort_by(f64::total_cmp);
            println!(
                "mqtt ingest, steady: {channels} channels at ~1 record/s each: {:.0} records/s stored, latency publish → stored p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} records timed){}",
                r.steady_rate,
                percentile(&l, 0.5),
                percentile(&l, 0.99),
                l.last().copied().unwrap_or(f64::NAN),
                l.len(),
                if percentile(&l, 0.99) < 50.0 { "" } else { "  [p99 over 50 ms]" }
            );
        }
        anyhow::Ok(())
    })
}
