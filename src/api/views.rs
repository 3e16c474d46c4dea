//! What the API answers, typed: one `Serialize` struct per JSON shape, built from the
//! gateway's, modem's and dispatcher's own types. Field names and order are the contract in
//! `docs/openapi.json` (the CLI and scripts read them); an enum reaches the wire as one of the
//! documented lower-case words below, never as Rust `Debug` text.

use serde::Serialize;

use crate::at::RegistrationStatus;
use crate::at::parse::{SignalQuality, StorageUsage};
use crate::gateway::rfc3339;
use crate::modem::{Identity, InitStage, LinkState, ModemStatus};
use crate::store::{
    AttemptRecord, EndpointState, Event, FailureInfo, OutboundMessage, PartState, StoreFailure,
};
use crate::webhook::{ClockVerdict, EndpointStatus};

/// The modem's link state on the wire: `ready`, `connecting`, `initialising`, `waiting`,
/// `failed` or `stopped`.
pub fn link_state_name(state: &LinkState) -> &'static str {
    match state {
        LinkState::Opening(_) => "connecting",
        LinkState::Initialising(_) => "initialising",
        LinkState::Ready => "ready",
        LinkState::Waiting(_) => "waiting",
        LinkState::Failed(_) => "failed",
        LinkState::Stopped => "stopped",
    }
}

/// Where an init is, on the wire: `resync`, `identity`, `sim`, `registration`, `messaging`.
pub fn init_stage_name(stage: InitStage) -> &'static str {
    match stage {
        InitStage::Resync => "resync",
        InitStage::Identity => "identity",
        InitStage::Sim => "sim",
        InitStage::Registration(_) => "registration",
        InitStage::Messaging => "messaging",
    }
}

/// A `+CREG`/`+CGREG` `<stat>` on the wire (3GPP TS 27.007 §7.2); a code the spec does not
/// list is `unknown`, as 4 is.
pub fn registration_name(status: RegistrationStatus) -> &'static str {
    match status {
        RegistrationStatus::NotRegistered => "not_registered",
        RegistrationStatus::Home => "registered_home",
        RegistrationStatus::Searching => "searching",
        RegistrationStatus::Denied => "denied",
        RegistrationStatus::Unknown | RegistrationStatus::Other(_) => "unknown",
        RegistrationStatus::Roaming => "registered_roaming",
        RegistrationStatus::SmsOnlyHome => "registered_sms_only_home",
        RegistrationStatus::SmsOnlyRoaming => "registered_sms_only_roaming",
        RegistrationStatus::EmergencyOnly => "emergency_only",
    }
}

/// The link state as a person reads it in a probe's reason: the name, and why when known.
pub fn describe_link_state(state: &LinkState) -> String {
    match link_detail(state) {
        (_, Some(reason)) => format!("{}: {reason}", link_state_name(state)),
        (Some(stage), None) => format!("{}: {stage}", link_state_name(state)),
        (None, None) => link_state_name(state).to_string(),
    }
}

/// The init stage and the reason a link state carries, if any.
fn link_detail(state: &LinkState) -> (Option<&'static str>, Option<&str>) {
    match state {
        LinkState::Initialising(stage) => (Some(init_stage_name(*stage)), None),
        LinkState::Waiting(reason) | LinkState::Failed(reason) => (None, Some(reason)),
        LinkState::Opening(_) | LinkState::Ready | LinkState::Stopped => (None, None),
    }
}

/// A message: `GET /v1/messages` lists these.
#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    id: &'a str,
    /// The integer number (null for messages stored before numbers were kept).
    message_number: Option<u64>,
    to: &'a str,
    text: &'a str,
    encoding: &'a str,
    state: &'static str,
    status_report: bool,
    parts: Vec<PartEntry<'a>>,
    attempts: u32,
    last_error: Option<&'a FailureInfo>,
    callback_data: Option<&'a str>,
    created_at: String,
    updated_at: String,
    sent_at: Option<String>,
    delivered_at: Option<&'a str>,
    /// Only present (true) for a dry run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
    /// The modem it is assigned to or went through (absent for records from before several
    /// modems).
    #[serde(skip_serializing_if = "Option::is_none")]
    modem: Option<&'a str>,
    /// That modem's SIM slot number.
    #[serde(skip_serializing_if = "Option::is_none")]
    sim: Option<u32>,
}

