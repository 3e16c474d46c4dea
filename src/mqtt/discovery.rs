//! Home Assistant MQTT discovery: one device per gateway, published retained as a
//! device-based discovery message (`<discovery_prefix>/device/<id>/config`, Home Assistant
//! 2024.11 and later), with a component per entity. What each platform requires is in
//! `docs/mqtt.md`; the tests below check every component against it.

use serde_json::{Map, Value, json};

use super::topics;

/// What the discovery message describes.
#[derive(Debug, Clone)]
pub struct Gateway<'a> {
    /// The topic prefix of this gateway.
    pub prefix: &'a str,
    /// `device_name` (shown as the device's name).
    pub name: &'a str,
    /// A stable id, unique on the broker: the prefix as one level.
    pub id: String,
    /// smsrelay's version.
    pub version: &'a str,
    /// The modems, in configuration order.
    pub modems: Vec<String>,
    /// `sms.received` is published in the native envelope (the event entity reads it).
    pub received_events: bool,
    /// The state document carries `last_sms` (the Last SMS sensor reads it).
    pub last_sms: bool,
    /// The state document carries `balance` (the Balance sensor reads it).
    pub balance: bool,
    /// `call.missed` is published in the native envelope.
    pub call_events: bool,
    /// Commands are obeyed (the send entities exist only then).
    pub commands: bool,
    /// The notify entity's recipient.
    pub notify_to: Option<&'a str>,
}

impl Gateway<'_> {
    /// The id every component's `unique_id` starts with.
    fn unique(&self, what: &str) -> String {
        format!("{}_{what}", self.id)
    }
}

/// The device id used in the discovery topic and as the device's identifier: the prefix as
/// one topic level (`smsrelay/shed` → `smsrelay_shed`), unique on the broker as prefixes are.
pub fn device_id(prefix: &str) -> String {
    topics::segment(&prefix.replace('/', "_"))
}

/// The discovery topic and its payload.
pub fn message(gateway: &Gateway, discovery_prefix: &str) -> (String, Value) {
    let mut components = Map::new();
    sensors(gateway, &mut components);
    events(gateway, &mut components);
    senders(gateway, &mut components);
    // Availability per component, not for the device: Home Assistant copies a device-level
    // option into a component only when the component lacks it, and cannot be told "none".
    // The Online sensor reads the status topic itself and must go `off` when the gateway goes
    // offline (an automation on `to: "off"`), not `unavailable`.
    for (key, component) in components.iter_mut() {
        if key == ONLINE {
            continue;
        }
        if let Value::Object(component) = component {
            component.insert(
                "availability_topic".into(),
                topics::status(gateway.prefix).into(),
            );
            component.insert("payload_available".into(), "online".into());
            component.insert("payload_not_available".into(), "offline".into());
        }
    }
    let payload = json!({
        "dev": {
            "ids": [gateway.id.clone()],
            "name": gateway.name,
            "mf": "smsrelay",
            "mdl": "SMS gateway",
            "sw": gateway.version,
        },
        "o": {
            "name": "smsrelay",
            "sw": gateway.version,
        },
        "cmps": components,
        "qos": 1,
    });
    (topics::discovery(discovery_prefix, &gateway.id), payload)
}

/// The key of the Online sensor: the one component without the gateway's availability.
const ONLINE: &str = "online";

