//! Instruments on a serial line (`drivers/PROTOCOL.md`, "Serial"): one tagged SCPI-style command at a
//! time ([`crate::scpi`]), its reply matched by tag, records read with `DATA?` from the first one not
//! yet stored.
//!
//! What real serial links do, and what this driver does about it: a reply is lost or garbled (the
//! command is sent again under the same tag after `command_timeout`; every operation is idempotent);
//! a reply comes late or twice (its tag is not the current command's: dropped and counted); noise
//! arrives (a line that is not a reply: counted, logged, dropped); the port vanishes — a USB adapter
//! unplugged, an instrument rebooted — (the port is reopened by path with backoff for up to
//! `reconnect_for`, and the command goes on).

use crate::DriverError;
use crate::link_cycler::{LinkCycler, PollTiming};
use crate::remote::CommandLink;
use crate::scpi::{self, MAX_LINE};
use crate::wire::Op;
use async_trait::async_trait;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

/// Timing of the serial driver.
#[derive(Clone, Copy, Debug)]
pub struct SerialOptions {
    /// How long one attempt of a command waits for its reply.
    pub command_timeout: Duration,
    /// Attempts of a command (with the port up) before it fails with [`DriverError::Timeout`].
    pub attempts: u32,
    /// How long a vanished port is waited for before commands fail.
    pub reconnect_for: Duration,
    /// First pause between `DATA?` polls of a channel with nothing new (doubling while quiet).
    pub poll_min: Duration,
    /// Longest pause between polls.
    pub poll_max: Duration,
    /// Records asked for per `DATA?`.
    pub max_records: u32,
}

impl Default for SerialOptions {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_secs(2),
            attempts: 5,
            reconnect_for: Duration::from_secs(120),
            poll_min: Duration::from_millis(10),
            poll_max: Duration::from_secs(1),
            max_records: 50,
        }
    }
}

/// What the driver has seen go wrong on the line, for logs and tests.
#[derive(Default, Debug)]
pub struct SerialCounters {
    /// Lines that were not replies.
    pub protocol_errors: AtomicU64,
    /// Replies to an earlier command (late, or repeated) that were dropped.
    pub stale_replies: AtomicU64,
    /// Commands sent again after no reply.
    pub command_retries: AtomicU64,
    /// Times the port was opened (the first time, and after each loss).
    pub opens: AtomicU64,
}

/// An open port and the bytes read from it that do not yet make a line.
struct Port {
    stream: SerialStream,
    pending: Vec<u8>,
    scanned: usize,
    skipping: bool,
}

/// What reading a line gave.
enum Line {
    Text(String),
    /// A line longer than [`MAX_LINE`], dropped.
    TooLong,
}

impl Port {
    /// The next line. Cancel-safe: bytes read stay in `pending` for the next call.
    async fn next_line(&mut self) -> std::io::Result<Line> {
        loop {
            if let Some(at) = self.pending[self.scanned..]
                .iter()
                .position(|b| *b == b'\n')
            {
                let end = self.scanned + at;
                let raw: Vec<u8> = self.pending.drain(..=end).collect();
                self.scanned = 0;
                if std::mem::take(&mut self.skipping) {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Text(String::from_utf8_lossy(&raw).into_owned()));
            }
            self.scanned = self.pending.len();
            if self.pending.len() > MAX_LINE {
                self.pending.clear();
                self.scanned = 0;
                self.skipping = true;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the port closed",
                ));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One serial line to one instrument: commands go one at a time, each tagged.
pub struct SerialLink {
    name: String,
    path: String,
    baud: u32,
    options: SerialOptions,
    port: tokio::sync::Mutex<Option<Port>>,
    session: String,
    next_tag: AtomicU64,
    counters: SerialCounters,
    /// The first protocol error since the last readable reply, to name a command's silence.
    first_rejected: Mutex<Option<String>>,
}

impl SerialLink {
    /// A link to the instrument `name` on the port at `path` (opened on first use, reopened after
    /// it vanishes).
    pub fn new(name: &str, path: &str, baud: u32, options: SerialOptions) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            name: name.to_owned(),
            path: path.to_owned(),
            baud,
            options,
            port: tokio::sync::Mutex::new(None),
            session: format!("{:x}{:x}", std::process::id() & 0xffff, nanos & 0xfffff),
            next_tag: AtomicU64::new(1),
            counters: SerialCounters::default(),
            first_rejected: Mutex::new(None),
        }
    }

    /// What went wrong on the line so far.
    pub fn counters(&self) -> &SerialCounters {
        &self.counters
    }

    fn open(&self) -> Result<Port, tokio_serial::Error> {
        let stream = tokio_serial::new(&self.path, self.baud).open_native_async()?;
        Ok(Port {
            stream,
            pending: Vec::new(),
            scanned: 0,
            skipping: false,
        })
    }

    fn count_protocol_error(&self, message: &str) {
        self.counters
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(instrument = %self.name, port = %self.path, error = message, "protocol error; line dropped");
        self.first_rejected
            .lock()
            .expect("rejected lock")
            .get_or_insert_with(|| message.to_owned());
    }

