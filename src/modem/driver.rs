//! The driver task: the one owner of the serial device.
//!
//! [`Modem::start`] spawns it and returns a cloneable [`ModemHandle`] (requests with a oneshot
//! reply over a bounded channel) and a separate stream of [`ModemEvent`]s. The task opens the
//! port with tokio-serial, runs the init, then sleeps until something happens: a request, a URC,
//! the sweep or the health timer. When the modem stops answering or the device vanishes it
//! closes the port and reopens it with backoff, re-initialises and sweeps.
//!
//! Inbound messages are handed up with a [`Receipt`]; the message stays on the modem (or, when
//! routed directly with `+CSMS: 1`, unacknowledged) until the owner returns the receipt with
//! [`ModemHandle::confirm`] after storing the message durably.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use log::{debug, error, info, warn};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_serial::SerialPortBuilderExt;

use crate::at::parse::{SignalQuality, StorageUsage};
use crate::at::{
    CmsError, Command, FinalResult, Registration, RegistrationStatus, Response, Session,
    SessionConfig, SessionError, SessionHandle, Urc, parse,
};
use crate::pdu::{Pdu, PduError};

use super::classify::{SendFailure, Verdict};
use super::init::{Identity, InitError, InitSettings, InitStage, Setup, init_with_progress};
use super::send::interpret;
use super::storage::{self, StorageError, StoredMessage};

/// The `[modem]` settings the driver runs with.
#[derive(Debug, Clone)]
pub struct ModemSettings {
    /// The serial device, e.g. `/dev/serial/by-id/usb-HUAWEI…-if00-port0` or a PTY.
    pub device: PathBuf,
    /// Baud rate (USB modems ignore it; real UARTs do not).
    pub baud: u32,
    /// What the init sequence needs.
    pub init: InitSettings,
    /// How long `AT+CMGS` may wait for its answer after the PDU.
    pub send_timeout: Duration,
    /// How often to list the storage for messages whose URC was lost.
    pub sweep_interval: Duration,
    /// How often to read signal, registration, operator and storage usage.
    pub health_interval: Duration,
    /// A command that reboots the modem (e.g. `AT+CFUN=1,1`), sent after
    /// [`ModemSettings::reset_after`] consecutive failed start-ups.
    pub reset_command: Option<String>,
    /// Consecutive failed start-ups before `reset_command`.
    pub reset_after: u32,
    /// The first pause before reopening a vanished device; it doubles up to `reopen_max`.
    pub reopen_min: Duration,
    /// The longest pause between two attempts to open the device. Short, because a device
    /// that re-enumerates should be back in use within two seconds of reappearing.
    pub reopen_max: Duration,
    /// The longest pause between two init attempts on a modem that answers but cannot start
    /// (no network, no SMSC, SIM trouble).
    pub retry_max: Duration,
    /// A message handed up but not confirmed is handed up again by a sweep after this long
    /// (the owner may have failed to store it).
    pub redeliver_after: Duration,
    /// Session timing (command gap, settle time).
    pub session: SessionConfig,
}

impl ModemSettings {
    /// Defaults for a device.
    pub fn new(device: impl Into<PathBuf>) -> ModemSettings {
        ModemSettings {
            device: device.into(),
            baud: 115_200,
            init: InitSettings::default(),
            send_timeout: Command::SEND_TIMEOUT,
            sweep_interval: Duration::from_secs(300),
            health_interval: Duration::from_secs(60),
            reset_command: None,
            reset_after: 3,
            reopen_min: Duration::from_millis(100),
            reopen_max: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            redeliver_after: Duration::from_secs(600),
            session: SessionConfig::default(),
        }
    }
}

/// Where the driver is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Opening the device (attempt number).
    Opening(u32),
    /// Running the init sequence.
    Initialising(InitStage),
    /// Ready: sending and receiving.
    Ready,
    /// Waiting before the next attempt, with the reason.
    Waiting(String),
    /// Stopped for good until a person acts (wrong PIN, PUK): the reason.
    Failed(String),
    /// Shut down.
    Stopped,
}

/// Counters since the driver started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Parts accepted by the network (`+CMGS`).
    pub sent: u64,
    /// Sends that failed.
    pub send_failures: u64,
    /// Inbound messages and reports handed up.
    pub received: u64,
    /// Messages deleted (or acknowledged) after confirmation.
    pub confirmed: u64,
    /// Commands that got no answer.
    pub timeouts: u64,
    /// Times the port was reopened.
    pub reconnects: u64,
    /// `+CMTI`/`+CDSI` indexes that were already empty.
    pub stale_indexes: u64,
    /// Full re-inits after the modem rebooted under us.
    pub reinits: u64,
    /// Events and URCs dropped because a bounded queue was full (never an inbound message:
    /// those are left on the modem, or held, instead).
    pub dropped: u64,
}

/// Inbound messages waiting for the owner before the driver stops reading stored ones: the
/// rest stay on the SIM for a later sweep, so memory stays bounded whatever the burst.
pub const INBOUND_QUEUE_CAP: usize = 64;
/// Other events waiting for the owner (signal, registration…); more are dropped and counted.
pub const EVENT_QUEUE_CAP: usize = 64;
/// URCs kept while an init runs; more are dropped and counted (the sweep after the init finds
/// any message whose `+CMTI` went), except routed messages, which exist nowhere else.
pub const INIT_BACKLOG_CAP: usize = 256;

/// A snapshot of the modem for the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemStatus {
    /// The configured device.
    pub device: String,
    /// Where the driver is.
    pub state: LinkState,
    /// Who the modem is, once known.
    pub identity: Option<Identity>,
    /// The last registration seen.
    pub registration: Option<RegistrationStatus>,
    /// The operator name, when registered.
    pub operator: Option<String>,
    /// The last signal reading.
    pub signal: Option<SignalQuality>,
    /// Usage of the receive storage.
    pub storage: Option<StorageUsage>,
    /// The `AT+CNMI` in force.
    pub cnmi: Option<String>,
    /// When the current connection became ready.
    pub connected_since: Option<SystemTime>,
    /// The last error, kept until the next success.
    pub last_error: Option<String>,
    /// Counters.
    pub counters: Counters,
}

