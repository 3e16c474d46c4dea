//! The only module that touches sled.
//!
//! Every change users care about is one sled transaction over the trees it touches (message
//! state, the outbox, status-report references, the event, one webhook job per subscribed
//! endpoint), followed by a flush before the caller goes on. The store holds no SMS logic: the
//! gateway passes closures that decide what changes; sled may run them more than once on a
//! conflict, so they are pure.
//!
//! All calls block (sled flushes to disk): call them from blocking threads.

pub mod model;
mod webhooks;

pub use webhooks::{AttemptRecord, EndpointHealth, EndpointState, JobOutcome, due_of};

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};
use sled::{Transactional, Tree};

pub use model::{
    Event, FailureInfo, InboundGroup, InboundPart, Job, MessageState, OutPart, OutboundMessage,
    PartState,
};

/// The layout version of the trees; bumped when a change needs a migration.
pub const SCHEMA_VERSION: u64 = 1;
/// The `api_version` of the event contract.
pub const API_VERSION: &str = "2026-11-22";
/// The `meta` key of the last event sequence number.
const EVENT_SEQUENCE: &[u8] = b"event_sequence";
/// The `meta` key of the newest time known to be right (Unix ms): the clock rule's floor.
const CLOCK_FLOOR: &[u8] = b"clock_floor";

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("database: {0}")]
    Database(#[from] sled::Error),
    /// A record does not decode (written by a bug, or by a newer version).
    #[error("record {key} in {tree} does not decode: {error}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The key, printable.
        key: String,
        /// Why.
        error: String,
    },
    /// The data directory was written by a newer smsrelay.
    #[error("the data directory has schema version {found}; this smsrelay knows {SCHEMA_VERSION}")]
    NewerSchema {
        /// The version found.
        found: u64,
    },
    /// The message does not exist.
    #[error("no message {0}")]
    NoSuchMessage(String),
}

impl StoreError {
    /// Whether the database itself failed (a full disk, an I/O error), as opposed to one
    /// record or request: the store logs those once a minute, callers need not.
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, StoreError::Database(_))
    }
}

/// Why the store cannot write, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    /// When it was first seen (Unix ms).
    pub since_ms: u64,
    /// The latest error.
    pub error: String,
}

/// How often a failing store says so in the log.
const FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Default)]
struct Health {
    failure: Option<StoreFailure>,
    last_logged: Option<std::time::Instant>,
}

/// How sled runs on a small board.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Page cache size in bytes (default 16 MB: a Pi Zero has 512 MB in all).
    pub cache_bytes: u64,
    /// Background flush interval; every state change is also flushed explicitly.
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings {
            cache_bytes: 16 * 1024 * 1024,
            flush_every_ms: Some(1000),
        }
    }
}

/// An endpoint's interest in events (from `[[webhook]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The endpoint's name.
    pub endpoint: String,
    /// Event name patterns: `sms.*`, `sms.delivered`, `*`.
    pub events: Vec<String>,
}

impl Subscription {
    /// Whether this endpoint wants events called `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.events.iter().any(|pattern| {
            pattern == "*"
                || pattern == name
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| name.starts_with(prefix))
        })
    }
}

/// An event to record: its name and data; the store gives it a sequence, id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `sms.sent`…
    pub name: String,
    /// The `data` object.
    pub data: serde_json::Value,
}

/// What a change to a message does besides rewriting it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Events to record (with their webhook jobs).
    pub events: Vec<NewEvent>,
    /// Take the message out of the outbox.
    pub dequeue: bool,
    /// Status-report references to add: (TP-MR, part index).
    pub references: Vec<(u8, usize)>,
    /// Status-report references to remove (keys from [`Store::references`]).
    pub unreference: Vec<Vec<u8>>,
}

/// A status-report reference: a submitted part waiting for its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The key, to remove it.
    pub key: Vec<u8>,
    /// The TP-MR.
    pub reference: u8,
    /// When the part was submitted (Unix ms).
    pub submitted_at: u64,
    /// The message.
    pub message_id: String,
    /// The part index.
    pub part: usize,
}

/// The database: one sled `Db` and its trees. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    messages: Tree,
    outbox: Tree,
    refs: Tree,
    awaiting_reports: Tree,
    inbound_parts: Tree,
    inbound_seen: Tree,
    events: Tree,
    jobs: Tree,
    unmatched: Tree,
    meta: Tree,
    attempts: Tree,
    dead_letters: Tree,
    endpoints: Tree,
    idempotency: Tree,
    subscriptions: Vec<Subscription>,
    /// Bumped after every commit that wrote jobs: the dispatcher waits on it.
    jobs_written: std::sync::Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
    /// Set while the clock is implausible: events written meanwhile are marked.
    clock_suspect: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The last database failure, until a flush succeeds again.
    health: std::sync::Arc<std::sync::Mutex<Health>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Runs a store call on a blocking thread, so the async runtime never waits on a flush.
pub async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(error) => Err(StoreError::Corrupt {
            tree: "-",
            key: "-".into(),
            error: format!("store task failed: {error}"),
        }),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own types always serialise; an empty value would only ever come from a bug.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        error: error.to_string(),
    })
}

