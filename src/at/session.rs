//! `Session`: one AT command in flight over any `AsyncRead + AsyncWrite`.
//!
//! One task ([`Session::run`]) owns the port. Callers hold a cloneable [`SessionHandle`] that
//! sends a command with a oneshot reply over a bounded channel; URCs leave on their own bounded
//! channel at any moment, mid-response included, and never mix with replies. When the port
//! closes (EOF or an I/O error such as EIO after USB re-enumeration) the command in flight
//! fails with a typed error, `run` returns why, and the owner reopens the device.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use super::digest::{Digester, Item, Pending};
use super::{FinalResult, Urc};

/// Ctrl-Z ends the PDU after `> ` (TS 27.005 §3.5.1).
const CTRL_Z: u8 = 0x1a;
/// ESC aborts PDU entry, or cancels a prompt left open by a crashed run.
const ESC: u8 = 0x1b;
/// Routed messages (`+CMT`/`+CDS`) held while the URC channel is full. They exist nowhere but
/// in this stream, so they are never dropped; at this many the port is not read until the
/// consumer catches up.
pub const MAX_HELD_URCS: usize = 256;

/// Timing and sizing of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Quiet time after a final result before the next command (`[modem] command_gap`). None
    /// by default: the digester tells a URC from an answer wherever it falls, so a URC the
    /// modem held back and puts out after the final result is not lost. A modem that drops a
    /// command written while it is still putting out URCs wants ~100 ms (docs/at-sms.md §1.3).
    pub command_gap: Duration,
    /// How long `AT+CMGS=<n>` may wait for `> ` (it normally comes within ~100 ms).
    pub prompt_timeout: Duration,
    /// Quiet time after a timeout, so a late final result is not taken for the next answer.
    pub settle: Duration,
    /// How long to wait for `OK` after a `+CPIN:` answer: Wavecom sends none.
    pub cpin_grace: Duration,
    /// Capacity of the URC channel; see [`Session::run`] for what happens when it is full.
    pub urc_capacity: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            command_gap: Duration::ZERO,
            prompt_timeout: Duration::from_secs(5),
            settle: Duration::from_millis(500),
            cpin_grace: Duration::from_millis(300),
            urc_capacity: 256,
        }
    }
}

/// An AT command to run, with its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    text: String,
    pdu: Option<String>,
    timeout: Duration,
}

impl Command {
    /// Simple commands answer within a second or two; 10 s covers slow SIM reads.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// `+CMGS` waits for the network round trip: ModemManager allows 5 min, we default to 60 s.
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

    /// A command line such as `AT+CSQ`, sent with a trailing CR.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            pdu: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// `AT+CMGS=<tpdu_octets>`, then `pdu_hex` and Ctrl-Z after the prompt.
    pub fn send_pdu(tpdu_octets: usize, pdu_hex: impl Into<String>) -> Self {
        Self {
            text: format!("AT+CMGS={tpdu_octets}"),
            pdu: Some(pdu_hex.into()),
            timeout: Self::SEND_TIMEOUT,
        }
    }

    /// Overrides how long to wait for the final result.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line as written, without CR.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A command's answer: its information lines and its final result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Information lines, in order, without echo or URCs.
    pub info: Vec<String>,
    /// The final result code.
    pub result: FinalResult,
}

impl Response {
    /// The information lines when the result is OK, else the failing result.
    pub fn into_ok(self) -> Result<Vec<String>, FinalResult> {
        if self.result.is_ok() {
            Ok(self.info)
        } else {
            Err(self.result)
        }
    }

    /// The first information line starting with `prefix`.
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.info
            .iter()
            .map(String::as_str)
            .find(|line| line.starts_with(prefix))
    }
}

/// Why a command got no answer, or why the session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No final result before the deadline. For `AT+CMGS` after the PDU was written, the
    /// message may have gone out: treat the outcome as unknown.
    #[error("no answer to {command} within {waited:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// How long we waited.
        waited: Duration,
        /// Whether the PDU had been written (a send whose outcome is unknown).
        pdu_written: bool,
    },
    /// `AT+CMGS` got no `> ` prompt; ESC was written to abort it.
    #[error("no prompt after {command}")]
    NoPrompt {
        /// The command line.
        command: String,
    },
    /// The port reached end of file: the device is gone.
    #[error("serial port closed")]
    Closed,
    /// Reading or writing the port failed (EIO after USB re-enumeration, for one).
    #[error("serial port error: {0}")]
    Io(String),
    /// The session task is no longer running.
    #[error("AT session stopped")]
    Stopped,
}

struct Request {
    command: Command,
    reply: oneshot::Sender<Result<Response, SessionError>>,
}

/// A cloneable way to run commands on the session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("command", &self.command)
            .finish()
    }
}