/// One part in a message view: its state and, once submitted, the modem that sent it.
#[derive(Debug, Serialize)]
pub struct PartEntry<'a> {
    #[serde(flatten)]
    state: PartView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modem: Option<&'a str>,
}

impl<'a> MessageView<'a> {
    /// The view of a stored message.
    pub fn new(message: &'a OutboundMessage) -> MessageView<'a> {
        MessageView {
            id: &message.id,
            message_number: message.number,
            to: &message.to,
            text: &message.text,
            encoding: message.encoding.as_str(),
            state: message.state.name(),
            status_report: message.status_report,
            parts: message
                .parts
                .iter()
                .map(|part| PartEntry {
                    state: PartView::from(&part.state),
                    modem: part.modem.as_deref(),
                })
                .collect(),
            attempts: message.attempts,
            last_error: message.last_error.as_ref(),
            callback_data: message.callback_data.as_deref(),
            created_at: rfc3339(message.created_at),
            updated_at: rfc3339(message.updated_at),
            sent_at: message.sent_at.map(rfc3339),
            delivered_at: message.delivered_at.as_deref(),
            dry_run: message.dry_run,
            modem: message.modem.as_deref(),
            sim: message.sim,
        }
    }
}

/// One part of a message: its state, and what the network said.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PartView<'a> {
    /// Not yet handed to the modem.
    Pending,
    /// With the modem now.
    Submitting,
    /// Accepted by the network.
    Submitted {
        /// The TP-MR.
        message_reference: u8,
    },
    /// Reported delivered.
    Delivered {
        /// The TP-MR.
        message_reference: u8,
        /// The TP-ST.
        status_code: u8,
        /// When, as the report says.
        delivered_at: &'a str,
    },
    /// Reported failed.
    Failed {
        /// The TP-MR.
        message_reference: u8,
        /// The TP-ST.
        status_code: u8,
    },
}

impl<'a> From<&'a PartState> for PartView<'a> {
    fn from(state: &'a PartState) -> PartView<'a> {
        match state {
            PartState::Pending => PartView::Pending,
            PartState::Submitting { .. } => PartView::Submitting,
            PartState::Submitted { reference, .. } => PartView::Submitted {
                message_reference: reference.0,
            },
            PartState::Delivered {
                reference,
                status,
                at,
            } => PartView::Delivered {
                message_reference: reference.0,
                status_code: *status,
                delivered_at: at,
            },
            PartState::Failed { reference, status } => PartView::Failed {
                message_reference: reference.0,
                status_code: *status,
            },
        }
    }
}

/// `GET /v1/messages/{id}`: the message and its events.
#[derive(Debug, Serialize)]
pub struct MessageDetail<'a> {
    /// The message.
    #[serde(flatten)]
    pub message: MessageView<'a>,
    /// Its events, oldest first.
    pub events: Vec<Event>,
}

/// `GET /v1/messages`.
#[derive(Debug, Serialize)]
pub struct MessageList<'a> {
    /// The messages, newest first.
    pub messages: Vec<MessageView<'a>>,
}

/// `GET /v1/events`.
#[derive(Debug, Serialize)]
pub struct EventList {
    /// The events, in sequence.
    pub events: Vec<Event>,
}

/// `POST /v1/events/{sequence}/redeliver`.
#[derive(Debug, Serialize)]
pub struct Redelivered {
    /// The endpoints the event goes to again.
    pub endpoints: Vec<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Serialize)]
pub struct StatusView<'a> {
    /// The daemon's version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// The first modem (as before several modems; `modems` has every one).
    pub modem: ModemView<'a>,
    /// Every modem, in config order, each with its name, SIM slot and whether it sends.
    pub modems: Vec<ModemView<'a>>,
    /// The outbox.
    pub queue: QueueView,
    /// The database.
    pub store: StoreView<'a>,
    /// The clock rule's verdict.
    pub clock: ClockView,
    /// Each webhook, briefly.
    pub webhooks: Vec<WebhookBrief<'a>>,
    /// The MQTT link, when `[mqtt]` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttView>,
    /// The last `call.ringing` or `call.missed` data (with `event`), since start.
    pub last_call: Option<serde_json::Value>,
    /// The last `sim.balance` data of the first modem (config order) with one, since start.
    pub last_balance: Option<serde_json::Value>,
    /// Every modem's last `sim.balance` data, in config order, since start.
    pub balances: Vec<serde_json::Value>,
}

