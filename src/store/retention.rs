//! Retention: what is old enough to go, tree by tree, a batch at a time. One loop
//! ([`Store::remove_older_than`]) serves every tree; each tree only says how old a record is.

use std::collections::HashSet;

use sled::Tree;

use super::{AttemptRecord, Event, Job, MessageState, OutboundMessage, Store, StoreError, decode};
use super::{keys, now_ms};

/// What retention does with one record.
enum Verdict {
    /// Old enough: remove it.
    Remove,
    /// Keep it and look at the next.
    Keep,
    /// Keep it and stop: the tree is in time order and the rest is younger.
    Stop,
}

impl Verdict {
    fn older(at: u64, before: u64) -> Verdict {
        if at < before {
            Verdict::Remove
        } else {
            Verdict::Keep
        }
    }
}

/// How long idempotency keys are kept (the window within which a repeat is recognised).
const IDEMPOTENCY_WINDOW_MS: u64 = 86_400_000;

/// The `at` of a JSON record (`idempotency`, `unmatched_reports`); 0 when it has none, so an
/// unreadable record goes.
fn recorded_at(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|record| record["at"].as_u64())
        .unwrap_or(0)
}

impl Store {
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
        let waiting = self.events_in_use();
        let mut removed = self.remove_older_than(&self.events, batch, |key, bytes| {
            let event: Event = decode("events", key, bytes)?;
            Ok(if event.created_at.saturating_mul(1000) >= events_before {
                Verdict::Stop
            } else if waiting.contains(&event.sequence) {
                Verdict::Keep
            } else {
                Verdict::Remove
            })
        })?;
        removed += self.remove_older_than(&self.messages, batch, |key, bytes| {
            let message: OutboundMessage = decode("messages", key, bytes)?;
            // Sent counts as finished here: without status reports it stays Sent for good.
            let finished = message.state.is_final() || message.state == MessageState::Sent;
            Ok(if finished {
                Verdict::older(message.updated_at, messages_before)
            } else {
                Verdict::Keep
            })
        })?;
        removed += self.remove_older_than(&self.inbound_seen, batch, |_, bytes| {
            let at = keys::read_u64(bytes).unwrap_or(0);
            Ok(Verdict::older(at, messages_before))
        })?;
        removed += self.remove_older_than(&self.refs, batch, |key, _| {
            Ok(Verdict::older(keys::reference_time(key), messages_before))
        })?;
        removed += self.remove_older_than(&self.attempts, batch, |_, bytes| {
            let at = serde_json::from_slice::<AttemptRecord>(bytes).map_or(0, |record| record.at);
            Ok(Verdict::older(at, events_before))
        })?;
        let window_start = now_ms().saturating_sub(IDEMPOTENCY_WINDOW_MS);
        removed += self.remove_older_than(&self.idempotency, batch, |_, bytes| {
            Ok(Verdict::older(recorded_at(bytes), window_start))
        })?;
        removed += self.remove_older_than(&self.unmatched, batch, |_, bytes| {
            Ok(Verdict::older(recorded_at(bytes), messages_before))
        })?;
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }

    /// The sequences of events a webhook job or a dead letter still needs (dead letters are
    /// replayable, so their events stay).
    fn events_in_use(&self) -> HashSet<u64> {
        self.jobs
            .iter()
            .values()
            .chain(self.dead_letters.iter().values())
            .filter_map(|bytes| bytes.ok())
            .filter_map(|bytes| serde_json::from_slice::<Job>(&bytes).ok())
            .map(|job| job.event_sequence)
            .collect()
    }

    /// Removes, from the front of `tree`, up to `batch` records `verdict` (given the key and
    /// the value) finds old; returns how many went.
    fn remove_older_than(
        &self,
        tree: &Tree,
        batch: usize,
        verdict: impl Fn(&[u8], &[u8]) -> Result<Verdict, StoreError>,
    ) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        for entry in tree.iter() {
            let (key, bytes) = entry?;
            match verdict(&key, &bytes)? {
                Verdict::Remove => old.push(key),
                Verdict::Keep => {}
                Verdict::Stop => break,
            }
            if old.len() >= batch {
                break;
            }
        }
        for key in &old {
            tree.remove(key)?;
        }
        Ok(old.len())
    }
}

#[cfg(test)]
mod retention_tests {
    use crate::store::*;

    #[test]
    fn prune_keeps_recent_events_and_those_a_webhook_still_waits_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let subscriptions = vec![Subscription {
            endpoint: "crm".into(),
            events: vec!["sms.sent".into()],
            ..Subscription::default()
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
}

#[cfg(test)]
mod helper_tests {
    use super::Verdict;
    use crate::store::{Store, StoreSettings};

    /// Runs the retention loop over a tree holding keys 1..=`count`, each judged by `judge`,
    /// and compares what was removed and what is left.
    fn check(count: u8, batch: usize, judge: fn(u8) -> Verdict, removed: usize, left: &[u8]) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens");
        let tree = &store.unmatched;
        for key in 1..=count {
            tree.insert([key], &[]).expect("writes");
        }
        let gone = store
            .remove_older_than(tree, batch, |key, _| Ok(judge(key[0])))
            .expect("prunes");
        let kept: Vec<u8> = tree
            .iter()
            .keys()
            .map(|key| key.expect("reads")[0])
            .collect();
        assert_eq!((gone, kept.as_slice()), (removed, left), "batch {batch}");
    }

    fn all_old(_: u8) -> Verdict {
        Verdict::Remove
    }

    fn odd_old(key: u8) -> Verdict {
        if key % 2 == 1 {
            Verdict::Remove
        } else {
            Verdict::Keep
        }
    }

    fn young_from_three(key: u8) -> Verdict {
        if key < 3 {
            Verdict::Remove
        } else {
            Verdict::Stop
        }
    }

    #[test]
    fn the_retention_loop_removes_a_batch_of_old_records_from_the_front() {
        check(0, 10, all_old, 0, &[]);
        check(5, 10, all_old, 5, &[]);
        check(5, 2, all_old, 2, &[3, 4, 5]);
        check(5, 10, odd_old, 3, &[2, 4]);
        check(5, 2, odd_old, 2, &[2, 4, 5]);
        check(5, 10, young_from_three, 2, &[3, 4, 5]);
        check(5, 1, young_from_three, 1, &[2, 3, 4, 5]);
    }
}
