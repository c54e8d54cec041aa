//! A plugin's standard streams: its output read line by line and routed to the calls waiting
//! for each reply, its standard error kept in the campaign's plugin log (and a tail to explain
//! its exit).

use super::*;

/// A plugin's output, line by line, each at most [`protocol::MAX_LINE`] bytes.
pub(super) struct Lines<R> {
    reader: R,
    number: u64,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub(super) fn new(reader: R) -> Self {
        Self { reader, number: 0 }
    }

    /// The next message; `None` at the end of the output.
    pub(super) async fn next(&mut self) -> Option<Result<Message, LineError>> {
        loop {
            let mut line = Vec::new();
            let read = (&mut self.reader)
                .take(protocol::MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .await;
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            self.number += 1;
            if line.len() > protocol::MAX_LINE {
                // Skip the rest of the overlong line.
                let mut rest = Vec::new();
                let _ = self.reader.read_until(b'\n', &mut rest).await;
                return Some(Err(LineError {
                    line: self.number,
                    byte: protocol::MAX_LINE,
                    detail: format!("longer than {} bytes", protocol::MAX_LINE),
                    excerpt: String::from_utf8_lossy(&line[..80]).into_owned(),
                }));
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(protocol::decode(&line, self.number));
        }
    }
}

/// Routes each reply to its call until the output ends, then says how the process ended.
pub(super) async fn route_replies<R: AsyncBufRead + Unpin>(
    plugin: String,
    mut lines: Lines<R>,
    conn: Arc<Connection>,
    gone: watch::Sender<Option<String>>,
    counters: Arc<PluginCounters>,
    first_garbage: Arc<Mutex<Option<LineError>>>,
    log: Option<PathBuf>,
) {
    while let Some(message) = lines.next().await {
        let (id, reply) = match message {
            Ok(Message::Result { id, value }) => (id, Reply::Value(value)),
            Ok(Message::Error { id, code, message }) => (id, Reply::Refused { code, message }),
            Ok(Message::Event { topic, value }) => {
                note_event(&plugin, &topic, &value, log.as_deref());
                continue;
            }
            Ok(Message::Hello(_)) => {
                garbage(
                    &plugin,
                    &counters,
                    &first_garbage,
                    LineError {
                        line: lines.number,
                        byte: 0,
                        detail: "a second `hello`".into(),
                        excerpt: String::new(),
                    },
                );
                continue;
            }
            Err(e) => {
                garbage(&plugin, &counters, &first_garbage, e);
                continue;
            }
        };
        let waiting = conn.pending.lock().expect("pending lock").remove(&id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => {
                tracing::debug!(plugin = %plugin, %id, "a reply nobody waits for (a call that timed out?)")
            }
        }
    }
    // The output ended: the process is exiting. Wait a moment for its status.
    let mut how = "closed its output".to_owned();
    for _ in 0..50 {
        let status = conn.child.lock().expect("child lock").try_wait();
        match status {
            Ok(Some(status)) => {
                how = describe_exit(status);
                break;
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                how = format!("could not be waited for: {e}");
                break;
            }
        }
    }
    conn.pending.lock().expect("pending lock").clear();
    let _ = gone.send(Some(how));
}

pub(super) fn describe_exit(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "exited".to_owned(),
    }
}

pub(super) fn garbage(
    plugin: &str,
    counters: &PluginCounters,
    first: &Mutex<Option<LineError>>,
    error: LineError,
) {
    counters.garbage.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(plugin, error = %error, "a line from the plugin is not a protocol message; dropped");
    first.lock().expect("garbage lock").get_or_insert(error);
}

/// Keeps an event with the campaign's log.
pub(super) fn note_event(plugin: &str, topic: &str, value: &Value, log: Option<&std::path::Path>) {
    tracing::info!(plugin, topic, %value, "plugin event");
    append(log, &format!("[{plugin}] event {topic}: {value}"));
}

pub(super) fn append(log: Option<&std::path::Path>, line: &str) {
    let Some(path) = log else { return };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut file) = file {
        let _ = writeln!(file, "{line}");
    }
}

/// Copies the plugin's standard error into the log, keeping its last lines.
pub(super) async fn keep_stderr(
    plugin: String,
    stderr: tokio::process::ChildStderr,
    log: Option<PathBuf>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(plugin = %plugin, "{line}");
        append(log.as_deref(), &format!("[{plugin}] {line}"));
        let mut tail = tail.lock().expect("stderr lock");
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(300).collect());
    }
}