/// The MQTT link in `/v1/status`.
#[derive(Debug, Serialize)]
pub struct MqttView {
    connected: bool,
    last_error: Option<String>,
    connections: u64,
    published: u64,
    publish_failures: u64,
    /// Events waiting to be published (held while the broker is away).
    queue_depth: usize,
}

impl MqttView {
    /// The view of the link's status and its event queue's depth.
    pub fn new(link: crate::mqtt::LinkStatus, queue_depth: usize) -> MqttView {
        MqttView {
            connected: link.connected,
            last_error: link.last_error,
            connections: link.connections,
            published: link.published,
            publish_failures: link.failed,
            queue_depth,
        }
    }
}

/// The modem in `/v1/status`.
#[derive(Debug, Serialize)]
pub struct ModemView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send: Option<bool>,
    device: &'a str,
    state: &'static str,
    stage: Option<&'static str>,
    reason: Option<&'a str>,
    identity: Option<IdentityView<'a>>,
    registration: Option<&'static str>,
    operator: Option<&'a str>,
    signal: Option<SignalView>,
    storage: Option<StorageView<'a>>,
    last_error: Option<&'a str>,
}

impl<'a> ModemView<'a> {
    /// The view of the driver's status.
    pub fn new(modem: &'a ModemStatus) -> ModemView<'a> {
        let (stage, reason) = link_detail(&modem.state);
        ModemView {
            name: None,
            sim: None,
            send: None,
            device: &modem.device,
            state: link_state_name(&modem.state),
            stage,
            reason,
            identity: modem.identity.as_ref().map(IdentityView::new),
            registration: modem.registration.map(registration_name),
            operator: modem.operator.as_deref(),
            signal: modem.signal.map(SignalView::new),
            storage: modem.storage.as_ref().map(StorageView::new),
            last_error: modem.last_error.as_deref(),
        }
    }

    /// The view of one of several modems: its status with its name, SIM slot and whether it
    /// may send.
    pub fn named(modem: &'a ModemStatus, slot: &'a crate::gateway::ModemSlot) -> ModemView<'a> {
        ModemView {
            name: Some(&slot.name),
            sim: Some(slot.sim),
            send: Some(slot.send),
            ..ModemView::new(modem)
        }
    }
}

#[derive(Debug, Serialize)]
struct IdentityView<'a> {
    manufacturer: &'a str,
    model: &'a str,
    revision: &'a str,
    imei: &'a str,
    imsi: Option<&'a str>,
    iccid: Option<&'a str>,
    number: Option<&'a str>,
}

impl<'a> IdentityView<'a> {
    fn new(identity: &'a Identity) -> IdentityView<'a> {
        IdentityView {
            manufacturer: &identity.manufacturer,
            model: &identity.model,
            revision: &identity.revision,
            imei: &identity.imei,
            imsi: identity.imsi.as_deref(),
            iccid: identity.iccid.as_deref(),
            number: identity.number.as_deref(),
        }
    }
}

#[derive(Debug, Serialize)]
struct SignalView {
    rssi: u8,
    dbm: Option<i16>,
}

impl SignalView {
    fn new(signal: SignalQuality) -> SignalView {
        SignalView {
            rssi: signal.rssi,
            dbm: signal.dbm(),
        }
    }
}

#[derive(Debug, Serialize)]
struct StorageView<'a> {
    name: Option<&'a str>,
    used: u32,
    total: u32,
}

impl<'a> StorageView<'a> {
    fn new(storage: &'a StorageUsage) -> StorageView<'a> {
        StorageView {
            name: storage.name.as_deref(),
            used: storage.used,
            total: storage.total,
        }
    }
}

/// The outbox in `/v1/status`.
#[derive(Debug, Serialize)]
pub struct QueueView {
    /// Messages waiting to be sent.
    pub outbox: usize,
}

/// The database in `/v1/status`: `{ok: true}`, or why and since when it cannot write.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum StoreView<'a> {
    /// It writes.
    Ok {
        /// Always true.
        ok: bool,
    },
    /// A write failed.
    Failing {
        /// Always false.
        ok: bool,
        /// The error.
        error: &'a str,
        /// Since when (RFC 3339).
        failing_since: String,
    },
}

