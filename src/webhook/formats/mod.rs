//! How one delivery is rendered for an endpoint's `format`: the body, the headers of the
//! format's own signature, and the event names its receivers know. Pure: the event, the job
//! and a [`Context`] in, a [`Rendered`] request out (or `None`: the format has no message for
//! this event, and the job is settled without a request). Storage, retries, ordering, dead
//! letters and replay are the same for every format.

mod gatewayapi;
mod lox24;
mod smsgate;
mod smsgateway24;
mod smsrelay;
mod times;

use serde_json::Value;

use crate::store::{Event, Job};

/// The payload shape an endpoint receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Our own envelope (DESIGN.md), Standard Webhooks signatures.
    #[default]
    Smsrelay,
    /// LOX24 notifications (`sms.delivery`, `sms.delivery.dryrun`, `sms.incoming`).
    Lox24,
    /// GatewayAPI status and MO webhooks, signed with `X-Gwapi-Signature` (JWT HS256).
    Gatewayapi,
    /// SMSGateway24 delivery-status and incoming-SMS webhooks.
    Smsgateway24,
    /// SMSGate (Android gateway) webhooks, signed with `X-Signature` + `X-Timestamp`.
    Smsgate,
}

impl Format {
    /// Every format, in the order the docs list them.
    pub const ALL: [Format; 5] = [
        Format::Smsrelay,
        Format::Lox24,
        Format::Gatewayapi,
        Format::Smsgateway24,
        Format::Smsgate,
    ];

    /// The config name (`format = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Smsrelay => "smsrelay",
            Format::Lox24 => "lox24",
            Format::Gatewayapi => "gatewayapi",
            Format::Smsgateway24 => "smsgateway24",
            Format::Smsgate => "smsgate",
        }
    }

    /// The format named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|format| format.name() == name)
    }

    /// Whether the endpoint's `secret` is this format's own raw signing key rather than a
    /// Standard Webhooks `whsec_` secret.
    pub fn signs_itself(self) -> bool {
        matches!(self, Format::Gatewayapi | Format::Smsgate)
    }
}

/// The gateway's identity, from the config: `device_id`, `device_name`, `[modem] number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `device_id` (default 1).
    pub id: u64,
    /// `device_name` (default: the host name).
    pub name: String,
    /// The receiving number, when configured.
    pub number: Option<String>,
}

impl Default for Device {
    fn default() -> Device {
        Device {
            id: 1,
            name: host_name(),
            number: None,
        }
    }
}

/// The host name (`gethostname`), or `smsrelay` when it cannot be read.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the call.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if result == 0 && !name.is_empty() => name.to_string(),
        _ => "smsrelay".to_string(),
    }
}

/// What a rendering needs beyond the event and the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// `device_id` from the config (SMSGateway24 `device_id`, SMSGate `deviceId`).
    pub device_id: u64,
    /// `device_name` from the config (SMSGateway24 `device_name`).
    pub device_name: String,
    /// The receiving number (`[modem] number`), when known.
    pub number: Option<String>,
    /// The endpoint's name (GatewayAPI `webhook_label`, SMSGate `webhookId`).
    pub endpoint: String,
    /// The raw signing key of a format that signs itself.
    pub secret: Option<Vec<u8>>,
    /// This attempt, from 1.
    pub attempt: u32,
    /// The attempts this delivery may take.
    pub attempts_total: usize,
    /// The time of the attempt (Unix s): SMSGate's `X-Timestamp`.
    pub now: i64,
}

/// A request to send: the body and the format's own headers (the content type and the
/// Standard Webhooks headers are added by the HTTP side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The JSON body.
    pub body: Vec<u8>,
    /// Extra headers, e.g. a signature.
    pub headers: Vec<(String, String)>,
}

impl Rendered {
    /// A JSON body with no extra header.
    fn json(value: &Value) -> Rendered {
        Rendered {
            // Serialising a `Value` cannot fail.
            body: serde_json::to_vec(value).unwrap_or_default(),
            headers: Vec::new(),
        }
    }
}

/// Renders attempt `context.attempt` of `job` (a delivery of `event`) in `format`; `None`
/// when the format has nothing to say about this event (e.g. SMSGate has no `queued`).
pub fn render(format: Format, event: &Event, job: &Job, context: &Context) -> Option<Rendered> {
    match format {
        Format::Smsrelay => Some(smsrelay::render(event, job, context)),
        Format::Lox24 => lox24::render(event, job, context),
        Format::Gatewayapi => gatewayapi::render(event, context),
        Format::Smsgateway24 => smsgateway24::render(event, context),
        Format::Smsgate => smsgate::render(event, context),
    }
}

/// Where an outbound message ended, as the native events say it, for the formats' tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `sms.queued`.
    Queued,
    /// `sms.sent`.
    Sent,
    /// `sms.pending`: the network still tries.
    Pending,
    /// `sms.delivered`.
    Delivered,
    /// `sms.failed` at submit: the network or the modem refused it.
    Refused,
    /// `sms.failed` by a status report.
    Undeliverable,
    /// `sms.expired`, or a report saying the validity period ran out.
    Expired,
    /// `sms.failed`, interrupted: whether it went out is unknown.
    Unknown,
}

/// TP-ST 0x46: the SC says the validity period expired (3GPP TS 23.040 9.2.3.15).
const TP_ST_EXPIRED: u64 = 0x46;

/// The outcome an outbound event stands for; `None` for other events.
fn outcome(event: &Event) -> Option<Outcome> {
    let data = &event.data;
    Some(match event.name.as_str() {
        "sms.queued" => Outcome::Queued,
        "sms.sent" => Outcome::Sent,
        "sms.pending" => Outcome::Pending,
        "sms.delivered" => Outcome::Delivered,
        "sms.expired" => Outcome::Expired,
        "sms.failed" => match data["stage"].as_str() {
            Some("submit") => Outcome::Refused,
            Some("delivery") if data["error_code"].as_u64() == Some(TP_ST_EXPIRED) => {
                Outcome::Expired
            }
            Some("delivery") => Outcome::Undeliverable,
            Some("expired") => Outcome::Expired,
            _ => Outcome::Unknown,
        },
        _ => return None,
    })
}

/// The number an inbound SMS arrived at: the event's own `to` (the number when it was
/// received: `[modem] number` or `AT+CNUM`), else the configured one.
fn receiving_number<'a>(data: &'a Value, context: &'a Context) -> Option<&'a str> {
    data["to"].as_str().or(context.number.as_deref())
}

/// The digits of a number (`+4477…` → 4477…), for formats that send numbers as integers.
fn msisdn(number: &str) -> Option<u64> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A string field of the event's data ("" when absent).
fn text<'a>(data: &'a Value, key: &str) -> &'a str {
    data[key].as_str().unwrap_or_default()
}

#[cfg(test)]
mod tests;
