//! The retained `<prefix>/state` document: each modem, the queues, the webhooks, the
//! version, the last received SMS and the last balance. Built from plain inputs (no I/O), so what Home Assistant and `smsrelay fleet
//! status` read is tested here; the publisher only sends it when it changed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::views::{link_state_name, registration_name};
use crate::modem::ModemStatus;

/// One modem as the state document shows it: flat, every key always present (null when
/// unknown), so templates never meet a missing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModemState {
    /// The modem's name.
    pub name: String,
    /// `ready`, `connecting`, `initialising`, `waiting`, `failed`, `stopped`.
    pub state: String,
    /// Why it is not ready, when known.
    pub reason: Option<String>,
    /// `registered_home`, `searching`, …
    pub registration: Option<String>,
    /// The operator's name.
    pub operator: Option<String>,
    /// Signal strength in dBm.
    pub signal_dbm: Option<i16>,
    /// Messages in the receive storage.
    pub storage_used: Option<u32>,
    /// The receive storage's size.
    pub storage_total: Option<u32>,
}

impl ModemState {
    /// The view of one driver's status.
    pub fn new(name: &str, status: &ModemStatus) -> ModemState {
        let reason = match &status.state {
            crate::modem::LinkState::Waiting(reason) | crate::modem::LinkState::Failed(reason) => {
                Some(reason.clone())
            }
            _ => None,
        };
        ModemState {
            name: name.to_string(),
            state: link_state_name(&status.state).to_string(),
            reason,
            registration: status
                .registration
                .map(|r| registration_name(r).to_string()),
            operator: status.operator.clone(),
            signal_dbm: status.signal.and_then(|signal| signal.dbm()),
            storage_used: status.storage.as_ref().map(|s| s.used),
            storage_total: status.storage.as_ref().map(|s| s.total),
        }
    }
}

/// One webhook endpoint in the state document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookState {
    /// The endpoint's name.
    pub name: String,
    /// `healthy`, `failing`, `circuit_open`, `disabled`.
    pub state: String,
    /// Jobs waiting.
    pub pending: u64,
}

/// Queue depths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Messages waiting to be sent.
    pub outbox: usize,
    /// Events waiting to be published here.
    pub mqtt: u64,
}

/// The newest received SMS: what Home Assistant's Last SMS sensor shows, retained so that it
/// survives a Home Assistant restart (the `event/sms.received` topic is not retained).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSms {
    /// The sender.
    pub from: Option<String>,
    /// The text (of every part received).
    pub text: String,
    /// When it was received, RFC 3339.
    pub received_at: Option<String>,
    /// The modem it arrived on.
    pub modem: Option<String>,
}

impl LastSms {
    /// From the data of a `sms.received` event.
    pub fn from_data(data: &Value) -> LastSms {
        let text = |field: &str| data[field].as_str().map(str::to_string);
        LastSms {
            from: text("from"),
            text: text("text").unwrap_or_default(),
            received_at: text("received_at"),
            modem: text("modem"),
        }
    }
}

/// The last balance check, named as in `sim.balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The first number in the answer; null when it had none.
    pub amount: Option<serde_json::Number>,
    /// The currency next to the amount (`EUR`, `€`), when the answer shows one.
    pub currency: Option<String>,
    /// The network's answer as it came.
    pub text: String,
    /// When it was checked, RFC 3339.
    pub checked_at: Option<String>,
    /// Below `[ussd] low_balance`.
    pub low_balance: bool,
    /// The modem whose SIM it is.
    pub modem: Option<String>,
}

impl Balance {
    /// From the data of a `sim.balance` event.
    pub fn from_data(data: &Value) -> Balance {
        let text = data["text"].as_str().unwrap_or_default().to_string();
        Balance {
            amount: data["amount"].as_number().cloned(),
            currency: currency(&text),
            checked_at: data["checked_at"].as_str().map(str::to_string),
            low_balance: data["low_balance"].as_bool().unwrap_or(false),
            modem: data["modem"].as_str().map(str::to_string),
            text,
        }
    }
}