impl<'a> StoreView<'a> {
    /// The view of the store's failure, if any.
    pub fn new(failure: Option<&'a StoreFailure>) -> StoreView<'a> {
        match failure {
            None => StoreView::Ok { ok: true },
            Some(failure) => StoreView::Failing {
                ok: false,
                error: &failure.error,
                failing_since: rfc3339(failure.since_ms),
            },
        }
    }
}

/// The clock rule in `/v1/status`.
#[derive(Debug, Serialize)]
pub struct ClockView {
    state: &'static str,
    webhooks_held: bool,
    message: String,
}

impl ClockView {
    /// The view of a verdict.
    pub fn new(verdict: &ClockVerdict) -> ClockView {
        ClockView {
            state: verdict.name(),
            webhooks_held: verdict.holds(),
            message: verdict.describe(),
        }
    }
}

/// A webhook in `/v1/status`.
#[derive(Debug, Serialize)]
pub struct WebhookBrief<'a> {
    name: &'a str,
    state: &'a EndpointState,
    queue_depth: usize,
    held_for_clock: bool,
    last_error: Option<&'a str>,
}

impl<'a> From<&'a EndpointStatus> for WebhookBrief<'a> {
    fn from(webhook: &'a EndpointStatus) -> WebhookBrief<'a> {
        WebhookBrief {
            name: &webhook.name,
            state: &webhook.health.state,
            queue_depth: webhook.queue_depth,
            held_for_clock: webhook.held_for_clock,
            last_error: webhook.health.last_error.as_deref(),
        }
    }
}

/// `GET /v1/webhooks`.
#[derive(Debug, Serialize)]
pub struct WebhookList<'a> {
    /// Each endpoint in full.
    pub webhooks: Vec<WebhookView<'a>>,
}

/// An endpoint in `GET /v1/webhooks`.
#[derive(Debug, Serialize)]
pub struct WebhookView<'a> {
    name: &'a str,
    state: &'a EndpointState,
    queue_depth: usize,
    dead_letters: usize,
    consecutive_failures: u32,
    last_error: Option<&'a str>,
    disabled_reason: Option<&'a str>,
    held_for_clock: bool,
}

impl<'a> From<&'a EndpointStatus> for WebhookView<'a> {
    fn from(webhook: &'a EndpointStatus) -> WebhookView<'a> {
        WebhookView {
            name: &webhook.name,
            state: &webhook.health.state,
            queue_depth: webhook.queue_depth,
            dead_letters: webhook.dead_letters,
            consecutive_failures: webhook.health.consecutive_failures,
            last_error: webhook.health.last_error.as_deref(),
            disabled_reason: webhook.health.disabled_reason.as_deref(),
            held_for_clock: webhook.held_for_clock,
        }
    }
}

/// `GET /v1/webhooks/{name}/dead-letters`.
#[derive(Debug, Serialize)]
pub struct DeadLetterList {
    /// The dead letters, oldest first.
    pub dead_letters: Vec<DeadLetterView>,
}

/// A delivery that ran out of attempts, with its last attempt.
#[derive(Debug, Serialize)]
pub struct DeadLetterView {
    /// The event's sequence.
    pub event_sequence: u64,
    /// The event's id, if it is still stored.
    pub event_id: Option<String>,
    /// The event's name, if it is still stored.
    pub event_name: Option<String>,
    /// The job's sequence.
    pub sequence: u64,
    /// Attempts made.
    pub attempts: u32,
    /// The last of them.
    pub last_attempt: Option<AttemptRecord>,
}

/// `POST /v1/webhooks/{name}/test`.
#[derive(Debug, Serialize)]
pub struct TestQueued {
    /// The `webhook.test` event's id.
    pub event_id: String,
}

/// `POST /v1/webhooks/{name}/enable`.
#[derive(Debug, Serialize)]
pub struct Enabled {
    /// The id of the test event sent to the endpoint.
    pub test_event_id: String,
}

