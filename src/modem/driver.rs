//! The driver task: the one owner of the serial device.
//!
//! [`Modem::start`] spawns it and returns a cloneable [`ModemHandle`] (requests with a oneshot
//! reply over a bounded channel) and a separate stream of [`ModemEvent`]s. The task opens the
//! port with tokio-serial, runs the init, then sleeps until something happens: a request, a URC,
//! the sweep or the health timer ([`super::connection`] holds that life cycle). This file is
//! the shell that carries out each of them: the AT I/O, with the decisions taken by the pure
//! [`super::inbox::Inbox`] (what to hand up, how to confirm) and [`super::health`].
//!
//! Inbound messages are handed up with a [`Receipt`]; the message stays on the modem (or, when
//! routed directly with `+CSMS: 1`, unacknowledged) until the owner returns the receipt with
//! [`ModemHandle::confirm`] after storing the message durably.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use log::{debug, info, warn};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::at::{Command, Registration, SessionConfig, SessionError, Urc};
use crate::pdu::{Pdu, PduError};

use super::calls::CallTracker;
use super::classify::SendFailure;
use super::command::{
    AckMessage, AtCommand, ReadIndications, ReadOperator, ReadRegistration, ReadSignal,
    ReadStorageUsage, SelectMemory,
};
use super::connection::{EARLY_SWEEP, End, Link};
use super::handle::{
    EVENT_QUEUE_CAP, Inbound, ModemEvent, ModemHandle, ModemStatus, Origin, Receipt, Request,
};
use super::health::{self, RegistrationChange};
use super::inbox::{ConfirmPlan, EmptyIndex, Inbox, backlog_full, sweep_memories};
use super::init::InitSettings;
use super::send::interpret;
use super::storage::{self, StorageError, StoredMessage};
use super::ussd::RequestEncoding;
use super::voice::{UssdAnswer, UssdFailure};

/// The `[modem]` settings the driver runs with.
#[derive(Debug, Clone)]
pub struct ModemSettings {
    /// The modem's name (`[[modem]] name`), for logs and events; `modem1` by default.
    pub name: String,
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
    /// `[calls] reject`: hang up incoming calls once the caller is known.
    pub reject_calls: bool,
    /// How a USSD request string is written (`[ussd] request_encoding`).
    pub ussd_request: RequestEncoding,
}

