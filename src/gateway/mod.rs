//! The SMS logic, and the only writer of message state.
//!
//! - Outbound: [`Gateway::enqueue`] validates and encodes a message, stores it (flushed) and
//!   wakes the sender task, which submits the parts in order through the modem, recording a
//!   `Submitting` marker before each `AT+CMGS` so a crash in between is known afterwards.
//!   Every change of state is a pure transition in [`lifecycle`]; `outbound.rs` is the shell
//!   that reads, calls the modem and writes.
//! - Status reports are matched by (TP-MR, recipient) to the most recent unmatched part
//!   ([`reports`]); a message whose report does not come within its validity period plus a
//!   margin is `expired` by the maintenance task ([`report_overdue`] decides).
//! - Inbound parts are recorded once each (a fingerprint of their content), reassembled, and
//!   emitted once as `sms.received`; only then is the modem told to delete them.
//!
//! Store calls block on a flush, so they run on blocking threads.

mod events;
mod inbound;
pub mod lifecycle;
pub mod modem_events;
mod outbound;
pub mod reports;
pub mod routing;
pub mod sim_events;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{error, info, warn};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::modem::{Inbound, LinkState, ModemEvent, ModemHandle};
use crate::store::{Store, StoreError, blocking};

pub use events::rfc3339;
pub use lifecycle::report_overdue;
pub use modem_events::ModemEventSettings;
pub use outbound::{Accepted, EnqueueError, NewMessage};
pub use routing::{Requested, Routing};
pub use sim_events::{BalanceCheck, SimActivity};

/// The most inbound messages stored with one flush (group commit). Bounds the delay a batch
/// adds before the first of its deletes; the driver hands up a full SIM in a few of these.
const INBOUND_BATCH: usize = 32;

/// The `[sms]` settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The most parts a message may have.
    pub max_parts: usize,
    /// Ask for status reports.
    pub status_reports: bool,
    /// Validity period of outgoing messages (`None`: the SC's default).
    pub validity: Option<Duration>,
    /// Resend a message whose submission was cut by a crash (risking a duplicate) instead of
    /// failing it with stage `interrupted`.
    pub resend_interrupted: bool,
    /// An inbound multipart message still incomplete after this is emitted as incomplete.
    pub incomplete_timeout: Duration,
    /// Submission attempts before a message with temporary errors fails.
    pub max_attempts: u32,
    /// The first retry pause; it doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    /// The longest retry pause.
    pub retry_max: Duration,
    /// A status report matches only parts submitted within this age (TP-MR wraps at 256).
    pub report_max_age: Duration,
    /// How long past a message's validity period its status report is still awaited before
    /// the message is `expired` (the SC's final report can trail the period it reports on).
    pub report_timeout_margin: Duration,
    /// Events are kept this long (if delivered to every webhook).
    pub retention_events: Duration,
    /// Finished messages are kept this long.
    pub retention_messages: Duration,
    /// `[modem] number`: the receiving number inbound events carry as `to`; without it, the
    /// number the SIM reports (`AT+CNUM`), when it has one. (For [`Gateway::new`]'s one modem;
    /// several modems each carry their own in [`ModemSlot::number`].)
    pub receiving_number: Option<String>,
    /// `[sms] routing`: which modem a message that names none goes to.
    pub routing: Routing,
    /// `[modem_events]`: the debounce and the signal threshold (each modem's debouncer
    /// names its own modem).
    pub modem_events: ModemEventSettings,
    /// `[ussd] timeout`: how long a USSD request waits for the network's answer.
    pub ussd_timeout: Duration,
    /// `[ussd] balance`: the scheduled balance check of the first modem, when configured and
    /// `modem_balances` has none for it.
    pub balance: Option<BalanceCheck>,
    /// `[[modem]] balance`: modems' own balance checks, by modem name (a second SIM is often
    /// on another operator, with another code).
    pub modem_balances: Vec<(String, BalanceCheck)>,
}