fn tx_decode<T: DeserializeOwned>(tree: &'static str, key: &[u8], bytes: &[u8]) -> TxResult<T> {
    decode(tree, key, bytes).map_err(ConflictableTransactionError::Abort)
}

fn unwrap_tx<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    result.map_err(|error| match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => StoreError::Database(error),
    })
}

/// The endpoint's next delivery number (the body's `sequence`). Dense per endpoint and
/// assigned with the job, so receivers see gaps and reordering; redeliveries and test events
/// get one too.
fn next_endpoint_sequence(meta: &TransactionalTree, endpoint: &str) -> TxResult<u64> {
    let counter = format!("endpoint_sequence/{endpoint}");
    let next = meta
        .get(counter.as_bytes())?
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
        + 1;
    meta.insert(counter.as_bytes(), &next.to_be_bytes())?;
    Ok(next)
}

/// `jobs` keys: the endpoint name, a 0 byte, the due time and the event sequence, so each
/// endpoint scans its own queue earliest due first.
pub fn job_key(endpoint: &str, due_ms: u64, event_sequence: u64) -> Vec<u8> {
    let mut key = endpoint.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(&event_sequence.to_be_bytes());
    key
}

/// `awaiting_reports` keys: the time the report is due at the latest, then the message id, so
/// the expiry sweep reads only the overdue front of the tree.
fn awaiting_key(message: &OutboundMessage) -> Option<Vec<u8>> {
    let due = message.report_due()?;
    let mut key = due.to_be_bytes().to_vec();
    key.extend_from_slice(message.id.as_bytes());
    Some(key)
}

