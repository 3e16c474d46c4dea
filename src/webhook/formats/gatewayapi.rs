//! GatewayAPI: a status webhook on every change of an outbound message's status, an MO
//! webhook per inbound SMS, and `X-Gwapi-Signature`: a JWT (HS256, the endpoint's secret as
//! the raw key) whose claims are the payload.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Context, Outcome, Rendered, msisdn, outcome, receiving_number, text, times};
use crate::store::Event;

/// The `status` of an outcome; `None` when it does not change (a pending report: still
/// ENROUTE).
fn status(outcome: Outcome) -> Option<&'static str> {
    Some(match outcome {
        Outcome::Queued => "BUFFERED",
        Outcome::Sent => "ENROUTE",
        Outcome::Pending => return None,
        Outcome::Delivered => "DELIVERED",
        Outcome::Refused => "REJECTED",
        Outcome::Undeliverable => "UNDELIVERABLE",
        Outcome::Expired => "EXPIRED",
        Outcome::Unknown => "UNKNOWN",
    })
}

/// The webhook for `event`, signed when the endpoint has a secret.
pub(super) fn render(event: &Event, context: &Context) -> Option<Rendered> {
    let payload = match event.name.as_str() {
        "sms.received" => mo(event, context),
        _ => status_webhook(event, status(outcome(event)?)?),
    };
    let mut rendered = Rendered::json(&payload);
    if let Some(key) = &context.secret {
        let token = jwt(&payload, key);
        rendered
            .headers
            .push(("X-Gwapi-Signature".to_string(), token));
    }
    Some(rendered)
}

/// The status webhook. `error` and `code` (the CMS error or TP-ST, hex) only on failure.
fn status_webhook(event: &Event, status: &str) -> Value {
    let data = &event.data;
    let failed = matches!(event.name.as_str(), "sms.failed" | "sms.expired");
    let error = failed.then(|| {
        data["error"]
            .as_str()
            .or(data["reason"].as_str())
            .unwrap_or(status)
            .to_string()
    });
    let code = data["error_code"]
        .as_u64()
        .filter(|_| failed)
        .map(|code| format!("{code:X}"));
    let userref = data["callback_data"].as_str();
    json!({
        "id": data["message_number"],
        "msisdn": msisdn(text(data, "to")),
        "time": event.created_at,
        "status": status,
        "error": error,
        "code": code,
        "userref": userref,
        "country_code": null,
        "country_prefix": null,
        "charge_status": null,
    })
}

/// The MO webhook. `senttime` is the SC's time stamp (the arrival when there is none); an
/// alphanumeric sender has `msisdn` null and its name in `sender`.
fn mo(event: &Event, context: &Context) -> Value {
    let data = &event.data;
    let from = text(data, "from");
    let senttime = data["sent_at"]
        .as_str()
        .and_then(times::unix)
        .unwrap_or(event.created_at as i64);
    let encoding = match text(data, "encoding") {
        "ucs2" => "UCS2",
        _ => "UTF8",
    };
    json!({
        "id": data["message_number"],
        "msisdn": msisdn(from),
        "receiver": receiving_number(data, context).and_then(msisdn),
        "message": text(data, "text"),
        "senttime": senttime,
        "webhook_label": context.endpoint,
        "sender": from,
        "encoding": encoding,
    })
}

/// A compact JWT, HS256, with `payload` as its claims.
pub(super) fn jwt(payload: &Value, key: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap_or_default());
    let signing_input = format!("{header}.{claims}");
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}