/// Where an inbound PDU came from, and so how it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Stored in a modem memory at an index (`+CMTI`, `+CDSI`, a sweep): deleted on confirm.
    Stored {
        /// The memory, e.g. `SM`, `SR`.
        storage: String,
        /// The index.
        index: u32,
    },
    /// Routed directly (`+CMT`, `+CDS`): acknowledged on confirm when `+CSMS: 1`.
    Routed,
}

/// What the owner hands back once an inbound message is stored durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    origin: Origin,
    hex: String,
    connection: u64,
    needs_ack: bool,
}

/// A message or status report from the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Where it came from.
    pub origin: Origin,
    /// The PDU hex, SMSC field first, as the modem gave it.
    pub hex: String,
    /// The decoded PDU, or why it does not decode (the hex is kept, nothing is dropped).
    pub pdu: Result<Pdu, PduError>,
    /// Return it with [`ModemHandle::confirm`] once the message is stored durably.
    pub receipt: Receipt,
}

/// What the driver tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum ModemEvent {
    /// The modem is initialised and ready.
    Connected(Setup),
    /// The connection was lost; the driver is reconnecting.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The init failed; the driver retries unless the state is [`LinkState::Failed`].
    InitFailed(InitError),
    /// Registered with a network (after start-up or after losing it).
    Registered(RegistrationStatus),
    /// Registration lost.
    RegistrationLost(RegistrationStatus),
    /// The signal changed noticeably.
    Signal(SignalQuality),
    /// The receive storage is over 80 % full.
    StorageAlmostFull(StorageUsage),
    /// An SMS-DELIVER or SMS-STATUS-REPORT (or an undecodable PDU).
    Inbound(Inbound),
}

/// Why the driver cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModemError {
    /// The driver task has stopped.
    #[error("the modem driver has stopped")]
    Stopped,
}

enum Request {
    Send {
        cmgs_length: usize,
        hex: String,
        reply: oneshot::Sender<Result<u8, SendFailure>>,
    },
    Confirm(Receipt),
    Sweep(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<()>),
}

/// The cloneable way to use the modem.
#[derive(Debug, Clone)]
pub struct ModemHandle {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<ModemStatus>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Send { cmgs_length, .. } => write!(f, "Send({cmgs_length})"),
            Request::Confirm(receipt) => write!(f, "Confirm({:?})", receipt.origin),
            Request::Sweep(_) => f.write_str("Sweep"),
            Request::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

impl ModemHandle {
    /// Submits one part and returns its TP-MR, or a classified failure. While the modem is
    /// not ready the failure is temporary: try again after [`ModemEvent::Connected`].
    pub async fn send(&self, cmgs_length: usize, hex: &str) -> Result<u8, SendFailure> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Send {
            cmgs_length,
            hex: hex.to_string(),
            reply,
        };
        let stopped = || SendFailure {
            verdict: Verdict::Temporary,
            code: None,
            text: ModemError::Stopped.to_string(),
        };
        self.requests.send(request).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Says an inbound message is stored durably: the driver deletes it from the modem (or
    /// acknowledges it). Returns once the request is queued.
    pub async fn confirm(&self, receipt: Receipt) -> Result<(), ModemError> {
        self.requests
            .send(Request::Confirm(receipt))
            .await
            .map_err(|_| ModemError::Stopped)
    }

    /// Lists the storage now; returns how many messages were handed up.
    pub async fn sweep(&self) -> Result<usize, ModemError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Sweep(reply))
            .await
            .map_err(|_| ModemError::Stopped)?;
        answer.await.map_err(|_| ModemError::Stopped)
    }

    /// The current status snapshot.
    pub fn status(&self) -> ModemStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<ModemStatus> {
        self.status.clone()
    }

    /// Stops the driver after the command in flight and closes the port.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(Request::Shutdown(reply)).await.is_ok() {
            let _ = answer.await;
        }
    }
}

/// The running driver.
#[derive(Debug)]
pub struct Modem {
    /// Requests and status.
    pub handle: ModemHandle,
    /// The event stream (bounded; the driver queues rather than blocks when it is full).
    pub events: mpsc::Receiver<ModemEvent>,
    /// The task; it ends after [`ModemHandle::shutdown`] or when every handle is dropped.
    pub task: JoinHandle<()>,
}

impl Modem {
    /// Spawns the driver on the current tokio runtime.
    pub fn start(settings: ModemSettings) -> Modem {
        let (requests_tx, requests_rx) = mpsc::channel(32);
        let (events_tx, events_rx) = mpsc::channel(256);
        let (status_tx, status_rx) = watch::channel(ModemStatus {
            device: settings.device.display().to_string(),
            state: LinkState::Opening(1),
            identity: None,
            registration: None,
            operator: None,
            signal: None,
            storage: None,
            cnmi: None,
            connected_since: None,
            last_error: None,
            counters: Counters::default(),
        });
        let driver = Driver {
            settings,
            requests: requests_rx,
            events: events_tx,
            status: status_tx,
            queued_events: VecDeque::new(),
            handed_up: HashMap::new(),
            deferred_confirms: Vec::new(),
            connection: 0,
            recently_deleted: VecDeque::new(),
        };
        Modem {
            handle: ModemHandle {
                requests: requests_tx,
                status: status_rx,
            },
            events: events_rx,
            task: tokio::spawn(driver.run()),
        }
    }
}

/// How a connection ended.
enum End {
    /// Reopen the port.
    Lost(String),
    /// Stop the driver.
    Shutdown(Option<oneshot::Sender<()>>),
}

/// How soon a sweep follows a failed read of an indicated message.
const EARLY_SWEEP: Duration = Duration::from_secs(2);

