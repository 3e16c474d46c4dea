//! Outbound messages: the record, the outbox queue, the index of messages awaiting a status
//! report, the TP-MR references of submitted parts, and status reports no message matched.
//! The store changes a message only through the gateway's pure `change` closures.

use sled::Transactional;
use sled::transaction::abort;

use super::events::next_message_number;
use super::{
    Effects, Event, MessageReference, MessageState, NewEvent, OutboundMessage, Reference, Store,
    StoreError, decode, encode, keys, now_ms, tx_decode,
};

/// The message's `awaiting_reports` key while a status report is awaited.
fn awaiting_key(message: &OutboundMessage) -> Option<Vec<u8>> {
    Some(keys::awaiting_key(message.report_due()?, &message.id))
}

impl Store {
    /// Stores a new message and queues it; durable when this returns.
    pub fn enqueue(&self, message: &OutboundMessage) -> Result<(), StoreError> {
        self.enqueue_with(message, |_| Vec::new()).map(|_| ())
    }

    /// As [`Store::enqueue`], with the events `events` makes from the message as stored
    /// (numbered), written in the same transaction; returns the stored message.
    pub fn enqueue_with<F>(
        &self,
        message: &OutboundMessage,
        events: F,
    ) -> Result<OutboundMessage, StoreError>
    where
        F: Fn(&OutboundMessage) -> Vec<NewEvent>,
    {
        let id = self.db.generate_id()?;
        let queue_key = keys::queue_key(id);
        let trees = (
            &self.messages,
            &self.outbox,
            &self.meta,
            &self.events,
            &self.jobs,
        );
        let stored = self.commit(trees.transaction(
            |(messages, outbox, meta, events_tree, jobs)| {
                let message = OutboundMessage {
                    queue_key: Some(id),
                    number: Some(next_message_number(meta)?),
                    ..message.clone()
                };
                messages.insert(message.id.as_bytes(), encode(&message))?;
                outbox.insert(&queue_key, message.id.as_bytes())?;
                self.write_events(meta, events_tree, jobs, &events(&message))?;
                Ok(message)
            },
        ))?;
        self.flush()?;
        self.announce_jobs();
        Ok(stored)
    }

