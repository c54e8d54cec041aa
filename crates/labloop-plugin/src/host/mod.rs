//! One plugin's process: started on first use, greeted, spoken to one line per message, restarted
//! with backoff when it dies, killed when it hangs. Calls carry ids; replies are matched by id, so
//! several experiments may call one plugin at once. Standard error is the plugin's log, kept in the
//! campaign's plugin log and never parsed.

use crate::PluginError;
use crate::protocol::{self, Call, Hello, HelloRequest, LineError, Message, PROTOCOL};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{oneshot, watch};

mod streams;

use streams::{Lines, keep_stderr, note_event, route_replies};

/// How long a plugin has to answer `hello` after it starts.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a plugin has to exit after `shutdown` before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The variables of labloop's environment every plugin gets (what finding programs, libraries
/// and a home takes); anything else only when the workflow names it (`env`, `pass_env`), so
/// labloop's own secrets (a database password, tokens) never reach a plugin unasked.
pub const INHERITED_ENV: [&str; 10] = [
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
];
/// Lines of a plugin's standard error kept to explain its exit.
const STDERR_TAIL: usize = 12;

/// How to start a plugin and how patient to be with it.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// Its name in the workflow.
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Environment set for it.
    pub env: Vec<(String, String)>,
    /// Its working directory (the workflow's folder).
    pub dir: PathBuf,
    /// The campaign it serves (empty for validation).
    pub campaign: String,
    /// Where it may keep state (results by call id).
    pub state_dir: PathBuf,
    /// Where its standard error and events are appended (none: only traced).
    pub log: Option<PathBuf>,
    /// Longest one call may take.
    pub call_timeout: Duration,
    /// Restarts in a row (without a successful call) before its calls fail.
    pub restarts: u32,
    /// First pause before a restart, doubled for each one in a row (at most 30 s).
    pub backoff: Duration,
}

/// What has happened to a plugin, for logs, metrics and tests.
#[derive(Debug, Default)]
pub struct PluginCounters {
    /// Calls answered (results and refusals).
    pub answered: AtomicU64,
    /// Processes started (the first and every restart).
    pub starts: AtomicU64,
    /// Lines it wrote that are not protocol messages.
    pub garbage: AtomicU64,
}

/// A reply to one call.
enum Reply {
    Value(Value),
    Refused { code: String, message: String },
}

/// A running process.
struct Connection {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    /// `Some(how it ended)` once the process is gone.
    gone: watch::Receiver<Option<String>>,
    child: Arc<Mutex<Child>>,
}

impl Connection {
    fn kill(&self) {
        let _ = self.child.lock().expect("child lock").start_kill();
    }

    fn is_gone(&self) -> bool {
        self.gone.borrow().is_some()
    }
}

/// A plugin: its process (started when first needed) and what it said in `hello`.
pub struct Plugin {
    config: PluginConfig,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    hello: Mutex<Option<Hello>>,
    /// Processes that died in a row, without a successful call in between.
    deaths_in_row: AtomicU32,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    first_garbage: Arc<Mutex<Option<LineError>>>,
    next_id: AtomicU64,
    counters: Arc<PluginCounters>,
}

impl Plugin {
    /// A plugin started as `config` says, on first use.
    pub fn new(config: PluginConfig) -> Self {
        Self {
            config,
            connection: tokio::sync::Mutex::new(None),
            hello: Mutex::new(None),
            deaths_in_row: AtomicU32::new(0),
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
            first_garbage: Arc::new(Mutex::new(None)),
            next_id: AtomicU64::new(1),
            counters: Arc::new(PluginCounters::default()),
        }
    }

    /// Its name in the workflow.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its counters.
    pub fn counters(&self) -> &PluginCounters {
        &self.counters
    }

    /// What it said in `hello`, starting it if it has not run yet.
    pub async fn hello(&self) -> Result<Hello, PluginError> {
        self.connect().await?;
        Ok(self.hello_seen().expect("a connection has a hello"))
    }

    /// What it said in its last `hello`, if it ran.
    pub fn hello_seen(&self) -> Option<Hello> {
        self.hello.lock().expect("hello lock").clone()
    }

    /// A fresh call id for calls that are not an action of their own (health checks,
    /// instrument operations, which carry their own idempotency keys).
    pub fn fresh_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Asks it whether it is well (`ping`), within `patience`.
    pub async fn health(&self, patience: Duration) -> Result<(), PluginError> {
        let id = self.fresh_id("ping");
        self.call_within("ping", &id, &Value::Null, true, patience)
            .await
            .map(|_| ())
    }

