//! What the store keeps: outbound messages with their parts, events, webhook jobs, inbound
//! reassembly groups. Serialised as JSON values in sled, so a field added later reads back
//! from an older record with its default.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A TP-MR: the reference the network gives a submitted part, which its status report
/// carries back (3GPP TS 23.040 9.2.3.6). Stored and sent as the plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageReference(pub u8);

impl fmt::Display for MessageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The alphabet an outbound message was encoded in; stored and sent as `gsm7` or `ucs2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The GSM 7-bit default alphabet (3GPP TS 23.038).
    Gsm7,
    /// UCS-2 (UTF-16BE), for text the GSM alphabet cannot carry.
    Ucs2,
}

impl Encoding {
    /// The name used in the store, the API and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

impl PartialEq<&str> for Encoding {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where a message failed; stored and sent (`sms.failed`'s `stage`) as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureStage {
    /// The network or the modem refused a part (or temporary errors used up the attempts).
    Submit,
    /// A status report said a part failed.
    Delivery,
    /// The daemon stopped (or lost the answer) while a part was being submitted.
    Interrupted,
    /// No status report within the validity period plus the margin.
    Expired,
}

impl FailureStage {
    /// The name used in the store, the API and events.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureStage::Submit => "submit",
            FailureStage::Delivery => "delivery",
            FailureStage::Interrupted => "interrupted",
            FailureStage::Expired => "expired",
        }
    }
}

/// Where an outbound message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Waiting in the outbox (first try, or a retry after a temporary error).
    Queued,
    /// Parts are being submitted.
    Sending,
    /// Every part was accepted by the network.
    Sent,
    /// Every part was delivered.
    Delivered,
    /// Failed for good; see `last_error`.
    Failed,
    /// A status report was requested and did not come within the validity period plus
    /// `[sms] report_timeout_margin`: the outcome is unknown, and nothing more is awaited.
    Expired,
}

impl MessageState {
    /// Whether nothing more will happen to the message.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageState::Delivered | MessageState::Failed | MessageState::Expired
        )
    }

    /// Every state, in lifecycle order (for listings and query checks).
    pub const ALL: [MessageState; 6] = [
        MessageState::Queued,
        MessageState::Sending,
        MessageState::Sent,
        MessageState::Delivered,
        MessageState::Failed,
        MessageState::Expired,
    ];

    /// The lower-case name used in the API and in queries.
    pub fn name(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sending => "sending",
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Failed => "failed",
            MessageState::Expired => "expired",
        }
    }
}

/// Where one part is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PartState {
    /// Not submitted yet.
    Pending,
    /// Handed to the modem; the outcome is not recorded yet. Found after a crash, it means
    /// the part may or may not have gone out.
    Submitting {
        /// When (Unix ms).
        since: u64,
    },
    /// Accepted by the network with this TP-MR.
    Submitted {
        /// The message reference.
        reference: MessageReference,
        /// When (Unix ms).
        at: u64,
    },
    /// A status report said delivered.
    Delivered {
        /// The message reference.
        reference: MessageReference,
        /// TP-ST.
        status: u8,
        /// The discharge time (RFC 3339, with the SC's offset).
        at: String,
    },
    /// A status report said it failed for good.
    Failed {
        /// The message reference.
        reference: MessageReference,
        /// TP-ST.
        status: u8,
    },
}

/// One SMS-SUBMIT of a message, encoded at enqueue time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutPart {
    /// The PDU hex, SMSC field first.
    pub hex: String,
    /// The `AT+CMGS` length.
    pub cmgs_length: usize,
    /// Where it is.
    pub state: PartState,
    /// The last status report's TP-ST while still pending (e.g. 0x20 congestion).
    #[serde(default)]
    pub pending_status: Option<u8>,
    /// The modem that submitted it (its name); `None` until submitted, and for records
    /// from before several modems (those were the first modem's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modem: Option<String>,
}

/// Why a message failed (or its last temporary error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureInfo {
    /// Where it failed.
    pub stage: FailureStage,
    /// The CMS code or the TP-ST, when there is one.
    pub code: Option<u16>,
    /// What happened.
    pub text: String,
}

/// An outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// UUID v7 (sortable by creation).
    pub id: String,
    /// The recipient as given (E.164 with `+`, or national digits).
    pub to: String,
    /// The text.
    pub text: String,
    /// The alphabet of the parts.
    pub encoding: Encoding,
    /// The parts, in order.
    pub parts: Vec<OutPart>,
    /// Opaque data of the client, returned in every event.
    pub callback_data: Option<String>,
    /// Where the message is.
    pub state: MessageState,
    /// Submission attempts that failed temporarily.
    pub attempts: u32,
    /// Not before this time (Unix ms) when retrying.
    pub next_attempt_at: Option<u64>,
    /// The failure, or the last temporary error.
    pub last_error: Option<FailureInfo>,
    /// Whether status reports were requested.
    pub status_report: bool,
    /// The validity period as encoded in the PDUs (ms), which the SC may have rounded the
    /// request up to; `None` for records written before it was kept (they never expire).
    #[serde(default)]
    pub validity_ms: Option<u64>,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms of the last change.
    pub updated_at: u64,
    /// When the last part was accepted (Unix ms).
    pub sent_at: Option<u64>,
    /// When the last part was delivered (RFC 3339 discharge time).
    pub delivered_at: Option<String>,
    /// Its key in the outbox, set by the store.
    #[serde(default)]
    pub queue_key: Option<u64>,
    /// Its integer number (shared with inbound messages, never reused), set by the store
    /// when it is enqueued; `None` for records written before numbers were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// A dry run: the whole pipeline except the modem (nothing reaches the network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The modem it is assigned to (its name): routing's choice at enqueue, then the modem
    /// that took it over; `None` for records from before several modems (any may send them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modem: Option<String>,
    /// That modem's SIM slot number, for events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<u32>,
    /// The client named the modem: it never moves to another.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

impl OutboundMessage {
    /// When the status report is due at the latest (Unix ms): sent time plus validity, for a
    /// message that is `sent` and asked for a report; `None` when none is awaited.
    pub fn report_due(&self) -> Option<u64> {
        if self.state != MessageState::Sent || !self.status_report {
            return None;
        }
        Some(self.sent_at?.saturating_add(self.validity_ms?))
    }
}

/// An event, as stored: the envelope without the per-delivery fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Global sequence number, increasing.
    pub sequence: u64,
    /// UUID v7; receivers dedupe on it.
    pub id: String,
    /// `sms.sent`, `sms.delivered`, `sms.failed`, `sms.received`…
    pub name: String,
    /// The contract version of `data`.
    pub api_version: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Recorded while the clock was implausible (before the build, or behind a time already
    /// recorded): `created_at` and the times in `data` are wrong. Absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clock_suspect: bool,
    /// The event's fields.
    pub data: serde_json::Value,
}

/// One delivery of one event to one endpoint, waiting in `jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The event.
    pub event_sequence: u64,
    /// This endpoint's delivery number: 1, 2, 3… (the body's `sequence`).
    #[serde(default)]
    pub sequence: u64,
    /// The endpoint's name.
    pub endpoint: String,
    /// Identifies this event's delivery to this endpoint (`notification_task_id`).
    pub task_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix ms when created.
    pub created_at: u64,
    /// The `webhook.test` that re-enabling an endpoint sends first: if it fails, the endpoint
    /// stays disabled. A test asked for on an active endpoint is an ordinary delivery.
    #[serde(default)]
    pub enable_probe: bool,
}