    /// As [`Store::enqueue`], once per `key` within `window`: a repeat stores nothing and
    /// returns the first time's record, `{"at", "answer", "request"}`, so the caller can tell
    /// a retry from a different request that reuses the key.
    /// `events` as in [`Store::enqueue_with`].
    pub fn enqueue_once<F>(
        &self,
        message: &OutboundMessage,
        key: &str,
        request: &serde_json::Value,
        answer: &serde_json::Value,
        window: std::time::Duration,
        events: F,
    ) -> Result<Option<serde_json::Value>, StoreError>
    where
        F: Fn(&OutboundMessage) -> Vec<NewEvent>,
    {
        let id = self.db.generate_id()?;
        let now = now_ms();
        let oldest = now.saturating_sub(window.as_millis() as u64);
        let trees = (
            &self.messages,
            &self.outbox,
            &self.idempotency,
            &self.meta,
            &self.events,
            &self.jobs,
        );
        let earlier = self.commit(trees.transaction(
            |(messages, outbox, keys, meta, events_tree, jobs)| {
                if let Some(bytes) = keys.get(key.as_bytes())? {
                    let record: serde_json::Value =
                        tx_decode("idempotency", key.as_bytes(), &bytes)?;
                    if record["at"].as_u64().unwrap_or(0) >= oldest {
                        return Ok(Some(record));
                    }
                }
                let message = OutboundMessage {
                    queue_key: Some(id),
                    number: Some(next_message_number(meta)?),
                    ..message.clone()
                };
                messages.insert(message.id.as_bytes(), encode(&message))?;
                outbox.insert(&keys::queue_key(id), message.id.as_bytes())?;
                let record = serde_json::json!({ "at": now, "answer": answer, "request": request });
                keys.insert(key.as_bytes(), encode(&record))?;
                self.write_events(meta, events_tree, jobs, &events(&message))?;
                Ok(None)
            },
        ))?;
        if earlier.is_none() {
            self.flush()?;
            self.announce_jobs();
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

    /// The record [`Store::enqueue_once`] keeps for `key` (`{"at", "answer", "request"}`,
    /// plus `"published"` once marked), whatever its age.
    pub fn idempotency_record(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        match self.idempotency.get(key.as_bytes())? {
            Some(bytes) => Ok(Some(decode("idempotency", key.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Records `key` in the idempotency tree (kept as long as other keys) unless it is there
    /// already, flushed: true for the first caller, false for a repeat.
    pub fn claim_once(&self, key: &str) -> Result<bool, StoreError> {
        let record = serde_json::json!({ "at": now_ms(), "claimed": true });
        let claimed = self
            .idempotency
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(encode(&record)))?
            .is_ok();
        if claimed {
            self.flush()?;
        }
        Ok(claimed)
    }

    /// Marks `key`'s record as answered (its result was published), flushed: a repeat of the
    /// command finds the mark and is not answered twice.
    pub fn mark_idempotency_published(&self, key: &str) -> Result<(), StoreError> {
        let marked = self.idempotency.fetch_and_update(key.as_bytes(), |bytes| {
            let bytes = bytes?;
            // A record that does not parse is kept as it is (never removed here).
            match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(mut record) if record.is_object() => {
                    record["published"] = serde_json::Value::Bool(true);
                    Some(encode(&record))
                }
                _ => Some(bytes.to_vec()),
            }
        })?;
        if marked.is_some() {
            self.flush()?;
        }
        Ok(())
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
                        outbox.remove(&keys::queue_key(key))?;
                    }
                }
                for &(reference, part) in &effects.references {
                    let modem = message
                        .parts
                        .get(part)
                        .and_then(|part| part.modem.as_deref())
                        .unwrap_or_default();
                    let key = keys::reference_key(reference, now_ms(), id, part, modem);
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
        let end = keys::awaiting_end(due_by);
        for entry in self.awaiting_reports.range(..end).take(limit) {
            let (key, _) = entry?;
            let id = keys::awaiting_id(&key);
            if self.messages.contains_key(id.as_bytes())? {
                found.push(id);
            } else {
                self.awaiting_reports.remove(&key)?;
            }
        }
        Ok(found)
    }

    /// Submitted parts waiting for a report with this TP-MR, most recent first.
    pub fn references(&self, reference: MessageReference) -> Result<Vec<Reference>, StoreError> {
        let mut found = Vec::new();
        for entry in self.refs.scan_prefix([reference.0]) {
            let (key, recipient) = entry?;
            let Some(parsed) = keys::parse_reference_key(&key) else {
                continue;
            };
            found.push(Reference {
                key: key.to_vec(),
                reference,
                submitted_at: parsed.at,
                part: parsed.part,
                message_id: parsed.id,
                modem: parsed.modem,
                recipient: String::from_utf8_lossy(&recipient).into_owned(),
            });
        }
        found.reverse();
        Ok(found)
    }

    /// Keeps a status report no message matched, for a later match and for people to see;
    /// `modem` is the name of the modem it came on.
    pub fn record_unmatched(
        &self,
        hex: &str,
        report: &serde_json::Value,
        modem: &str,
    ) -> Result<Vec<u8>, StoreError> {
        let key = keys::queue_key(self.db.generate_id()?);
        let record =
            serde_json::json!({ "hex": hex, "report": report, "at": now_ms(), "modem": modem });
        self.unmatched.insert(key, encode(&record))?;
        self.flush()?;
        Ok(key.to_vec())
    }

    /// Unmatched status reports: (key, PDU hex, received Unix ms).
    pub fn unmatched(&self) -> Result<Vec<(Vec<u8>, String, u64)>, StoreError> {
        self.unmatched_on(|_| true)
    }

    /// The unmatched status reports that came on a modem `on` accepts (by name; "" for
    /// reports kept before several modems).
    pub fn unmatched_on(
        &self,
        on: impl Fn(&str) -> bool,
    ) -> Result<Vec<(Vec<u8>, String, u64)>, StoreError> {
        let mut found = Vec::new();
        for entry in self.unmatched.iter() {
            let (key, bytes) = entry?;
            let record: serde_json::Value = decode("unmatched_reports", &key, &bytes)?;
            if !on(record["modem"].as_str().unwrap_or_default()) {
                continue;
            }
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
}

#[cfg(test)]
mod transaction_tests {
    use crate::store::*;

    #[test]
    fn an_update_records_its_event_and_job() {
        let dir = tempfile::tempdir().expect("temp dir");
        let subscriptions = vec![Subscription {
            endpoint: "crm".into(),
            events: vec!["sms.*".into()],
            ..Subscription::default()
        }];
        let store =
            Store::open(dir.path(), &StoreSettings::default(), subscriptions).expect("opens");
        let message = OutboundMessage {
            id: "m1".into(),
            to: "+447700900123".into(),
            text: "hi".into(),
            encoding: Encoding::Gsm7,
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
            number: None,
            dry_run: false,
            modem: None,
            sim: None,
            pinned: false,
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
mod expiry_tests {
    use crate::store::*;

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

#[cfg(test)]
mod number_tests {
    use crate::store::*;

    fn message(id: &str) -> OutboundMessage {
        serde_json::from_value(serde_json::json!({
            "id": id, "to": "+447700900123", "text": "hi", "encoding": "gsm7", "parts": [],
            "callback_data": null, "state": "queued", "attempts": 0, "next_attempt_at": null,
            "last_error": null, "status_report": true, "created_at": 0, "updated_at": 0,
            "sent_at": null, "delivered_at": null
        }))
        .expect("a message")
    }

    fn inbound() -> NewEvent {
        NewEvent {
            name: "sms.received".into(),
            data: serde_json::json!({ "message_id": "in", "message_number": null }),
        }
    }

    /// Outbound and inbound messages share one counter, taken in the transaction that
    /// stores them; the numbers survive a reopen and are never given twice, and the events
    /// written with the message carry its number.
    #[test]
    fn message_numbers_are_given_once_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = || Store::open(dir.path(), &StoreSettings::default(), Vec::new());
        let queued = |message: &OutboundMessage| {
            vec![NewEvent {
                name: "sms.queued".into(),
                data: serde_json::json!({ "message_number": message.number }),
            }]
        };
        {
            let store = open().expect("opens");
            let first = store.enqueue_with(&message("a"), queued).expect("stored");
            assert_eq!(first.number, Some(1));
            let stored = store.message("a").expect("reads").expect("stored");
            assert_eq!(stored.number, Some(1));
            let events = store.record_events(&[inbound()]).expect("recorded");
            assert_eq!(events[0].data["message_number"], 2);
            let second = store.enqueue_with(&message("b"), queued).expect("stored");
            assert_eq!(second.number, Some(3));
            let numbers: Vec<_> = store
                .events_after(0, 10)
                .expect("reads")
                .iter()
                .map(|event| event.data["message_number"].clone())
                .collect();
            assert_eq!(numbers, [1, 2, 3]);
        }
        let store = open().expect("reopens");
        let third = store.enqueue_with(&message("c"), queued).expect("stored");
        assert_eq!(third.number, Some(4));
        let stored = store.message("a").expect("reads").expect("stored");
        assert_eq!(stored.number, Some(1), "unchanged by the restart");
    }
}