/// `POST /v1/webhooks/{name}/dead-letters/{sequence}/replay`.
#[derive(Debug, Serialize)]
pub struct Replayed {
    /// The event sequence put back in the queue.
    pub replayed: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{MessageView, PartView, describe_link_state, registration_name};
    use crate::at::RegistrationStatus;
    use crate::modem::{InitStage, LinkState};
    use crate::store::{MessageState, OutPart, OutboundMessage, PartState};

    fn check_part(state: PartState, expected: Value) {
        let found = serde_json::to_value(PartView::from(&state)).expect("serialises");
        assert_eq!(found, expected, "{state:?}");
    }

    #[test]
    fn parts_say_their_state_and_what_the_network_said() {
        check_part(PartState::Pending, json!({ "state": "pending" }));
        check_part(
            PartState::Submitting { since: 5 },
            json!({ "state": "submitting" }),
        );
        check_part(
            PartState::Submitted {
                reference: crate::store::MessageReference(7),
                at: 5,
            },
            json!({ "state": "submitted", "message_reference": 7 }),
        );
        check_part(
            PartState::Delivered {
                reference: crate::store::MessageReference(7),
                status: 0,
                at: "2026-01-02T03:04:05Z".into(),
            },
            json!({ "state": "delivered", "message_reference": 7, "status_code": 0,
                    "delivered_at": "2026-01-02T03:04:05Z" }),
        );
        check_part(
            PartState::Failed {
                reference: crate::store::MessageReference(7),
                status: 65,
            },
            json!({ "state": "failed", "message_reference": 7, "status_code": 65 }),
        );
    }

    /// Field for field and in order, what `GET /v1/messages` has always answered.
    #[test]
    fn a_message_keeps_its_fields_and_their_order() {
        let message = OutboundMessage {
            id: "m1".into(),
            to: "+447700900123".into(),
            text: "hi".into(),
            encoding: crate::store::Encoding::Gsm7,
            parts: vec![OutPart {
                hex: "00".into(),
                cmgs_length: 1,
                state: PartState::Pending,
                pending_status: None,
                modem: None,
            }],
            callback_data: None,
            state: MessageState::Queued,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            status_report: true,
            validity_ms: None,
            created_at: 0,
            updated_at: 1000,
            sent_at: None,
            delivered_at: None,
            queue_key: None,
            number: None,
            dry_run: false,
            modem: None,
            sim: None,
            pinned: false,
        };
        let found = serde_json::to_string(&MessageView::new(&message)).expect("serialises");
        let expected = concat!(
            r#"{"id":"m1","message_number":null,"to":"+447700900123","text":"hi","encoding":"gsm7","state":"queued","#,
            r#""status_report":true,"parts":[{"state":"pending"}],"attempts":0,"last_error":null,"#,
            r#""callback_data":null,"created_at":"1970-01-01T00:00:00Z","#,
            r#""updated_at":"1970-01-01T00:00:01Z","sent_at":null,"delivered_at":null}"#
        );
        assert_eq!(found, expected);
    }

    fn check(state: LinkState, expected: &str) {
        assert_eq!(describe_link_state(&state), expected);
    }

    #[test]
    fn link_states_read_as_documented_words() {
        check(LinkState::Ready, "ready");
        check(LinkState::Opening(3), "connecting");
        check(LinkState::Initialising(InitStage::Sim), "initialising: sim");
        check(
            LinkState::Initialising(InitStage::Registration(RegistrationStatus::Searching)),
            "initialising: registration",
        );
        check(LinkState::Waiting("no answer".into()), "waiting: no answer");
        check(LinkState::Failed("wrong PIN".into()), "failed: wrong PIN");
        check(LinkState::Stopped, "stopped");
    }

    #[test]
    fn registrations_read_as_documented_words() {
        for (code, expected) in [
            (0, "not_registered"),
            (1, "registered_home"),
            (2, "searching"),
            (3, "denied"),
            (4, "unknown"),
            (5, "registered_roaming"),
            (6, "registered_sms_only_home"),
            (7, "registered_sms_only_roaming"),
            (8, "emergency_only"),
            (42, "unknown"),
        ] {
            let status = RegistrationStatus::from_code(code);
            assert_eq!(registration_name(status), expected, "{code}");
        }
    }
}
