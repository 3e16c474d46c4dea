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
pub mod sim_events;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use log::{error, info, warn};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::modem::{Inbound, ModemEvent, ModemHandle};
use crate::store::{Store, StoreError, blocking};

pub use events::rfc3339;
pub use lifecycle::report_overdue;
pub use modem_events::ModemEventSettings;
pub use outbound::{Accepted, EnqueueError, NewMessage};
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
    /// number the SIM reports (`AT+CNUM`), when it has one.
    pub receiving_number: Option<String>,
    /// `[modem_events]`: the modem's name, the debounce and the signal threshold.
    pub modem_events: ModemEventSettings,
    /// `[ussd] timeout`: how long a USSD request waits for the network's answer.
    pub ussd_timeout: Duration,
    /// `[ussd] balance`: the scheduled balance check, when configured.
    pub balance: Option<BalanceCheck>,
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
            modem_events: ModemEventSettings::default(),
            ussd_timeout: Duration::from_secs(30),
            balance: None,
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

struct Inner {
    store: Store,
    modem: ModemHandle,
    settings: GatewaySettings,
    wake_sender: Notify,
    stopping: std::sync::atomic::AtomicBool,
    counters: GatewayCounters,
    /// The last call and balance, for the status.
    activity: std::sync::Mutex<SimActivity>,
    /// Modem state flaps the debouncer kept from becoming events.
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
    /// A gateway over a store and a modem.
    pub fn new(store: Store, modem: ModemHandle, settings: GatewaySettings) -> Gateway {
        Gateway {
            inner: Arc::new(Inner {
                store,
                modem,
                settings,
                wake_sender: Notify::new(),
                stopping: std::sync::atomic::AtomicBool::new(false),
                counters: GatewayCounters::default(),
                activity: std::sync::Mutex::new(SimActivity::default()),
                flaps_suppressed: Arc::new(AtomicU64::new(0)),
            }),
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
        self.inner.wake_sender.notify_one();
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Counters since start.
    pub fn counters(&self) -> &GatewayCounters {
        &self.inner.counters
    }

    /// Settles what a crash left behind, then runs the sender, the receiver (fed by the
    /// modem's events) and the maintenance timers, returned in that order, then the modem
    /// events' debouncer and the balance check when configured. The sender ends after
    /// [`Gateway::stop_sending`]; the others when the event stream does (or are aborted).
    pub async fn start(
        &self,
        events: mpsc::Receiver<ModemEvent>,
    ) -> Result<Vec<JoinHandle<()>>, StoreError> {
        self.recover().await?;
        let sender = tokio::spawn(self.clone().send_loop());
        let receiver = tokio::spawn(self.clone().receive_loop(events));
        let maintenance = tokio::spawn(self.clone().maintenance_loop());
        let modem_events = tokio::spawn(modem_events::run(
            self.inner.store.clone(),
            self.inner.modem.watch_status(),
            self.inner.settings.modem_events.clone(),
            Arc::clone(&self.inner.flaps_suppressed),
        ));
        let mut tasks = vec![sender, receiver, maintenance, modem_events];
        if let Some(check) = self.inner.settings.balance.clone() {
            tasks.push(tokio::spawn(self.clone().balance_loop(check)));
        }
        Ok(tasks)
    }

    async fn receive_loop(self, mut events: mpsc::Receiver<ModemEvent>) {
        let mut batch = Vec::new();
        while let Some(event) = events.recv().await {
            self.on_event(event, &mut batch).await;
            // Group commit: what the driver has handed up meanwhile joins this flush.
            while batch.len() < INBOUND_BATCH {
                match events.try_recv() {
                    Ok(event) => self.on_event(event, &mut batch).await,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.store_inbound(std::mem::take(&mut batch)).await;
            }
        }
    }

    /// Collects an inbound message into `batch`; handles any other event at once.
    async fn on_event(&self, event: ModemEvent, batch: &mut Vec<Inbound>) {
        match event {
            ModemEvent::Inbound(inbound) => batch.push(inbound),
            ModemEvent::Connected(_) => self.inner.wake_sender.notify_one(),
            ModemEvent::Call(call) => self.on_call(call).await,
            ModemEvent::Disconnected { reason } => {
                info!("gateway: modem disconnected: {reason}")
            }
            other => log::debug!("gateway: {other:?}"),
        }
    }

    /// Records a batch of inbound messages, flushes once, and only then lets the modem
    /// delete (or acknowledge) the ones recorded.
    async fn store_inbound(&self, batch: Vec<Inbound>) {
        let mut outcomes = Vec::with_capacity(batch.len());
        for inbound in batch {
            let receipt = inbound.receipt.clone();
            let stored = match self.on_inbound(inbound).await {
                Ok(()) => true,
                // Not confirmed: it stays on the modem and a later sweep hands it up again.
                Err(error) if error.is_storage_failure() => false,
                Err(error) => {
                    error!("gateway: cannot store an inbound PDU: {error}");
                    false
                }
            };
            outcomes.push((receipt, stored));
        }
        let flushed =
            outcomes.iter().any(|(_, stored)| *stored) && self.flush_inbound().await.is_ok();
        for receipt in inbound::confirmable(outcomes, flushed) {
            if self.inner.modem.confirm(receipt).await.is_err() {
                warn!("gateway: the modem driver stopped");
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
