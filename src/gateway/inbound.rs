//! Inbound PDUs: each part recorded once, concatenated messages reassembled, `sms.received`
//! emitted once; status reports passed to the matcher; undecodable PDUs recorded as
//! `sms.undecodable`.

use std::collections::BTreeMap;

use log::{error, info};
use sha2::{Digest, Sha256};

use super::Gateway;
use super::events::{self, rfc3339};
use crate::modem::{Inbound, Origin};
use crate::pdu::{Body, Concat, ConcatReference, Deliver, Tpdu};
use crate::store::blocking;
use crate::store::{InboundGroup, InboundPart, NewEvent, StoreError, now_ms};

/// What identifies a part whatever route or read brought it (padding and the SMSC field
/// vary between `+CMT`, `+CMGR` and `+CMGL`): sender, SC timestamp, concatenation, content,
/// and the modem it came on (`scope`, "" for the first: the same SMS sent to two SIMs is two
/// messages; the first's stays as before so a part seen before an upgrade is still known).
fn fingerprint(deliver: &Deliver, scope: &str) -> Vec<u8> {
    let mut hash = Sha256::new();
    if !scope.is_empty() {
        hash.update(format!("modem|{scope}|").as_bytes());
    }
    hash.update(deliver.sender.to_string().as_bytes());
    hash.update(deliver.timestamp.octets());
    if let Some(concat) = deliver
        .user_data
        .header
        .as_ref()
        .and_then(|udh| udh.concat())
    {
        hash.update(concat_key(&deliver.sender.to_string(), &concat, scope).as_bytes());
        hash.update([concat.sequence]);
    }
    match &deliver.user_data.body {
        Body::Text(text) => hash.update(text.as_bytes()),
        Body::Data(data) => hash.update(data),
    }
    hash.finalize().to_vec()
}

/// The reassembly group of a part: concatenation references are per sender and per SIM, so
/// the key holds the modem (`scope`; "" for the first modem, whose keys stay as they were
/// before several modems so that a group begun before an upgrade still completes).
fn concat_key(sender: &str, concat: &Concat, scope: &str) -> String {
    let (bits, reference) = match concat.reference {
        ConcatReference::Eight(value) => (8, u16::from(value)),
        ConcatReference::Sixteen(value) => (16, value),
    };
    if scope.is_empty() {
        format!("{sender}|{bits}:{reference}|{}", concat.total)
    } else {
        format!("{scope}#{sender}|{bits}:{reference}|{}", concat.total)
    }
}

/// One inbound part, ready to be folded into its reassembly group (pure: the store runs
/// [`Arrival::fold_into`] inside its transaction, and may run it again on a conflict).
struct Arrival {
    from: String,
    smsc: Option<String>,
    encoding: String,
    sequence: u8,
    total: u8,
    group_key: Option<String>,
    sent_at: Option<String>,
    part: InboundPart,
    to: Option<String>,
    modem: String,
    sim: u32,
}

/// The modem a part arrived on, as [`Arrival::of`] takes it.
struct ArrivedOn<'a> {
    /// Its name.
    name: &'a str,
    /// Its SIM slot number.
    sim: u32,
    /// "" for the first modem, else its name (see [`concat_key`]).
    scope: &'a str,
    /// The number it receives at.
    to: Option<String>,
}

impl Arrival {
    fn of(deliver: &Deliver, smsc: Option<String>, hex: String, on: ArrivedOn<'_>) -> Arrival {
        let from = deliver.sender.to_string();
        let concat = deliver
            .user_data
            .header
            .as_ref()
            .and_then(|udh| udh.concat())
            .filter(|concat| concat.total > 1 && (1..=concat.total).contains(&concat.sequence));
        let (sequence, total, group_key) = match concat {
            Some(concat) => (
                concat.sequence,
                concat.total,
                Some(concat_key(&from, &concat, on.scope)),
            ),
            None => (1, 1, None),
        };
        let text = match &deliver.user_data.body {
            Body::Text(text) => text.clone(),
            Body::Data(data) => hex::encode_upper(data),
        };
        Arrival {
            smsc,
            encoding: deliver.dcs.alphabet().name().to_string(),
            sequence,
            total,
            group_key,
            sent_at: deliver
                .timestamp
                .to_datetime()
                .map(|_| deliver.timestamp.to_string()),
            part: InboundPart { text, hex },
            to: on.to,
            modem: on.name.to_string(),
            sim: on.sim,
            from,
        }
    }

