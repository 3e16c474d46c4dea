//! What the store keeps: outbound messages with their parts, events, webhook jobs, inbound
//! reassembly groups. Serialised as JSON values in sled, so a field added later reads back
//! from an older record with its default.

use serde::{Deserialize, Serialize};

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
        reference: u8,
        /// When (Unix ms).
        at: u64,
    },
    /// A status report said delivered.
    Delivered {
        /// The message reference.
        reference: u8,
        /// TP-ST.
        status: u8,
        /// The discharge time (RFC 3339, with the SC's offset).
        at: String,
    },
    /// A status report said it failed for good.
    Failed {
        /// The message reference.
        reference: u8,
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
}

/// Why a message failed (or its last temporary error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureInfo {
    /// `submit`, `delivery`, `interrupted`, or `expired` (no status report in time).
    pub stage: String,
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
    /// `gsm7` or `ucs2`.
    pub encoding: String,
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
}
