//! One TCP connection to a vendor's control PC, shared by the adapters: connected on first use
//! and again after any failure, one request at a time (the vendors' servers answer in order and
//! some cannot take two at once), every failure named by its cause and counted in the link's
//! health. A reply that is not the answer to its request is a protocol error and the connection
//! is opened afresh, so one bad message never puts later replies out of step.

use labloop_drivers::DriverError;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a vendor's replies are cut out of the byte stream.
pub trait Framing: Default + Send + 'static {
    /// One reply.
    type Message: Send;
    /// Adds bytes read from the stream.
    fn push(&mut self, bytes: &[u8]);
    /// The next complete reply, `None` until one has arrived, or what is wrong with the bytes
    /// (naming their offset in the stream).
    fn next_message(&mut self) -> Option<Result<Self::Message, String>>;
    /// Bytes held of a reply not yet complete.
    fn pending(&self) -> usize;
}

/// What a reply says, once it is known to answer the request.
#[derive(Debug, PartialEq)]
pub enum Answer<T> {
    /// What was asked for.
    Reply(T),
    /// The instrument refused, in its own words.
    Refused(String),
}

type LoginCheck<M> = Box<dyn Fn(M) -> Result<Answer<()>, String> + Send + Sync>;

#[derive(Default)]
struct Health {
    protocol_errors: u64,
    last_protocol_error: Option<String>,
    /// Since when the link is down, and why.
    down: Option<(Instant, String)>,
}

/// A link to one instrument.
pub struct TcpLink<F: Framing> {
    name: String,
    address: String,
    timeout: Duration,
    connection: tokio::sync::Mutex<Option<(TcpStream, F)>>,
    login: Option<(Vec<u8>, LoginCheck<F::Message>)>,
    health: Mutex<Health>,
}

impl<F: Framing> TcpLink<F> {
    /// A link to the instrument `name` at `host:port`, waiting `timeout` for each reply.
    pub fn new(name: &str, address: &str, timeout: Duration) -> Self {
        Self {
            name: name.to_owned(),
            address: address.to_owned(),
            timeout,
            connection: tokio::sync::Mutex::new(None),
            login: None,
            health: Mutex::new(Health::default()),
        }
    }

    /// Sends `request` first on every new connection, and goes on only if `check` accepts the
    /// reply (a refused login fails the call that opened the connection).
    pub fn with_login(mut self, request: Vec<u8>, check: LoginCheck<F::Message>) -> Self {
        self.login = Some((request, check));
        self
    }

    /// The instrument's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replies so far that did not follow the protocol.
    pub fn protocol_errors(&self) -> u64 {
        self.health.lock().expect("health lock").protocol_errors
    }

    fn down(&self, why: String) -> DriverError {
        let mut health = self.health.lock().expect("health lock");
        let since = health.down.as_ref().map_or_else(Instant::now, |d| d.0);
        health.down = Some((since, why.clone()));
        DriverError::Offline {
            instrument: self.name.clone(),
            detail: why,
        }
    }

    fn protocol(&self, detail: String) -> DriverError {
        let mut health = self.health.lock().expect("health lock");
        health.protocol_errors += 1;
        health.last_protocol_error = Some(detail.clone());
        tracing::warn!(instrument = %self.name, %detail, "protocol error");
        DriverError::Protocol {
            instrument: self.name.clone(),
            detail,
        }
    }

    /// Counts a reply that framed well but says something impossible (a field out of range).
    pub fn protocol_error(&self, detail: String) -> DriverError {
        self.protocol(detail)
    }