fn reference_key(reference: u8, at: u64, id: &str, part: usize) -> Vec<u8> {
    let mut key = vec![reference];
    key.extend_from_slice(&at.to_be_bytes());
    key.extend_from_slice(&(part as u32).to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(
        dir: &Path,
        settings: &StoreSettings,
        subscriptions: Vec<Subscription>,
    ) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(settings.cache_bytes)
            .flush_every_ms(settings.flush_every_ms)
            .open()?;
        let store = Store {
            messages: db.open_tree("messages")?,
            outbox: db.open_tree("outbox")?,
            refs: db.open_tree("refs")?,
            awaiting_reports: db.open_tree("awaiting_reports")?,
            inbound_parts: db.open_tree("inbound_parts")?,
            inbound_seen: db.open_tree("inbound_seen")?,
            events: db.open_tree("events")?,
            jobs: db.open_tree("jobs")?,
            unmatched: db.open_tree("unmatched_reports")?,
            meta: db.open_tree("meta")?,
            attempts: db.open_tree("attempts")?,
            dead_letters: db.open_tree("dead_letters")?,
            endpoints: db.open_tree("endpoints")?,
            idempotency: db.open_tree("idempotency")?,
            db,
            subscriptions,
            jobs_written: std::sync::Arc::default(),
            clock_suspect: std::sync::Arc::default(),
            health: std::sync::Arc::default(),
        };
        match store.meta.get("schema_version")? {
            Some(bytes) => {
                let found = decode::<u64>("meta", b"schema_version", &bytes)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema { found });
                }
            }
            None => {
                store
                    .meta
                    .insert("schema_version", encode(&SCHEMA_VERSION))?;
                store.db.flush()?;
            }
        }
        Ok(store)
    }

    /// Flushes everything written so far to disk. sled keeps an I/O error (a full disk) and
    /// returns it from every later flush, so this also says whether the store still works.
    pub fn flush(&self) -> Result<(), StoreError> {
        let flushed = self.db.flush().map(|_| ()).map_err(StoreError::from);
        self.note(flushed)
    }

    /// Whether the store failed, and why; `None` while it writes.
    pub fn failure(&self) -> Option<StoreFailure> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .failure
            .clone()
    }

    /// Records the outcome of a write: a database failure is remembered (for `/healthz`, the
    /// status and the metrics) and logged at most once a minute, not once per attempt; a
    /// success clears it.
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &result {
            Ok(_) => {
                if let Some(failure) = health.failure.take() {
                    log::warn!(
                        "store: writing again after failing since {} ({})",
                        humantime::format_rfc3339_seconds(
                            UNIX_EPOCH + std::time::Duration::from_millis(failure.since_ms)
                        ),
                        failure.error
                    );
                    health.last_logged = None;
                }
            }
            Err(error) if error.is_storage_failure() => {
                let since_ms = health.failure.as_ref().map_or_else(now_ms, |f| f.since_ms);
                health.failure = Some(StoreFailure {
                    since_ms,
                    error: error.to_string(),
                });
                if health
                    .last_logged
                    .is_none_or(|at| at.elapsed() >= FAILURE_LOG_EVERY)
                {
                    health.last_logged = Some(std::time::Instant::now());
                    log::error!(
                        "store: cannot write ({error}); nothing new is accepted or deleted from \
                         the modem until it writes again (a full disk? free space, then restart)"
                    );
                }
            }
            Err(_) => {}
        }
        result
    }

    /// As `unwrap_tx`, remembering a database failure.
    fn commit<T>(&self, result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
        self.note(unwrap_tx(result))
    }

    fn announce_jobs(&self) {
        let (count, changed) = &*self.jobs_written;
        let mut count = count
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *count = count.wrapping_add(1);
        changed.notify_all();
    }

    /// The current value of the job counter, for [`Store::wait_for_jobs`].
    pub fn jobs_counter(&self) -> u64 {
        let (count, _) = &*self.jobs_written;
        *count
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks until jobs were written after `seen` (a value of [`Store::jobs_counter`]) or
    /// `timeout` passes.
    pub fn wait_for_jobs(&self, seen: u64, timeout: std::time::Duration) {
        let (count, changed) = &*self.jobs_written;
        let guard = count
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = changed.wait_timeout_while(guard, timeout, |count| *count == seen);
    }

    /// Says whether the clock is implausible now (see `webhook::clock`): events written while
    /// it is are marked `clock_suspect`.
    pub fn set_clock_suspect(&self, suspect: bool) {
        self.clock_suspect
            .store(suspect, std::sync::atomic::Ordering::Relaxed);
    }

    /// The newest time known to be right (Unix ms): the stored floor, or the newest event
    /// recorded with a plausible clock.
    pub fn clock_floor(&self) -> Result<u64, StoreError> {
        let stored = self
            .meta
            .get(CLOCK_FLOOR)?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let newest_event = match self.events.last()? {
            Some((key, bytes)) => {
                let event: Event = decode("events", &key, &bytes)?;
                if event.clock_suspect {
                    0
                } else {
                    event.created_at.saturating_mul(1000)
                }
            }
            None => 0,
        };
        Ok(stored.max(newest_event))
    }

    /// Raises the stored clock floor to `at` (Unix ms); a lower value changes nothing.
    pub fn raise_clock_floor(&self, at: u64) -> Result<(), StoreError> {
        self.meta.fetch_and_update(CLOCK_FLOOR, |old| {
            let current = old
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_be_bytes);
            Some(current.max(at).to_be_bytes().to_vec())
        })?;
        self.flush()
    }

    /// The next number of a persistent counter (`meta`), e.g. the concatenation reference.
    pub fn next_counter(&self, name: &str) -> Result<u64, StoreError> {
        let value = self.meta.update_and_fetch(name, |old| {
            let current = old
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_be_bytes);
            Some(current.wrapping_add(1).to_be_bytes().to_vec())
        })?;
        Ok(value
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Writes events and their jobs inside a transaction. Sequence numbers come from a
    /// counter in `meta` read and written in the same transaction (sled's `generate_id`
    /// cannot be called inside one: it waits on the transaction's own lock).
    fn write_events(
        &self,
        meta: &TransactionalTree,
        events_tree: &TransactionalTree,
        jobs_tree: &TransactionalTree,
        events: &[NewEvent],
    ) -> TxResult<Vec<Event>> {
        self.write_events_for(meta, events_tree, jobs_tree, events, true)
    }

    /// As [`Store::write_events`]; `subscribed` false writes the events without jobs.
    fn write_events_for(
        &self,
        meta: &TransactionalTree,
        events_tree: &TransactionalTree,
        jobs_tree: &TransactionalTree,
        events: &[NewEvent],
        subscribed: bool,
    ) -> TxResult<Vec<Event>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut sequence = meta
            .get(EVENT_SEQUENCE)?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let mut written = Vec::with_capacity(events.len());
        for new in events {
            sequence += 1;
            let event = Event {
                sequence,
                id: uuid::Uuid::now_v7().to_string(),
                name: new.name.clone(),
                api_version: API_VERSION.to_string(),
                created_at: now_ms() / 1000,
                clock_suspect: self
                    .clock_suspect
                    .load(std::sync::atomic::Ordering::Relaxed),
                data: new.data.clone(),
            };
            events_tree.insert(&sequence.to_be_bytes(), encode(&event))?;
            let due = now_ms();
            for subscription in &self.subscriptions {
                if !subscribed || !subscription.wants(&event.name) {
                    continue;
                }
                let job = Job {
                    event_sequence: sequence,
                    sequence: next_endpoint_sequence(meta, &subscription.endpoint)?,
                    endpoint: subscription.endpoint.clone(),
                    task_id: uuid::Uuid::now_v7().to_string(),
                    attempts: 0,
                    created_at: due,
                    enable_probe: false,
                };
                jobs_tree.insert(job_key(&subscription.endpoint, due, sequence), encode(&job))?;
            }
            written.push(event);
        }
        meta.insert(EVENT_SEQUENCE, &sequence.to_be_bytes())?;
        Ok(written)
    }

    // ---- outbound ------------------------------------------------------------------------

    /// Stores a new message and queues it; durable when this returns.
    pub fn enqueue(&self, message: &OutboundMessage) -> Result<(), StoreError> {
        let id = self.db.generate_id()?;
        let queue_key = id.to_be_bytes();
        let message = &OutboundMessage {
            queue_key: Some(id),
            ..message.clone()
        };
        self.commit(
            (&self.messages, &self.outbox).transaction(|(messages, outbox)| {
                messages.insert(message.id.as_bytes(), encode(message))?;
                outbox.insert(&queue_key, message.id.as_bytes())?;
                Ok(())
            }),
        )?;
        self.flush()
    }

    /// As [`Store::enqueue`], once per `key` within `window`: a repeat stores nothing and
    /// returns the first time's record, `{"at", "answer", "request"}`, so the caller can tell
    /// a retry from a different request that reuses the key.
    pub fn enqueue_once(
        &self,
        message: &OutboundMessage,
        key: &str,
        request: &serde_json::Value,
        answer: &serde_json::Value,
        window: std::time::Duration,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let id = self.db.generate_id()?;
        let message = &OutboundMessage {
            queue_key: Some(id),
            ..message.clone()
        };
        let now = now_ms();
        let oldest = now.saturating_sub(window.as_millis() as u64);
        let trees = (&self.messages, &self.outbox, &self.idempotency);
        let earlier = self.commit(trees.transaction(|(messages, outbox, keys)| {
            if let Some(bytes) = keys.get(key.as_bytes())? {
                let record: serde_json::Value = tx_decode("idempotency", key.as_bytes(), &bytes)?;
                if record["at"].as_u64().unwrap_or(0) >= oldest {
                    return Ok(Some(record));
                }
            }
            messages.insert(message.id.as_bytes(), encode(message))?;
            outbox.insert(&id.to_be_bytes(), message.id.as_bytes())?;
            let record = serde_json::json!({ "at": now, "answer": answer, "request": request });
            keys.insert(key.as_bytes(), encode(&record))?;
            Ok(None)
        }))?;
        if earlier.is_none() {
            self.flush()?;
        }
        Ok(earlier)
    }

    /// One message.
    pub fn message(&self, id: &str) -> Result<Option<OutboundMessage>, StoreError> {
        self.messages
            .get(id.as_bytes())?
            .map(|bytes| decode("messages", id.as_bytes(), &bytes))
            .transpose()
    }

    /// Messages, newest first, optionally in one state.
    pub fn messages(
        &self,
        state: Option<MessageState>,
        limit: usize,
    ) -> Result<Vec<OutboundMessage>, StoreError> {
        let mut found = Vec::new();
        // UUID v7 ids sort by creation time.
        for entry in self.messages.iter().rev() {
            let (key, bytes) = entry?;
            let message: OutboundMessage = decode("messages", &key, &bytes)?;
            if state.is_none_or(|state| message.state == state) {
                found.push(message);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Ids in the outbox, oldest first.
    pub fn outbox(&self) -> Result<Vec<String>, StoreError> {
        self.outbox
            .iter()
            .values()
            .map(|value| Ok(String::from_utf8_lossy(&value?).into_owned()))
            .collect()
    }

    /// How many messages wait in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Changes a message in one transaction with its effects, then flushes. `change` may run
    /// more than once. Returns the message as written and the events recorded.
    pub fn update_message<F>(
        &self,
        id: &str,
        change: F,
    ) -> Result<(OutboundMessage, Vec<Event>), StoreError>
    where
        F: Fn(&mut OutboundMessage) -> Effects,
    {
        let result = (
            &self.messages,
            &self.outbox,
            &self.refs,
            &self.events,
            &self.jobs,
            &self.meta,
            &self.awaiting_reports,
        )
            .transaction(|(messages, outbox, refs, events, jobs, meta, awaiting)| {
                let Some(bytes) = messages.get(id.as_bytes())? else {
                    return abort(StoreError::NoSuchMessage(id.to_string()));
                };
                let mut message: OutboundMessage = tx_decode("messages", id.as_bytes(), &bytes)?;
                let was_awaiting = awaiting_key(&message);
                let effects = change(&mut message);
                message.updated_at = now_ms();
                messages.insert(id.as_bytes(), encode(&message))?;
                // The index of messages waiting for a report follows the message itself, so
                // no caller can forget it.
                let now_awaiting = awaiting_key(&message);
                if was_awaiting != now_awaiting {
                    if let Some(key) = was_awaiting {
                        awaiting.remove(key)?;
                    }
                    if let Some(key) = now_awaiting {
                        awaiting.insert(key, &[])?;
                    }
                }
                if effects.dequeue {
                    if let Some(key) = message.queue_key {
                        outbox.remove(&key.to_be_bytes())?;
                    }
                }
                for &(reference, part) in &effects.references {
                    let key = reference_key(reference, now_ms(), id, part);
                    refs.insert(key, message.to.as_bytes())?;
                }
                for key in &effects.unreference {
                    refs.remove(key.as_slice())?;
                }
                let written = self.write_events(meta, events, jobs, &effects.events)?;
                Ok((message, written))
            });
        let result = self.commit(result)?;
        self.flush()?;
        self.announce_jobs();
        Ok(result)
    }

    /// Ids of messages whose status report was due at or before `due_by` (Unix ms), most
    /// overdue first, at most `limit`. Entries of messages gone meanwhile (pruned) are dropped.
    pub fn overdue_reports(&self, due_by: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        // Keys are the due time then the id, so every key due at `due_by` sorts before the
        // next millisecond.
        let end = due_by.saturating_add(1).to_be_bytes();
        for entry in self.awaiting_reports.range(..end).take(limit) {
            let (key, _) = entry?;
            let id = String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned();
            if self.messages.contains_key(id.as_bytes())? {
                found.push(id);
            } else {
                self.awaiting_reports.remove(&key)?;
            }
        }
        Ok(found)
    }

    /// Submitted parts waiting for a report with this TP-MR, most recent first.
    pub fn references(&self, reference: u8) -> Result<Vec<Reference>, StoreError> {
        let mut found = Vec::new();
        for entry in self.refs.scan_prefix([reference]) {
            let (key, _) = entry?;
            if key.len() < 13 {
                continue;
            }
            let mut at = [0u8; 8];
            at.copy_from_slice(&key[1..9]);
            let mut part = [0u8; 4];
            part.copy_from_slice(&key[9..13]);
            found.push(Reference {
                key: key.to_vec(),
                reference,
                submitted_at: u64::from_be_bytes(at),
                part: u32::from_be_bytes(part) as usize,
                message_id: String::from_utf8_lossy(&key[13..]).into_owned(),
            });
        }
        found.reverse();
        Ok(found)
    }

    /// Keeps a status report no message matched, for a later match and for people to see.
    pub fn record_unmatched(
        &self,
        hex: &str,
        report: &serde_json::Value,
    ) -> Result<Vec<u8>, StoreError> {
        let key = self.db.generate_id()?.to_be_bytes();
        let record = serde_json::json!({ "hex": hex, "report": report, "at": now_ms() });
        self.unmatched.insert(key, encode(&record))?;
        self.flush()?;
        Ok(key.to_vec())
    }

    /// Unmatched status reports: (key, PDU hex, received Unix ms).
    pub fn unmatched(&self) -> Result<Vec<(Vec<u8>, String, u64)>, StoreError> {
        let mut found = Vec::new();
        for entry in self.unmatched.iter() {
            let (key, bytes) = entry?;
            let record: serde_json::Value = decode("unmatched_reports", &key, &bytes)?;
            let hex = record["hex"].as_str().unwrap_or_default().to_string();
            let at = record["at"].as_u64().unwrap_or_default();
            found.push((key.to_vec(), hex, at));
        }
        Ok(found)
    }

    /// Forgets an unmatched report (matched later, or too old).
    pub fn remove_unmatched(&self, key: &[u8]) -> Result<(), StoreError> {
        self.unmatched.remove(key)?;
        // Flushed: a report applied must not come back as unmatched after a crash.
        self.flush()
    }

    // ---- inbound -------------------------------------------------------------------------

    /// Records an inbound PDU at most once (by `fingerprint`), with the reassembly group it
    /// belongs to (`group`, when concatenated): `change` gets the group so far (None when
    /// new, or for a single part) and returns the group to keep (None: remove it) and the
    /// events. Durable when it returns; `Ok(None)` means the PDU was seen before.
    pub fn record_inbound<F>(
        &self,
        fingerprint: &[u8],
        group: Option<&str>,
        change: F,
    ) -> Result<Option<Vec<Event>>, StoreError>
    where
        F: Fn(Option<InboundGroup>) -> (Option<InboundGroup>, Vec<NewEvent>),
    {
        let result = (
            &self.inbound_seen,
            &self.inbound_parts,
            &self.events,
            &self.jobs,
            &self.meta,
        )
            .transaction(|(seen, parts, events, jobs, meta)| {
                if seen.get(fingerprint)?.is_some() {
                    return Ok(None);
                }
                seen.insert(fingerprint, &now_ms().to_be_bytes())?;
                let current = match group {
                    Some(key) => match parts.get(key.as_bytes())? {
                        Some(bytes) => Some(tx_decode("inbound_parts", key.as_bytes(), &bytes)?),
                        None => None,
                    },
                    None => None,
                };
                let (next, new_events) = change(current);
                if let Some(key) = group {
                    match next {
                        Some(next) => parts.insert(key.as_bytes(), encode(&next))?,
                        None => parts.remove(key.as_bytes())?,
                    };
                }
                Ok(Some(self.write_events(meta, events, jobs, &new_events)?))
            });
        let result = self.commit(result)?;
        self.flush()?;
        self.announce_jobs();
        Ok(result)
    }

    /// Reassembly groups still incomplete: (key, group).
    pub fn inbound_groups(&self) -> Result<Vec<(String, InboundGroup)>, StoreError> {
        self.inbound_parts
            .iter()
            .map(|entry| {
                let (key, bytes) = entry?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    decode("inbound_parts", &key, &bytes)?,
                ))
            })
            .collect()
    }

    /// Closes a group with the event `build` makes from it as it is now (a part may have
    /// arrived since the caller looked); `build` returning `None` keeps the group.
    pub fn close_group<F>(&self, key: &str, build: F) -> Result<Vec<Event>, StoreError>
    where
        F: Fn(&InboundGroup) -> Option<NewEvent>,
    {
        let result = (&self.inbound_parts, &self.events, &self.jobs, &self.meta).transaction(
            |(parts, events_tree, jobs, meta)| {
                let Some(bytes) = parts.get(key.as_bytes())? else {
                    return Ok(Vec::new());
                };
                let group: InboundGroup = tx_decode("inbound_parts", key.as_bytes(), &bytes)?;
                let Some(event) = build(&group) else {
                    return Ok(Vec::new());
                };
                parts.remove(key.as_bytes())?;
                self.write_events(meta, events_tree, jobs, &[event])
            },
        );
        let result = self.commit(result)?;
        self.flush()?;
        self.announce_jobs();
        Ok(result)
    }

    /// Records events that belong to no message or group.
    pub fn record_events(&self, events: &[NewEvent]) -> Result<Vec<Event>, StoreError> {
        let result =
            (&self.events, &self.jobs, &self.meta).transaction(|(events_tree, jobs, meta)| {
                self.write_events(meta, events_tree, jobs, events)
            });
        let result = self.commit(result)?;
        self.flush()?;
        self.announce_jobs();
        Ok(result)
    }

    // ---- events and jobs -----------------------------------------------------------------

    /// Events with a sequence above `after`, oldest first.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.events
            .range(start..)
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry?;
                decode("events", &key, &bytes)
            })
            .collect()
    }

    /// Events above `after` whose name matches `pattern` (`sms.undecodable`, `sms.*`), oldest
    /// first; at most `scan` events are looked at, so a rare name cannot make a request scan
    /// the whole log.
    pub fn events_named(
        &self,
        after: u64,
        pattern: &str,
        limit: usize,
        scan: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let filter = Subscription {
            endpoint: String::new(),
            events: vec![pattern.to_string()],
        };
        let start = after.saturating_add(1).to_be_bytes();
        let mut found = Vec::new();
        for entry in self.events.range(start..).take(scan) {
            let (key, bytes) = entry?;
            let event: Event = decode("events", &key, &bytes)?;
            if filter.wants(&event.name) {
                found.push(event);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The events of one message, oldest first, from the newest `window` events (a message's
    /// events are close together; this keeps the lookup bounded on a big log).
    pub fn events_of_message(&self, id: &str, window: usize) -> Result<Vec<Event>, StoreError> {
        let mut found = Vec::new();
        for entry in self.events.iter().rev().take(window) {
            let (key, bytes) = entry?;
            let event: Event = decode("events", &key, &bytes)?;
            if event.data["message_id"] == id {
                found.push(event);
            }
        }
        found.reverse();
        Ok(found)
    }

    /// One event.
    pub fn event(&self, sequence: u64) -> Result<Option<Event>, StoreError> {
        self.events
            .get(sequence.to_be_bytes())?
            .map(|bytes| decode("events", &sequence.to_be_bytes(), &bytes))
            .transpose()
    }

    /// Webhook jobs, earliest due first: (key, job).
    pub fn jobs(&self, limit: usize) -> Result<Vec<(Vec<u8>, Job)>, StoreError> {
        self.jobs
            .iter()
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry?;
                Ok((key.to_vec(), decode("jobs", &key, &bytes)?))
            })
            .collect()
    }

    // ---- retention -----------------------------------------------------------------------

    /// Removes events older than `events_before` (Unix ms) that no job or dead letter needs,
    /// and delivery attempts as old; finished
    /// messages last changed before `messages_before`, and dedupe fingerprints and references
    /// older than `messages_before`; at most `batch` of each per call. Returns how many went.
    pub fn prune(
        &self,
        events_before: u64,
        messages_before: u64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        let waiting: std::collections::HashSet<u64> = self
            .jobs
            .iter()
            .values()
            .filter_map(|bytes| bytes.ok())
            .filter_map(|bytes| serde_json::from_slice::<Job>(&bytes).ok())
            .map(|job| job.event_sequence)
            .chain(
                // Dead letters are replayable: their events stay.
                self.dead_letters
                    .iter()
                    .values()
                    .filter_map(|bytes| bytes.ok())
                    .filter_map(|bytes| serde_json::from_slice::<Job>(&bytes).ok())
                    .map(|job| job.event_sequence),
            )
            .collect();
        let mut old_events = Vec::new();
        for entry in self.events.iter() {
            let (key, bytes) = entry?;
            let event: Event = decode("events", &key, &bytes)?;
            if event.created_at.saturating_mul(1000) >= events_before {
                break;
            }
            if !waiting.contains(&event.sequence) {
                old_events.push(key);
            }
            if old_events.len() >= batch {
                break;
            }
        }
        for key in old_events {
            self.events.remove(key)?;
            removed += 1;
        }
        let mut old_messages = Vec::new();
        for entry in self.messages.iter() {
            let (key, bytes) = entry?;
            let message: OutboundMessage = decode("messages", &key, &bytes)?;
            // Sent counts as finished here: without status reports it stays Sent for good.
            let finished = message.state.is_final() || message.state == MessageState::Sent;
            if finished && message.updated_at < messages_before {
                old_messages.push(key);
                if old_messages.len() >= batch {
                    break;
                }
            }
        }
        for key in old_messages {
            self.messages.remove(key)?;
            removed += 1;
        }
        let mut old_seen = Vec::new();
        for entry in self.inbound_seen.iter() {
            let (key, value) = entry?;
            let at = <[u8; 8]>::try_from(value.as_ref()).map_or(0, u64::from_be_bytes);
            if at < messages_before {
                old_seen.push(key);
                if old_seen.len() >= batch {
                    break;
                }
            }
        }
        for key in old_seen {
            self.inbound_seen.remove(key)?;
            removed += 1;
        }
        let mut old_refs = Vec::new();
        for entry in self.refs.iter() {
            let (key, _) = entry?;
            let at = key
                .get(1..9)
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_be_bytes);
            if at < messages_before {
                old_refs.push(key);
                if old_refs.len() >= batch {
                    break;
                }
            }
        }
        for key in old_refs {
            self.refs.remove(key)?;
            removed += 1;
        }
        let mut old_attempts = Vec::new();
        for entry in self.attempts.iter() {
            let (key, bytes) = entry?;
            let at = serde_json::from_slice::<AttemptRecord>(&bytes).map_or(0, |record| record.at);
            if at < events_before {
                old_attempts.push(key);
                if old_attempts.len() >= batch {
                    break;
                }
            }
        }
        for key in old_attempts {
            self.attempts.remove(key)?;
            removed += 1;
        }
        // Idempotency keys live 24 h.
        let day_ago = now_ms().saturating_sub(86_400_000);
        let mut old_keys = Vec::new();
        for entry in self.idempotency.iter() {
            let (key, bytes) = entry?;
            let at = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|record| record["at"].as_u64())
                .unwrap_or(0);
            if at < day_ago {
                old_keys.push(key);
                if old_keys.len() >= batch {
                    break;
                }
            }
        }
        for key in old_keys {
            self.idempotency.remove(key)?;
            removed += 1;
        }
        let mut old_unmatched = Vec::new();
        for entry in self.unmatched.iter() {
            let (key, bytes) = entry?;
            let at = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|record| record["at"].as_u64())
                .unwrap_or(0);
            if at < messages_before {
                old_unmatched.push(key);
                if old_unmatched.len() >= batch {
                    break;
                }
            }
        }
        for key in old_unmatched {
            self.unmatched.remove(key)?;
            removed += 1;
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }

    /// Approximate bytes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(events: &[&str]) -> Subscription {
        Subscription {
            endpoint: "crm".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn wildcards_match_event_names() {
        assert!(subscription(&["sms.*"]).wants("sms.delivered"));
        assert!(subscription(&["*"]).wants("modem.disconnected"));
        assert!(subscription(&["sms.sent"]).wants("sms.sent"));
        assert!(!subscription(&["sms.sent"]).wants("sms.delivered"));
        assert!(!subscription(&["sms.*"]).wants("modem.connected"));
        assert!(!subscription(&[]).wants("sms.sent"));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store =
                Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens");
            store
                .meta
                .insert("schema_version", encode(&99u64))
                .expect("writes");
            store.flush().expect("flushes");
        }
        let error =
            Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect_err("newer");
        assert!(
            matches!(error, StoreError::NewerSchema { found: 99 }),
            "{error}"
        );
    }

    #[test]
    fn counters_persist_and_increase() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = {
            let store =
                Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens");
            store.next_counter("concat").expect("counts");
            store.next_counter("concat").expect("counts")
        };
        let store =
            Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("reopens");
        assert_eq!(first, 2);
        assert_eq!(store.next_counter("concat").expect("counts"), 3);
    }
}