/// One part of an inbound message kept until its message is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundPart {
    /// The text of this part.
    pub text: String,
    /// The PDU hex, for the record.
    pub hex: String,
}

/// A concatenated inbound message being reassembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundGroup {
    /// The sender as shown to users.
    pub from: String,
    /// The SMSC, when the PDU carried one.
    pub smsc: Option<String>,
    /// `gsm7`, `ucs2`, `8bit`.
    pub encoding: String,
    /// How many parts the message has.
    pub total: u8,
    /// Parts by sequence number.
    pub parts: std::collections::BTreeMap<u8, InboundPart>,
    /// The first part's SC timestamp (RFC 3339).
    pub sent_at: Option<String>,
    /// Unix ms when the first part arrived.
    pub first_received_at: u64,
    /// The modem it arrives on (its name); `None` for groups from before several modems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modem: Option<String>,
    /// That modem's SIM slot number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as stored before the typed fields must read back and write out byte for byte.
    #[test]
    fn typed_fields_keep_their_stored_form() {
        let check = |stored: serde_json::Value| {
            let message: OutboundMessage =
                serde_json::from_value(stored.clone()).expect("an older record reads");
            let written = serde_json::to_value(&message).expect("writes");
            assert_eq!(written, stored);
        };
        let record = |encoding: &str, stage: &str, part: serde_json::Value| {
            serde_json::json!({
                "id": "m1", "to": "+447700900123", "text": "hi", "encoding": encoding,
                "parts": [{ "hex": "00", "cmgs_length": 1, "state": part, "pending_status": null }],
                "callback_data": null, "state": "failed", "attempts": 2, "next_attempt_at": null,
                "last_error": { "stage": stage, "code": 42, "text": "why" },
                "status_report": true, "validity_ms": 60_000, "created_at": 0, "updated_at": 0,
                "sent_at": null, "delivered_at": null, "queue_key": 3
            })
        };
        check(record(
            "gsm7",
            "submit",
            serde_json::json!({ "state": "pending" }),
        ));
        check(record(
            "ucs2",
            "delivery",
            serde_json::json!({ "state": "failed", "reference": 255, "status": 65 }),
        ));
        check(record(
            "gsm7",
            "interrupted",
            serde_json::json!({ "state": "submitting", "since": 5 }),
        ));
        check(record(
            "ucs2",
            "expired",
            serde_json::json!({ "state": "submitted", "reference": 7, "at": 9 }),
        ));
        check(record(
            "gsm7",
            "submit",
            serde_json::json!({
                "state": "delivered", "reference": 0, "status": 0, "at": "2026-11-22T10:00:00Z"
            }),
        ));
    }
}