    /// Calls `method` under `id`, within the configured call timeout. `repeatable`: the call
    /// changes nothing (or the plugin keeps results by id), so when the process dies under it,
    /// it is sent again to the restarted process under the same id; otherwise its outcome is
    /// unknown and the call fails with [`PluginError::Interrupted`] unless the plugin said it
    /// is `persistent`.
    pub async fn call(
        &self,
        method: &str,
        id: &str,
        params: &Value,
        repeatable: bool,
    ) -> Result<Value, PluginError> {
        self.call_within(method, id, params, repeatable, self.config.call_timeout)
            .await
    }

    /// [`Plugin::call`] within `patience` (at most the configured call timeout).
    pub async fn call_within(
        &self,
        method: &str,
        id: &str,
        params: &Value,
        repeatable: bool,
        patience: Duration,
    ) -> Result<Value, PluginError> {
        let patience = patience.min(self.config.call_timeout);
        loop {
            let conn = self.connect().await?;
            let persistent = self.hello_seen().is_some_and(|h| h.persistent);
            let (tx, rx) = oneshot::channel();
            conn.pending
                .lock()
                .expect("pending lock")
                .insert(id.to_owned(), tx);
            let line = serde_json::to_string(&Call {
                kind: "call",
                id,
                method,
                params,
            })
            .map_err(|e| self.protocol(format!("encoding a {method} call: {e}")))?;
            let written = {
                let mut stdin = conn.stdin.lock().await;
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                match stdin.write_all(&bytes).await {
                    Ok(()) => stdin.flush().await,
                    Err(e) => Err(e),
                }
            };
            let outcome = if written.is_err() {
                None
            } else {
                match tokio::time::timeout(patience, rx).await {
                    Ok(Ok(reply)) => Some(reply),
                    Ok(Err(_)) => None,
                    Err(_) => {
                        conn.pending.lock().expect("pending lock").remove(id);
                        // A plugin that does not answer is hung: its next call starts a new one.
                        conn.kill();
                        return Err(PluginError::Timeout {
                            plugin: self.name().to_owned(),
                            method: method.to_owned(),
                            id: id.to_owned(),
                            after: patience,
                            cause: self.silence_cause(),
                        });
                    }
                }
            };
            match outcome {
                Some(Reply::Value(value)) => {
                    self.deaths_in_row.store(0, Ordering::Relaxed);
                    self.counters.answered.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Some(Reply::Refused { code, message }) => {
                    self.deaths_in_row.store(0, Ordering::Relaxed);
                    self.counters.answered.fetch_add(1, Ordering::Relaxed);
                    return Err(PluginError::Refused {
                        plugin: self.name().to_owned(),
                        method: method.to_owned(),
                        code,
                        message,
                    });
                }
                None => {
                    // The process died under the call (or before it could be written).
                    let detail = self.ended(&conn).await;
                    if !(repeatable || persistent) {
                        return Err(PluginError::Interrupted {
                            plugin: self.name().to_owned(),
                            method: method.to_owned(),
                            id: id.to_owned(),
                            detail,
                        });
                    }
                    tracing::warn!(plugin = self.name(), method, id, %detail, "the plugin exited during a call; restarting it and asking again under the same id");
                }
            }
        }
    }

    /// Asks it to finish and exit; kills it after [`SHUTDOWN_GRACE`].
    pub async fn shutdown(&self) {
        let Some(conn) = self.connection.lock().await.take() else {
            return;
        };
        {
            let mut stdin = conn.stdin.lock().await;
            let _ = stdin.write_all(b"{\"type\":\"shutdown\"}\n").await;
            let _ = stdin.flush().await;
        }
        let mut gone = conn.gone.clone();
        if tokio::time::timeout(SHUTDOWN_GRACE, gone.wait_for(Option::is_some))
            .await
            .is_err()
        {
            conn.kill();
        }
    }

    /// How the process of `conn` ended, with its last words.
    async fn ended(&self, conn: &Connection) -> String {
        let mut gone = conn.gone.clone();
        let how = match tokio::time::timeout(Duration::from_secs(5), gone.wait_for(Option::is_some))
            .await
        {
            Ok(Ok(how)) => how.clone().unwrap_or_default(),
            _ => "stopped reading its input".to_owned(),
        };
        format!("{how}{}", self.last_words())
    }

    fn last_words(&self) -> String {
        let tail = self.stderr_tail.lock().expect("stderr lock");
        if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
            format!("; its standard error ended: {}", lines.join(" | "))
        }
    }

    /// Why a call got no reply, as far as labloop can tell.
    fn silence_cause(&self) -> String {
        let garbage = self.counters.garbage.load(Ordering::Relaxed);
        match &*self.first_garbage.lock().expect("garbage lock") {
            Some(first) => format!(
                ": it wrote {garbage} line(s) that are not protocol messages, the first at {first}"
            ),
            None => ": it wrote nothing for the call (hung?); it was killed and restarts on the next call".into(),
        }
    }

    fn protocol(&self, detail: String) -> PluginError {
        PluginError::Protocol {
            plugin: self.name().to_owned(),
            detail,
        }
    }