fn sensors(gateway: &Gateway, components: &mut Map<String, Value>) {
    let state = topics::state(gateway.prefix);
    components.insert(
        ONLINE.into(),
        json!({
            "p": "binary_sensor",
            "name": "Online",
            "unique_id": gateway.unique("online"),
            "device_class": "connectivity",
            "state_topic": topics::status(gateway.prefix),
            "payload_on": "online",
            "payload_off": "offline",
            "entity_category": "diagnostic",
        }),
    );
    components.insert(
        "outbox".into(),
        json!({
            "p": "sensor",
            "name": "Outbox",
            "unique_id": gateway.unique("outbox"),
            "state_topic": state,
            "value_template": "{{ value_json.queue.outbox }}",
            "unit_of_measurement": "messages",
            "state_class": "measurement",
            "icon": "mdi:email-arrow-right-outline",
        }),
    );
    for (index, name) in gateway.modems.iter().enumerate() {
        // One modem: entity names without it ("Signal"); several: "modem2 signal".
        let label = |what: &str| {
            if gateway.modems.len() == 1 {
                what.to_string()
            } else {
                format!("{name} {}", what.to_lowercase())
            }
        };
        let key = |what: &str| format!("{}_{what}", topics::segment(name));
        let field = |field: &str| format!("{{{{ value_json.modems[{index}].{field} }}}}");
        components.insert(
            key("signal"),
            json!({
                "p": "sensor",
                "name": label("Signal"),
                "unique_id": gateway.unique(&key("signal")),
                "state_topic": state,
                "value_template": field("signal_dbm"),
                "device_class": "signal_strength",
                "unit_of_measurement": "dBm",
                "state_class": "measurement",
                "entity_category": "diagnostic",
            }),
        );
        for (what, title, icon) in [
            ("operator", "Operator", "mdi:sim"),
            ("registration", "Registration", "mdi:radio-tower"),
            ("state", "Modem", "mdi:cellphone-link"),
        ] {
            components.insert(
                key(what),
                json!({
                    "p": "sensor",
                    "name": label(title),
                    "unique_id": gateway.unique(&key(what)),
                    "state_topic": state,
                    "value_template": field(what),
                    "icon": icon,
                    "entity_category": "diagnostic",
                }),
            );
        }
        components.insert(
            key("storage"),
            json!({
                "p": "sensor",
                "name": label("SIM storage"),
                "unique_id": gateway.unique(&key("storage")),
                "state_topic": state,
                "value_template": field("storage_used"),
                "json_attributes_topic": state,
                "json_attributes_template":
                    format!("{{{{ {{'total': value_json.modems[{index}].storage_total}} | tojson }}}}"),
                "unit_of_measurement": "messages",
                "state_class": "measurement",
                "icon": "mdi:sim-alert-outline",
                "entity_category": "diagnostic",
            }),
        );
    }
    // Both read the retained state, not the event topics: those are not retained, and Home
    // Assistant restarting would show "unknown" until the next SMS or balance check.
    // A template that renders `None` makes the sensor unknown, the same as no value yet.
    if gateway.last_sms {
        components.insert(
            "last_sms".into(),
            json!({
                "p": "sensor",
                "name": "Last SMS",
                "unique_id": gateway.unique("last_sms"),
                "state_topic": state,
                "value_template":
                    "{{ value_json.last_sms.from if value_json.last_sms else None }}",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ (value_json.last_sms or {}) | tojson }}",
                "icon": "mdi:message-text",
            }),
        );
    }
    if gateway.balance {
        components.insert(
            "balance".into(),
            json!({
                "p": "sensor",
                "name": "Balance",
                "unique_id": gateway.unique("balance"),
                "state_topic": state,
                "value_template":
                    "{{ value_json.balance.amount if value_json.balance else None }}",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ (value_json.balance or {}) | tojson }}",
                "icon": "mdi:cash",
            }),
        );
    }
}

/// `event` entities: Home Assistant needs `event_type` in what the template renders.
fn events(gateway: &Gateway, components: &mut Map<String, Value>) {
    let kinds = [
        (
            gateway.received_events,
            "sms_received",
            "SMS received",
            "sms.received",
        ),
        (
            gateway.call_events,
            "call_missed",
            "Missed call",
            "call.missed",
        ),
    ];
    for (wanted, key, title, event) in kinds {
        if !wanted {
            continue;
        }
        components.insert(
            key.into(),
            json!({
                "p": "event",
                "name": title,
                "unique_id": gateway.unique(key),
                "state_topic": topics::event(gateway.prefix, event),
                "event_types": [event],
                "value_template":
                    "{{ dict(value_json.data, event_type=value_json.name) | tojson }}",
            }),
        );
    }
}

