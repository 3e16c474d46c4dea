//! The retained `<prefix>/state` document: each modem, the queues, the webhooks, the
//! version, the last received SMS and each SIM's last balance. Built from plain inputs (no
//! I/O), so what Home Assistant and `smsrelay fleet status` read is tested here; the
//! publisher only sends it when it changed.

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
    /// The SIM's slot (`[[modem]] sim`).
    #[serde(default)]
    pub sim: Option<u32>,
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
            sim: data["sim"].as_u64().and_then(|sim| u32::try_from(sim).ok()),
            text,
        }
    }
}

/// Currency symbols as operators write them; the longer ones first (`R$` before `$`).
const SYMBOLS: &[&str] = &[
    "F CFA", "R$", "S/", "€", "$", "£", "¥", "₹", "₽", "₺", "₩", "₦", "₱", "₴", "₪", "₵", "₫", "฿",
    "₸", "₲", "₡", "₭", "৳", "₨",
];

/// Currency codes and local abbreviations common in prepaid markets. Only these count: an
/// answer's other capitals after a number are units ("500 MB", "120 SMS").
const CODES: &[&str] = &[
    "EUR", "USD", "GBP", "CHF", "PLN", "CZK", "HUF", "RON", "BGN", "SEK", "NOK", "DKK", "TRY",
    "UAH", "RUB", "KZT", "GEL", "AMD", "AZN", "RSD", "KES", "NGN", "GHS", "UGX", "TZS", "RWF",
    "ZAR", "ZMW", "MWK", "MZN", "ETB", "XOF", "XAF", "CDF", "EGP", "MAD", "DZD", "TND", "INR",
    "PKR", "BDT", "LKR", "NPR", "PHP", "IDR", "MYR", "THB", "VND", "KHR", "MMK", "CNY", "AUD",
    "NZD", "CAD", "BRL", "MXN", "COP", "PEN", "ARS", "CLP", "BOB", "PYG", "UYU", "GTQ", "DOP",
    "JMD", "HTG", "SAR", "AED", "QAR", "KWD", "OMR", "JOD", "FCFA", "CFA", "Rs", "Ksh", "KSh",
    "Tsh", "TSh", "Ush", "USh", "Rp", "RM", "Tk",
];

/// The currency beside the first amount of a balance answer: a symbol or a known code right
/// after it ("12.50 EUR", "12,50€", "1 234,56 FCFA"), else right before it ("$12.50",
/// "KES 1,234.50", "Rs. 45.00"). None when neither is there: networks word their answers
/// freely, and a unit ("500 MB") is no currency.
pub fn currency(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let (_, span) = crate::gateway::sim_events::amount_with_span(&chars)?;
    let (start, end) = (span.start, span.end);
    let blank = |c: &char| c.is_whitespace() || *c == '\u{a0}' || *c == '\u{202f}';
    let after: String = chars[end..].iter().skip_while(|c| blank(c)).collect();
    if let Some(symbol) = SYMBOLS.iter().find(|symbol| after.starts_with(*symbol)) {
        return Some((*symbol).to_string());
    }
    let word: String = after
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    if let Some(code) = CODES.iter().find(|code| **code == word) {
        return Some((*code).to_string());
    }
    // Before the amount: a sign and blanks, and the dot of an abbreviation ("Rs. 45").
    let mut before: Vec<char> = chars[..start].to_vec();
    while before.last().is_some_and(|c| blank(c) || *c == '-') {
        before.pop();
    }
    let before: String = before.into_iter().collect();
    if let Some(symbol) = SYMBOLS.iter().find(|symbol| before.ends_with(*symbol)) {
        return Some((*symbol).to_string());
    }
    let before = before.strip_suffix('.').unwrap_or(&before);
    let word_start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphabetic())
        .last()
        .map_or(before.len(), |(i, _)| i);
    let word = &before[word_start..];
    CODES
        .iter()
        .find(|code| **code == word)
        .map(|code| (*code).to_string())
}