    /// One request (`what` names it in messages) and its checked reply. Any failure but a
    /// refusal closes the connection.
    pub async fn call<T>(
        &self,
        what: &str,
        request: &[u8],
        check: impl Fn(F::Message) -> Result<Answer<T>, String>,
    ) -> Result<T, DriverError> {
        let mut guard = self.connection.lock().await;
        if guard.is_none() {
            let stream = self.connect().await?;
            let mut fresh = (stream, F::default());
            if let Some((login, accept)) = &self.login {
                match self.exchange(&mut fresh, "login", login, accept).await {
                    Ok(Answer::Reply(())) => {}
                    Ok(Answer::Refused(why)) => {
                        return Err(DriverError::Instrument {
                            instrument: self.name.clone(),
                            message: format!("login refused: {why}"),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            *guard = Some(fresh);
        }
        let connection = guard.as_mut().expect("connected above");
        match self.exchange(connection, what, request, check).await {
            Ok(Answer::Reply(value)) => {
                self.health.lock().expect("health lock").down = None;
                Ok(value)
            }
            Ok(Answer::Refused(why)) => {
                self.health.lock().expect("health lock").down = None;
                Err(DriverError::Instrument {
                    instrument: self.name.clone(),
                    message: format!("{what} refused: {why}"),
                })
            }
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }

    /// A request that changes nothing, tried on a second connection when the first fails.
    pub async fn query<T>(
        &self,
        what: &str,
        request: &[u8],
        check: impl Fn(F::Message) -> Result<Answer<T>, String>,
    ) -> Result<T, DriverError> {
        match self.call(what, request, &check).await {
            Err(
                DriverError::Offline { .. }
                | DriverError::Timeout { .. }
                | DriverError::Protocol { .. },
            ) => self.call(what, request, &check).await,
            other => other,
        }
    }

    async fn connect(&self) -> Result<TcpStream, DriverError> {
        let address = &self.address;
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(e)) => Err(self.down(format!("cannot connect to {address}: {e}"))),
            Err(_) => Err(self.down(format!(
                "cannot connect to {address}: no answer within {timeout:?}"
            ))),
        }
    }

    async fn exchange<T>(
        &self,
        (stream, framer): &mut (TcpStream, F),
        what: &str,
        request: &[u8],
        check: impl Fn(F::Message) -> Result<Answer<T>, String>,
    ) -> Result<Answer<T>, DriverError> {
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let address = &self.address;
        match tokio::time::timeout_at(deadline, stream.write_all(request)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.down(format!("writing to {address}: {e}"))),
            Err(_) => {
                return Err(self.down(format!("writing to {address}: blocked for {timeout:?}")));
            }
        }
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            if let Some(message) = framer.next_message() {
                let message = message.map_err(|e| self.protocol(e))?;
                return check(message).map_err(|e| self.protocol(format!("{what}: {e}")));
            }
            match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                Ok(Ok(0)) => {
                    return Err(self.down(format!(
                        "{address} closed the connection before replying to {what}"
                    )));
                }
                Ok(Ok(n)) => framer.push(&buffer[..n]),
                Ok(Err(e)) => return Err(self.down(format!("reading from {address}: {e}"))),
                Err(_) if framer.pending() > 0 => {
                    return Err(self.protocol(format!(
                        "{what}: the reply stopped after {} bytes (a truncated reply)",
                        framer.pending()
                    )));
                }
                Err(_) => {
                    let _ = self.down(format!(
                        "{address} did not reply to {what} within {timeout:?}"
                    ));
                    return Err(DriverError::Timeout {
                        instrument: self.name.clone(),
                        after: timeout,
                    });
                }
            }
        }
    }

    /// What is wrong with the link now: down since when and why, protocol errors so far.
    pub fn health(&self) -> Option<String> {
        let health = self.health.lock().expect("health lock");
        let down = health
            .down
            .as_ref()
            .map(|(since, why)| format!("offline for {:.0?}: {why}", since.elapsed()));
        let errors = (health.protocol_errors > 0).then(|| {
            format!(
                "{} protocol errors, the last: {}",
                health.protocol_errors,
                health.last_protocol_error.as_deref().unwrap_or("?")
            )
        });
        match (down, errors) {
            (None, None) => None,
            (Some(d), None) => Some(d),
            (None, Some(e)) => Some(e),
            (Some(d), Some(e)) => Some(format!("{d}; {e}")),
        }
    }
}