    /// The group with this part in it, and the `sms.received` events that are now due: the
    /// whole message once every part is there; an incomplete one when another message reuses
    /// the concatenation reference; nothing for a part the SC repeated.
    fn fold_into(
        &self,
        group: Option<InboundGroup>,
        now: u64,
    ) -> (Option<InboundGroup>, Vec<NewEvent>) {
        let mut group = group.unwrap_or_else(|| InboundGroup {
            from: self.from.clone(),
            smsc: self.smsc.clone(),
            encoding: self.encoding.clone(),
            total: self.total,
            parts: BTreeMap::new(),
            sent_at: None,
            first_received_at: now,
            modem: Some(self.modem.clone()),
            sim: Some(self.sim),
        });
        let mut emitted = Vec::new();
        match group.parts.get(&self.sequence) {
            // The same part again with another timestamp: the SC repeated it.
            Some(kept) if kept.text == self.part.text => return (Some(group), emitted),
            // Another message reusing the reference (it wraps at 256): the one being
            // assembled will not complete, so it goes out now as incomplete.
            Some(_) => {
                let id = uuid::Uuid::now_v7().to_string();
                // Stamped with when its parts came, not with this stranger's arrival.
                let at = group.first_received_at;
                emitted.push(events::received(&id, &group, at, self.to.as_deref()));
                group.parts.clear();
                group.sent_at = None;
                group.first_received_at = now;
            }
            None => {}
        }
        if self.sequence == 1 || group.sent_at.is_none() {
            group.sent_at = self.sent_at.clone().or(group.sent_at);
        }
        group.parts.insert(self.sequence, self.part.clone());
        if group.parts.len() < usize::from(group.total) {
            return (Some(group), emitted);
        }
        let id = uuid::Uuid::now_v7().to_string();
        emitted.push(events::received(&id, &group, now, self.to.as_deref()));
        (None, emitted)
    }
}

/// The messages of a batch the modem may now forget: the ones recorded, and only once the
/// batch's flush succeeded (an SMS is deleted only after its event is durable).
pub(super) fn confirmable<R>(outcomes: Vec<(R, bool)>, flushed: bool) -> Vec<R> {
    if !flushed {
        return Vec::new();
    }
    outcomes
        .into_iter()
        .filter_map(|(receipt, stored)| stored.then_some(receipt))
        .collect()
}

impl Gateway {
    /// The reassembly and dedupe scope of modem `modem`: "" for the first (keys as before
    /// several modems), else its name.
    fn scope(&self, modem: usize) -> &str {
        if modem == 0 {
            ""
        } else {
            &self.inner.modems[modem].name
        }
    }

    /// Records one inbound PDU from modem `modem`, committed but not yet flushed: the caller
    /// runs [`Gateway::flush_inbound`] for the batch before it confirms anything to the modem.
    pub(super) async fn on_inbound(
        &self,
        modem: usize,
        inbound: Inbound,
    ) -> Result<(), StoreError> {
        let slot = &self.inner.modems[modem];
        let pdu = match inbound.pdu {
            Ok(pdu) => pdu,
            Err(error) => {
                error!(
                    "gateway: an inbound PDU from {} does not decode ({error}); recorded as \
                     sms.undecodable before it leaves the modem: {}",
                    slot.name, inbound.hex
                );
                Gateway::count(&self.inner.counters.undecodable);
                let stored_at = match &inbound.origin {
                    Origin::Stored { storage, index } => Some((storage.clone(), *index)),
                    Origin::Routed => None,
                };
                let event = events::undecodable(
                    &inbound.hex,
                    &error.to_string(),
                    stored_at
                        .as_ref()
                        .map(|(storage, index)| (storage.as_str(), *index)),
                    now_ms(),
                    (&slot.name, slot.sim),
                );
                // Once per PDU and modem: a copy handed up again (a failed delete, a restart)
                // is the same hex, and records nothing new.
                let scope = self.scope(modem);
                let fingerprint = if scope.is_empty() {
                    Sha256::digest(format!("undecodable|{}", inbound.hex))
                } else {
                    Sha256::digest(format!("undecodable|{scope}|{}", inbound.hex))
                };
                let store = self.inner.store.clone();
                return blocking(move || {
                    store.record_inbound_unflushed(&fingerprint, None, |_| {
                        (None, vec![event.clone()])
                    })
                })
                .await
                .map(|_| ());
            }
        };
        let smsc = pdu.smsc.as_ref().map(ToString::to_string);
        match pdu.tpdu {
            Tpdu::StatusReport(report) => self.on_report(modem, report, &inbound.hex).await,
            Tpdu::Deliver(deliver) => self.on_deliver(modem, deliver, smsc, inbound.hex).await,
            Tpdu::Submit(_) => {
                info!("gateway: {} handed up a stored SUBMIT; ignored", slot.name);
                Ok(())
            }
        }
    }