    /// The running process, started (after a backoff, when the last one died) if need be.
    async fn connect(&self) -> Result<Arc<Connection>, PluginError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.is_gone()
        {
            return Ok(Arc::clone(conn));
        }
        if let Some(dead) = slot.take() {
            let detail = self.ended(&dead).await;
            let deaths = self.deaths_in_row.fetch_add(1, Ordering::Relaxed) + 1;
            if deaths > self.config.restarts {
                return Err(PluginError::Exited {
                    plugin: self.name().to_owned(),
                    detail: format!(
                        "{detail}; it died {deaths} times in a row, more than its {} restarts",
                        self.config.restarts
                    ),
                });
            }
            let wait = (self.config.backoff * 2u32.saturating_pow(deaths - 1))
                .min(Duration::from_secs(30));
            tracing::warn!(plugin = self.name(), %detail, ?wait, "plugin exited; restarting it");
            tokio::time::sleep(wait).await;
        }
        let conn = self.start().await?;
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// Starts the process and reads its `hello`.
    async fn start(&self) -> Result<Arc<Connection>, PluginError> {
        let config = &self.config;
        let plugin = config.name.clone();
        let program = config.command.first().cloned().unwrap_or_default();
        let resolved = {
            let p = std::path::Path::new(&program);
            if p.components().count() > 1 && p.is_relative() {
                config.dir.join(p)
            } else {
                p.to_path_buf()
            }
        };
        std::fs::create_dir_all(&config.state_dir).map_err(|e| PluginError::Start {
            plugin: plugin.clone(),
            program: program.clone(),
            detail: format!(
                "creating its state folder {}: {e}",
                config.state_dir.display()
            ),
        })?;
        let inherited = INHERITED_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)));
        let mut child = Command::new(&resolved)
            .args(&config.command[1.min(config.command.len())..])
            .env_clear()
            .envs(inherited)
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&config.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PluginError::Start {
                plugin: plugin.clone(),
                program: program.clone(),
                detail: format!("{e} (run from {})", config.dir.display()),
            })?;
        self.counters.starts.fetch_add(1, Ordering::Relaxed);
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        self.stderr_tail.lock().expect("stderr lock").clear();
        let log = config.log.clone();
        tokio::spawn(keep_stderr(
            plugin.clone(),
            stderr,
            log.clone(),
            Arc::clone(&self.stderr_tail),
        ));
        let child = Arc::new(Mutex::new(child));
        let (gone_tx, gone) = watch::channel(None);
        let hello_line = serde_json::to_string(&HelloRequest {
            kind: "hello",
            protocol: PROTOCOL,
            campaign: &config.campaign,
            state_dir: &config.state_dir.to_string_lossy(),
        })
        .expect("a hello encodes");
        let _ = stdin.write_all(format!("{hello_line}\n").as_bytes()).await;
        let _ = stdin.flush().await;
        let mut reader = Lines::new(BufReader::new(stdout));
        let hello = tokio::time::timeout(HELLO_TIMEOUT, async {
            loop {
                match reader.next().await {
                    None => return Err("it exited before answering `hello`".to_owned()),
                    Some(Err(e)) => return Err(format!("its first message is not `hello`: {e}")),
                    Some(Ok(Message::Hello(hello))) => return Ok(*hello),
                    Some(Ok(Message::Event { topic, value })) => {
                        note_event(&plugin, &topic, &value, log.as_deref());
                    }
                    Some(Ok(other)) => {
                        return Err(format!("its first message is not `hello`: {other:?}"));
                    }
                }
            }
        })
        .await;
        let hello = match hello {
            Ok(Ok(hello)) => hello,
            Ok(Err(detail)) => {
                let _ = child.lock().expect("child lock").start_kill();
                // Give its standard error a moment to arrive: it usually says why.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(PluginError::Hello {
                    plugin,
                    detail: format!("{detail}{}", self.last_words()),
                });
            }
            Err(_) => {
                let _ = child.lock().expect("child lock").start_kill();
                return Err(PluginError::Hello {
                    plugin,
                    detail: format!("no `hello` within {HELLO_TIMEOUT:?}{}", self.last_words()),
                });
            }
        };
        protocol::check_protocol(&hello.protocol).map_err(|detail| PluginError::Hello {
            plugin: plugin.clone(),
            detail,
        })?;
        tracing::info!(plugin = %plugin, name = %hello.name, version = %hello.version, persistent = hello.persistent, "plugin started");
        *self.hello.lock().expect("hello lock") = Some(hello);
        let conn = Arc::new(Connection {
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            gone,
            child,
        });
        // The reader owns the process's output: it routes replies and notes the end.
        tokio::spawn(route_replies(
            plugin,
            reader,
            Arc::clone(&conn),
            gone_tx,
            Arc::clone(&self.counters),
            Arc::clone(&self.first_garbage),
            log,
        ));
        Ok(conn)
    }
}