impl ModemSettings {
    /// Defaults for a device.
    pub fn new(device: impl Into<PathBuf>) -> ModemSettings {
        ModemSettings {
            name: "modem1".into(),
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
            reject_calls: false,
            ussd_request: RequestEncoding::Text,
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
    pub fn start(mut settings: ModemSettings) -> Modem {
        // One name for every log line of this modem, the init's included.
        settings.init.name.clone_from(&settings.name);
        let (requests_tx, requests_rx) = mpsc::channel(32);
        let (events_tx, events_rx) = mpsc::channel(256);
        let (status_tx, status_rx) =
            watch::channel(ModemStatus::opening(&settings.device.display().to_string()));
        let driver = Driver {
            requests: requests_rx,
            events: events_tx,
            status: status_tx,
            queued_events: VecDeque::new(),
            inbox: Inbox::new(settings.redeliver_after),
            calls: CallTracker::new(settings.reject_calls),
            pending_ussd: None,
            settings,
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

/// The task's state: its channels, the queued events and the inbox ledger. The port and its
/// session are a [`Link`], owned by the connection it belongs to.
pub(super) struct Driver {
    pub(super) settings: ModemSettings,
    pub(super) requests: mpsc::Receiver<Request>,
    pub(super) events: mpsc::Sender<ModemEvent>,
    pub(super) status: watch::Sender<ModemStatus>,
    /// Events waiting for room in the channel: the driver never blocks on its owner, who may
    /// be waiting on the driver.
    pub(super) queued_events: VecDeque<ModemEvent>,
    /// What was handed up and not confirmed, deferred confirms, recent deletes.
    pub(super) inbox: Inbox,
    /// The incoming call, if one rings.
    pub(super) calls: CallTracker,
    /// The USSD request waiting for its `+CUSD:`.
    pub(super) pending_ussd: Option<oneshot::Sender<Result<UssdAnswer, UssdFailure>>>,
}

/// Ready to stop serving a connection?
pub(super) type Step = Result<(), End>;

impl Driver {
    pub(super) fn update(&self, change: impl FnOnce(&mut ModemStatus)) {
        self.status.send_modify(change);
    }

    pub(super) fn emit(&mut self, event: ModemEvent) {
        self.flush_events();
        let inbound = matches!(event, ModemEvent::Inbound(_));
        let others = self.queued_events.len() - self.queued_inbound();
        if !inbound && others >= EVENT_QUEUE_CAP {
            // The owner is far behind; a stale signal or registration change is not worth
            // unbounded memory. Inbound messages are never dropped here.
            self.update(|status| status.counters.dropped += 1);
            debug!(
                "{}: event queue full; dropped {event:?}",
                self.settings.name
            );
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

    /// Whether reading more stored messages would only grow the queue.
    fn inbound_backlog_full(&self) -> bool {
        backlog_full(self.queued_inbound())
    }

    pub(super) fn flush_events(&mut self) {
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

    /// Sends a typed command through [`Driver::execute`] (so a timeout resyncs) and reads
    /// its answer.
    async fn ask<C: AtCommand>(&mut self, link: &mut Link, command: &C) -> Result<C::Answer, End> {
        let response = self.execute(link, command.command()).await?;
        Ok(command.parse(&response))
    }

    pub(super) async fn on_request(&mut self, link: &mut Link, request: Option<Request>) -> Step {
        match request {
            None => Err(End::Shutdown(None)),
            Some(Request::Shutdown(reply)) => Err(End::Shutdown(Some(reply))),
            Some(Request::Send {
                cmgs_length,
                hex,
                reply,
            }) => self.send(link, cmgs_length, hex, reply).await,
            Some(Request::Confirm(receipt)) => self.confirm(link, receipt).await,
            Some(Request::Sweep(reply)) => {
                let found = self.sweep(link).await?;
                let _ = reply.send(found);
                Ok(())
            }
            Some(Request::Ussd { code, reply }) => self.ussd(link, code, reply).await,
            Some(Request::UssdCancel) => self.ussd_cancel(link).await,
        }
    }

    /// One `AT+CMGS`: the answer goes back at once, then recovery if the session failed.
    async fn send(
        &mut self,
        link: &mut Link,
        cmgs_length: usize,
        hex: String,
        reply: tokio::sync::oneshot::Sender<Result<u8, SendFailure>>,
    ) -> Step {
        let command = Command::send_pdu(cmgs_length, hex).with_timeout(self.settings.send_timeout);
        let outcome = link.handle.execute(command).await;
        let result = interpret(&outcome);
        match &result {
            Ok(reference) => {
                debug!("{}: part accepted, TP-MR {reference}", self.settings.name);
                self.update(|status| status.counters.sent += 1);
            }
            Err(failure) => {
                warn!(
                    "{}: send failed: {failure} ({:?})",
                    self.settings.name, failure.verdict
                );
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
        match outcome {
            Err(SessionError::Timeout { .. } | SessionError::NoPrompt { .. }) => {
                self.check(link, outcome).await.map(|_| ())
            }
            Err(error) => Err(End::Lost(error.to_string())),
            Ok(_) => {
                link.consecutive_timeouts = 0;
                Ok(())
            }
        }
    }

    pub(super) async fn on_urc(&mut self, link: &mut Link, urc: Urc) -> Step {
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
                warn!(
                    "{}: boot banner {banner:?} mid-session: the modem rebooted",
                    self.settings.name
                );
                self.reinit(link).await
            }
            Urc::SimState(state) => {
                warn!(
                    "{}: the SIM reports {state:?} unasked: the modem rebooted",
                    self.settings.name
                );
                self.reinit(link).await
            }
            Urc::CellBroadcast { pdu } => {
                debug!("{}: cell broadcast ignored: {pdu}", self.settings.name);
                Ok(())
            }
            Urc::Ring => {
                let effects = self.calls.on_ring(now());
                self.apply_call(link, effects).await
            }
            Urc::CallerId(line) => match crate::at::parse::clip(&line) {
                Ok(number) => {
                    let effects = self.calls.on_caller(number, now());
                    self.apply_call(link, effects).await
                }
                Err(error) => {
                    warn!("{}: {error}", self.settings.name);
                    Ok(())
                }
            },
            Urc::CallEnded => {
                let effects = self.calls.on_ended();
                self.apply_call(link, effects).await
            }
            Urc::Ussd(report) => {
                self.on_ussd(&report);
                Ok(())
            }
            Urc::Noise(line) => {
                debug!("{}: {line}", self.settings.name);
                Ok(())
            }
            Urc::Malformed(line) => {
                warn!(
                    "{}: malformed unsolicited line: {line:?}",
                    self.settings.name
                );
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
                self.enable_caller_id(link).await?;
                self.confirm_deferred(link).await?;
                self.sweep(link).await.map(|_| ())
            }
        }
    }

    fn on_registration(&mut self, registration: &Registration) {
        let previous = self.status.borrow().registration;
        let now = registration.status;
        self.update(|status| status.registration = Some(now));
        match health::registration_change(previous, now) {
            Some(RegistrationChange::Lost) => {
                warn!("{}: registration lost ({now:?})", self.settings.name);
                self.emit(ModemEvent::RegistrationLost(now));
            }
            Some(RegistrationChange::Gained) => {
                info!("{}: registered ({now:?})", self.settings.name);
                self.emit(ModemEvent::Registered(now));
            }
            None => {}
        }
    }

    async fn select_memory(&mut self, link: &mut Link, memory: &str) -> Result<bool, End> {
        if link.mem1.eq_ignore_ascii_case(memory) {
            return Ok(true);
        }
        match self.ask(link, &SelectMemory { memory }).await? {
            Ok(()) => {
                link.mem1 = memory.to_string();
                Ok(true)
            }
            Err(result) => {
                // Refused, or timed out and perhaps applied late: mem1 is unknown now.
                link.mem1.clear();
                warn!(
                    "{}: cannot select memory {memory}: {result}",
                    self.settings.name
                );
                Ok(false)
            }
        }
    }

    /// A `+CMTI`/`+CDSI`: reads the index unless the queue is full or it was handed up.
    async fn read_index(&mut self, link: &mut Link, memory: &str, index: u32) -> Step {
        if self.inbound_backlog_full() {
            // Left on the modem: the sweep after the owner catches up reads it.
            debug!(
                "{}: {memory} {index} left on the modem until the queue drains",
                self.settings.name
            );
            self.inbox.want_early_sweep();
            return Ok(());
        }
        if !self.select_memory(link, memory).await? || !self.inbox.needs_read(&link.mem1, index) {
            return Ok(());
        }
        match storage::read(&link.handle, index, &self.settings.name).await {
            Ok(message) => {
                link.consecutive_timeouts = 0;
                let mem1 = link.mem1.clone();
                self.hand_up_stored(link, &mem1, message).await
            }
            Err(StorageError::StaleIndex(index)) => {
                self.on_empty_index(link, memory, index);
                Ok(())
            }
            Err(StorageError::Refused { command, result }) => {
                warn!(
                    "{}: {command} refused: {result}; sweeping again in {} s",
                    self.settings.name,
                    EARLY_SWEEP.as_secs()
                );
                self.inbox.want_early_sweep();
                Ok(())
            }
            Err(StorageError::Session(error)) => {
                self.inbox.want_early_sweep();
                self.check(link, Err(error)).await.map(|_| ())
            }
        }
    }

    /// An indicated index was empty: expected if we deleted it lately, else stale.
    fn on_empty_index(&mut self, link: &mut Link, memory: &str, index: u32) {
        match self.inbox.stale_index(&link.mem1, index, now()) {
            EmptyIndex::Ours => debug!(
                "{}: {memory} {index} was ours and is deleted already",
                self.settings.name
            ),
            EmptyIndex::Stale => {
                // Never retried: a stale index read again is the loop gammu users hit.
                warn!(
                    "{}: index {index} in {memory} is empty or stale; skipped",
                    self.settings.name
                );
                self.update(|status| status.counters.stale_indexes += 1);
                link.consecutive_timeouts = 0;
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
                "{}: {memory} {} listed without a PDU; left on the modem",
                self.settings.name, message.index
            );
            return Ok(());
        }
        if message.pdu.is_err() {
            match storage::read(&link.handle, message.index, &self.settings.name).await {
                Ok(again) if again.pdu.is_ok() => {
                    info!(
                        "{}: {memory} {} decodes when read again (the first read was garbled)",
                        self.settings.name, message.index
                    );
                    message = again;
                }
                Ok(again) if !again.hex.is_empty() => message = again,
                Ok(_) | Err(StorageError::Refused { .. }) => {}
                Err(StorageError::StaleIndex(_)) => return Ok(()),
                Err(StorageError::Session(error)) => {
                    self.inbox.want_early_sweep();
                    return self.check(link, Err(error)).await.map(|_| ());
                }
            }
        }
        self.inbox.on_handed_up(memory, &message, now());
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
            warn!(
                "{}: a routed PDU does not decode ({error}): {hex}",
                self.settings.name
            );
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
        let receipt = self.inbox.receipt(origin.clone(), hex.clone(), needs_ack);
        self.emit(ModemEvent::Inbound(Inbound {
            origin,
            hex,
            pdu,
            receipt,
        }));
    }

    /// Carries out a receipt as [`Inbox::plan_confirm`] decides.
    pub(super) async fn confirm(&mut self, link: &mut Link, receipt: Receipt) -> Step {
        match self.inbox.plan_confirm(&receipt) {
            ConfirmPlan::Ack => {
                if let Some(result) = self.ask(link, &AckMessage).await? {
                    warn!("{}: AT+CNMA answered {result}", self.settings.name);
                }
                self.update(|status| status.counters.confirmed += 1);
                Ok(())
            }
            ConfirmPlan::Count => {
                self.update(|status| status.counters.confirmed += 1);
                Ok(())
            }
            ConfirmPlan::DeleteNow { memory, index } => {
                if !self.select_memory(link, &memory).await? {
                    return Ok(()); // kept; the next sweep hands it up again
                }
                self.delete_confirmed(link, receipt, &memory, index).await
            }
            ConfirmPlan::ReadFirstThenDelete { memory, index } => {
                if !self.select_memory(link, &memory).await? {
                    return Ok(());
                }
                // The modem may have rebooted and reused the index: delete only what was
                // handed up.
                match storage::read(&link.handle, index, &self.settings.name).await {
                    Ok(message) if message.hex == receipt.hex => {}
                    Ok(_) | Err(StorageError::StaleIndex(_)) => {
                        debug!(
                            "{}: {memory} {index} changed since it was read; kept",
                            self.settings.name
                        );
                        return Ok(());
                    }
                    Err(StorageError::Refused { .. }) => return Ok(()),
                    Err(StorageError::Session(error)) => {
                        self.inbox.defer(receipt);
                        return self.check(link, Err(error)).await.map(|_| ());
                    }
                }
                self.delete_confirmed(link, receipt, &memory, index).await
            }
        }
    }

    /// `AT+CMGD` for a confirmed message; one cut short by the session is tried again.
    async fn delete_confirmed(
        &mut self,
        link: &mut Link,
        receipt: Receipt,
        memory: &str,
        index: u32,
    ) -> Step {
        match storage::delete(&link.handle, index).await {
            Ok(()) | Err(StorageError::StaleIndex(_)) => {
                self.inbox.on_deleted(memory, index, now());
                self.update(|status| status.counters.confirmed += 1);
                Ok(())
            }
            Err(StorageError::Refused { command, result }) => {
                warn!("{}: {command} refused: {result}", self.settings.name);
                Ok(())
            }
            Err(StorageError::Session(error)) => {
                self.inbox.defer(receipt);
                self.check(link, Err(error)).await.map(|_| ())
            }
        }
    }

    /// Lists the receive storage (and the report storage the modem has) and hands up what
    /// [`Inbox::on_listed`] picks, while the inbound queue has room.
    pub(super) async fn sweep(&mut self, link: &mut Link) -> Result<usize, End> {
        let mut found = 0;
        for memory in sweep_memories(&self.settings.init.storage, link.setup.as_ref()) {
            if !self.select_memory(link, &memory).await? {
                continue;
            }
            let listed = match storage::list(&link.handle, &self.settings.name).await {
                Ok(listed) => listed,
                Err(StorageError::Session(error)) => {
                    self.check(link, Err(error)).await?;
                    continue;
                }
                Err(error) => {
                    warn!("{}: sweep of {memory} failed: {error}", self.settings.name);
                    continue;
                }
            };
            link.consecutive_timeouts = 0;
            for message in self.inbox.on_listed(&memory, listed, now()) {
                if self.inbound_backlog_full() {
                    // The rest stay on the modem for the next sweep.
                    self.inbox.want_early_sweep();
                    break;
                }
                found += 1;
                self.hand_up_stored(link, &memory, message).await?;
            }
        }
        if found > 0 {
            info!("{}: sweep found {found} message(s)", self.settings.name);
        }
        Ok(found)
    }

    /// Signal, registration, operator, storage; and the indications, which a modem that
    /// rebooted quietly (or reset them after a missing `AT+CNMA`) has lost. The decisions
    /// are [`super::health`]'s.
    pub(super) async fn health(&mut self, link: &mut Link) -> Step {
        if let Some(signal) = self.ask(link, &ReadSignal).await? {
            let previous = self.status.borrow().signal;
            self.update(|status| status.signal = Some(signal));
            if health::signal_changed(previous, signal) {
                self.emit(ModemEvent::Signal(signal));
            }
        }
        if let Some(registration) = self.read_registration(link).await? {
            self.on_registration(&registration);
        }
        let operator = self.ask(link, &ReadOperator).await?;
        self.update(|status| status.operator = operator);
        if let Some(usage) = self.ask(link, &ReadStorageUsage).await? {
            self.on_storage_usage(link, usage);
        }
        let expected = link.setup.as_ref().map(|setup| setup.cnmi.clone());
        let current = self.ask(link, &ReadIndications).await?;
        if let (Some(expected), Some(current)) = (expected, current) {
            if health::indications_lost(&expected, &current) {
                warn!(
                    "{}: indications are {current:?}, not {expected}: re-initialising",
                    self.settings.name
                );
                return self.reinit(link).await;
            }
        }
        Ok(())
    }

    /// `AT+CREG?`, then `AT+CEREG?` unless CREG says registered; the better answer counts.
    async fn read_registration(&mut self, link: &mut Link) -> Result<Option<Registration>, End> {
        let mut best = None;
        for eps in [false, true] {
            if let Some(answer) = self.ask(link, &ReadRegistration { eps }).await? {
                let registered = answer.status.is_registered();
                best = Some(health::best_registration(best, answer));
                if registered {
                    break;
                }
            }
        }
        Ok(best)
    }

    fn on_storage_usage(&mut self, link: &mut Link, usage: crate::at::parse::StorageUsage) {
        if health::storage_warning(link.storage_warned, &usage) {
            warn!(
                "{}: storage {} is {}/{} full",
                self.settings.name,
                usage.name.as_deref().unwrap_or("?"),
                usage.used,
                usage.total
            );
            self.emit(ModemEvent::StorageAlmostFull(usage.clone()));
        }
        link.storage_warned = health::storage_crowded(&usage);
        if let Some(name) = &usage.name {
            link.mem1 = name.clone();
        }
        self.update(|status| status.storage = Some(usage));
    }
}

/// The time the pure cores are given (tokio's clock, so paused time in tests applies).
pub(super) fn now() -> std::time::Instant {
    Instant::now().into_std()
}
