//! `labloop-sim`: virtual instruments in their own process, speaking the real wire protocols
//! (`drivers/PROTOCOL.md`), with an accelerated clock and injected faults.
//!
//! ```text
//! labloop-sim mqtt --broker mqtt://127.0.0.1:1883 --prefix labloop/lab1/cycler1 --channels 48 \
//!     --acceleration 100000 --drop 0.02 --duplicate 0.02 --reorder 0.02 --garbage 0.01 \
//!     --drop-ack 0.05 --disconnect-every 10s
//! labloop-sim serial --link /tmp/cycler1.tty --channels 48 --acceleration 100000 \
//!     --garbage 0.01 --drop-reply 0.02 --vanish-every 20s --vanish-for 3s
//! labloop-sim serial --link /tmp/robot.tty --builder --crimp-failure 0.05
//! labloop-sim mqtt --prefix labloop/lab1/cycler1 --prefix labloop/lab1/cycler2 \
//!     --builder-prefix labloop/lab1/robot1 --channels 48     # several instruments, one process
//! ```

use clap::{Args, Parser, Subcommand};
use labloop_drivers::broker::{BrokerAddress, TlsFiles};
use labloop_sim::mqtt_server::{self, Faults};
use labloop_sim::serial_server::{self, SerialFaults};
use labloop_sim::station::Station;
use labloop_sim::{SimCellBuilder, SimClock, SimCycler};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(
    name = "labloop-sim",
    version,
    about = "Simulated battery cyclers and coin-cell builders on the real wire protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Transport,
}

#[derive(Subcommand)]
enum Transport {
    /// An instrument on an MQTT broker, under a topic prefix.
    Mqtt(MqttArgs),
    /// An instrument on a serial line: a pseudo-terminal reachable at --link.
    Serial(SerialArgs),
}

/// What the instruments are.
#[derive(Args)]
struct InstrumentArgs {
    /// The instrument's name when there is one (channel ids are <name>/chNN); several instruments are
    /// named after their prefix's last part or their link's file name.
    #[arg(long)]
    name: Option<String>,
    /// The instruments at --prefix / --link are coin-cell builders instead of cyclers.
    #[arg(long)]
    builder: bool,
    /// Channels per cycler; cells a builder builds at once.
    #[arg(long, default_value_t = 8)]
    channels: u32,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    acceleration: f64,
    /// Seed of the simulated cells and of the injected faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Journal file: tests survive a restart of this process (they go on cycling meanwhile); with
    /// several cyclers each keeps `<journal>.<name>`.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Probability that a built cell fails its crimp check (builders).
    #[arg(long, default_value_t = 0.0)]
    crimp_failure: f64,
}

impl InstrumentArgs {
    /// The instruments at `endpoints` (named after them unless --name names the only one) and the
    /// builders at `builder_endpoints`, each with its endpoint.
    fn stations<T: Clone>(
        &self,
        endpoints: &[T],
        builder_endpoints: &[T],
        name_of: impl Fn(&T) -> String,
    ) -> Result<Vec<(Station, T)>, String> {
        let clock = SimClock {
            acceleration: self.acceleration,
        };
        let single = endpoints.len() + builder_endpoints.len() == 1;
        let kinds = endpoints
            .iter()
            .map(|e| (e, self.builder))
            .chain(builder_endpoints.iter().map(|e| (e, true)));
        let cyclers = endpoints.len() * usize::from(!self.builder);
        let mut stations = Vec::new();
        for (endpoint, builder) in kinds {
            let name = match &self.name {
                Some(name) if single => name.clone(),
                _ => name_of(endpoint),
            };
            let station = if builder {
                Station::Builder(
                    SimCellBuilder::new(&name, self.channels, clock)
                        .with_crimp_failures(self.crimp_failure),
                )
            } else {
                Station::Cycler(match &self.journal {
                    Some(path) => {
                        let path = if cyclers > 1 {
                            path.with_extension(format!("{name}.jsonl"))
                        } else {
                            path.clone()
                        };
                        SimCycler::with_journal(&name, self.channels, clock, self.seed, &path)
                            .map_err(|e| format!("opening the journal {}: {e}", path.display()))?
                    }
                    None => SimCycler::new(&name, self.channels, clock, self.seed),
                })
            };
            stations.push((station, endpoint.clone()));
        }
        let mut names: Vec<&str> = stations.iter().map(|(s, _)| s.name()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two instruments named `{}`", twice[0]));
        }
        Ok(stations)
    }
}