/// The newest `sms.received` and each modem's newest `sim.balance` in the event log, and how
/// far it was read: the state is built every interval, so only the events recorded since are
/// looked at. Kept in the store's `meta` tree too, so a restart starts from it and not from a
/// window of the newest events (which a busy outbox pushes the last SMS out of).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    /// The sequence of the last event looked at; none before the first look.
    pub cursor: Option<u64>,
    /// The newest received SMS.
    pub sms: Option<LastSms>,
    /// The newest balance of each modem that has one.
    #[serde(default)]
    pub balances: Vec<Balance>,
}

impl Latest {
    /// Takes in one event (events come oldest first, so the last one seen wins); true when
    /// it changed the last SMS or a balance.
    pub fn observe(&mut self, sequence: u64, name: &str, data: &Value) -> bool {
        self.cursor = Some(sequence);
        match name {
            "sms.received" => self.sms = Some(LastSms::from_data(data)),
            "sim.balance" => {
                let balance = Balance::from_data(data);
                self.balances.retain(|kept| kept.modem != balance.modem);
                self.balances.push(balance);
            }
            _ => return false,
        }
        true
    }

    /// Takes in one event met walking back through the log (newest first): it counts only
    /// where nothing newer was met.
    pub fn observe_older(&mut self, name: &str, data: &Value) {
        match name {
            "sms.received" if self.sms.is_none() => self.sms = Some(LastSms::from_data(data)),
            "sim.balance" => {
                let balance = Balance::from_data(data);
                if !self.balances.iter().any(|kept| kept.modem == balance.modem) {
                    self.balances.push(balance);
                }
            }
            _ => {}
        }
    }

    /// Whether a walk back has found all it looks for.
    pub fn complete(&self, sought: &Sought) -> bool {
        (!sought.sms || self.sms.is_some())
            && sought.balances.iter().all(|name| {
                self.balances
                    .iter()
                    .any(|kept| kept.modem.as_deref() == Some(name))
            })
    }
}

/// What a walk back through the log looks for.
#[derive(Debug, Clone, Default)]
pub struct Sought {
    /// The last received SMS.
    pub sms: bool,
    /// The last balance of each of these modems.
    pub balances: Vec<String>,
}