#[cfg(test)]
mod transaction_tests {
    use super::*;

    #[test]
    fn an_update_records_its_event_and_job() {
        let dir = tempfile::tempdir().expect("temp dir");
        let subscriptions = vec![Subscription {
            endpoint: "crm".into(),
            events: vec!["sms.*".into()],
        }];
        let store =
            Store::open(dir.path(), &StoreSettings::default(), subscriptions).expect("opens");
        let message = OutboundMessage {
            id: "m1".into(),
            to: "+447700900123".into(),
            text: "hi".into(),
            encoding: "gsm7".into(),
            parts: Vec::new(),
            callback_data: None,
            state: MessageState::Queued,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            status_report: true,
            validity_ms: None,
            created_at: 0,
            updated_at: 0,
            sent_at: None,
            delivered_at: None,
            queue_key: None,
        };
        store.enqueue(&message).expect("enqueues");
        let (written, events) = store
            .update_message("m1", |message| {
                message.state = MessageState::Sent;
                Effects {
                    events: vec![NewEvent {
                        name: "sms.sent".into(),
                        data: serde_json::json!({}),
                    }],
                    dequeue: true,
                    ..Effects::default()
                }
            })
            .expect("updates");
        assert_eq!(written.state, MessageState::Sent);
        assert_eq!(events.len(), 1);
        assert_eq!(store.jobs(10).expect("jobs").len(), 1);
        assert!(store.outbox().expect("outbox").is_empty());
    }
}