/// The ways to send from Home Assistant: a notify entity to the configured recipient, and a
/// number, a message and a Send button.
fn senders(gateway: &Gateway, components: &mut Map<String, Value>) {
    if !gateway.commands {
        return;
    }
    let send = format!("{}/cmd/send", gateway.prefix);
    if let Some(to) = gateway.notify_to {
        // The key makes a message Home Assistant sends twice (QoS 1) one SMS.
        let template = format!(
            "{{{{ {{'to': {}, 'text': value, 'idempotency_key': 'ha-notify-' ~ \
             (now().timestamp() * 1000000) | int}} | tojson }}}}",
            serde_json::to_string(to)
                .unwrap_or_default()
                .replace('"', "'")
        );
        components.insert(
            "notify".into(),
            json!({
                "p": "notify",
                "name": "SMS",
                "unique_id": gateway.unique("notify"),
                "command_topic": send,
                "command_template": template,
                "qos": 1,
            }),
        );
    }
    for (key, title, mode, max) in [
        ("draft_to", "SMS number", "text", 32),
        ("draft_text", "SMS message", "text", 255),
    ] {
        components.insert(
            key.into(),
            json!({
                "p": "text",
                "name": title,
                "unique_id": gateway.unique(key),
                "command_topic": format!("{}/cmd/{key}", gateway.prefix),
                "state_topic": format!("{}/draft/{key}", gateway.prefix),
                "mode": mode,
                "max": max,
                "qos": 1,
            }),
        );
    }
    components.insert(
        "draft_send".into(),
        json!({
            "p": "button",
            "name": "Send SMS",
            "unique_id": gateway.unique("draft_send"),
            "command_topic": format!("{}/cmd/draft_send", gateway.prefix),
            "payload_press": "PRESS",
            "icon": "mdi:send",
            "qos": 1,
        }),
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Required keys per platform, from Home Assistant's MQTT integration documentation
    /// (docs/mqtt.md keeps them): device-based discovery needs `p` and `unique_id` in every
    /// component, and each platform its own topics.
    fn required(platform: &str) -> &'static [&'static str] {
        match platform {
            "sensor" | "binary_sensor" => &["state_topic"],
            "event" => &["state_topic", "event_types"],
            "notify" | "text" | "button" => &["command_topic"],
            other => panic!("platform {other} is not one we publish"),
        }
    }

    fn gateway(modems: &[&str], commands: bool) -> Gateway<'static> {
        Gateway {
            prefix: "smsrelay/shed",
            name: "shed",
            id: device_id("smsrelay/shed"),
            version: "0.1.0",
            modems: modems.iter().map(|m| m.to_string()).collect(),
            received_events: true,
            last_sms: true,
            balance: true,
            call_events: true,
            commands,
            notify_to: if commands {
                Some("+491701234567")
            } else {
                None
            },
        }
    }

    fn check(payload: &Value) {
        let device = &payload["dev"];
        assert!(
            device["ids"].as_array().is_some_and(|ids| !ids.is_empty()),
            "device identifiers: {device}"
        );
        assert!(device["name"].is_string(), "device name");
        assert!(payload["o"]["name"].is_string(), "origin name");
        let components = payload["cmps"].as_object().expect("cmps is an object");
        assert!(!components.is_empty());
        let mut unique = HashSet::new();
        for (key, component) in components {
            let platform = component["p"].as_str().expect("every component has p");
            for field in required(platform) {
                assert!(
                    !component[*field].is_null(),
                    "{key} ({platform}) lacks {field}"
                );
            }
            let id = component["unique_id"].as_str().expect("unique_id");
            assert!(unique.insert(id.to_string()), "{id} repeated");
            for (name, value) in component.as_object().expect("object") {
                if name.ends_with("_topic") {
                    let topic = value.as_str().expect("a topic is a string");
                    assert!(!topic.contains(['+', '#']), "{key}.{name}: {topic}");
                }
            }
        }
    }

    #[test]
    fn every_component_has_what_its_platform_requires() {
        for (modems, commands) in [(vec!["modem1"], true), (vec!["a", "b"], false)] {
            let (topic, payload) = message(&gateway(&modems, commands), "homeassistant");
            assert_eq!(topic, "homeassistant/device/smsrelay_shed/config");
            check(&payload);
        }
    }

    #[test]
    fn entities_follow_what_is_configured() {
        let (_, one) = message(&gateway(&["modem1"], true), "homeassistant");
        let components = one["cmps"].as_object().expect("object");
        assert_eq!(components["modem1_signal"]["name"], "Signal");
        assert!(components.contains_key("notify"));
        assert!(components.contains_key("draft_send"));
        let (_, two) = message(&gateway(&["sim-a", "sim-b"], false), "homeassistant");
        let components = two["cmps"].as_object().expect("object");
        assert_eq!(components["sim-b_signal"]["name"], "sim-b signal");
        assert_eq!(
            components["sim-b_signal"]["value_template"],
            "{{ value_json.modems[1].signal_dbm }}"
        );
        assert!(!components.contains_key("notify"), "no commands, no notify");
        assert!(!components.contains_key("draft_send"));
    }

    #[test]
    fn online_goes_off_while_every_other_entity_follows_the_status() {
        let (_, payload) = message(&gateway(&["modem1"], true), "homeassistant");
        for key in ["availability", "availability_topic", "payload_available"] {
            assert!(payload.get(key).is_none(), "no device-level {key}");
        }
        let components = payload["cmps"].as_object().expect("object");
        let online = &components["online"];
        assert_eq!(online["state_topic"], "smsrelay/shed/status");
        assert_eq!(online["payload_off"], "offline");
        assert!(online.get("availability_topic").is_none(), "{online}");
        assert!(online.get("availability").is_none(), "{online}");
        for (key, component) in components.iter().filter(|(key, _)| *key != "online") {
            assert_eq!(
                component["availability_topic"], "smsrelay/shed/status",
                "{key}"
            );
            assert_eq!(component["payload_not_available"], "offline", "{key}");
        }
    }

    #[test]
    fn last_sms_and_balance_read_the_retained_state() {
        let (_, payload) = message(&gateway(&["modem1"], false), "homeassistant");
        for (key, field) in [("last_sms", "last_sms.from"), ("balance", "balance.amount")] {
            let component = &payload["cmps"][key];
            assert_eq!(component["state_topic"], "smsrelay/shed/state", "{key}");
            assert_eq!(
                component["json_attributes_topic"], "smsrelay/shed/state",
                "{key}"
            );
            let template = component["value_template"].as_str().expect("template");
            assert!(template.contains(field), "{key}: {template}");
        }
    }

    #[test]
    fn the_notify_template_carries_the_recipient_and_a_key() {
        let (_, payload) = message(&gateway(&["modem1"], true), "homeassistant");
        let template = payload["cmps"]["notify"]["command_template"]
            .as_str()
            .expect("template");
        assert!(template.contains("'to': '+491701234567'"), "{template}");
        assert!(template.contains("idempotency_key"), "{template}");
    }
}