impl Default for GatewaySettings {
    fn default() -> GatewaySettings {
        GatewaySettings {
            max_parts: 10,
            status_reports: true,
            validity: Some(Duration::from_secs(86_400)),
            resend_interrupted: false,
            incomplete_timeout: Duration::from_secs(3600),
            max_attempts: 8,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(1800),
            report_max_age: Duration::from_secs(7 * 86_400),
            report_timeout_margin: Duration::from_secs(3600),
            retention_events: Duration::from_secs(30 * 86_400),
            retention_messages: Duration::from_secs(30 * 86_400),
            receiving_number: None,
            routing: Routing::default(),
            modem_events: ModemEventSettings::default(),
            ussd_timeout: Duration::from_secs(30),
            balance: None,
            modem_balances: Vec::new(),
        }
    }
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    /// Status reports no message matched (kept in the store).
    pub unmatched_reports: AtomicU64,
    /// Inbound PDUs seen before (re-read after a crash, or repeated by the SC).
    pub duplicates: AtomicU64,
    /// Inbound PDUs that do not decode (recorded as `sms.undecodable`).
    pub undecodable: AtomicU64,
    /// Incoming calls (`call.ringing`).
    pub calls: AtomicU64,
    /// Calls that stopped ringing unanswered (`call.missed`).
    pub missed_calls: AtomicU64,
    /// USSD requests sent (API and balance checks).
    pub ussd_requests: AtomicU64,
    /// USSD requests without a usable answer (refused, timed out, ended).
    pub ussd_failures: AtomicU64,
}

/// One modem as the gateway sees it: its `[[modem]]` identity and its driver's handle.
#[derive(Debug, Clone)]
pub struct ModemSlot {
    /// Its name (`modem1`…), in events, the API and metrics.
    pub name: String,
    /// The SIM slot number receivers see.
    pub sim: u32,
    /// Its own number (E.164), the `to` of what it receives; else what its SIM reports.
    pub number: Option<String>,
    /// Whether it may send.
    pub send: bool,
    /// Destination prefixes it prefers.
    pub prefixes: Vec<String>,
    /// The driver.
    pub handle: ModemHandle,
}

impl ModemSlot {
    /// The only modem of a one-modem gateway: `modem1`, SIM 0, sending.
    pub fn single(handle: ModemHandle, number: Option<String>) -> ModemSlot {
        ModemSlot {
            name: "modem1".into(),
            sim: 0,
            number,
            send: true,
            prefixes: Vec::new(),
            handle,
        }
    }

    /// Whether its driver is ready now.
    pub fn ready(&self) -> bool {
        self.handle.status().state == LinkState::Ready
    }
}

