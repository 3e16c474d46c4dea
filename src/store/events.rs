//! The event log and the webhook jobs written with each event: sequence numbers, one job per
//! subscribed endpoint (inbound SMS routed by `routing`), and the signal the dispatcher waits on.

use sled::Transactional;
use sled::transaction::TransactionalTree;

use super::{
    API_VERSION, Event, Job, NewEvent, Store, StoreError, Subscription, TxResult, decode, encode,
    keys, now_ms, routing,
};

impl Store {
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

    /// Records events together with one `meta` value in the same transaction: the state they
    /// publish (the modem events' debouncer), so a restart neither repeats nor loses one.
    pub fn record_events_with_meta(
        &self,
        events: &[NewEvent],
        key: &str,
        value: &[u8],
    ) -> Result<Vec<Event>, StoreError> {
        let result =
            (&self.events, &self.jobs, &self.meta).transaction(|(events_tree, jobs, meta)| {
                meta.insert(key.as_bytes(), value)?;
                self.write_events(meta, events_tree, jobs, events)
            });
        let result = self.commit(result)?;
        self.flush()?;
        self.announce_jobs();
        Ok(result)
    }

    /// A `meta` value written by [`Store::record_events_with_meta`] or
    /// [`Store::set_meta_value`].
    pub fn meta_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key.as_bytes())?.map(|bytes| bytes.to_vec()))
    }

    /// Writes one `meta` value on its own: a small document a part of the daemon keeps
    /// across restarts (the MQTT state's last SMS and balances).
    pub fn set_meta_value(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.as_bytes(), value)?;
        self.flush()
    }

    /// Events with a sequence below `before`, newest first: a walk back through the log a
    /// batch at a time.
    pub fn events_before(&self, before: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events
            .range(..keys::event_key(before))
            .rev()
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry?;
                decode("events", &key, &bytes)
            })
            .collect()
    }

    /// Events with a sequence above `after`, oldest first.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let start = keys::event_key(after.saturating_add(1));
        self.events
            .range(start..)
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry?;
                decode("events", &key, &bytes)
            })
            .collect()
    }

    /// The newest event's sequence, 0 when there is none (the last key of the log).
    pub fn newest_event_sequence(&self) -> Result<u64, StoreError> {
        match self.events.last()? {
            None => Ok(0),
            Some((key, _)) => {
                let bytes: [u8; 8] = key.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "events",
                    key: hex::encode(&key),
                    error: "an event key is not 8 bytes".into(),
                })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
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
            ..Subscription::default()
        };
        let start = keys::event_key(after.saturating_add(1));
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
            .get(keys::event_key(sequence))?
            .map(|bytes| decode("events", &keys::event_key(sequence), &bytes))
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

    pub(super) fn announce_jobs(&self) {
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

    /// Writes events and their jobs inside a transaction. Sequence numbers come from a
    /// counter in `meta` read and written in the same transaction (sled's `generate_id`
    /// cannot be called inside one: it waits on the transaction's own lock).
    pub(super) fn write_events(
        &self,
        meta: &TransactionalTree,
        events_tree: &TransactionalTree,
        jobs_tree: &TransactionalTree,
        events: &[NewEvent],
    ) -> TxResult<Vec<Event>> {
        self.write_events_for(meta, events_tree, jobs_tree, events, true)
    }

    /// As [`Store::write_events`]; `subscribed` false writes the events without jobs.
    pub(super) fn write_events_for(
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
            .get(keys::EVENT_SEQUENCE)?
            .and_then(|bytes| keys::read_u64(&bytes))
            .unwrap_or(0);
        let mut written = Vec::with_capacity(events.len());
        for new in events {
            sequence += 1;
            let mut data = new.data.clone();
            let route = routing::route(&self.subscriptions, &new.name, &data);
            if let Some(keyword) = &route.keyword {
                data["keyword"] = keyword.as_str().into();
            }
            // A null `message_number` asks for the next one (inbound messages get theirs in
            // the transaction that records them).
            if data.get("message_number") == Some(&serde_json::Value::Null) {
                data["message_number"] = next_message_number(meta)?.into();
            }
            let event = Event {
                sequence,
                id: uuid::Uuid::now_v7().to_string(),
                name: new.name.clone(),
                api_version: API_VERSION.to_string(),
                created_at: now_ms() / 1000,
                clock_suspect: self
                    .clock_suspect
                    .load(std::sync::atomic::Ordering::Relaxed),
                data,
            };
            events_tree.insert(&keys::event_key(sequence), encode(&event))?;
            let due = now_ms();
            for subscription in route.endpoints.iter().filter(|_| subscribed) {
                let job = Job {
                    event_sequence: sequence,
                    sequence: next_endpoint_sequence(meta, &subscription.endpoint)?,
                    endpoint: subscription.endpoint.clone(),
                    task_id: uuid::Uuid::now_v7().to_string(),
                    attempts: 0,
                    created_at: due,
                    enable_probe: false,
                };
                jobs_tree.insert(
                    keys::job_key(&subscription.endpoint, due, sequence),
                    encode(&job),
                )?;
            }
            written.push(event);
        }
        meta.insert(keys::EVENT_SEQUENCE, &sequence.to_be_bytes())?;
        Ok(written)
    }
}

/// The endpoint's next delivery number (the body's `sequence`). Dense per endpoint and
/// assigned with the job, so receivers see gaps and reordering; redeliveries and test events
/// get one too.
pub(super) fn next_endpoint_sequence(meta: &TransactionalTree, endpoint: &str) -> TxResult<u64> {
    let counter = keys::endpoint_sequence_key(endpoint);
    let next = meta
        .get(&counter)?
        .and_then(|bytes| keys::read_u64(&bytes))
        .unwrap_or(0)
        + 1;
    meta.insert(counter, &next.to_be_bytes())?;
    Ok(next)
}

/// The next message number (outbound and inbound share the counter), read and written in
/// the caller's transaction so a number is never given twice.
pub(super) fn next_message_number(meta: &TransactionalTree) -> TxResult<u64> {
    let next = meta
        .get(keys::MESSAGE_NUMBER)?
        .and_then(|bytes| keys::read_u64(&bytes))
        .unwrap_or(0)
        + 1;
    meta.insert(keys::MESSAGE_NUMBER, &next.to_be_bytes())?;
    Ok(next)
}
