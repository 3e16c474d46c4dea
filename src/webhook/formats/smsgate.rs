//! SMSGate (the Android gateway): `{deviceId, event, id, payload, webhookId}` with
//! `sms:received`, `sms:sent`, `sms:delivered`, `sms:failed`, signed with `X-Signature`
//! (hex HMAC-SHA256 over the raw body followed by `X-Timestamp`).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Context, Outcome, Rendered, outcome, receiving_number, text, times};
use crate::store::Event;

/// The webhook for `event`; `None` for events SMSGate has no name for (queued, pending).
pub(super) fn render(event: &Event, context: &Context) -> Option<Rendered> {
    let (name, payload) = match event.name.as_str() {
        "sms.received" => ("sms:received", received(event, context)),
        _ => outbound(event, outcome(event)?)?,
    };
    let body = json!({
        "deviceId": context.device_id.to_string(),
        "event": name,
        "id": event.id,
        "payload": payload,
        "webhookId": context.endpoint,
    });
    let mut rendered = Rendered::json(&body);
    if let Some(key) = &context.secret {
        let timestamp = context.now.to_string();
        let signature = sign(key, &rendered.body, &timestamp);
        rendered.headers.push(("X-Signature".into(), signature));
        rendered.headers.push(("X-Timestamp".into(), timestamp));
    }
    Some(rendered)
}

/// The event name and payload of an outbound outcome.
fn outbound(event: &Event, outcome: Outcome) -> Option<(&'static str, Value)> {
    let data = &event.data;
    let at = times::iso8601(event.created_at as i64);
    let mut payload = json!({
        "messageId": text(data, "message_id"),
        "recipient": text(data, "to"),
        "simNumber": sim_number(data),
    });
    let name = match outcome {
        Outcome::Queued | Outcome::Pending => return None,
        Outcome::Sent => {
            payload["partsCount"] = data["parts"].clone();
            payload["sentAt"] = at.into();
            "sms:sent"
        }
        Outcome::Delivered => {
            payload["deliveredAt"] = at.into();
            "sms:delivered"
        }
        Outcome::Refused | Outcome::Undeliverable | Outcome::Expired | Outcome::Unknown => {
            let reason = data["error"].as_str().or(data["reason"].as_str());
            payload["failedAt"] = at.into();
            payload["reason"] = reason.unwrap_or("failed").into();
            "sms:failed"
        }
    };
    Some((name, payload))
}

/// SMSGate numbers SIMs from 1: the event's `sim` (from 0) plus one; null when the event has
/// none (from before several modems).
fn sim_number(data: &Value) -> Option<u64> {
    data["sim"].as_u64().map(|sim| sim.saturating_add(1))
}

/// `sms:received`'s payload; `recipient` is null when the receiving number is not set.
fn received(event: &Event, context: &Context) -> Value {
    let data = &event.data;
    let at = data["received_at"]
        .as_str()
        .and_then(times::unix)
        .unwrap_or(event.created_at as i64);
    json!({
        "messageId": text(data, "message_id"),
        "message": text(data, "text"),
        "sender": text(data, "from"),
        "recipient": receiving_number(data, context),
        "simNumber": sim_number(data),
        "receivedAt": times::iso8601(at),
    })
}

/// Lower-case hex HMAC-SHA256 of `body` followed by `timestamp`.
pub(super) fn sign(key: &[u8], body: &[u8], timestamp: &str) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
