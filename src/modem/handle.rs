//! The driver's public face: [`ModemHandle`] and the requests it sends, the [`ModemStatus`]
//! snapshot with its [`LinkState`] and [`Counters`], and what comes up: [`ModemEvent`],
//! [`Inbound`] with its [`Receipt`]. No I/O here; the task that answers lives in
//! [`super::driver`] and [`super::connection`].

use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use crate::at::RegistrationStatus;
use crate::at::parse::{SignalQuality, StorageUsage};
use crate::pdu::{Pdu, PduError};

use super::calls::CallEvent;
use super::classify::{SendFailure, Verdict};
use super::init::{Identity, InitError, InitStage, Setup};
use super::voice::{UssdAnswer, UssdFailure};

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

impl ModemStatus {
    /// The status of a driver that has just started on `device`: opening, nothing known yet.
    pub fn opening(device: &str) -> ModemStatus {
        ModemStatus {
            device: device.to_string(),
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
        }
    }
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
    pub(super) origin: Origin,
    pub(super) hex: String,
    /// The connection it was handed up on (see [`super::inbox::Inbox`]).
    pub(super) connection: u64,
    /// Routed with `+CSMS: 1`: the network waits for `AT+CNMA`.
    pub(super) needs_ack: bool,
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
    /// An incoming call rang, or stopped ringing unanswered.
    Call(CallEvent),
}

/// Why the driver cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModemError {
    /// The driver task has stopped.
    #[error("the modem driver has stopped")]
    Stopped,
}

/// What a [`ModemHandle`] asks of the driver task.
pub(super) enum Request {
    Send {
        cmgs_length: usize,
        hex: String,
        reply: oneshot::Sender<Result<u8, SendFailure>>,
    },
    Confirm(Receipt),
    Sweep(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<()>),
    Ussd {
        code: String,
        reply: oneshot::Sender<Result<UssdAnswer, UssdFailure>>,
    },
    UssdCancel,
}

/// The cloneable way to use the modem.
#[derive(Debug, Clone)]
pub struct ModemHandle {
    pub(super) requests: mpsc::Sender<Request>,
    pub(super) status: watch::Receiver<ModemStatus>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Send { cmgs_length, .. } => write!(f, "Send({cmgs_length})"),
            Request::Confirm(receipt) => write!(f, "Confirm({:?})", receipt.origin),
            Request::Sweep(_) => f.write_str("Sweep"),
            Request::Shutdown(_) => f.write_str("Shutdown"),
            Request::Ussd { code, .. } => write!(f, "Ussd({code:?})"),
            Request::UssdCancel => f.write_str("UssdCancel"),
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

    /// Sends a USSD code (or the answer to a menu) and waits at most `timeout` for the
    /// network's answer; after a timeout the session is cancelled (`AT+CUSD=2`).
    pub async fn ussd(&self, code: &str, timeout: Duration) -> Result<UssdAnswer, UssdFailure> {
        // A bad code is refused whatever the modem's state (both encodings take the same).
        super::ussd::encode_request(code, super::ussd::RequestEncoding::Text)?;
        let (reply, answer) = oneshot::channel();
        let request = Request::Ussd {
            code: code.to_string(),
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| UssdFailure::Stopped)?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(UssdFailure::Stopped),
            Err(_) => {
                let _ = self.ussd_cancel().await;
                Err(UssdFailure::Timeout(timeout))
            }
        }
    }

    /// Ends a USSD session (a menu waiting for an answer).
    pub async fn ussd_cancel(&self) -> Result<(), ModemError> {
        self.requests
            .send(Request::UssdCancel)
            .await
            .map_err(|_| ModemError::Stopped)
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
