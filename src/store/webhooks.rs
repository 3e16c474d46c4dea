//! The webhook side of the store: each endpoint's queue of jobs (keyed so that it scans
//! earliest due first), the record of every attempt, dead letters, and endpoint health.

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{Event, Job, NewEvent, Store, StoreError, decode, encode, job_key, now_ms};

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The endpoint.
    pub endpoint: String,
    /// The event sequence.
    pub event_sequence: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Wall time of the start (Unix ms).
    pub at: u64,
    /// How long it took (monotonic).
    pub duration_ms: u64,
    /// The HTTP status, when one came.
    pub status: Option<u16>,
    /// `dns`, `connect`, `tls`, `timeout`, `redirect`, `status`, `io`, `protocol`; none on
    /// success.
    pub error: Option<String>,
    /// The error text, or the `Location` of a redirect.
    pub detail: String,
    /// The first 2 KB of the response body.
    pub response: String,
}

/// Where an endpoint is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Delivering.
    #[default]
    Active,
    /// Too many failures in a row: one probe per backoff step.
    CircuitOpen,
    /// Disabled (410 Gone, or failing for ≥ 72 h): events are held until re-enabled.
    Disabled,
}

/// An endpoint's health, persisted so a restart keeps the circuit and the disable clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// Where it is.
    pub state: EndpointState,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The first failure since the last success (Unix ms).
    pub first_failure_at: Option<u64>,
    /// No attempt before this (Unix ms) while the circuit is open.
    pub circuit_until: Option<u64>,
    /// The last success (Unix ms).
    pub last_success_at: Option<u64>,
    /// The last failure, readable.
    pub last_error: Option<String>,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
}

fn endpoint_prefix(endpoint: &str) -> Vec<u8> {
    let mut prefix = endpoint.as_bytes().to_vec();
    prefix.push(0);
    prefix
}

fn attempt_key(endpoint: &str, event_sequence: u64, attempt: u32) -> Vec<u8> {
    let mut key = endpoint_prefix(endpoint);
    key.extend_from_slice(&event_sequence.to_be_bytes());
    key.extend_from_slice(&attempt.to_be_bytes());
    key
}

/// The due time in a job key.
pub fn due_of(key: &[u8]) -> u64 {
    let Some(zero) = key.iter().position(|&b| b == 0) else {
        return 0;
    };
    key.get(zero + 1..zero + 9)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_be_bytes)
}

impl Store {
    /// The endpoint's earliest due job: (key, due Unix ms, job).
    pub fn next_job(&self, endpoint: &str) -> Result<Option<(Vec<u8>, u64, Job)>, StoreError> {
        match self.jobs.scan_prefix(endpoint_prefix(endpoint)).next() {
            Some(entry) => {
                let (key, bytes) = entry?;
                let job: Job = decode("jobs", &key, &bytes)?;
                Ok(Some((key.to_vec(), due_of(&key), job)))
            }
            None => Ok(None),
        }
    }

    /// Jobs waiting for an endpoint.
    pub fn queue_depth(&self, endpoint: &str) -> usize {
        self.jobs.scan_prefix(endpoint_prefix(endpoint)).count()
    }

    /// An endpoint's health (the default when never recorded).
    pub fn endpoint_health(&self, endpoint: &str) -> Result<EndpointHealth, StoreError> {
        match self.endpoints.get(endpoint.as_bytes())? {
            Some(bytes) => decode("endpoints", endpoint.as_bytes(), &bytes),
            None => Ok(EndpointHealth::default()),
        }
    }

    /// Sets an endpoint's health.
    pub fn set_endpoint_health(
        &self,
        endpoint: &str,
        health: &EndpointHealth,
    ) -> Result<(), StoreError> {
        self.endpoints.insert(endpoint.as_bytes(), encode(health))?;
        self.flush()
    }