    async fn on_deliver(
        &self,
        modem: usize,
        deliver: Deliver,
        smsc: Option<String>,
        hex: String,
    ) -> Result<(), StoreError> {
        let scope = self.scope(modem);
        let fingerprint = fingerprint(&deliver, scope);
        let on = ArrivedOn {
            name: &self.inner.modems[modem].name,
            sim: self.inner.modems[modem].sim,
            scope,
            to: self.receiving_number(modem),
        };
        let arrival = Arrival::of(&deliver, smsc, hex, on);
        let group_key = arrival.group_key.clone();
        let store = self.inner.store.clone();
        let recorded = blocking(move || {
            store.record_inbound_unflushed(&fingerprint, group_key.as_deref(), |group| {
                arrival.fold_into(group, now_ms())
            })
        })
        .await?;
        if recorded.is_none() {
            Gateway::count(&self.inner.counters.duplicates);
            log::debug!(
                "gateway: an inbound part from {} seen before; not recorded again",
                self.inner.modems[modem].name
            );
        }
        Ok(())
    }

    /// Makes the batch recorded by [`Gateway::on_inbound`] durable: one flush for all of it.
    pub(super) async fn flush_inbound(&self) -> Result<(), StoreError> {
        let store = self.inner.store.clone();
        blocking(move || store.flush_inbound()).await
    }

    /// The number inbound SMS arrive at on modem `modem`: its `number`, else what its SIM
    /// reports.
    fn receiving_number(&self, modem: usize) -> Option<String> {
        let slot = &self.inner.modems[modem];
        slot.number.clone().or_else(|| {
            slot.handle
                .status()
                .identity
                .and_then(|identity| identity.number)
        })
    }

    /// Emits reassembly groups older than `incomplete_timeout` as incomplete messages.
    pub(super) async fn close_incomplete(&self) -> Result<(), StoreError> {
        let numbers: Vec<(String, Option<String>)> = (0..self.inner.modems.len())
            .map(|modem| {
                (
                    self.inner.modems[modem].name.clone(),
                    self.receiving_number(modem),
                )
            })
            .collect();
        let store = self.inner.store.clone();
        let timeout = self.inner.settings.incomplete_timeout.as_millis() as u64;
        blocking(move || {
            let now = now_ms();
            for (key, group) in store.inbound_groups()? {
                if group.first_received_at.saturating_add(timeout) > now {
                    continue;
                }
                info!(
                    "gateway: message from {} still incomplete after {}; emitted with {} of {} parts ({})",
                    group.from,
                    rfc3339(group.first_received_at),
                    group.parts.len(),
                    group.total,
                    key
                );
                // The number of the modem it came on (a group from before several modems: the
                // first's).
                let to = match &group.modem {
                    Some(name) => numbers.iter().find(|(known, _)| known == name),
                    None => numbers.first(),
                }
                .and_then(|(_, number)| number.clone());
                store.close_group(&key, |current| {
                    // Judged again inside the transaction: a part may have come meanwhile.
                    (current.first_received_at.saturating_add(timeout) <= now).then(|| {
                        let id = uuid::Uuid::now_v7().to_string();
                        // When the SMS arrived, not when the timeout gave up on it.
                        events::received(&id, current, current.first_received_at, to.as_deref())
                    })
                })?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(sequence: u8, total: u8, text: &str) -> Arrival {
        Arrival {
            from: "+447700900555".into(),
            smsc: None,
            encoding: "gsm7".into(),
            sequence,
            total,
            group_key: (total > 1).then(|| "+447700900555|8:7|2".into()),
            sent_at: None,
            part: InboundPart {
                text: text.into(),
                hex: String::new(),
            },
            to: Some("+447700900999".into()),
            modem: "modem1".into(),
            sim: 0,
        }
    }

    /// Folds parts in order; the texts of the `sms.received` events and whether a group is
    /// left waiting.
    fn check(parts: &[Arrival], expected: (&[&str], bool)) {
        let mut group = None;
        let mut texts = Vec::new();
        for (now, part) in parts.iter().enumerate() {
            let (next, events) = part.fold_into(group, now as u64);
            texts.extend(events.iter().map(|event| {
                assert_eq!(event.data["to"], "+447700900999");
                event.data["text"].as_str().unwrap_or_default().to_string()
            }));
            group = next;
        }
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert_eq!((texts.as_slice(), group.is_some()), expected);
    }

    #[test]
    fn only_recorded_messages_of_a_flushed_batch_are_confirmed() {
        let batch = || vec![("a", true), ("b", false), ("c", true)];
        assert_eq!(confirmable(batch(), true), ["a", "c"]);
        assert!(confirmable(batch(), false).is_empty());
        assert!(confirmable(vec![("a", false)], true).is_empty());
    }

    #[test]
    fn parts_fold_into_messages() {
        check(&[part(1, 1, "alone")], (&["alone"], false));
        check(
            &[part(1, 2, "first "), part(2, 2, "second")],
            (&["first second"], false),
        );
        check(
            &[part(2, 2, "second"), part(1, 2, "first ")],
            (&["first second"], false),
        );
        // The SC repeats a part: nothing new.
        check(&[part(1, 2, "first "), part(1, 2, "first ")], (&[], true));
        // Another message reuses the reference: the first goes out incomplete.
        check(&[part(1, 2, "old "), part(1, 2, "new ")], (&["old "], true));
    }
}