/// The currency beside the first number of a balance answer: a code of 2 to 4 letters or a
/// symbol after it ("12.50 EUR", "12,50€"), else a symbol or code right before it ("$12.50",
/// "EUR 12.50"). None when neither is there: networks word their answers freely.
pub fn currency(text: &str) -> Option<String> {
    const SYMBOLS: &[char] = &['€', '$', '£', '¥', '₹', '₽', '₺', '₩', '₦', '₱', '₴', '₪'];
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest = &text[start..];
    let end = rest
        .char_indices()
        .find(|(i, c)| {
            !(c.is_ascii_digit()
                || ((*c == '.' || *c == ',')
                    && rest[i + 1..].starts_with(|d: char| d.is_ascii_digit())))
        })
        .map_or(rest.len(), |(i, _)| i);
    let code = |word: &str| {
        let letters = word.chars().count();
        ((2..=4).contains(&letters) && word.chars().all(|c| c.is_ascii_uppercase()))
            .then(|| word.to_string())
    };
    let after = rest[end..].trim_start();
    if let Some(symbol) = after.chars().next().filter(|c| SYMBOLS.contains(c)) {
        return Some(symbol.to_string());
    }
    let word: String = after
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    if let Some(found) = code(&word) {
        return Some(found);
    }
    let before = text[..start].trim_end();
    if let Some(symbol) = before.chars().last().filter(|c| SYMBOLS.contains(c)) {
        return Some(symbol.to_string());
    }
    let word: String = before
        .chars()
        .rev()
        .take_while(char::is_ascii_alphabetic)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    code(&word)
}

/// The newest `sms.received` and `sim.balance` in the event log, and how far it was read: the
/// state is built every interval, so only the events recorded since are looked at.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    /// The sequence of the last event looked at; none before the first look.
    pub cursor: Option<u64>,
    /// The newest received SMS.
    pub sms: Option<LastSms>,
    /// The newest balance.
    pub balance: Option<Balance>,
}