    /// After an attempt: the job done (`next_due` None and not dead), moved to a later due
    /// time, or into the dead letters; the attempt and the endpoint's health recorded. One
    /// transaction, flushed, so the schedule survives a kill.
    pub fn settle_job(
        &self,
        key: &[u8],
        job: &Job,
        record: &AttemptRecord,
        health: &EndpointHealth,
        outcome: JobOutcome,
    ) -> Result<(), StoreError> {
        // Records are numbered per (endpoint, event) across replays: a replayed dead letter
        // restarts its attempt count but keeps its history.
        let mut prefix = endpoint_prefix(&job.endpoint);
        prefix.extend_from_slice(&job.event_sequence.to_be_bytes());
        let index = self
            .attempts
            .scan_prefix(&prefix)
            .keys()
            .next_back()
            .transpose()?
            .and_then(|key| {
                key.get(prefix.len()..)
                    .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            })
            .map_or(1, |bytes| u32::from_be_bytes(bytes) + 1);
        let trees = (
            &self.jobs,
            &self.attempts,
            &self.dead_letters,
            &self.endpoints,
        );
        self.commit(trees.transaction(|(jobs, attempts, dead, endpoints)| {
            jobs.remove(key)?;
            match outcome {
                JobOutcome::Delivered => {}
                JobOutcome::Retry { due } => {
                    jobs.insert(job_key(&job.endpoint, due, job.event_sequence), encode(job))?;
                }
                JobOutcome::DeadLetter => {
                    dead.insert(
                        attempt_key(&job.endpoint, job.event_sequence, 0),
                        encode(job),
                    )?;
                }
            }
            attempts.insert(
                attempt_key(&job.endpoint, job.event_sequence, index),
                encode(record),
            )?;
            endpoints.insert(job.endpoint.as_bytes(), encode(health))?;
            Ok(())
        }))?;
        // A success may ride on the next flush (the daemon flushes every 5 s): losing it only
        // repeats a delivery, with the same webhook-id.
        if !matches!(outcome, JobOutcome::Delivered) {
            self.flush()?;
        }
        Ok(())
    }

    /// Every attempt at delivering an event to an endpoint, in order.
    pub fn attempts(
        &self,
        endpoint: &str,
        event_sequence: u64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut prefix = endpoint_prefix(endpoint);
        prefix.extend_from_slice(&event_sequence.to_be_bytes());
        self.attempts
            .scan_prefix(prefix)
            .map(|entry| {
                let (key, bytes) = entry?;
                decode("attempts", &key, &bytes)
            })
            .collect()
    }

    /// An endpoint's dead letters, oldest event first.
    pub fn dead_letters_of(&self, endpoint: &str) -> Result<Vec<Job>, StoreError> {
        self.dead_letters
            .scan_prefix(endpoint_prefix(endpoint))
            .map(|entry| {
                let (key, bytes) = entry?;
                decode("dead_letters", &key, &bytes)
            })
            .collect()
    }

    /// How many dead letters an endpoint has.
    pub fn dead_letter_count(&self, endpoint: &str) -> usize {
        self.dead_letters
            .scan_prefix(endpoint_prefix(endpoint))
            .count()
    }

    /// Dead letters: jobs that ran out of attempts.
    pub fn dead_letters(&self) -> Result<Vec<Job>, StoreError> {
        self.dead_letters
            .iter()
            .map(|entry| {
                let (key, bytes) = entry?;
                decode("dead_letters", &key, &bytes)
            })
            .collect()
    }

    /// Puts a dead letter back in its endpoint's queue with a fresh schedule, due now.
    pub fn replay_dead_letter(
        &self,
        endpoint: &str,
        event_sequence: u64,
    ) -> Result<bool, StoreError> {
        let key = attempt_key(endpoint, event_sequence, 0);
        let replayed = self.commit((&self.dead_letters, &self.jobs).transaction(
            |(dead, jobs)| {
                let Some(bytes) = dead.remove(key.as_slice())? else {
                    return Ok(false);
                };
                let mut job: Job = super::tx_decode("dead_letters", &key, &bytes)?;
                job.attempts = 0;
                // Replayed by hand, an enable's failed test is an ordinary delivery: its
                // failure must not disable an endpoint that works again.
                job.enable_probe = false;
                jobs.insert(job_key(endpoint, now_ms(), event_sequence), encode(&job))?;
                Ok(true)
            },
        ))?;
        if replayed {
            self.flush()?;
            self.announce_jobs();
        }
        Ok(replayed)
    }