#[cfg(test)]
mod retention_tests {
    use super::*;

    #[test]
    fn prune_keeps_recent_events_and_those_a_webhook_still_waits_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let subscriptions = vec![Subscription {
            endpoint: "crm".into(),
            events: vec!["sms.sent".into()],
        }];
        let store =
            Store::open(dir.path(), &StoreSettings::default(), subscriptions).expect("opens");
        let event = |name: &str| NewEvent {
            name: name.into(),
            data: serde_json::json!({}),
        };
        // One with a waiting job, one without.
        store
            .record_events(&[event("sms.sent"), event("sms.received")])
            .expect("written");
        // Nothing is older than "now minus a day".
        let day_ago = now_ms() - 86_400_000;
        assert_eq!(store.prune(day_ago, day_ago, 100).expect("prunes"), 0);
        // Everything is older than "a second from now": only the unsubscribed event goes.
        let later = now_ms() + 1000;
        assert_eq!(store.prune(later, later, 100).expect("prunes"), 1);
        let left = store.events_after(0, 10).expect("reads");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "sms.sent");
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens")
    }

    #[test]
    fn sent_messages_without_reports_are_pruned_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(&dir);
        let message: OutboundMessage = serde_json::from_value(serde_json::json!({
            "id": "m1", "to": "+447700900123", "text": "hi", "encoding": "gsm7", "parts": [],
            "callback_data": null, "state": "queued", "attempts": 0, "next_attempt_at": null,
            "last_error": null, "status_report": false, "created_at": 0, "updated_at": 0,
            "sent_at": null, "delivered_at": null
        }))
        .expect("an older record without queue_key reads");
        store.enqueue(&message).expect("enqueues");
        store
            .update_message("m1", |message| {
                message.state = MessageState::Sent;
                Effects {
                    dequeue: true,
                    ..Effects::default()
                }
            })
            .expect("updates");
        assert!(store.outbox().expect("reads").is_empty());
        let later = now_ms() + 1000;
        store.prune(later, later, 100).expect("prunes");
        assert!(store.message("m1").expect("reads").is_none());
    }

    #[test]
    fn closing_a_group_uses_the_parts_it_has_at_that_moment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(&dir);
        let add = |fingerprint: &[u8], sequence: u8, text: &str| {
            let part = InboundPart {
                text: text.into(),
                hex: String::new(),
            };
            store
                .record_inbound(fingerprint, Some("g"), |group| {
                    let mut group = group.unwrap_or(InboundGroup {
                        from: "+1".into(),
                        smsc: None,
                        encoding: "gsm7".into(),
                        total: 3,
                        parts: Default::default(),
                        sent_at: None,
                        first_received_at: 0,
                    });
                    group.parts.insert(sequence, part.clone());
                    (Some(group), Vec::new())
                })
                .expect("records");
        };
        add(b"p1", 1, "one ");
        let snapshot = store.inbound_groups().expect("reads");
        // Part 2 lands between the look and the close.
        add(b"p2", 2, "two ");
        let text = |group: &InboundGroup| -> String {
            group
                .parts
                .values()
                .map(|part| part.text.as_str())
                .collect()
        };
        let events = store
            .close_group(&snapshot[0].0, |group| {
                Some(NewEvent {
                    name: "sms.received".into(),
                    data: serde_json::json!({ "text": text(group) }),
                })
            })
            .expect("closes");
        assert_eq!(events[0].data["text"], "one two ");
        assert!(store.inbound_groups().expect("reads").is_empty());
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    /// A queued message asking for a report, with a 1-minute validity.
    fn message(id: &str) -> OutboundMessage {
        serde_json::from_value(serde_json::json!({
            "id": id, "to": "+447700900123", "text": "hi", "encoding": "gsm7", "parts": [],
            "callback_data": null, "state": "queued", "attempts": 0, "next_attempt_at": null,
            "last_error": null, "status_report": true, "validity_ms": 60_000, "created_at": 0,
            "updated_at": 0, "sent_at": null, "delivered_at": null
        }))
        .expect("a message")
    }

    fn set(store: &Store, id: &str, state: MessageState, sent_at: Option<u64>) {
        store
            .update_message(id, |message| {
                message.state = state;
                message.sent_at = sent_at;
                Effects::default()
            })
            .expect("updates");
    }

    #[test]
    fn the_awaited_reports_index_follows_the_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens");
        for id in ["a", "b", "c"] {
            store.enqueue(&message(id)).expect("enqueues");
        }
        // Queued: nothing awaited yet.
        assert!(
            store
                .overdue_reports(u64::MAX - 1, 10)
                .expect("reads")
                .is_empty()
        );
        set(&store, "a", MessageState::Sent, Some(1_000));
        set(&store, "b", MessageState::Sent, Some(2_000));
        set(&store, "c", MessageState::Sent, Some(3_000));
        // Due at sent_at + validity; most overdue first; bounded by the limit and by time.
        assert_eq!(store.overdue_reports(61_000, 10).expect("reads"), ["a"]);
        assert_eq!(
            store.overdue_reports(62_000, 10).expect("reads"),
            ["a", "b"]
        );
        assert_eq!(
            store.overdue_reports(u64::MAX - 1, 1).expect("reads"),
            ["a"]
        );
        // A final state takes it out of the index.
        set(&store, "a", MessageState::Delivered, Some(1_000));
        assert_eq!(store.overdue_reports(62_000, 10).expect("reads"), ["b"]);
        // A message gone (pruned) drops its entry on the next read.
        store.messages.remove("b").expect("removes");
        assert!(store.overdue_reports(62_000, 10).expect("reads").is_empty());
        assert_eq!(store.awaiting_reports.len(), 1);
    }
}