/// An open port with its session.
struct Link {
    handle: SessionHandle,
    urcs: mpsc::Receiver<Urc>,
    task: JoinHandle<SessionError>,
    setup: Option<Setup>,
    /// The memory `AT+CMGR`/`AT+CMGL`/`AT+CMGD` act on (mem1).
    mem1: String,
    consecutive_timeouts: u32,
    storage_warned: bool,
    /// URCs taken off the channel during a re-init, handled next.
    backlog: VecDeque<Urc>,
    /// A read after `+CMTI`/`+CDSI` failed (a flaky `+CMS ERROR: 500`, a timeout): the message is
    /// still on the modem, so the next sweep comes soon instead of after `sweep_interval`.
    early_sweep: bool,
}

impl Link {
    async fn close(self) {
        drop(self.handle);
        self.task.abort();
        // Waiting makes sure the port is closed before it is opened again.
        let _ = self.task.await;
    }
}

struct Driver {
    settings: ModemSettings,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<ModemEvent>,
    status: watch::Sender<ModemStatus>,
    /// Events waiting for room in the channel: the driver never blocks on its owner, who may
    /// be waiting on the driver.
    queued_events: VecDeque<ModemEvent>,
    /// Stored messages handed up and not yet confirmed: (memory, index) → (hex, when).
    handed_up: HashMap<(String, u32), (String, Instant)>,
    /// Confirmations that came while the port was closed.
    deferred_confirms: Vec<Receipt>,
    /// Increases with every connection, so a receipt from an older one is checked first.
    connection: u64,
    /// Indexes we deleted lately: a `+CMTI` for one of them that raced the delete finds it
    /// empty, which is expected, not a stale index.
    recently_deleted: VecDeque<((String, u32), Instant)>,
}

/// Ready to stop serving a connection?
type Step = Result<(), End>;

