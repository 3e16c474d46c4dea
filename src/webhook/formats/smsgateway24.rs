//! SMSGateway24: the delivery-status webhook (`status_id`) and the incoming-SMS webhook,
//! from a device (`device_id`, `device_name`) with SIM slots (`sim` and `channel_id`: the
//! modem's `[[modem]] sim`, 0 for events from before several modems).
//! Datetimes are `YYYY-MM-DD HH:MM:SS` in UTC (the service leaves the zone open).

use serde_json::{Value, json};

use super::{Context, Outcome, Rendered, outcome, text, times};
use crate::store::Event;

/// CMS ERROR 331: no network service (3GPP TS 27.005 3.2.5).
const CMS_NO_NETWORK: u64 = 331;

/// `status_id` and `status_message` of an outcome; `None` when it does not change.
fn status(outcome: Outcome, error_code: Option<u64>) -> Option<(u16, &'static str)> {
    Some(match outcome {
        Outcome::Queued => (1, "Pending SMS"),
        Outcome::Sent => (6, "SMS Sent by Phone"),
        Outcome::Pending => return None,
        Outcome::Delivered => (7, "SMS has been Delivered"),
        Outcome::Undeliverable | Outcome::Expired => (8, "SMS was NOT Delivered"),
        Outcome::Refused if error_code == Some(CMS_NO_NETWORK) => (10, "SMS Not Sent - No Service"),
        Outcome::Refused | Outcome::Unknown => (9, "SMS didn't SENT at all - Generic failure"),
    })
}

/// The webhook for `event`; `None` for events the service has no status for.
pub(super) fn render(event: &Event, context: &Context) -> Option<Rendered> {
    let data = &event.data;
    let payload = match event.name.as_str() {
        "sms.received" => incoming(event, context),
        _ => {
            let (status_id, message) = status(outcome(event)?, data["error_code"].as_u64())?;
            // When it was sent; before that (queued, refused), when this happened.
            let senttime = data["sent_at"]
                .as_str()
                .and_then(times::unix)
                .unwrap_or(event.created_at as i64);
            json!({
                "sms_id": data["message_number"],
                "status_id": status_id,
                "status_message": message,
                "sendto": text(data, "to"),
                "senttime": times::datetime(senttime),
                "sim": sim_slot(data),
                "channel_id": sim_slot(data),
                "device_id": context.device_id,
            })
        }
    };
    Some(Rendered::json(&payload))
}

/// The SIM slot: the event's `sim` (the modem's `[[modem]] sim`), 0 for events from before
/// several modems.
fn sim_slot(data: &Value) -> u64 {
    data["sim"].as_u64().unwrap_or(0)
}

/// The incoming-SMS webhook. `address` is the sender as a string (an alphanumeric sender
/// cannot be an integer); `internal_id` and `sms_id` are both the message number.
fn incoming(event: &Event, context: &Context) -> Value {
    let data = &event.data;
    let received = data["received_at"]
        .as_str()
        .and_then(times::unix)
        .unwrap_or(event.created_at as i64);
    let sent = data["sent_at"]
        .as_str()
        .and_then(times::unix)
        .unwrap_or(received);
    json!({
        "address": text(data, "from"),
        "date": times::datetime(received),
        "date_sent": times::datetime(sent),
        "body": text(data, "text"),
        "internal_id": data["message_number"],
        "sim": sim_slot(data),
        "channel_id": sim_slot(data),
        "sms_id": data["message_number"],
        "device_id": context.device_id,
        "device_name": context.device_name,
    })
}
