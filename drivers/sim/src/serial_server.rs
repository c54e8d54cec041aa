//! A simulated instrument on a serial line (`drivers/PROTOCOL.md`, "Serial"): it creates a
//! pseudo-terminal, publishes its device under a stable path (a symlink, as udev's
//! `/dev/serial/by-id/...` links are), answers one SCPI-style command line at a time, and can misbehave
//! on purpose ([`SerialFaults`]): noise on the line, replies lost, repeated or late, and the whole port
//! vanishing for a while — its device gone, its link removed — the way an unplugged USB adapter does.

use crate::station::Station;
use labloop_drivers::scpi::{self, MAX_LINE};
use labloop_drivers::wire::WireFault;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{OpenptyResult, openpty};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Misbehaviour to inject: probabilities per reply (0 = never) and the port's absences.
#[derive(Clone, Debug, Default)]
pub struct SerialFaults {
    /// Random bytes (noise) are sent before a reply.
    pub garbage: f64,
    /// A reply is never sent (the command was carried out).
    pub drop_reply: f64,
    /// A reply is sent twice.
    pub duplicate_reply: f64,
    /// A reply is held back and sent after the next one (it arrives late).
    pub delay_reply: f64,
    /// The port vanishes this often...
    pub vanish_every: Option<Duration>,
    /// ...for this long.
    pub vanish_for: Duration,
}

/// A pseudo-terminal: the master end this server reads and writes, the slave end the driver opens.
struct Pty {
    master: AsyncFd<OwnedFd>,
    /// Held open so the master never sees a hang-up when a driver closes and reopens the port.
    _slave: OwnedFd,
    device: PathBuf,
}

impl Pty {
    fn open() -> io::Result<Self> {
        let OpenptyResult { master, slave } = openpty(None, None).map_err(io::Error::from)?;
        // Raw: no echo, no line editing, no length limit — a serial line, not a terminal.
        let mut termios = tcgetattr(&slave).map_err(io::Error::from)?;
        cfmakeraw(&mut termios);
        tcsetattr(&slave, SetArg::TCSANOW, &termios).map_err(io::Error::from)?;
        let device = nix::unistd::ttyname(&slave).map_err(io::Error::from)?;
        fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        // SAFETY: an `OwnedFd` is a valid open descriptor that stays the same until it is dropped,
        // and the `AsyncFd` owns it.
        let master = unsafe { AsyncFd::register(master) }.map_err(io::Error::from)?;
        Ok(Self {
            master,
            _slave: slave,
            device,
        })
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.master.readable().await?;
            match ready.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(outcome) => return outcome,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.master.writable().await?;
            match ready.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// Points `link` at `device`, replacing what it pointed at in one step.
fn publish(link: &Path, device: &Path) -> io::Result<()> {
    let staging = link.with_extension(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    std::os::unix::fs::symlink(device, &staging)?;
    std::fs::rename(&staging, link)
}

/// Serves `station` on a pseudo-terminal reachable at `link` until the process ends (or an I/O error
/// on the terminal). `ready` is told the device each time the port (re)appears.
pub async fn serve(
    station: Station,
    link: &Path,
    faults: SerialFaults,
    seed: u64,
    mut ready: impl FnMut(&Path),
) -> io::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5e71a1);
    loop {
        let pty = Pty::open()?;
        publish(link, &pty.device)?;
        ready(&pty.device);
        let absence = async {
            match faults.vanish_every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = session(&station, &pty, &faults, &mut rng) => outcome?,
            () = absence => {}
        }
        tracing::info!(link = %link.display(), away = ?faults.vanish_for, "the port vanishes (fault injection)");
        drop(pty);
        let _ = std::fs::remove_file(link);
        tokio::time::sleep(faults.vanish_for).await;
    }
}

/// Answers command lines on `pty`, one at a time, as long as it exists.
async fn session(
    station: &Station,
    pty: &Pty,
    faults: &SerialFaults,
    rng: &mut StdRng,
) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut held: Option<String> = None;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = pty.read(&mut chunk).await?;
        pending.extend_from_slice(&chunk[..n]);
        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=at).collect();
            let line = String::from_utf8_lossy(&raw);
            if line.trim().is_empty() {
                continue;
            }
            let reply = answer(station, &line).await;
            let mut out = Vec::new();
            if chance(rng, faults.garbage) {
                let noise = rng.random_range(1..80);
                out.extend((0..noise).map(|_| rng.random::<u8>()));
                out.push(b'\n');
            }
            if chance(rng, faults.drop_reply) {
                tracing::debug!("reply dropped (fault injection)");
            } else if chance(rng, faults.delay_reply) {
                if let Some(late) = held.replace(reply) {
                    out.extend_from_slice(late.as_bytes());
                }
            } else {
                out.extend_from_slice(reply.as_bytes());
                if chance(rng, faults.duplicate_reply) {
                    out.extend_from_slice(reply.as_bytes());
                }
                if let Some(late) = held.take() {
                    out.extend_from_slice(late.as_bytes());
                }
            }
            pty.write_all(&out).await?;
        }
        if pending.len() > MAX_LINE {
            pending.clear();
            pty.write_all(b"ERR BAD_COMMAND line too long\n").await?;
        }
    }
}

/// The reply line to one command line.
async fn answer(station: &Station, line: &str) -> String {
    match scpi::decode_command(line) {
        Ok((tag, op)) => {
            let outcome = station.execute(&op).await;
            scpi::encode_reply(tag.as_deref(), &op, &outcome)
        }
        Err(e) => {
            tracing::warn!(error = %e, "protocol error: command refused");
            // Echo a readable tag, so the sender knows which command was refused.
            let tag = line
                .strip_prefix('@')
                .and_then(|rest| rest.split_once(' '))
                .map(|(tag, _)| tag)
                .filter(|t| scpi::decode_reply(&format!("@{t} OK")).is_ok());
            let fault = WireFault::new("BAD_COMMAND", &e.message);
            scpi::encode_reply(tag, &labloop_drivers::wire::Op::Identify, &Err(fault))
        }
    }
}

fn chance(rng: &mut StdRng, p: f64) -> bool {
    p > 0.0 && rng.random_bool(p.min(1.0))
}
