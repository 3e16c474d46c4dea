//! The store's health: whether the database still writes (a full disk, an I/O error), said in
//! the log at most once a minute; and the clock floor, the newest time known to be right.

use std::time::UNIX_EPOCH;

use super::{Event, Store, StoreError, decode, keys, now_ms};

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

/// The last database failure and when it was last logged.
#[derive(Debug, Default)]
pub(super) struct Health {
    failure: Option<StoreFailure>,
    last_logged: Option<std::time::Instant>,
}

impl Store {
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
    pub(super) fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
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
            .get(keys::CLOCK_FLOOR)?
            .and_then(|bytes| keys::read_u64(&bytes))
            .unwrap_or(0);
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
        self.meta.fetch_and_update(keys::CLOCK_FLOOR, |old| {
            let current = old.and_then(keys::read_u64).unwrap_or(0);
            Some(current.max(at).to_be_bytes().to_vec())
        })?;
        self.flush()
    }
}
