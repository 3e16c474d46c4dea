//! Our own envelope (DESIGN.md): the stored event with the per-delivery fields.

use serde_json::json;

use super::{Context, Rendered};
use crate::store::{Event, Job};

/// The native envelope of `event` for this attempt.
pub(super) fn render(event: &Event, job: &Job, context: &Context) -> Rendered {
    let mut body = json!({
        "id": event.id,
        "name": event.name,
        "api_version": event.api_version,
        "created_at": event.created_at,
        "attempt_number": context.attempt,
        "attempts_total": context.attempts_total,
        "notification_task_id": job.task_id,
        "sequence": job.sequence,
        "data": event.data,
    });
    if event.clock_suspect {
        // Only when true: receivers that never meet a wrong clock see the same envelope.
        body["clock_suspect"] = json!(true);
    }
    Rendered::json(&body)
}
