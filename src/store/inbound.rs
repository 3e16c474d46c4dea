//! Inbound messages: each PDU recorded once (by its fingerprint, in `inbound_seen`) with the
//! reassembly group it belongs to (`inbound_parts`), and the group closed into its event.

use sled::Transactional;

use super::{Event, InboundGroup, NewEvent, Store, StoreError, decode, encode, now_ms, tx_decode};

impl Store {
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
        let result = self.record_inbound_unflushed(fingerprint, group, change)?;
        self.flush_inbound()?;
        Ok(result)
    }

    /// [`Store::record_inbound`] without the flush, for a batch (group commit): committed but
    /// not durable, and its webhook jobs not announced, until [`Store::flush_inbound`]
    /// returns. Nothing may act on the PDU (delete it from the modem) before then.
    pub fn record_inbound_unflushed<F>(
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
        self.commit(result)
    }

    /// Makes every inbound record committed so far durable (one flush for a batch), then
    /// wakes the webhook dispatcher for their jobs.
    pub fn flush_inbound(&self) -> Result<(), StoreError> {
        self.flush()?;
        self.announce_jobs();
        Ok(())
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
}

#[cfg(test)]
mod review_tests {
    use crate::store::*;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(dir.path(), &StoreSettings::default(), Vec::new()).expect("opens")
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
                        modem: None,
                        sim: None,
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
