//! The only module that touches sled.
//!
//! Every change users care about is one sled transaction over the trees it touches (message
//! state, the outbox, status-report references, the event, one webhook job per subscribed
//! endpoint), followed by a flush before the caller goes on. The store holds no SMS logic: the
//! gateway passes closures that decide what changes; sled may run them more than once on a
//! conflict, so they are pure.
//!
//! All calls block (sled flushes to disk): call them from blocking threads.
//!
//! Layout, one concept per file, all `impl Store`: `outbound.rs` (messages, outbox, TP-MR
//! references, unmatched reports), `inbound.rs` (dedupe and reassembly groups), `events.rs`
//! (the event log and its webhook jobs), `webhooks.rs` (job queues, attempts, dead letters),
//! `retention.rs` (`prune`), `health.rs` (write failures, the clock floor), `keys.rs` (every
//! key layout), `model.rs` (the records). This file: opening, errors, the shared types.

mod events;
mod health;
mod inbound;
mod keys;
pub mod model;
mod outbound;
mod retention;
pub mod routing;
mod webhooks;

pub use health::StoreFailure;
pub use keys::job_key;
pub use webhooks::{AttemptRecord, EndpointHealth, EndpointState, JobOutcome, due_of};
// `webhooks.rs` reaches these through `super::`.
use events::next_endpoint_sequence;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Tree;
use sled::transaction::{ConflictableTransactionError, TransactionError};

pub use model::{
    Encoding, Event, FailureInfo, FailureStage, InboundGroup, InboundPart, Job, MessageReference,
    MessageState, OutPart, OutboundMessage, PartState,
};

/// The layout version of the trees; bumped when a change needs a migration or when an older
/// smsrelay would misread what this one writes. 2: `refs` keys end with the modem's name.
pub const SCHEMA_VERSION: u64 = 2;
/// The `api_version` of the event contract.
pub const API_VERSION: &str = "2026-11-22";

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
    /// Another process holds the database.
    #[error(
        "the database in {path} is in use by another process (another smsrelay on the same \
         data_dir?): still locked after {waited:?}"
    )]
    Locked {
        /// The database's directory.
        path: String,
        /// How long the open waited for the lock.
        waited: std::time::Duration,
    },
}

/// How long opening the store waits for the database's lock. sled lets its last handle go on
/// its own I/O threads, so a store closed a moment ago (the demo, a restart in one process)
/// may hold the lock a little longer; another daemon on the same data dir holds it for good.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `error` is sled's "could not acquire lock" (an I/O error it words itself).
fn is_lock_conflict(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

impl StoreError {
    /// Whether the database itself failed (a full disk, an I/O error), as opposed to one
    /// record or request: the store logs those once a minute, callers need not.
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, StoreError::Database(_))
    }
}

/// How sled runs on a small board.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Page cache size in bytes (default 16 MB: a Pi Zero has 512 MB in all).
    pub cache_bytes: u64,
    /// sled's background flush interval. None by default: every state change is flushed
    /// explicitly and the daemon flushes every 5 s besides, while sled's flusher thread wakes
    /// and fsyncs every interval even when nothing changed (an idle wake-up and SD-card wear).
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings {
            cache_bytes: 16 * 1024 * 1024,
            flush_every_ms: None,
        }
    }
}

/// An endpoint's interest in events (from `[[webhook]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// The endpoint's name.
    pub endpoint: String,
    /// Event name patterns: `sms.*`, `sms.delivered`, `*`.
    pub events: Vec<String>,
    /// Inbound SMS routing (`keywords`, `senders`, `unmatched`); outbound events ignore it.
    pub routing: routing::Routing,
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
    pub references: Vec<(MessageReference, usize)>,
    /// Status-report references to remove (keys from [`Store::references`]).
    pub unreference: Vec<Vec<u8>>,
}

