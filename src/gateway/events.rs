//! The `data` of each event, per the contract in DESIGN.md (add fields freely, never rename
//! or drop one).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::{FailureStage, InboundGroup, NewEvent, OutboundMessage, PartState};

/// RFC 3339 in UTC for a Unix time in ms.
pub fn rfc3339(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn references(message: &OutboundMessage) -> Vec<Value> {
    message
        .parts
        .iter()
        .map(|part| match part.state {
            PartState::Submitted { reference, .. }
            | PartState::Delivered { reference, .. }
            | PartState::Failed { reference, .. } => json!(reference),
            _ => Value::Null,
        })
        .collect()
}

/// `name` with `data`, marked `dry_run: true` when the message is a dry run (only then:
/// receivers of real messages see the same data as before).
fn outbound(message: &OutboundMessage, name: &str, mut data: Value) -> NewEvent {
    if message.number.is_none() {
        // A record from before numbers were kept: no number rather than a null, which would
        // ask the store for a new one.
        if let Some(fields) = data.as_object_mut() {
            fields.remove("message_number");
        }
    }
    if message.dry_run {
        data["dry_run"] = json!(true);
    }
    // Which modem and SIM it went (or goes) through; absent for records from before
    // several modems.
    if let Some(modem) = &message.modem {
        data["modem"] = json!(modem);
        data["sim"] = json!(message.sim);
    }
    NewEvent {
        name: name.into(),
        data,
    }
}

/// `sms.queued`: accepted into the outbox (written with the message).
pub fn queued(message: &OutboundMessage) -> NewEvent {
    let data = json!({
        "message_id": message.id,
        "message_number": message.number,
        "to": message.to,
        "parts": message.parts.len(),
        "encoding": message.encoding,
        "status_report": message.status_report,
        "queued_at": rfc3339(message.created_at),
        "callback_data": message.callback_data,
    });
    outbound(message, "sms.queued", data)
}

/// `sms.pending`: a status report (TP-ST `status`, 0x20–0x3F) says the network is still
/// trying to deliver part `part` (from 0).
pub fn pending(message: &OutboundMessage, part: usize, status: u8, text: &str) -> NewEvent {
    let data = json!({
        "message_id": message.id,
        "message_number": message.number,
        "to": message.to,
        "parts": message.parts.len(),
        "part": part,
        "status": "pending",
        "status_code": status,
        "status_text": text,
        "message_references": references(message),
        "callback_data": message.callback_data,
    });
    outbound(message, "sms.pending", data)
}

/// `sms.sent`: every part accepted by the network.
pub fn sent(message: &OutboundMessage) -> NewEvent {
    let data = json!({
        "message_id": message.id,
        "message_number": message.number,
        "to": message.to,
        "parts": message.parts.len(),
        "encoding": message.encoding,
        "message_references": references(message),
        "sent_at": message.sent_at.map(rfc3339),
        "callback_data": message.callback_data,
    });
    outbound(message, "sms.sent", data)
}

/// `sms.delivered`: every part delivered; the status of the last report.
pub fn delivered(message: &OutboundMessage, status: u8, text: &str, at: &str) -> NewEvent {
    let data = json!({
        "message_id": message.id,
        "message_number": message.number,
        "to": message.to,
        "parts": message.parts.len(),
        "status": "delivered",
        "status_code": status,
        "status_text": text,
        "delivered_at": at,
        "message_references": references(message),
        "callback_data": message.callback_data,
    });
    outbound(message, "sms.delivered", data)
}

/// `sms.failed` at `stage` (`submit`, `delivery`, `interrupted`).
pub fn failed(
    message: &OutboundMessage,
    stage: FailureStage,
    code: Option<u16>,
    error: &str,
) -> NewEvent {
    let data = json!({
        "message_id": message.id,
        "message_number": message.number,
        "to": message.to,
        "stage": stage,
        "error_code": code,
        "error": error,
        "parts": message.parts.len(),
        "callback_data": message.callback_data,
    });
    outbound(message, "sms.failed", data)
}

/// `sms.undecodable`: an inbound PDU we cannot read, with its hex so nothing is lost.
/// `storage`/`index` say where it was on the modem (`null` for one routed with `+CMT`).
pub fn undecodable(
    hex: &str,
    error: &str,
    stored_at: Option<(&str, u32)>,
    received_at: u64,
    (modem, sim): (&str, u32),
) -> NewEvent {
    NewEvent {
        name: "sms.undecodable".into(),
        data: json!({
            "pdu": hex,
            "error": error,
            "storage": stored_at.map(|(storage, _)| storage),
            "index": stored_at.map(|(_, index)| index),
            "received_at": rfc3339(received_at),
            "modem": modem,
            "sim": sim,
        }),
    }
}

/// `sms.expired`: a requested status report did not come within the validity period plus
/// the margin; whether the message arrived is unknown.
pub fn expired(message: &OutboundMessage, now: u64, reason: &str) -> NewEvent {
    let data = json!({
        "message_id": message.id,
        "message_number": message.number,
        "to": message.to,
        "parts": message.parts.len(),
        "message_references": references(message),
        "sent_at": message.sent_at.map(rfc3339),
        "expired_at": rfc3339(now),
        "reason": reason,
        "callback_data": message.callback_data,
    });
    outbound(message, "sms.expired", data)
}

/// `sms.received`, complete or not.
pub fn received(id: &str, group: &InboundGroup, received_at: u64, to: Option<&str>) -> NewEvent {
    let missing: Vec<u8> = (1..=group.total)
        .filter(|sequence| !group.parts.contains_key(sequence))
        .collect();
    let text: String = group
        .parts
        .values()
        .map(|part| part.text.as_str())
        .collect();
    let mut data = json!({
        "message_id": id,
        // Null asks the store for the next number, in the transaction that records it.
        "message_number": null,
        "from": group.from,
        "to": to,
        "text": text,
        "encoding": group.encoding,
        "parts": group.total,
        "incomplete": !missing.is_empty(),
        "smsc": group.smsc,
        "sent_at": group.sent_at,
        "received_at": rfc3339(received_at),
    });
    // The modem and SIM it arrived on; a group from before several modems has none.
    if let Some(modem) = &group.modem {
        data["modem"] = json!(modem);
        data["sim"] = json!(group.sim);
    }
    if !missing.is_empty() {
        data["missing_parts"] = json!(missing);
    }
    NewEvent {
        name: "sms.received".into(),
        data,
    }
}