impl Latest {
    /// Takes in one event (events come oldest first, so the last one seen wins).
    pub fn observe(&mut self, sequence: u64, name: &str, data: &Value) {
        match name {
            "sms.received" => self.sms = Some(LastSms::from_data(data)),
            "sim.balance" => self.balance = Some(Balance::from_data(data)),
            _ => {}
        }
        self.cursor = Some(sequence);
    }
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDocument {
    /// The gateway's `device_name`.
    pub device: String,
    /// smsrelay's version.
    pub version: String,
    /// Every modem, in configuration order.
    pub modems: Vec<ModemState>,
    /// Queue depths.
    pub queue: QueueState,
    /// Every webhook endpoint.
    pub webhooks: Vec<WebhookState>,
    /// The newest received SMS; null when there is none or `sms.received` is not published
    /// to MQTT (then its text stays off the broker).
    #[serde(default)]
    pub last_sms: Option<LastSms>,
    /// The last balance check; null before one, or when `sim.balance` is not published to
    /// MQTT.
    #[serde(default)]
    pub balance: Option<Balance>,
}

impl StateDocument {
    /// The JSON published (compact; retained).
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Whether a new document should go out now: it differs from the last one published and
/// the interval since then has passed (or nothing was published on this connection yet).
pub fn due(
    last: Option<&StateDocument>,
    now_doc: &StateDocument,
    since_last: Option<std::time::Duration>,
    interval: std::time::Duration,
) -> bool {
    match (last, since_last) {
        (Some(last), Some(since)) => last != now_doc && since >= interval,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::at::RegistrationStatus;
    use crate::at::parse::SignalQuality;
    use crate::modem::LinkState;

    fn modem_status(state: LinkState) -> ModemStatus {
        ModemStatus {
            state,
            ..ModemStatus::opening("/dev/ttyUSB0")
        }
    }

    fn document(outbox: usize) -> StateDocument {
        StateDocument {
            device: "gw".into(),
            version: "0.1.0".into(),
            modems: vec![],
            queue: QueueState { outbox, mqtt: 0 },
            webhooks: vec![],
            last_sms: None,
            balance: None,
        }
    }

    #[test]
    fn the_currency_is_read_beside_the_amount() {
        let cases = [
            (
                "Your balance is 12.50 EUR, valid until 31.12.2026",
                Some("EUR"),
            ),
            ("Guthaben: 3,20€", Some("€")),
            ("Balance $12.50.", Some("$")),
            ("Credit: GBP 4.00", Some("GBP")),
            ("You have 120 minutes left", None),
            ("No balance information", None),
        ];
        for (text, expect) in cases {
            assert_eq!(currency(text).as_deref(), expect, "{text}");
        }
    }

    #[test]
    fn the_newest_sms_and_balance_win() {
        let mut latest = Latest::default();
        let sms = |from: &str| {
            serde_json::json!({"from": from, "text": "hi", "modem": "modem1",
            "received_at": "2026-12-02T12:00:00Z"})
        };
        latest.observe(1, "sms.received", &sms("+491"));
        latest.observe(
            2,
            "sim.balance",
            &serde_json::json!({"text": "Balance 7.5 EUR", "amount": 7.5, "low_balance": true,
                "checked_at": "2026-12-02T12:00:00Z", "modem": "modem1"}),
        );
        latest.observe(3, "sms.received", &sms("+492"));
        latest.observe(4, "sms.sent", &serde_json::json!({}));
        assert_eq!(latest.cursor, Some(4));
        let last = latest.sms.expect("an SMS");
        assert_eq!(last.from.as_deref(), Some("+492"));
        assert_eq!(last.modem.as_deref(), Some("modem1"));
        let balance = latest.balance.expect("a balance");
        let json = serde_json::to_value(&balance).expect("serialises");
        assert_eq!(json["amount"], 7.5);
        assert_eq!(json["currency"], "EUR");
        assert_eq!(json["low_balance"], true);
    }

    #[test]
    fn a_document_without_the_new_keys_still_reads() {
        // `fleet status` reads what older gateways retained.
        let old = r#"{"device":"gw","version":"0.1.0","modems":[],"queue":{"outbox":0,"mqtt":0},
            "webhooks":[]}"#;
        let document: StateDocument = serde_json::from_str(old).expect("parses");
        assert_eq!(document.last_sms, None);
        let json = serde_json::to_value(&document).expect("serialises");
        assert!(
            json["last_sms"].is_null() && json.get("balance").is_some(),
            "{json}"
        );
    }

    #[test]
    fn a_modem_is_flattened_with_every_key_present() {
        let status = ModemStatus {
            registration: Some(RegistrationStatus::Home),
            operator: Some("Vodafone".into()),
            signal: Some(SignalQuality { rssi: 21, ber: 0 }),
            ..modem_status(LinkState::Ready)
        };
        let modem = ModemState::new("modem1", &status);
        assert_eq!(modem.signal_dbm, Some(-71));
        assert_eq!(modem.registration.as_deref(), Some("registered_home"));
        let json = serde_json::to_value(&modem).expect("serialises");
        assert!(json["storage_used"].is_null(), "{json}");
        let waiting = modem_status(LinkState::Waiting("no network".into()));
        assert_eq!(
            ModemState::new("m", &waiting).reason.as_deref(),
            Some("no network")
        );
    }

    #[test]
    fn published_on_change_at_most_once_per_interval() {
        let interval = Duration::from_secs(5);
        let (a, b) = (document(0), document(1));
        struct Case {
            what: &'static str,
            last: Option<&'static str>,
            since: Option<u64>,
            changed: bool,
            expect: bool,
        }
        let cases = [
            Case {
                what: "first on a connection",
                last: None,
                since: None,
                changed: true,
                expect: true,
            },
            Case {
                what: "unchanged",
                last: Some("a"),
                since: Some(60),
                changed: false,
                expect: false,
            },
            Case {
                what: "changed, too soon",
                last: Some("a"),
                since: Some(1),
                changed: true,
                expect: false,
            },
            Case {
                what: "changed, interval over",
                last: Some("a"),
                since: Some(5),
                changed: true,
                expect: true,
            },
        ];
        for case in cases {
            let now_doc = if case.changed { &b } else { &a };
            let last = case.last.map(|_| &a);
            let since = case.since.map(Duration::from_secs);
            assert_eq!(
                due(last, now_doc, since, interval),
                case.expect,
                "{}",
                case.what
            );
        }
    }
}