    /// Re-keys every job of an endpoint to one due time, so what it held goes out in event
    /// order (a 410 or a disable re-keyed the failing job to a later time).
    pub fn release_held(&self, endpoint: &str, due: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for entry in self.jobs.scan_prefix(endpoint_prefix(endpoint)) {
            let (key, bytes) = entry?;
            // Due 0 is a test event: it stays first.
            if due_of(&key) == 0 {
                continue;
            }
            let job: Job = decode("jobs", &key, &bytes)?;
            batch.remove(key);
            batch.insert(job_key(endpoint, due, job.event_sequence), bytes);
        }
        self.jobs.apply_batch(batch)?;
        self.flush()
    }

    /// Queues an event again for every endpoint that subscribes to it, as routed when it was
    /// written (`routing::route`: an inbound SMS goes back only to the endpoints its keyword
    /// or sender chose), a replay by hand: the endpoints, or `None` when the event is not
    /// stored.
    ///
    /// An endpoint keeps at most one job per event: a job still queued (or held) stays as it
    /// is, and a dead letter is replayed. A second job would share the first one's keys, and
    /// re-keying held jobs on enable would overwrite one with the other.
    pub fn redeliver(&self, event_sequence: u64) -> Result<Option<Vec<String>>, StoreError> {
        let Some(event) = self.event(event_sequence)? else {
            return Ok(None);
        };
        let mut endpoints = Vec::new();
        let route = super::routing::route(&self.subscriptions, &event.name, &event.data);
        for subscription in route.endpoints {
            let endpoint = subscription.endpoint.as_str();
            endpoints.push(endpoint.to_string());
            if self.has_job(endpoint, event_sequence)?
                || self.replay_dead_letter(endpoint, event_sequence)?
            {
                continue;
            }
            self.commit((&self.jobs, &self.meta).transaction(|(jobs, meta)| {
                let job = Job {
                    event_sequence,
                    sequence: super::next_endpoint_sequence(meta, endpoint)?,
                    endpoint: endpoint.to_string(),
                    task_id: uuid::Uuid::now_v7().to_string(),
                    attempts: 0,
                    created_at: now_ms(),
                    enable_probe: false,
                };
                jobs.insert(job_key(endpoint, now_ms(), event_sequence), encode(&job))?;
                Ok(())
            }))?;
        }
        self.flush()?;
        self.announce_jobs();
        Ok(Some(endpoints))
    }

    /// Whether the endpoint has a job for this event waiting (due, retrying or held).
    fn has_job(&self, endpoint: &str, event_sequence: u64) -> Result<bool, StoreError> {
        let wanted = event_sequence.to_be_bytes();
        for entry in self.jobs.scan_prefix(endpoint_prefix(endpoint)) {
            let (key, _) = entry?;
            // A job key ends with the event's sequence number.
            if key.ends_with(&wanted) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records a `webhook.test` event for one endpoint only, due before anything it holds;
    /// `enable_probe` marks the test that re-enabling sends (its failure keeps it disabled).
    pub fn enqueue_test_event(
        &self,
        endpoint: &str,
        enable_probe: bool,
    ) -> Result<Event, StoreError> {
        let new = NewEvent {
            name: "webhook.test".into(),
            data: serde_json::json!({ "endpoint": endpoint, "message": "a test from smsrelay" }),
        };
        let trees = (&self.events, &self.jobs, &self.meta);
        let event = self.commit(trees.transaction(|(events, jobs, meta)| {
            // Written as for no subscriber, then one job added by hand at due time 0.
            let written =
                self.write_events_for(meta, events, jobs, std::slice::from_ref(&new), false)?;
            let event = written.into_iter().next().ok_or_else(|| {
                sled::transaction::ConflictableTransactionError::Abort(StoreError::Corrupt {
                    tree: "events",
                    key: "-".into(),
                    error: "no event written".into(),
                })
            })?;
            let job = Job {
                event_sequence: event.sequence,
                sequence: super::next_endpoint_sequence(meta, endpoint)?,
                endpoint: endpoint.to_string(),
                task_id: uuid::Uuid::now_v7().to_string(),
                attempts: 0,
                created_at: now_ms(),
                enable_probe,
            };
            jobs.insert(job_key(endpoint, 0, event.sequence), encode(&job))?;
            Ok(event)
        }))?;
        self.flush()?;
        self.announce_jobs();
        Ok(event)
    }
}

/// What happens to a job after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Delivered: the job goes.
    Delivered,
    /// Try again at this time (Unix ms).
    Retry {
        /// The new due time.
        due: u64,
    },
    /// Out of attempts.
    DeadLetter,
}