impl Driver {
    async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let link = match self.connect(&mut failures).await {
                Ok(link) => link,
                Err(shutdown) => return self.stop(shutdown),
            };
            failures = 0;
            match self.serve(link).await {
                End::Lost(reason) => {
                    warn!("modem: connection lost: {reason}");
                    self.update(|status| {
                        status.last_error = Some(reason.clone());
                        status.connected_since = None;
                        status.counters.reconnects += 1;
                    });
                    self.emit(ModemEvent::Disconnected { reason });
                }
                End::Shutdown(reply) => return self.stop(reply),
            }
        }
    }

    fn stop(&mut self, reply: Option<oneshot::Sender<()>>) {
        info!("modem: driver stopped");
        self.update(|status| status.state = LinkState::Stopped);
        // Events still queued go out if there is room; the owner is shutting down too.
        while let Some(event) = self.queued_events.pop_front() {
            if self.events.try_send(event).is_err() {
                break;
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    fn update(&self, change: impl FnOnce(&mut ModemStatus)) {
        self.status.send_modify(change);
    }

    fn emit(&mut self, event: ModemEvent) {
        self.flush_events();
        let inbound = matches!(event, ModemEvent::Inbound(_));
        let others = self.queued_events.len() - self.queued_inbound();
        if !inbound && others >= EVENT_QUEUE_CAP {
            // The owner is far behind; a stale signal or registration change is not worth
            // unbounded memory. Inbound messages are never dropped here.
            self.update(|status| status.counters.dropped += 1);
            debug!("modem: event queue full; dropped {event:?}");
            return;
        }
        self.queued_events.push_back(event);
        self.flush_events();
    }

    /// Inbound messages handed up and not yet taken by the owner.
    fn queued_inbound(&self) -> usize {
        self.queued_events
            .iter()
            .filter(|event| matches!(event, ModemEvent::Inbound(_)))
            .count()
    }

    /// Whether reading more stored messages would only grow the queue: they stay on the
    /// modem until the owner catches up (a later sweep takes them).
    fn inbound_backlog_full(&self) -> bool {
        self.queued_inbound() >= INBOUND_QUEUE_CAP
    }

    fn flush_events(&mut self) {
        while let Some(event) = self.queued_events.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.queued_events.push_front(event);
                    return;
                }
                // Nobody listens: nothing to keep them for.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.queued_events.clear();
                    return;
                }
            }
        }
    }

    // ---- connecting --------------------------------------------------------------------

    /// Opens the device and runs the init, retrying with backoff, until ready or shut down.
    async fn connect(&mut self, failures: &mut u32) -> Result<Link, Option<oneshot::Sender<()>>> {
        let mut open_attempt = 0u32;
        loop {
            open_attempt += 1;
            self.update(|status| status.state = LinkState::Opening(open_attempt));
            let port =
                tokio_serial::new(self.settings.device.to_string_lossy(), self.settings.baud)
                    .timeout(Duration::from_secs(1))
                    .open_native_async();
            let port = match port {
                Ok(port) => port,
                Err(error) => {
                    if open_attempt == 1 || open_attempt % 60 == 0 {
                        warn!(
                            "modem: cannot open {}: {error}{}; retrying",
                            self.settings.device.display(),
                            open_hint(&error)
                        );
                    }
                    let pause = backoff(
                        self.settings.reopen_min,
                        self.settings.reopen_max,
                        open_attempt,
                    );
                    self.wait_serving(pause, format!("cannot open the device: {error}"))
                        .await?;
                    continue;
                }
            };
            open_attempt = 0;
            let (session, handle, urcs) = Session::new(port, self.settings.session.clone());
            let mut link = Link {
                handle,
                urcs,
                task: tokio::spawn(session.run()),
                setup: None,
                mem1: self.settings.init.storage.clone(),
                consecutive_timeouts: 0,
                storage_warned: false,
                backlog: VecDeque::new(),
                early_sweep: false,
            };
            match self.initialise(&mut link).await? {
                Ok(()) => return Ok(link),
                Err(error) => {
                    *failures += 1;
                    let permanent = matches!(
                        error,
                        InitError::WrongPin(_)
                            | InitError::PinWithheld { .. }
                            | InitError::PukRequired
                            | InitError::PinRequired
                    );
                    error!("modem: start-up failed: {error}");
                    self.emit(ModemEvent::InitFailed(error.clone()));
                    if permanent {
                        link.close().await;
                        let reason = error.to_string();
                        self.update(|status| {
                            status.state = LinkState::Failed(reason.clone());
                            status.last_error = Some(reason);
                        });
                        return Err(self.serve_failed().await);
                    }
                    let reset = self.settings.reset_command.clone().filter(|_| {
                        *failures >= self.settings.reset_after
                            && !matches!(error, InitError::Session(_))
                    });
                    if let Some(command) = reset {
                        warn!("modem: {failures} failed start-ups; sending {command}");
                        let _ = link
                            .handle
                            .execute(Command::new(&command).with_timeout(Duration::from_secs(5)))
                            .await;
                        *failures = 0;
                    }
                    link.close().await;
                    let pause = match error {
                        // The device went away or stopped answering: reopen soon (closing
                        // the port is what revives some deaf modems).
                        InitError::Session(_) | InitError::NoResponse => self.settings.reopen_max,
                        _ => backoff(Duration::from_secs(1), self.settings.retry_max, *failures),
                    };
                    self.wait_serving(pause, error.to_string()).await?;
                }
            }
        }
    }

    /// The init sequence, serving requests meanwhile (sends are refused as not ready).
    async fn initialise(
        &mut self,
        link: &mut Link,
    ) -> Result<Result<(), InitError>, Option<oneshot::Sender<()>>> {
        let status = self.status.clone();
        let progress = move |stage: InitStage| {
            status.send_modify(|status| status.state = LinkState::Initialising(stage));
        };
        let handle = link.handle.clone();
        let settings = self.settings.init.clone();
        let init = init_with_progress(&handle, &settings, &progress);
        tokio::pin!(init);
        let result = loop {
            tokio::select! {
                result = &mut init => break result,
                request = self.requests.recv() => {
                    if let Some(shutdown) = self.refuse(request) {
                        return Err(shutdown);
                    }
                }
                // Keep the URC channel from filling during a long wait for the network;
                // banners and SIM states belong to the boot this init handles.
                Some(urc) = link.urcs.recv() => self.keep_for_later(link, urc),
            }
        };
        let setup = match result {
            Ok(setup) => setup,
            Err(error) => return Ok(Err(error)),
        };
        // Banners and SIM states that came during the init belong to the boot it handled.
        while let Ok(urc) = link.urcs.try_recv() {
            self.keep_for_later(link, urc);
        }
        self.connection += 1;
        link.mem1 = self.settings.init.storage.clone();
        info!(
            "modem: ready ({} {}, CNMI {}, CSMS {})",
            setup.identity.manufacturer, setup.identity.model, setup.cnmi, setup.csms
        );
        self.update(|status| {
            status.state = LinkState::Ready;
            status.identity = Some(setup.identity.clone());
            status.registration = Some(setup.registration);
            status.cnmi = Some(setup.cnmi.clone());
            status.connected_since = Some(SystemTime::now());
            status.last_error = None;
        });
        link.setup = Some(setup.clone());
        self.emit(ModemEvent::Connected(setup.clone()));
        self.emit(ModemEvent::Registered(setup.registration));
        Ok(Ok(()))
    }

    /// Keeps a URC that came during an init for after it, within [`INIT_BACKLOG_CAP`]. Banners
    /// and SIM states belong to the boot the init handles and are not kept.
    fn keep_for_later(&mut self, link: &mut Link, urc: Urc) {
        if matches!(urc, Urc::Boot(_) | Urc::SimState(_)) {
            return;
        }
        let routed = matches!(urc, Urc::Message { .. } | Urc::StatusReport { .. });
        if link.backlog.len() >= INIT_BACKLOG_CAP && !routed {
            self.update(|status| status.counters.dropped += 1);
            debug!("modem: init backlog full; dropped {urc:?}");
            return;
        }
        link.backlog.push_back(urc);
    }

    /// Answers a request while there is no usable connection. Returns the shutdown reply
    /// channel when asked to stop.
    fn refuse(&mut self, request: Option<Request>) -> Option<Option<oneshot::Sender<()>>> {
        match request {
            None => Some(None),
            Some(Request::Shutdown(reply)) => Some(Some(reply)),
            Some(Request::Send { reply, .. }) => {
                let state = format!("{:?}", self.status.borrow().state);
                let _ = reply.send(Err(SendFailure {
                    verdict: Verdict::Temporary,
                    code: None,
                    text: format!("the modem is not ready ({state})"),
                }));
                None
            }
            Some(Request::Confirm(receipt)) => {
                self.deferred_confirms.push(receipt);
                None
            }
            Some(Request::Sweep(reply)) => {
                let _ = reply.send(0);
                None
            }
        }
    }

    /// Sleeps `pause`, serving requests, unless told to stop.
    async fn wait_serving(
        &mut self,
        pause: Duration,
        reason: String,
    ) -> Result<(), Option<oneshot::Sender<()>>> {
        self.update(|status| {
            status.state = LinkState::Waiting(reason.clone());
            status.last_error = Some(reason);
        });
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                () = sleep_until(until) => return Ok(()),
                request = self.requests.recv() => {
                    if let Some(shutdown) = self.refuse(request) {
                        return Err(shutdown);
                    }
                }
            }
        }
    }

    /// After a permanent failure: refuse everything until shut down.
    async fn serve_failed(&mut self) -> Option<oneshot::Sender<()>> {
        loop {
            let request = self.requests.recv().await;
            if let Some(shutdown) = self.refuse(request) {
                return shutdown;
            }
        }
    }

    // ---- serving -----------------------------------------------------------------------

    async fn serve(&mut self, mut link: Link) -> End {
        let deferred = std::mem::take(&mut self.deferred_confirms);
        for receipt in deferred {
            if let Err(end) = self.confirm(&mut link, receipt).await {
                return self.end(link, end).await;
            }
        }
        if let Err(end) = self.sweep(&mut link).await {
            return self.end(link, end).await;
        }
        if let Err(end) = self.health(&mut link).await {
            return self.end(link, end).await;
        }
        let mut next_sweep = Instant::now() + self.settings.sweep_interval;
        let mut next_health = Instant::now() + self.settings.health_interval;
        loop {
            if !self.deferred_confirms.is_empty() {
                let deferred = std::mem::take(&mut self.deferred_confirms);
                for receipt in deferred {
                    if let Err(end) = self.confirm(&mut link, receipt).await {
                        return self.end(link, end).await;
                    }
                }
                continue;
            }
            if let Some(urc) = link.backlog.pop_front() {
                if let Err(end) = self.on_urc(&mut link, urc).await {
                    return self.end(link, end).await;
                }
                continue;
            }
            if std::mem::take(&mut link.early_sweep) {
                next_sweep = next_sweep.min(Instant::now() + EARLY_SWEEP);
            }
            self.flush_events();
            let waiting = !self.queued_events.is_empty();
            let events = self.events.clone();
            let step: Step = tokio::select! {
                request = self.requests.recv() => self.on_request(&mut link, request).await,
                urc = link.urcs.recv() => match urc {
                    Some(urc) => self.on_urc(&mut link, urc).await,
                    None => Err(End::Lost("the serial session ended".into())),
                },
                () = sleep_until(next_sweep) => {
                    next_sweep = Instant::now() + self.settings.sweep_interval;
                    self.sweep(&mut link).await.map(|_| ())
                }
                () = sleep_until(next_health) => {
                    next_health = Instant::now() + self.settings.health_interval;
                    self.health(&mut link).await
                }
                // Wakes when the owner makes room for a queued event.
                permit = events.reserve(), if waiting => {
                    if let (Ok(permit), Some(event)) = (permit, self.queued_events.pop_front()) {
                        permit.send(event);
                    }
                    Ok(())
                }
            };
            if let Err(end) = step {
                return self.end(link, end).await;
            }
        }
    }

    async fn end(&mut self, link: Link, end: End) -> End {
        let end = match end {
            // The session task knows best why it ended (EOF, EIO).
            End::Lost(reason) if link.task.is_finished() => {
                let Link { task, .. } = link;
                match task.await {
                    Ok(error) => End::Lost(error.to_string()),
                    Err(_) => End::Lost(reason),
                }
            }
            other => {
                link.close().await;
                other
            }
        };
        self.update(|status| {
            if !matches!(status.state, LinkState::Stopped) {
                status.state = LinkState::Waiting("reconnecting".into());
            }
        });
        end
    }

    /// Runs a command, turning session failures into recovery: a timeout resyncs, repeated
    /// timeouts or a closed port end the connection.
    async fn execute(&mut self, link: &mut Link, command: Command) -> Result<Response, End> {
        let outcome = link.handle.execute(command).await;
        self.check(link, outcome).await
    }

    async fn check(
        &mut self,
        link: &mut Link,
        outcome: Result<Response, SessionError>,
    ) -> Result<Response, End> {
        match outcome {
            Ok(response) => {
                link.consecutive_timeouts = 0;
                Ok(response)
            }
            Err(SessionError::Timeout { command, .. } | SessionError::NoPrompt { command }) => {
                self.update(|status| status.counters.timeouts += 1);
                link.consecutive_timeouts += 1;
                warn!("modem: no answer to {command}; resynchronising");
                if link.consecutive_timeouts >= 3 || !resync(link).await {
                    return Err(End::Lost(format!(
                        "the modem stopped answering ({command} timed out)"
                    )));
                }
                // The modem answers again; the command that got no answer counts as refused.
                Ok(Response {
                    info: Vec::new(),
                    result: FinalResult::Error,
                })
            }
            Err(error) => Err(End::Lost(error.to_string())),
        }
    }

    async fn on_request(&mut self, link: &mut Link, request: Option<Request>) -> Step {
        match request {
            None => Err(End::Shutdown(None)),
            Some(Request::Shutdown(reply)) => Err(End::Shutdown(Some(reply))),
            Some(Request::Send {
                cmgs_length,
                hex,
                reply,
            }) => {
                let command =
                    Command::send_pdu(cmgs_length, hex).with_timeout(self.settings.send_timeout);
                let outcome = link.handle.execute(command).await;
                let result = interpret(&outcome);
                match &result {
                    Ok(reference) => {
                        debug!("modem: part accepted, TP-MR {reference}");
                        self.update(|status| status.counters.sent += 1);
                    }
                    Err(failure) => {
                        warn!("modem: send failed: {failure} ({:?})", failure.verdict);
                        self.update(|status| status.counters.send_failures += 1);
                    }
                }
                let _ = reply.send(result.clone());
                // A full store blocks sending on some modems: clear it.
                if let Err(SendFailure {
                    code: Some(322), ..
                }) = result
                {
                    self.sweep(link).await?;
                }
                if let Err(SessionError::Timeout { .. } | SessionError::NoPrompt { .. }) = &outcome
                {
                    self.check(link, outcome).await?;
                } else if let Err(error) = outcome {
                    return Err(End::Lost(error.to_string()));
                } else {
                    link.consecutive_timeouts = 0;
                }
                Ok(())
            }
            Some(Request::Confirm(receipt)) => self.confirm(link, receipt).await,
            Some(Request::Sweep(reply)) => {
                let found = self.sweep(link).await?;
                let _ = reply.send(found);
                Ok(())
            }
        }
    }

    async fn on_urc(&mut self, link: &mut Link, urc: Urc) -> Step {
        match urc {
            Urc::MessageStored { storage, index } | Urc::StatusReportStored { storage, index } => {
                self.read_index(link, &storage, index).await
            }
            Urc::Message { pdu, .. } | Urc::StatusReport { pdu, .. } => {
                let needs_ack = link.setup.as_ref().is_some_and(|setup| setup.csms == 1);
                self.hand_up(Origin::Routed, pdu, needs_ack);
                Ok(())
            }
            Urc::Registration(registration) => {
                self.on_registration(&registration);
                Ok(())
            }
            Urc::Boot(banner) => {
                warn!("modem: boot banner {banner:?} mid-session: the modem rebooted");
                self.reinit(link).await
            }
            Urc::SimState(state) => {
                warn!("modem: the SIM reports {state:?} unasked: the modem rebooted");
                self.reinit(link).await
            }
            Urc::CellBroadcast { pdu } => {
                debug!("modem: cell broadcast ignored: {pdu}");
                Ok(())
            }
            Urc::Ring | Urc::CallerId(_) => {
                debug!("modem: incoming call ignored");
                Ok(())
            }
            Urc::Noise(line) => {
                debug!("modem: {line}");
                Ok(())
            }
            Urc::Malformed(line) => {
                warn!("modem: malformed unsolicited line: {line:?}");
                Ok(())
            }
        }
    }

    /// The modem rebooted: run the whole init again on the same port, then sweep.
    async fn reinit(&mut self, link: &mut Link) -> Step {
        self.update(|status| status.counters.reinits += 1);
        match self.initialise(link).await {
            Err(shutdown) => Err(End::Shutdown(shutdown)),
            Ok(Err(error)) => Err(End::Lost(format!("re-init after a reboot failed: {error}"))),
            Ok(Ok(())) => {
                for receipt in std::mem::take(&mut self.deferred_confirms) {
                    self.confirm(link, receipt).await?;
                }
                self.sweep(link).await.map(|_| ())
            }
        }
    }

    fn on_registration(&mut self, registration: &Registration) {
        let previous = self.status.borrow().registration;
        let now = registration.status;
        self.update(|status| status.registration = Some(now));
        let was = previous.is_some_and(RegistrationStatus::is_registered);
        if was && !now.is_registered() {
            warn!("modem: registration lost ({now:?})");
            self.emit(ModemEvent::RegistrationLost(now));
        } else if !was && now.is_registered() {
            info!("modem: registered ({now:?})");
            self.emit(ModemEvent::Registered(now));
        }
    }

    async fn select_memory(&mut self, link: &mut Link, memory: &str) -> Result<bool, End> {
        if link.mem1.eq_ignore_ascii_case(memory) {
            return Ok(true);
        }
        let response = self
            .execute(link, Command::new(format!("AT+CPMS=\"{memory}\"")))
            .await?;
        if response.result.is_ok() {
            link.mem1 = memory.to_string();
            Ok(true)
        } else {
            // Refused, or timed out and perhaps applied late: mem1 is unknown now.
            link.mem1.clear();
            warn!("modem: cannot select memory {memory}: {}", response.result);
            Ok(false)
        }
    }

    async fn read_index(&mut self, link: &mut Link, memory: &str, index: u32) -> Step {
        if self.inbound_backlog_full() {
            // Left on the modem: the sweep after the owner catches up reads it.
            debug!("modem: {memory} {index} left on the modem until the queue drains");
            link.early_sweep = true;
            return Ok(());
        }
        if !self.select_memory(link, memory).await? {
            return Ok(());
        }
        // Handed up and not yet confirmed: only we delete, so the index still holds the same
        // message (a `+CMTI` that raced the sweep). No need to read it again.
        if self.handed_up.contains_key(&(link.mem1.clone(), index)) {
            return Ok(());
        }
        let outcome = storage::read(&link.handle, index).await;
        match outcome {
            Ok(message) => {
                link.consecutive_timeouts = 0;
                let key = (link.mem1.clone(), index);
                if self
                    .handed_up
                    .get(&key)
                    .is_some_and(|(hex, _)| *hex == message.hex)
                {
                    return Ok(());
                }
                self.hand_up_stored(link, &link.mem1.clone(), message).await
            }
            Err(StorageError::StaleIndex(index)) => {
                let key = (link.mem1.clone(), index);
                let ours = self
                    .recently_deleted
                    .iter()
                    .any(|(deleted, at)| *deleted == key && at.elapsed() < Duration::from_secs(60));
                if ours {
                    debug!("modem: {memory} {index} was ours and is deleted already");
                    return Ok(());
                }
                // Never retried: a stale index read again is the loop gammu users hit.
                warn!("modem: index {index} in {memory} is empty or stale; skipped");
                self.update(|status| status.counters.stale_indexes += 1);
                link.consecutive_timeouts = 0;
                Ok(())
            }
            Err(StorageError::Refused { command, result }) => {
                warn!(
                    "modem: {command} refused: {result}; sweeping again in {} s",
                    EARLY_SWEEP.as_secs()
                );
                link.early_sweep = true;
                Ok(())
            }
            Err(StorageError::Session(error)) => {
                link.early_sweep = true;
                self.check(link, Err(error)).await.map(|_| ())
            }
        }
    }

    /// Hands up a message read from `memory` (the selected mem1). One that does not decode
    /// is read once more first: a garbled serial read differs the second time, a damaged PDU
    /// does not, and only then is it handed up as undecodable.
    async fn hand_up_stored(
        &mut self,
        link: &mut Link,
        memory: &str,
        mut message: StoredMessage,
    ) -> Step {
        if message.hex.is_empty() {
            // A header without its PDU line (a damaged listing): nothing to store, and a
            // confirm would delete the message. Left for the next read.
            warn!(
                "modem: {memory} {} listed without a PDU; left on the modem",
                message.index
            );
            return Ok(());
        }
        if message.pdu.is_err() {
            match storage::read(&link.handle, message.index).await {
                Ok(again) if again.pdu.is_ok() => {
                    info!(
                        "modem: {memory} {} decodes when read again (the first read was garbled)",
                        message.index
                    );
                    message = again;
                }
                Ok(again) if !again.hex.is_empty() => message = again,
                Ok(_) | Err(StorageError::Refused { .. }) => {}
                Err(StorageError::StaleIndex(_)) => return Ok(()),
                Err(StorageError::Session(error)) => {
                    link.early_sweep = true;
                    return self.check(link, Err(error)).await.map(|_| ());
                }
            }
        }
        let key = (memory.to_string(), message.index);
        self.handed_up
            .insert(key, (message.hex.clone(), Instant::now()));
        let origin = Origin::Stored {
            storage: memory.to_string(),
            index: message.index,
        };
        self.push_inbound(origin, message.hex, message.pdu, false);
        Ok(())
    }

    fn hand_up(&mut self, origin: Origin, hex: String, needs_ack: bool) {
        let hex = hex.trim().to_string();
        let pdu = Pdu::from_hex(&hex);
        if let Err(error) = &pdu {
            warn!("modem: a routed PDU does not decode ({error}): {hex}");
        }
        self.push_inbound(origin, hex, pdu, needs_ack);
    }

    fn push_inbound(
        &mut self,
        origin: Origin,
        hex: String,
        pdu: Result<Pdu, PduError>,
        needs_ack: bool,
    ) {
        self.update(|status| status.counters.received += 1);
        let receipt = Receipt {
            origin: origin.clone(),
            hex: hex.clone(),
            connection: self.connection,
            needs_ack,
        };
        self.emit(ModemEvent::Inbound(Inbound {
            origin,
            hex,
            pdu,
            receipt,
        }));
    }

    async fn confirm(&mut self, link: &mut Link, receipt: Receipt) -> Step {
        match &receipt.origin {
            Origin::Routed => {
                if receipt.needs_ack && receipt.connection == self.connection {
                    let response = self.execute(link, Command::new("AT+CNMA")).await?;
                    match response.result {
                        FinalResult::Ok => {}
                        // 340: no acknowledgement was expected (the ME acked it itself).
                        FinalResult::CmsError(CmsError::Other(340)) => {}
                        other => warn!("modem: AT+CNMA answered {other}"),
                    }
                }
                self.update(|status| status.counters.confirmed += 1);
                Ok(())
            }
            Origin::Stored { storage, index } => {
                let (storage, index) = (storage.clone(), *index);
                let known = self
                    .handed_up
                    .remove(&(storage.clone(), index))
                    .is_some_and(|(hex, _)| hex == receipt.hex);
                if !self.select_memory(link, &storage).await? {
                    return Ok(()); // kept; the next sweep hands it up again
                }
                if !known || receipt.connection != self.connection {
                    // The modem may have rebooted and reused the index: delete only what
                    // was handed up.
                    match storage::read(&link.handle, index).await {
                        Ok(message) if message.hex == receipt.hex => {}
                        Ok(_) | Err(StorageError::StaleIndex(_)) => {
                            debug!("modem: {storage} {index} changed since it was read; kept");
                            return Ok(());
                        }
                        Err(StorageError::Refused { .. }) => return Ok(()),
                        Err(StorageError::Session(error)) => {
                            self.deferred_confirms.push(receipt.clone());
                            return self.check(link, Err(error)).await.map(|_| ());
                        }
                    }
                }
                match storage::delete(&link.handle, index).await {
                    Ok(()) | Err(StorageError::StaleIndex(_)) => {
                        if self.recently_deleted.len() >= 64 {
                            self.recently_deleted.pop_front();
                        }
                        self.recently_deleted
                            .push_back(((storage.clone(), index), Instant::now()));
                        self.update(|status| status.counters.confirmed += 1);
                        Ok(())
                    }
                    Err(StorageError::Refused { command, result }) => {
                        warn!("modem: {command} refused: {result}");
                        Ok(())
                    }
                    Err(StorageError::Session(error)) => {
                        self.deferred_confirms.push(receipt.clone());
                        self.check(link, Err(error)).await.map(|_| ())
                    }
                }
            }
        }
    }

    /// Lists the receive storage (and the report storage the modem has) and hands up what
    /// has not been handed up, or was handed up long ago and never confirmed.
    async fn sweep(&mut self, link: &mut Link) -> Result<usize, End> {
        let mut memories = vec![self.settings.init.storage.clone()];
        let reports_stored = link
            .setup
            .as_ref()
            .is_some_and(|setup| setup.cnmi.split(',').nth(3) == Some("2"));
        let has_sr = link
            .setup
            .as_ref()
            .is_some_and(|setup| setup.memories.iter().any(|m| m == "SR"));
        if reports_stored && has_sr && !memories.iter().any(|m| m == "SR") {
            memories.push("SR".into());
        }
        let mut found = 0;
        for memory in memories {
            if !self.select_memory(link, &memory).await? {
                continue;
            }
            let listed = match storage::list(&link.handle).await {
                Ok(listed) => listed,
                Err(StorageError::Session(error)) => {
                    self.check(link, Err(error)).await?;
                    continue;
                }
                Err(error) => {
                    warn!("modem: sweep of {memory} failed: {error}");
                    continue;
                }
            };
            link.consecutive_timeouts = 0;
            // Forget what is no longer there (deleted by us or by someone else).
            self.handed_up.retain(|(stored_in, index), _| {
                stored_in != &memory || listed.iter().any(|message| message.index == *index)
            });
            for message in listed {
                // 2 and 3 are outgoing messages someone stored; not ours to take.
                if message.stat > 1 {
                    continue;
                }
                let key = (memory.clone(), message.index);
                let recent = self.handed_up.get(&key).is_some_and(|(hex, when)| {
                    *hex == message.hex && when.elapsed() < self.settings.redeliver_after
                });
                if recent {
                    continue;
                }
                if self.inbound_backlog_full() {
                    // The rest stay on the modem for the next sweep.
                    link.early_sweep = true;
                    break;
                }
                found += 1;
                self.hand_up_stored(link, &memory, message).await?;
            }
        }
        if found > 0 {
            info!("modem: sweep found {found} message(s)");
        }
        Ok(found)
    }

    /// Signal, registration, operator, storage; and the indications, which a modem that
    /// rebooted quietly (or reset them after a missing `AT+CNMA`) has lost.
    async fn health(&mut self, link: &mut Link) -> Step {
        let response = self.execute(link, Command::new("AT+CSQ")).await?;
        if let Some(signal) = response.line("+CSQ:").and_then(|l| parse::csq(l).ok()) {
            let previous = self.status.borrow().signal;
            self.update(|status| status.signal = Some(signal));
            let changed = previous.is_none_or(|previous| {
                previous.rssi.abs_diff(signal.rssi) >= 3
                    || (previous.rssi == 99) != (signal.rssi == 99)
            });
            if changed {
                self.emit(ModemEvent::Signal(signal));
            }
        }
        // The best of CREG and CEREG counts: LTE-only sticks register in CEREG only, and 2G/3G
        // modems refuse CEREG or answer it "unknown", so a CREG that says "searching" or
        // "denied" is then the only word on a loss.
        let informative = |status: RegistrationStatus| {
            if status.is_registered() {
                2
            } else if matches!(
                status,
                RegistrationStatus::Unknown | RegistrationStatus::Other(_)
            ) {
                0
            } else {
                1
            }
        };
        let mut best: Option<crate::at::Registration> = None;
        for command in ["AT+CREG?", "AT+CEREG?"] {
            let response = self.execute(link, Command::new(command)).await?;
            if let Some(registration) = response
                .info
                .iter()
                .find_map(|line| parse::registration(line).ok())
            {
                let rank = informative(registration.status);
                if best
                    .as_ref()
                    .is_none_or(|best| rank > informative(best.status))
                {
                    best = Some(registration);
                }
                if rank == 2 {
                    break;
                }
            }
        }
        if let Some(registration) = best {
            self.on_registration(&registration);
        }
        let response = self.execute(link, Command::new("AT+COPS?")).await?;
        let operator = response
            .line("+COPS:")
            .and_then(|line| parse::cops(line).ok())
            .and_then(|operator| operator.name);
        self.update(|status| status.operator = operator);
        let response = self.execute(link, Command::new("AT+CPMS?")).await?;
        if let Some(usage) = response
            .line("+CPMS:")
            .and_then(|line| parse::cpms(line).ok())
            .and_then(|usages| usages.into_iter().next())
        {
            let crowded = usage.total > 0 && usage.used * 100 > usage.total * 80;
            if crowded && !link.storage_warned {
                warn!(
                    "modem: storage {} is {}/{} full",
                    usage.name.as_deref().unwrap_or("?"),
                    usage.used,
                    usage.total
                );
                self.emit(ModemEvent::StorageAlmostFull(usage.clone()));
            }
            link.storage_warned = crowded;
            if let Some(name) = &usage.name {
                link.mem1 = name.clone();
            }
            self.update(|status| status.storage = Some(usage));
        }
        let expected = link.setup.as_ref().map(|setup| setup.cnmi.clone());
        let response = self.execute(link, Command::new("AT+CNMI?")).await?;
        let current = response
            .line("+CNMI:")
            .and_then(|line| parse::cnmi(line).ok());
        if let (Some(expected), Some(current)) = (expected, current) {
            // Only mt and ds matter, and only their loss: firmware may echo the other fields
            // differently, but mt or ds back at 0 means a quiet reboot or a missed AT+CNMA.
            let field = |slot: usize| expected.split(',').nth(slot).unwrap_or("0") != "0";
            let lost = (field(1) && current.get(1) == Some(&0))
                || (field(3) && current.get(3) == Some(&0));
            if lost {
                warn!("modem: indications are {current:?}, not {expected}: re-initialising");
                return self.reinit(link).await;
            }
        }
        Ok(())
    }
}