#[derive(Args)]
struct MqttArgs {
    /// The broker: mqtt://[user[:password]@]host[:port], or mqtts://... for TLS.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// PEM file of the CA that signed the broker's certificate (mqtts://; default: the system's).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that ask for one (with --client-key).
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Topic prefix of an instrument (the workflow's `topic_prefix`), e.g. labloop/lab1/cycler1;
    /// repeat for several. Its last part names it.
    #[arg(long, required = true)]
    prefix: Vec<String>,
    /// Topic prefix of a coin-cell builder served beside the cyclers; repeat for several.
    #[arg(long)]
    builder_prefix: Vec<String>,
    #[command(flatten)]
    instrument: InstrumentArgs,
    /// Probability that a telemetry message is lost.
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Probability that a telemetry message is sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a telemetry message is held back behind the next.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Probability that random bytes precede a telemetry message.
    #[arg(long, default_value_t = 0.0)]
    garbage: f64,
    /// Probability that a command's reply is lost.
    #[arg(long, default_value_t = 0.0)]
    drop_ack: f64,
    /// Cut the broker connection this often, e.g. 10s or 500ms.
    #[arg(long, value_parser = parse_duration)]
    disconnect_every: Option<Duration>,
}

#[derive(Args)]
struct SerialArgs {
    /// Where an instrument's port appears: a symlink to its pseudo-terminal, replaced when the port
    /// comes back (the workflow's `port`); repeat for several. Its file name (without extension)
    /// names it.
    #[arg(long, required = true)]
    link: Vec<PathBuf>,
    /// Where a coin-cell builder's port appears, beside the cyclers; repeat for several.
    #[arg(long)]
    builder_link: Vec<PathBuf>,
    #[command(flatten)]
    instrument: InstrumentArgs,
    /// Probability that noise precedes a reply.
    #[arg(long, default_value_t = 0.0)]
    garbage: f64,
    /// Probability that a reply is lost.
    #[arg(long, default_value_t = 0.0)]
    drop_reply: f64,
    /// Probability that a reply is sent twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate_reply: f64,
    /// Probability that a reply is held back and sent after the next one.
    #[arg(long, default_value_t = 0.0)]
    delay_reply: f64,
    /// The port vanishes this often, e.g. 20s...
    #[arg(long, value_parser = parse_duration)]
    vanish_every: Option<Duration>,
    /// ...for this long.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    vanish_for: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!("`{text}`: expected e.g. 500ms, 10s or 2m"));
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected e.g. 500ms, 10s or 2m"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("`{text}`: expected a positive duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match Cli::parse().command {
            Transport::Mqtt(args) => serve_mqtt(args).await,
            Transport::Serial(args) => serve_serial(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every instrument's server until one fails (or the process is stopped).
async fn run_all(mut servers: JoinSet<Result<(), String>>) -> Result<(), String> {
    while let Some(done) = servers.join_next().await {
        done.map_err(|e| format!("an instrument's server stopped: {e}"))??;
    }
    Ok(())
}

async fn serve_mqtt(args: MqttArgs) -> Result<(), String> {
    let last_part = |prefix: &String| {
        prefix
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("cycler")
            .to_owned()
    };
    let stations = args
        .instrument
        .stations(&args.prefix, &args.builder_prefix, last_part)?;
    let faults = Faults {
        drop: args.drop,
        duplicate: args.duplicate,
        reorder: args.reorder,
        garbage: args.garbage,
        drop_ack: args.drop_ack,
        disconnect_every: args.disconnect_every,
    };
    let mut address = BrokerAddress::parse(&args.broker)?;
    if args.ca_file.is_some() || args.client_cert.is_some() {
        address = address.with_tls(TlsFiles {
            ca_file: args.ca_file.clone(),
            client: args.client_cert.clone().zip(args.client_key.clone()),
        })?;
    }
    let mut servers = JoinSet::new();
    for (station, prefix) in stations {
        eprintln!(
            "labloop-sim: {} ({}, {} channels, {}x clock) on {} under {prefix}",
            station.name(),
            station.model(),
            args.instrument.channels,
            args.instrument.acceleration,
            args.broker,
        );
        let (address, faults, seed) = (address.clone(), faults.clone(), args.instrument.seed);
        servers.spawn(async move {
            mqtt_server::serve(station, &address, &prefix, faults, seed)
                .await
                .map_err(|e| e.to_string())
        });
    }
    run_all(servers).await
}

async fn serve_serial(args: SerialArgs) -> Result<(), String> {
    let stem = |link: &PathBuf| {
        link.file_stem()
            .map_or("cycler".to_owned(), |s| s.to_string_lossy().into_owned())
    };
    let stations = args
        .instrument
        .stations(&args.link, &args.builder_link, stem)?;
    let faults = SerialFaults {
        garbage: args.garbage,
        drop_reply: args.drop_reply,
        duplicate_reply: args.duplicate_reply,
        delay_reply: args.delay_reply,
        vanish_every: args.vanish_every,
        vanish_for: args.vanish_for,
    };
    let mut servers = JoinSet::new();
    for (index, (station, link)) in stations.into_iter().enumerate() {
        let faults = faults.clone();
        // Each port misbehaves on its own schedule of chance.
        let seed = args.instrument.seed.wrapping_add(index as u64);
        servers.spawn(async move {
            let name = station.name().to_owned();
            let model = station.model();
            serial_server::serve(station, &link, faults, seed, |device| {
                // Said on stdout for scripts: the port is there.
                println!(
                    "labloop-sim: {name} ({model}) on {} at {}",
                    device.display(),
                    link.display()
                );
            })
            .await
            .map_err(|e| format!("{}: {e}", link.display()))
        });
    }
    run_all(servers).await
}