struct Inner {
    store: Store,
    /// Never empty: [`Gateway::with_modems`] refuses none.
    modems: Vec<ModemSlot>,
    settings: GatewaySettings,
    /// One per modem: wakes that modem's sender.
    wake_sender: Vec<Notify>,
    /// The round-robin turn of the next message that names no modem.
    turn: AtomicUsize,
    /// Messages a sender is submitting now: no other sender takes them.
    claimed: Mutex<HashSet<String>>,
    stopping: std::sync::atomic::AtomicBool,
    counters: GatewayCounters,
    /// The last call and balance, for the status.
    activity: std::sync::Mutex<SimActivity>,
    /// Modem state flaps the debouncers kept from becoming events.
    flaps_suppressed: Arc<AtomicU64>,
}

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over a store and one modem (`modem1`, SIM 0).
    pub fn new(store: Store, modem: ModemHandle, settings: GatewaySettings) -> Gateway {
        let slot = ModemSlot::single(modem, settings.receiving_number.clone());
        Gateway::with_modems(store, vec![slot], settings)
    }

    /// A gateway over a store and several modems, in config order (the first is the one
    /// records from before several modems belong to). `modems` must not be empty.
    pub fn with_modems(store: Store, modems: Vec<ModemSlot>, settings: GatewaySettings) -> Gateway {
        assert!(!modems.is_empty(), "a gateway needs a modem");
        Gateway {
            inner: Arc::new(Inner {
                store,
                wake_sender: modems.iter().map(|_| Notify::new()).collect(),
                modems,
                settings,
                turn: AtomicUsize::new(0),
                claimed: Mutex::new(HashSet::new()),
                stopping: std::sync::atomic::AtomicBool::new(false),
                counters: GatewayCounters::default(),
                activity: std::sync::Mutex::new(SimActivity::default()),
                flaps_suppressed: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// The modems, in config order.
    pub fn modems(&self) -> &[ModemSlot] {
        &self.inner.modems
    }

    /// Wakes every modem's sender (a message was queued, a modem came or went).
    fn wake_senders(&self) {
        for wake in &self.inner.wake_sender {
            wake.notify_one();
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Asks the sender to stop after the part in flight (shutdown); the task it runs in
    /// ([`Gateway::start`]'s first handle) then ends.
    pub fn stop_sending(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.wake_senders();
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Counters since start.
    pub fn counters(&self) -> &GatewayCounters {
        &self.inner.counters
    }

    /// Settles what a crash left behind, then runs the sender, the receiver (fed by the
    /// modem's events) and the maintenance timers, returned in that order. The sender ends
    /// after [`Gateway::stop_sending`]; the others when the event stream does. For a gateway
    /// of one modem; [`Gateway::start_all`] takes one event stream per modem.
    pub async fn start(
        &self,
        events: mpsc::Receiver<ModemEvent>,
    ) -> Result<Vec<JoinHandle<()>>, StoreError> {
        self.start_all(vec![events]).await
    }

    /// As [`Gateway::start`], with each modem's events in the order of [`Gateway::modems`]:
    /// one sender per modem (the first handle returned ends when all of them have; aborting
    /// it aborts them), then per modem its receiver, the follower of its status and the
    /// debouncer of its `modem.*` events, then maintenance, then one balance check per modem
    /// that has one ([`Gateway::balance_checks`]).
    pub async fn start_all(
        &self,
        events: Vec<mpsc::Receiver<ModemEvent>>,
    ) -> Result<Vec<JoinHandle<()>>, StoreError> {
        self.recover().await?;
        let mut senders = tokio::task::JoinSet::new();
        for modem in 0..self.inner.modems.len() {
            senders.spawn(self.clone().send_loop(modem));
        }
        // Dropped with this task when it is aborted, which aborts every sender.
        let sender = tokio::spawn(async move { while senders.join_next().await.is_some() {} });
        let mut tasks = vec![sender];
        for (modem, events) in events.into_iter().enumerate().take(self.inner.modems.len()) {
            tasks.push(tokio::spawn(self.clone().receive_loop(modem, events)));
            tasks.push(tokio::spawn(self.clone().follow_status(modem)));
            let slot = &self.inner.modems[modem];
            let settings = ModemEventSettings {
                modem: slot.name.clone(),
                sim: slot.sim,
                ..self.inner.settings.modem_events.clone()
            };
            tasks.push(tokio::spawn(modem_events::run(
                self.inner.store.clone(),
                slot.handle.watch_status(),
                settings,
                Arc::clone(&self.inner.flaps_suppressed),
            )));
        }
        tasks.push(tokio::spawn(self.clone().maintenance_loop()));
        for (modem, check) in self.balance_checks() {
            tasks.push(tokio::spawn(self.clone().balance_loop(modem, check)));
        }
        Ok(tasks)
    }

    /// Wakes every sender when modem `modem` becomes ready or stops being so: a sender then
    /// takes over the queue of a modem that went away, or leaves it to one that came back.
    async fn follow_status(self, modem: usize) {
        let mut status = self.inner.modems[modem].handle.watch_status();
        let mut ready = status.borrow_and_update().state == LinkState::Ready;
        while status.changed().await.is_ok() {
            let now_ready = status.borrow_and_update().state == LinkState::Ready;
            if now_ready != ready {
                ready = now_ready;
                self.wake_senders();
            }
        }
    }

    async fn receive_loop(self, modem: usize, mut events: mpsc::Receiver<ModemEvent>) {
        let mut batch = Vec::new();
        while let Some(event) = events.recv().await {
            self.on_event(modem, event, &mut batch).await;
            // Group commit: what the driver has handed up meanwhile joins this flush.
            while batch.len() < INBOUND_BATCH {
                match events.try_recv() {
                    Ok(event) => self.on_event(modem, event, &mut batch).await,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.store_inbound(modem, std::mem::take(&mut batch)).await;
            }
        }
    }

    /// Collects an inbound message of modem `modem` into `batch`; handles any other event at
    /// once.
    async fn on_event(&self, modem: usize, event: ModemEvent, batch: &mut Vec<Inbound>) {
        match event {
            ModemEvent::Inbound(inbound) => batch.push(inbound),
            ModemEvent::Connected(_) => self.wake_senders(),
            ModemEvent::Call(call) => self.on_call(modem, call).await,
            ModemEvent::Disconnected { reason } => {
                info!(
                    "gateway: modem {} disconnected: {reason}",
                    self.inner.modems[modem].name
                );
                self.wake_senders();
            }
            other => log::debug!("gateway: {}: {other:?}", self.inner.modems[modem].name),
        }
    }

    /// Records a batch of modem `modem`'s inbound messages, flushes once, and only then lets
    /// that modem delete (or acknowledge) the ones recorded.
    async fn store_inbound(&self, modem: usize, batch: Vec<Inbound>) {
        let mut outcomes = Vec::with_capacity(batch.len());
        for inbound in batch {
            let receipt = inbound.receipt.clone();
            let stored = match self.on_inbound(modem, inbound).await {
                Ok(()) => true,
                // Not confirmed: it stays on the modem and a later sweep hands it up again.
                Err(error) if error.is_storage_failure() => false,
                Err(error) => {
                    error!(
                        "gateway: cannot store an inbound PDU from {}: {error}",
                        self.inner.modems[modem].name
                    );
                    false
                }
            };
            outcomes.push((receipt, stored));
        }
        let flushed =
            outcomes.iter().any(|(_, stored)| *stored) && self.flush_inbound().await.is_ok();
        let slot = &self.inner.modems[modem];
        for receipt in inbound::confirmable(outcomes, flushed) {
            if slot.handle.confirm(receipt).await.is_err() {
                warn!("gateway: the driver of {} stopped", slot.name);
                return;
            }
        }
    }

    async fn maintenance_loop(self) {
        let settings = &self.inner.settings;
        let tick = (settings.incomplete_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(60));
        let mut since_prune = Duration::MAX;
        loop {
            // A failing database is logged by the store, once a minute.
            match self.close_incomplete().await {
                Err(error) if !error.is_storage_failure() => {
                    error!("gateway: closing incomplete messages: {error}")
                }
                _ => {}
            }
            if let Err(error) = self.expire_overdue(crate::store::now_ms()).await {
                error!("gateway: expiring messages without a status report: {error}");
            }
            if since_prune >= Duration::from_secs(3600) {
                since_prune = Duration::ZERO;
                match self.prune().await {
                    Err(error) if !error.is_storage_failure() => {
                        error!("gateway: retention: {error}")
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(tick).await;
            since_prune = since_prune.saturating_add(tick);
        }
    }

    async fn prune(&self) -> Result<(), StoreError> {
        let store = self.inner.store.clone();
        let now = crate::store::now_ms();
        let events_before =
            now.saturating_sub(self.inner.settings.retention_events.as_millis() as u64);
        let messages_before =
            now.saturating_sub(self.inner.settings.retention_messages.as_millis() as u64);
        blocking(move || {
            let mut total = 0;
            loop {
                let removed = store.prune(events_before, messages_before, 500)?;
                total += removed;
                if removed == 0 {
                    return Ok(total);
                }
            }
        })
        .await
        .map(|total| {
            if total > 0 {
                info!("gateway: retention removed {total} records");
            }
        })
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