    /// Writes the command and reads lines until the reply with `tag` (or an untagged one) comes.
    async fn exchange(
        &self,
        port: &mut Port,
        tag: &str,
        line: &str,
    ) -> std::io::Result<Result<String, crate::wire::WireFault>> {
        port.stream.write_all(line.as_bytes()).await?;
        port.stream.flush().await?;
        loop {
            let text = match port.next_line().await? {
                Line::Text(text) => text,
                Line::TooLong => {
                    self.count_protocol_error(&format!("a line longer than {MAX_LINE} bytes"));
                    continue;
                }
            };
            match scpi::decode_reply(&text) {
                Err(e) => self.count_protocol_error(&e.to_string()),
                Ok(reply) if reply.tag.as_deref().is_some_and(|t| t != tag) => {
                    self.counters.stale_replies.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(instrument = %self.name, tag = ?reply.tag, "stale reply dropped");
                }
                Ok(reply) => {
                    *self.first_rejected.lock().expect("rejected lock") = None;
                    return Ok(reply.outcome);
                }
            }
        }
    }

    fn failure(&self, message: String) -> DriverError {
        DriverError::Instrument {
            instrument: self.name.clone(),
            message,
        }
    }
}

#[async_trait]
impl CommandLink for SerialLink {
    fn instrument(&self) -> &str {
        &self.name
    }

    fn protocol_error(&self, detail: &str) {
        self.count_protocol_error(detail);
    }

    async fn command(&self, op: Op, patience: Duration) -> Result<serde_json::Value, DriverError> {
        let tag = format!(
            "{}-{}",
            self.session,
            self.next_tag.fetch_add(1, Ordering::Relaxed)
        );
        let line = scpi::encode_command(&tag, &op).map_err(|e| self.failure(e.to_string()))?;
        let mut port = self.port.lock().await;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut attempts = 0;
        loop {
            let gone_too_long = started.elapsed() > self.options.reconnect_for;
            let open = match port.as_mut() {
                Some(open) => open,
                None => match self.open() {
                    Ok(opened) => {
                        self.counters.opens.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(instrument = %self.name, port = %self.path, "port open");
                        port.insert(opened)
                    }
                    Err(e) if gone_too_long => {
                        return Err(self.failure(format!(
                            "{}: {e} (for {:?})",
                            self.path, self.options.reconnect_for
                        )));
                    }
                    Err(e) => {
                        tracing::debug!(instrument = %self.name, port = %self.path, error = %e, "port not there yet");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            attempts += 1;
            if attempts > 1 {
                self.counters
                    .command_retries
                    .fetch_add(1, Ordering::Relaxed);
            }
            match tokio::time::timeout(patience, self.exchange(open, &tag, &line)).await {
                Ok(Ok(Ok(payload))) => {
                    return scpi::result_value(&op, &payload).map_err(|e| {
                        self.count_protocol_error(&e.to_string());
                        DriverError::Protocol {
                            instrument: self.name.clone(),
                            detail: e.to_string(),
                        }
                    });
                }
                Ok(Ok(Err(fault))) => return Err(fault.into_error(&self.name)),
                Ok(Err(e)) => {
                    tracing::warn!(instrument = %self.name, port = %self.path, error = %e, "port lost; reopening");
                    *port = None;
                    // A lost port does not use up attempts; `reconnect_for` bounds the wait.
                    attempts -= 1;
                    if gone_too_long {
                        return Err(self.failure(format!("{}: {e}", self.path)));
                    }
                    tokio::time::sleep(backoff).await;
                }
                Err(_) if attempts >= self.options.attempts => {
                    // Lines came, but none could be read: that is the cause, not silence.
                    let rejected = self.first_rejected.lock().expect("rejected lock").take();
                    return Err(match rejected {
                        Some(first) => DriverError::Protocol {
                            instrument: self.name.clone(),
                            detail: format!(
                                "no readable reply on {} in {attempts} attempts; the first line rejected: {first}",
                                self.path
                            ),
                        },
                        None => DriverError::Timeout {
                            instrument: self.name.clone(),
                            after: patience * attempts,
                        },
                    });
                }
                Err(_) => {
                    tracing::warn!(instrument = %self.name, command = %tag, attempt = attempts, "no reply; sending again");
                }
            }
        }
    }
}

/// A battery cycler on a serial line, with channels `ch01`..`chNN` on the wire and `<name>/chNN` to
/// the engine.
pub type SerialCycler = LinkCycler<SerialLink>;

impl LinkCycler<SerialLink> {
    /// A cycler `name` with `channels` channels on the port at `path`.
    pub fn new(name: &str, channels: u32, path: &str, baud: u32, options: SerialOptions) -> Self {
        Self::on(
            SerialLink::new(name, path, baud, options),
            channels,
            PollTiming {
                command_timeout: options.command_timeout,
                poll_min: options.poll_min,
                poll_max: options.poll_max,
                max_records: options.max_records,
            },
        )
    }
}