/// Each modem's balance in configuration order, for the modems that have one: the gateway's
/// own record (`memory`, the `sim.balance` data it kept) first, else the log's (`logged`).
/// The state's `balance` is the first of these: the same SIM's as the unlabelled balance
/// gauge, whichever modem answered last.
pub fn balances(modems: &[String], memory: &[Value], logged: &[Balance]) -> Vec<Balance> {
    modems
        .iter()
        .filter_map(|name| {
            memory
                .iter()
                .find(|data| data["modem"].as_str() == Some(name))
                .map(Balance::from_data)
                .or_else(|| {
                    logged
                        .iter()
                        .find(|kept| kept.modem.as_deref() == Some(name))
                        .cloned()
                })
        })
        .collect()
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
    /// Every modem's last balance check, in configuration order (the modems without one are
    /// left out); empty when `sim.balance` is not published to MQTT.
    #[serde(default)]
    pub balances: Vec<Balance>,
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
            balances: vec![],
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
            // Digit groups as the amount reads them: the currency is after the whole number.
            ("Solde: 1 234,56 FCFA", Some("FCFA")),
            ("Solde: 1\u{a0}234,56 EUR", Some("EUR")),
            ("Votre solde est de 1\u{202f}500 F CFA", Some("F CFA")),
            ("Solde principal: 2 500 FCFA. Bonus 100 FCFA", Some("FCFA")),
            ("Guthaben: CHF 1'234.50", Some("CHF")),
            ("Saldo: 1.234,50 EUR", Some("EUR")),
            ("Your balance is KES 1,234.50", Some("KES")),
            (
                "Dear customer, your account balance is Ksh 45.30",
                Some("Ksh"),
            ),
            ("Balance: Rs. 45.00", Some("Rs")),
            (
                "Your main balance is Rs 12.50, valid till 30-12-2026",
                Some("Rs"),
            ),
            ("Your balance is NGN 250.00", Some("NGN")),
            ("Y'ello! Your balance is N250.00", None),
            ("Seu saldo: R$ 12,50", Some("R$")),
            ("Saldo: S/ 5.00", Some("S/")),
            ("Ваш баланс: 150,25 ₽", Some("₽")),
            ("Balance: 10 000 UGX", Some("UGX")),
            ("Salio lako ni TSh 1,500", Some("TSh")),
            ("Votre credit: 500 XOF", Some("XOF")),
            // Units are no currency.
            ("You have 500 MB left", None),
            ("2 500 SMS left until 31.12.", None),
            ("Bonus: 120 SMS, 5 GB", None),
            ("You have 120 minutes left", None),
            ("No balance information", None),
        ];
        for (text, expect) in cases {
            assert_eq!(currency(text).as_deref(), expect, "{text}");
        }
    }

    /// The span is the number the gateway took as `amount`: reading the span alone gives the
    /// same amount as reading the whole answer.
    #[test]
    fn the_amount_span_is_the_gateways_amount() {
        use crate::gateway::sim_events::first_amount;
        let texts = [
            "Balance 1,234.50 KES",
            "Saldo: 1.234,50 EUR",
            "Solde: 1 234,56 FCFA",
            "Solde: 1\u{a0}234,56 FCFA",
            "Solde: 1\u{202f}234\u{202f}567 FCFA",
            "Guthaben: CHF 1'234.50",
            "Balance 0.500",
            "Balance 1234.567",
            "2 500 SMS left",
            "12 345678",
            "1,234,5",
            "Balance 5,00 EUR",
            "Balance: 12. Thanks",
        ];
        for text in texts {
            let chars: Vec<char> = text.chars().collect();
            let (_, span) = crate::gateway::sim_events::amount_with_span(&chars).expect("a number");
            let span: String = chars[span].iter().collect();
            assert_eq!(
                first_amount(&span),
                first_amount(text),
                "{text:?}: {span:?}"
            );
        }
    }

    #[test]
    fn balances_follow_the_configuration_order() {
        let modems = ["main".to_string(), "spare".to_string(), "idle".to_string()];
        let data = |modem: &str, text: &str| {
            serde_json::json!({"modem": modem, "sim": 1, "text": text,
                "amount": 1, "checked_at": "2026-12-02T12:00:00Z", "low_balance": false})
        };
        struct Case {
            what: &'static str,
            memory: Vec<serde_json::Value>,
            logged: Vec<Balance>,
            expect: Vec<(&'static str, &'static str)>,
        }
        let cases = [
            Case {
                what: "after a restart: the log's, the first modem's first though the spare \
                       answered last",
                memory: vec![],
                logged: vec![
                    Balance::from_data(&data("spare", "9 USD")),
                    Balance::from_data(&data("main", "5 EUR")),
                ],
                expect: vec![("main", "EUR"), ("spare", "USD")],
            },
            Case {
                what: "the gateway's own record wins over the log's",
                memory: vec![data("spare", "7 GBP")],
                logged: vec![
                    Balance::from_data(&data("main", "5 EUR")),
                    Balance::from_data(&data("spare", "9 USD")),
                ],
                expect: vec![("main", "EUR"), ("spare", "GBP")],
            },
            Case {
                what: "a modem no longer configured is left out",
                memory: vec![],
                logged: vec![Balance::from_data(&data("gone", "5 EUR"))],
                expect: vec![],
            },
        ];
        for case in cases {
            let got: Vec<(String, String)> = balances(&modems, &case.memory, &case.logged)
                .into_iter()
                .map(|b| (b.modem.unwrap_or_default(), b.currency.unwrap_or_default()))
                .collect();
            let expect: Vec<(String, String)> = case
                .expect
                .iter()
                .map(|(m, c)| (m.to_string(), c.to_string()))
                .collect();
            assert_eq!(got, expect, "{}", case.what);
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
        let balance = latest.balances.first().cloned().expect("a balance");
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
