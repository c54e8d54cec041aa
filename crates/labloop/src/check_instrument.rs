//! `labloop check-instrument`: runs the protocol's conformance rules against a bridge
//! (`labloop_drivers::conformance`) and prints a pass/fail report per rule.

use anyhow::{Context, Result, bail};
use labloop_drivers::conformance::{self, CheckOptions, MqttProbe, Outcome, Target};
use labloop_drivers::mqtt::BrokerAddress;
use std::process::ExitCode;
use std::time::Duration;

/// Where the bridge is and what to check.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The broker of an MQTT bridge (`mqtt://host:port`, `mqtts://...`).
    #[arg(long, requires = "prefix", conflicts_with = "serial")]
    mqtt: Option<String>,
    /// The bridge's topic prefix (as a workflow's `topic_prefix`).
    #[arg(long)]
    prefix: Option<String>,
    /// The serial port of an instrument (or its pseudo-terminal's link).
    #[arg(long)]
    serial: Option<String>,
    /// Baud rate of the serial line.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// The channel the check's test runs on (default: the first the bridge announces); it must be free.
    #[arg(long)]
    channel: Option<String>,
    /// Cycles of the check's test.
    #[arg(long, default_value_t = 3)]
    cycles: u32,
    /// How long one command waits for its reply.
    #[arg(long, value_parser = crate::agent::duration, default_value = "3s")]
    reply_timeout: Duration,
    /// How long the test may take to end, and a restarted bridge to answer again.
    #[arg(long, value_parser = crate::agent::duration, default_value = "2m")]
    wait: Duration,
    /// A shell command that restarts the bridge: checks that tests, records and keys survive it.
    #[arg(long)]
    restart_hook: Option<String>,
    /// Print the results as JSON (with every message sent and received).
    #[arg(long)]
    json: bool,
}

/// Runs the check; exit status 1 when a rule failed.
pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    let options = CheckOptions {
        channel: args.channel.clone(),
        cycles: args.cycles,
        reply_timeout: args.reply_timeout,
        wait: args.wait,
        restart_hook: args.restart_hook.clone(),
    };
    let results = crate::commands::runtime()?.block_on(async {
        let target = match (&args.mqtt, &args.serial) {
            (Some(url), None) => {
                let address = BrokerAddress::parse(url).map_err(anyhow::Error::msg)?;
                let prefix = args.prefix.as_deref().context("--mqtt needs --prefix")?;
                Target::Mqtt(
                    MqttProbe::connect(&address, prefix)
                        .await
                        .map_err(anyhow::Error::msg)?,
                )
            }
            (None, Some(port)) => {
                Target::Serial(Box::new(labloop_drivers::serial::SerialLink::new(
                    "instrument",
                    port,
                    args.baud,
                    labloop_drivers::serial::SerialOptions {
                        attempts: 2,
                        ..Default::default()
                    },
                )))
            }
            _ => bail!("give the bridge: --mqtt URL --prefix P, or --serial PORT"),
        };
        Ok(conformance::check(&target, &options).await)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", conformance::report(&results));
    }
    Ok(if results.iter().any(|r| r.outcome == Outcome::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