/// AT until OK, a few times, after a timeout.
async fn resync(link: &mut Link) -> bool {
    for _ in 0..3 {
        match link
            .handle
            .execute(Command::new("AT").with_timeout(Duration::from_secs(2)))
            .await
        {
            Ok(response) if response.result.is_ok() => return true,
            Ok(_) | Err(SessionError::Timeout { .. }) => {}
            Err(_) => return false,
        }
        sleep(Duration::from_millis(200)).await;
    }
    false
}

/// What an operator can do about a device that will not open, for the log line.
fn open_hint(error: &tokio_serial::Error) -> &'static str {
    use tokio_serial::ErrorKind;
    // serialport reports EACCES as PermissionDenied, a port held by another program (EBUSY
    // from TIOCEXCL, or its flock) as NoDevice, and EPERM (a device cgroup's refusal) as
    // Unknown with the errno's text.
    match error.kind() {
        ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
            " (the daemon's user needs read-write access: group dialout, or a udev rule's GROUP)"
        }
        ErrorKind::NoDevice => {
            " (another program holds the port: ModemManager? stop it, or tag the modem \
             ID_MM_DEVICE_IGNORE=1 in a udev rule)"
        }
        ErrorKind::Unknown if error.description.contains("not permitted") => {
            " (refused by the device policy: the unit's DeviceAllow= lines do not cover this \
             device; add one for its major number with `systemctl edit smsrelay`)"
        }
        _ => "",
    }
}

/// `min`, doubling per attempt, capped at `max`.
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::{backoff, open_hint};
    use std::time::Duration;
    use tokio_serial::{Error, ErrorKind};

    #[test]
    fn refusals_to_open_the_port_come_with_what_to_do() {
        let denied = Error::new(
            ErrorKind::Io(std::io::ErrorKind::PermissionDenied),
            "Permission denied",
        );
        assert!(open_hint(&denied).contains("dialout"));
        let busy = Error::new(ErrorKind::NoDevice, "Device or resource busy");
        assert!(open_hint(&busy).contains("ModemManager"));
        let cgroup = Error::new(ErrorKind::Unknown, "Operation not permitted");
        assert!(open_hint(&cgroup).contains("DeviceAllow="));
        let missing = Error::new(
            ErrorKind::Io(std::io::ErrorKind::NotFound),
            "No such file or directory",
        );
        assert_eq!(open_hint(&missing), "");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(500);
        let pauses: Vec<_> = (1..=5).map(|n| backoff(min, max, n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
        assert_eq!(backoff(min, max, u32::MAX), max);
    }
}
