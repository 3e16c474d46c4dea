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
use crate::store::{InboundGroup, InboundPart, StoreError, now_ms};

/// What identifies a part whatever route or read brought it (padding and the SMSC field
/// vary between `+CMT`, `+CMGR` and `+CMGL`): sender, SC timestamp, concatenation, content.
fn fingerprint(deliver: &Deliver) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(deliver.sender.to_string().as_bytes());
    hash.update(deliver.timestamp.octets());
    if let Some(concat) = deliver
        .user_data
        .header
        .as_ref()
        .and_then(|udh| udh.concat())
    {
        hash.update(concat_key(&deliver.sender.to_string(), &concat).as_bytes());
        hash.update([concat.sequence]);
    }
    match &deliver.user_data.body {
        Body::Text(text) => hash.update(text.as_bytes()),
        Body::Data(data) => hash.update(data),
    }
    hash.finalize().to_vec()
}

fn concat_key(sender: &str, concat: &Concat) -> String {
    let (bits, reference) = match concat.reference {
        ConcatReference::Eight(value) => (8, u16::from(value)),
        ConcatReference::Sixteen(value) => (16, value),
    };
    format!("{sender}|{bits}:{reference}|{}", concat.total)
}

impl Gateway {
    pub(super) async fn on_inbound(&self, inbound: Inbound) -> Result<(), StoreError> {
        let pdu = match inbound.pdu {
            Ok(pdu) => pdu,
            Err(error) => {
                error!(
                    "gateway: an inbound PDU does not decode ({error}); recorded as \
                     sms.undecodable before it leaves the modem: {}",
                    inbound.hex
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
                );
                // Once per PDU: a copy handed up again (a failed delete, a restart) is the same
                // hex, and records nothing new.
                let fingerprint = Sha256::digest(format!("undecodable|{}", inbound.hex));
                let store = self.inner.store.clone();
                return blocking(move || {
                    store.record_inbound(&fingerprint, None, |_| (None, vec![event.clone()]))
                })
                .await
                .map(|_| ());
            }
        };
        let smsc = pdu.smsc.as_ref().map(ToString::to_string);
        match pdu.tpdu {
            Tpdu::StatusReport(report) => self.on_report(report, &inbound.hex).await,
            Tpdu::Deliver(deliver) => self.on_deliver(deliver, smsc, inbound.hex).await,
            Tpdu::Submit(_) => {
                info!("gateway: a stored SUBMIT was handed up; ignored");
                Ok(())
            }
        }
    }

    async fn on_deliver(
        &self,
        deliver: Deliver,
        smsc: Option<String>,
        hex: String,
    ) -> Result<(), StoreError> {
        let fingerprint = fingerprint(&deliver);
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
                Some(concat_key(&from, &concat)),
            ),
            None => (1, 1, None),
        };
        let text = match &deliver.user_data.body {
            Body::Text(text) => text.clone(),
            Body::Data(data) => hex::encode_upper(data),
        };
        let sent_at = deliver
            .timestamp
            .to_datetime()
            .map(|_| deliver.timestamp.to_string());
        let encoding = deliver.dcs.alphabet().name().to_string();
        let part = InboundPart { text, hex };
        let to = self.receiving_number();
        let store = self.inner.store.clone();
        let recorded = blocking(move || {
            store.record_inbound(&fingerprint, group_key.as_deref(), |group| {
                let now = now_ms();
                let mut group = group.unwrap_or_else(|| InboundGroup {
                    from: from.clone(),
                    smsc: smsc.clone(),
                    encoding: encoding.clone(),
                    total,
                    parts: BTreeMap::new(),
                    sent_at: None,
                    first_received_at: now,
                });
                let mut emitted = Vec::new();
                match group.parts.get(&sequence) {
                    // The same part again with another timestamp: the SC repeated it.
                    Some(kept) if kept.text == part.text => return (Some(group), emitted),
                    // Another message reusing the reference (it wraps at 256): the one being
                    // assembled will not complete, so it goes out now as incomplete.
                    Some(_) => {
                        let id = uuid::Uuid::now_v7().to_string();
                        // Stamped with when its parts came, not with this stranger's arrival.
                        emitted.push(events::received(
                            &id,
                            &group,
                            group.first_received_at,
                            to.as_deref(),
                        ));
                        group.parts.clear();
                        group.sent_at = None;
                        group.first_received_at = now;
                    }
                    None => {}
                }
                if sequence == 1 || group.sent_at.is_none() {
                    group.sent_at = sent_at.clone().or(group.sent_at);
                }
                group.parts.insert(sequence, part.clone());
                if group.parts.len() < usize::from(group.total) {
                    return (Some(group), emitted);
                }
                let id = uuid::Uuid::now_v7().to_string();
                emitted.push(events::received(&id, &group, now, to.as_deref()));
                (None, emitted)
            })
        })
        .await?;
        if recorded.is_none() {
            Gateway::count(&self.inner.counters.duplicates);
            log::debug!("gateway: an inbound part seen before; not recorded again");
        }
        Ok(())
    }

    /// The number inbound SMS arrive at: `[modem] number`, else what the SIM reports.
    fn receiving_number(&self) -> Option<String> {
        self.inner.settings.receiving_number.clone().or_else(|| {
            self.inner
                .modem
                .status()
                .identity
                .and_then(|identity| identity.number)
        })
    }

    /// Emits reassembly groups older than `incomplete_timeout` as incomplete messages.
    pub(super) async fn close_incomplete(&self) -> Result<(), StoreError> {
        let to = self.receiving_number();
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
