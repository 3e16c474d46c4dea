//! LOX24 notifications: one envelope for every event; `sms.delivery` (or
//! `sms.delivery.dryrun`) on each change of `dlr_code`, `sms.incoming` for an inbound SMS.

use serde_json::{Value, json};

use super::{Context, Outcome, Rendered, outcome, receiving_number, text};
use crate::store::{Event, Job};

/// LOX24's data structure version.
pub(super) const API_VERSION: &str = "2022-05-25";

/// `dlr_code` and `status_code` of an outcome; `None` when `dlr_code` does not change
/// (a pending report leaves it at 4, en route).
fn codes(outcome: Outcome) -> Option<(u16, u16)> {
    Some(match outcome {
        Outcome::Queued => (0, 0),
        Outcome::Sent => (4, 100),
        Outcome::Pending => return None,
        Outcome::Delivered => (1, 100),
        Outcome::Undeliverable => (16, 100),
        Outcome::Expired => (8, 100),
        // Never handed to the operator: status 0 ("new") with dlr 16 (rejected).
        Outcome::Refused | Outcome::Unknown => (16, 0),
    })
}

/// The notification for `event`; `None` for events LOX24 has no name for.
pub(super) fn render(event: &Event, job: &Job, context: &Context) -> Option<Rendered> {
    let (name, data) = match event.name.as_str() {
        "sms.received" => ("sms.incoming", incoming(&event.data, context)),
        _ => {
            let (dlr_code, status_code) = codes(outcome(event)?)?;
            let name = if event.data["dry_run"] == true {
                "sms.delivery.dryrun"
            } else {
                "sms.delivery"
            };
            (name, delivery(&event.data, dlr_code, status_code, context))
        }
    };
    let body = json!({
        "id": event.id,
        "api_version": API_VERSION,
        "name": name,
        "created_at": event.created_at,
        "attempt_number": context.attempt,
        "attempts_total": context.attempts_total,
        "notification_task_id": job.task_id,
        "data": data,
    });
    Some(Rendered::json(&body))
}

/// `sms.delivery`'s data. `key_id` is the device id (a self-hosted gateway has no API keys);
/// `callback_data` is "" when the send request gave none (LOX24 documents a string).
fn delivery(data: &Value, dlr_code: u16, status_code: u16, context: &Context) -> Value {
    json!({
        "id": text(data, "message_id"),
        "key_id": context.device_id,
        "dlr_code": dlr_code,
        "status_code": status_code,
        "callback_data": text(data, "callback_data"),
    })
}

/// `sms.incoming`'s data; `to` is null when the receiving number is not known.
fn incoming(data: &Value, context: &Context) -> Value {
    json!({
        "id": text(data, "message_id"),
        "from": text(data, "from"),
        "to": receiving_number(data, context),
        "text": text(data, "text"),
    })
}
