//! The retained `<prefix>/state` document: each modem, the queues, the webhooks, the
//! version. Built from plain inputs (no I/O), so what Home Assistant and `smsrelay fleet
//! status` read is tested here; the publisher only sends it when it changed.

use serde::{Deserialize, Serialize};

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
        }
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