impl SessionHandle {
    /// Runs one command and waits for its final result (or its deadline).
    pub async fn execute(&self, command: Command) -> Result<Response, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { command, reply })
            .await
            .map_err(|_| SessionError::Stopped)?;
        answer.await.unwrap_or(Err(SessionError::Stopped))
    }
}

/// The command being answered.
struct InFlight {
    command: Command,
    reply: oneshot::Sender<Result<Response, SessionError>>,
    info: Vec<String>,
    deadline: Instant,
    pdu_written: bool,
    /// Set after a `+CPIN:` answer: the deadline then ends the command with an implied OK.
    implied_ok: bool,
}

/// The task that owns the port. Create it with [`Session::new`] and spawn [`Session::run`].
pub struct Session<T> {
    io: T,
    config: SessionConfig,
    digester: Digester,
    requests: mpsc::Receiver<Request>,
    urcs: mpsc::Sender<Urc>,
    in_flight: Option<InFlight>,
    /// No new command before this instant (command gap, or settling after a timeout).
    quiet_until: Instant,
    dropped_urcs: u64,
    /// Message URCs that found the channel full: never dropped (a routed +CMT is acked).
    held_urcs: std::collections::VecDeque<Urc>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Session<T> {
    /// Wraps a port; returns the task, a handle for commands and the URC stream.
    pub fn new(io: T, config: SessionConfig) -> (Self, SessionHandle, mpsc::Receiver<Urc>) {
        let (requests_tx, requests_rx) = mpsc::channel(16);
        let (urcs_tx, urcs_rx) = mpsc::channel(config.urc_capacity.max(1));
        let session = Session {
            io,
            config,
            digester: Digester::new(),
            requests: requests_rx,
            urcs: urcs_tx,
            in_flight: None,
            quiet_until: Instant::now(),
            dropped_urcs: 0,
            held_urcs: std::collections::VecDeque::new(),
        };
        (
            session,
            SessionHandle {
                requests: requests_tx,
            },
            urcs_rx,
        )
    }

    /// Runs until the port closes or every handle is dropped, and says which.
    ///
    /// A full URC channel never blocks the port: blocking would stall the reply the URC
    /// consumer may itself be waiting for. The URC is dropped and counted instead; the
    /// owner's periodic `AT+CMGL` sweep picks up a message whose `+CMTI` was lost.
    pub async fn run(mut self) -> SessionError {
        let mut buffer = [0u8; 1024];
        loop {
            while let Some(item) = self.digester.next_item() {
                self.handle(item).await;
            }
            let deadline = self.in_flight.as_ref().map(|flight| flight.deadline);
            let idle = self.in_flight.is_none();
            let quiet = idle && Instant::now() < self.quiet_until;
            let holding = !self.held_urcs.is_empty();
            let urcs = self.urcs.clone();
            tokio::select! {
                permit = urcs.reserve(), if holding => {
                    if let (Ok(permit), Some(urc)) = (permit, self.held_urcs.pop_front()) {
                        permit.send(urc);
                    }
                }
                // At the cap, the port is not read until the consumer takes some: the bytes wait
                // in the tty and the modem, and memory stays bounded.
                read = self.io.read(&mut buffer), if self.held_urcs.len() < MAX_HELD_URCS => match read {
                    Ok(0) => return self.fail(SessionError::Closed),
                    Ok(n) => self.digester.push(&buffer[..n]),
                    Err(error) => return self.fail(SessionError::Io(error.to_string())),
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    if let Err(error) = self.on_deadline().await {
                        return self.fail(error);
                    }
                }
                () = sleep_until(self.quiet_until), if quiet => {}
                request = self.requests.recv(), if idle && !quiet => match request {
                    Some(request) => {
                        if let Err(error) = self.start(request).await {
                            return self.fail(error);
                        }
                    }
                    None => return SessionError::Stopped,
                },
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], limit: Duration) -> Result<(), SessionError> {
        let write = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        match timeout(limit.max(Duration::from_secs(1)), write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(SessionError::Io(error.to_string())),
            Err(_) => Err(SessionError::Io("write timed out".to_string())),
        }
    }

    async fn start(&mut self, request: Request) -> Result<(), SessionError> {
        let Request { command, reply } = request;
        log::debug!("→ {}", command.text);
        let mut line = command.text.clone().into_bytes();
        line.push(b'\r');
        self.write(&line, command.timeout).await?;
        let mut pending = Pending::new(&command.text);
        let wait = match &command.pdu {
            Some(pdu) => {
                pending = pending.with_pdu(pdu);
                self.config.prompt_timeout
            }
            None => command.timeout,
        };
        self.digester.set_pending(Some(pending));
        self.in_flight = Some(InFlight {
            command,
            reply,
            info: Vec::new(),
            deadline: Instant::now() + wait,
            pdu_written: false,
            implied_ok: false,
        });
        Ok(())
    }

    async fn handle(&mut self, item: Item) {
        match item {
            Item::Echo(line) => log::trace!("← (echo) {line}"),
            Item::Prompt => {
                log::debug!("← >");
                if let Err(error) = self.write_pdu().await {
                    self.finish(Err(error), self.config.settle);
                }
            }
            Item::Info(line) => {
                log::debug!("← {line}");
                let grace = self.config.cpin_grace;
                if let Some(flight) = self.in_flight.as_mut() {
                    if flight.command.text.eq_ignore_ascii_case("AT+CPIN?")
                        && line.starts_with("+CPIN:")
                    {
                        flight.implied_ok = true;
                        flight.deadline = flight.deadline.min(Instant::now() + grace);
                    }
                    flight.info.push(line);
                }
            }
            Item::Final(result) => {
                log::debug!("← {result}");
                let gap = self.config.command_gap;
                if let Some(flight) = self.in_flight.as_mut() {
                    let info = std::mem::take(&mut flight.info);
                    self.finish(Ok(Response { info, result }), gap);
                }
            }
            Item::Urc(urc) => {
                log::debug!("← (urc) {urc:?}");
                let urc = if self.held_urcs.is_empty() {
                    match self.urcs.try_send(urc) {
                        Err(mpsc::error::TrySendError::Full(urc)) => urc,
                        _ => return,
                    }
                } else {
                    urc
                };
                if matches!(urc, Urc::Message { .. } | Urc::StatusReport { .. }) {
                    self.held_urcs.push_back(urc);
                } else {
                    self.dropped_urcs += 1;
                    log::warn!(
                        "URC channel full, dropped {urc:?} ({} dropped so far)",
                        self.dropped_urcs
                    );
                }
            }
            Item::Unexpected(line) => log::debug!("← (unexpected) {line}"),
            Item::Overflow { discarded } => {
                log::warn!("skipped an over-long line from the modem ({discarded} bytes)")
            }
        }
    }

    async fn write_pdu(&mut self) -> Result<(), SessionError> {
        let Some(flight) = self.in_flight.as_ref() else {
            return Ok(());
        };
        let Some(pdu) = flight.command.pdu.clone() else {
            return Ok(());
        };
        if flight.pdu_written {
            return Ok(());
        }
        let limit = flight.command.timeout;
        log::debug!("→ {pdu}<^Z>");
        let mut bytes = pdu.into_bytes();
        bytes.push(CTRL_Z);
        self.write(&bytes, limit).await?;
        if let Some(flight) = self.in_flight.as_mut() {
            flight.pdu_written = true;
            flight.deadline = Instant::now() + flight.command.timeout;
        }
        Ok(())
    }

    async fn on_deadline(&mut self) -> Result<(), SessionError> {
        let Some(flight) = self.in_flight.as_mut() else {
            return Ok(());
        };
        if flight.implied_ok {
            let info = std::mem::take(&mut flight.info);
            let gap = self.config.command_gap;
            self.finish(
                Ok(Response {
                    info,
                    result: FinalResult::Ok,
                }),
                gap,
            );
            return Ok(());
        }
        let command = flight.command.text.clone();
        let error = if flight.command.pdu.is_some() && !flight.pdu_written {
            // gammu writes ESC when the prompt never came; the modem may answer OK, which the
            // settle time keeps from being read as the next command's answer.
            self.write(&[ESC], Command::DEFAULT_TIMEOUT).await?;
            SessionError::NoPrompt { command }
        } else {
            SessionError::Timeout {
                command,
                waited: flight.command.timeout,
                pdu_written: flight.pdu_written,
            }
        };
        log::warn!("{error}");
        let settle = self.config.settle;
        self.finish(Err(error), settle);
        Ok(())
    }

    fn finish(&mut self, outcome: Result<Response, SessionError>, quiet: Duration) {
        self.digester.set_pending(None);
        self.quiet_until = Instant::now() + quiet;
        if let Some(flight) = self.in_flight.take() {
            // The caller may have given up waiting; nothing is lost by not telling it.
            let _ = flight.reply.send(outcome);
        }
    }

    fn fail(mut self, error: SessionError) -> SessionError {
        log::warn!("AT session ends: {error}");
        // A PDU already written may have gone out: say so, or the caller resends it.
        let outcome = match self.in_flight.as_ref() {
            Some(flight) if flight.pdu_written => SessionError::Timeout {
                command: flight.command.text.clone(),
                waited: Duration::ZERO,
                pdu_written: true,
            },
            _ => error.clone(),
        };
        self.finish(Err(outcome), Duration::ZERO);
        while let Ok(request) = self.requests.try_recv() {
            let _ = request.reply.send(Err(error.clone()));
        }
        error
    }
}