/// A status-report reference: a submitted part waiting for its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The key, to remove it.
    pub key: Vec<u8>,
    /// The TP-MR.
    pub reference: MessageReference,
    /// When the part was submitted (Unix ms).
    pub submitted_at: u64,
    /// The message.
    pub message_id: String,
    /// The part index.
    pub part: usize,
    /// The message's recipient, as recorded with the reference.
    pub recipient: String,
    /// The modem that submitted the part; "" for references recorded before several
    /// modems (the first modem's).
    pub modem: String,
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
    health: std::sync::Arc<std::sync::Mutex<health::Health>>,
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

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(
        dir: &Path,
        settings: &StoreSettings,
        subscriptions: Vec<Subscription>,
    ) -> Result<Store, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(settings.cache_bytes)
            .flush_every_ms(settings.flush_every_ms);
        let started = std::time::Instant::now();
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(error) if is_lock_conflict(&error) => {
                    if started.elapsed() >= LOCK_WAIT {
                        return Err(StoreError::Locked {
                            path: dir.display().to_string(),
                            waited: LOCK_WAIT,
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => return Err(error.into()),
            }
        };
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
        match store.meta.get(keys::SCHEMA_VERSION)? {
            Some(bytes) => {
                let found = decode::<u64>("meta", keys::SCHEMA_VERSION, &bytes)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema { found });
                }
                // Older layouts read as they are (see `keys`); the version rises so that an
                // older smsrelay refuses keys it would misread.
                if found < SCHEMA_VERSION {
                    store
                        .meta
                        .insert(keys::SCHEMA_VERSION, encode(&SCHEMA_VERSION))?;
                    store.db.flush()?;
                }
            }
            None => {
                store
                    .meta
                    .insert(keys::SCHEMA_VERSION, encode(&SCHEMA_VERSION))?;
                store.db.flush()?;
            }
        }
        Ok(store)
    }

    /// How many handles on this store are open, this one included (every clone is one).
    pub fn open_handles(&self) -> usize {
        std::sync::Arc::strong_count(&self.health)
    }

    /// Flushes everything written so far to disk. sled keeps an I/O error (a full disk) and
    /// returns it from every later flush, so this also says whether the store still works.
    pub fn flush(&self) -> Result<(), StoreError> {
        let flushed = self.db.flush().map(|_| ()).map_err(StoreError::from);
        self.note(flushed)
    }

    /// As `unwrap_tx`, remembering a database failure.
    fn commit<T>(&self, result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
        self.note(unwrap_tx(result))
    }

    /// The next number of a persistent counter (`meta`), e.g. the concatenation reference.
    pub fn next_counter(&self, name: &str) -> Result<u64, StoreError> {
        let value = self.meta.update_and_fetch(name, |old| {
            let current = old.and_then(keys::read_u64).unwrap_or(0);
            Some(current.wrapping_add(1).to_be_bytes().to_vec())
        })?;
        Ok(value.and_then(|bytes| keys::read_u64(&bytes)).unwrap_or(0))
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
            ..Subscription::default()
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

    /// The routing decided when the event is written holds for its jobs, its `keyword`, and
    /// a replay by hand.
    #[test]
    fn an_inbound_sms_is_queued_and_replayed_only_for_the_endpoints_it_was_routed_to() {
        let dir = tempfile::tempdir().expect("temp dir");
        let routed = |name: &str, keywords: &[&str], unmatched: bool| Subscription {
            routing: routing::Routing {
                keywords: keywords.iter().map(|k| k.to_string()).collect(),
                unmatched,
                ..routing::Routing::default()
            },
            endpoint: name.into(),
            ..subscription(&["sms.*"])
        };
        let subscriptions = vec![routed("info", &["INFO"], false), routed("rest", &[], true)];
        let store =
            Store::open(dir.path(), &StoreSettings::default(), subscriptions).expect("opens");
        let written = store
            .record_events(&[
                NewEvent {
                    name: "sms.received".into(),
                    data: serde_json::json!({ "from": "+441234", "text": "Info please" }),
                },
                NewEvent {
                    name: "sms.sent".into(),
                    data: serde_json::json!({ "to": "+441234", "text": "info" }),
                },
            ])
            .expect("written");
        assert_eq!(written[0].data["keyword"], "INFO");
        assert!(written[1].data.get("keyword").is_none());
        assert_eq!(
            (store.queue_depth("info"), store.queue_depth("rest")),
            (2, 1)
        );
        let replayed = store.redeliver(written[0].sequence).expect("redelivers");
        assert_eq!(replayed, Some(vec!["info".to_string()]));
        let replayed = store.redeliver(written[1].sequence).expect("redelivers");
        assert_eq!(replayed, Some(vec!["info".to_string(), "rest".to_string()]));
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
    fn a_database_held_by_another_handle_is_refused_with_a_clear_error_after_the_wait() {
        let dir = tempfile::tempdir().expect("temp dir");
        let held = Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens");
        // sled locks the file per open, so a second open in this process stands in for a
        // second daemon on the same data dir.
        let error =
            Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect_err("locked");
        assert!(
            matches!(error, StoreError::Locked { waited, .. } if waited == LOCK_WAIT),
            "{error}"
        );
        assert!(
            error.to_string().contains("in use by another process"),
            "{error}"
        );
        drop(held);
        // Once the holder is gone the store opens (sled may let go a moment later: the wait).
        Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens again");
    }

    /// A store written before several modems: its version rises to 2 and a `refs` key of
    /// that time reads back as the first modem's ("").
    #[test]
    fn an_older_schema_is_upgraded_and_its_references_read_as_the_first_modems() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store =
                Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens");
            store
                .meta
                .insert("schema_version", encode(&1u64))
                .expect("writes");
            let mut old_key = vec![7u8];
            old_key.extend_from_slice(&5u64.to_be_bytes());
            old_key.extend_from_slice(&0u32.to_be_bytes());
            old_key.extend_from_slice(b"0190-old");
            store
                .refs
                .insert(old_key, b"+447700900123")
                .expect("writes");
            store.flush().expect("flushes");
        }
        let store = Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens");
        let version = store
            .meta
            .get("schema_version")
            .expect("reads")
            .expect("present");
        assert_eq!(
            decode::<u64>("meta", b"schema_version", &version).ok(),
            Some(2)
        );
        let found = store.references(MessageReference(7)).expect("reads");
        assert_eq!(found.len(), 1);
        assert_eq!(
            (
                found[0].message_id.as_str(),
                found[0].modem.as_str(),
                found[0].part
            ),
            ("0190-old", "", 0)
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
