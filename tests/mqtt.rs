//! MQTT through the real binary and a real broker (mosquitto): events on their topics at
//! QoS 1, nothing lost or reordered across a broker outage and a kill -9, the will, commands
//! answered once, Home Assistant discovery, and `smsrelay fleet status` over two gateways.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::QoS;
use serde_json::Value;
use smsrelay::mock::{InboundSms, MockConfig, MockModem};

use crate::support::broker::{Broker, Heard, Subscriber};
use crate::support::daemon::{Api, Daemon, TOKEN, free_port};
use crate::support::run_smsrelay;

const WAIT: Duration = Duration::from_secs(30);

/// One gateway: a simulated modem, a data dir, a config naming the broker.
struct Gateway {
    _dir: tempfile::TempDir,
    modem: MockModem,
    config: PathBuf,
    api: Api,
    prefix: String,
}

impl Gateway {
    /// The recipients of the messages the API lists, newest first, and the page for messages.
    fn recipients(&self) -> (Vec<String>, Value) {
        let (_, page) = self.api.get("/v1/messages?limit=100");
        let to = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["to"].as_str().map(str::to_string))
            .collect();
        (to, page)
    }

    fn new(broker: &Broker, name: &str, extra: &str) -> Gateway {
        Gateway::with_url(&broker.url(), name, extra)
    }

    fn with_url(url: &str, name: &str, extra: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("modem");
        let modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock");
        let port = free_port();
        let config = write_config(dir.path(), &link, port, name, url, extra);
        Gateway {
            _dir: dir,
            modem,
            config,
            api: Api::new(port),
            prefix: format!("smsrelay/{name}"),
        }
    }

    fn start(&self) -> Daemon {
        let daemon = Daemon::start(&self.config);
        self.api.wait_up();
        daemon
    }

    /// Queues an SMS through the API; its message id.
    fn send(&self, text: &str) -> String {
        let body = format!(r#"{{"to":"+491701234567","text":"{text}"}}"#);
        let (status, answer) = self.api.post("/v1/messages", Some(TOKEN), &body, &[]);
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().expect("an id").to_string()
    }
}

fn write_config(
    dir: &Path,
    device: &Path,
    port: u16,
    name: &str,
    url: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join("smsrelay.toml");
    let text = format!(
        r#"
data_dir = "{data}"
device_name = "{name}"
webhook_clock_check = false

[modem]
device = "{device}"

[api]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"

[mqtt]
url = "{url}"
state_interval = "200ms"
keep_alive = "5s"
{extra}
"#,
        data = dir.join("data").display(),
        device = device.display(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

fn on_topic<'a>(heard: &'a [Heard], topic: &str) -> Vec<&'a Heard> {
    heard.iter().filter(|h| h.topic == topic).collect()
}

/// The event envelopes heard under `prefix/event/`, with their topics.
fn events(heard: &[Heard], prefix: &str) -> Vec<(String, Value)> {
    let events = format!("{prefix}/event/");
    heard
        .iter()
        .filter_map(|h| {
            let name = h.topic.strip_prefix(&events)?;
            Some((name.to_string(), h.json()))
        })
        .collect()
}

/// The message ids of the `name` events heard, deduplicated by event id.
fn messages_with(heard: &[Heard], prefix: &str, name: &str) -> HashSet<String> {
    events(heard, prefix)
        .into_iter()
        .filter(|(topic, _)| topic == name)
        .filter_map(|(_, event)| Some(event["data"]["message_id"].as_str()?.to_string()))
        .collect()
}

#[test]
fn events_state_and_the_will_reach_the_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let gateway = Gateway::new(&broker, "shed", "");
    let prefix = gateway.prefix.clone();
    let subscriber = Subscriber::start(broker.port, "test-events", &[&format!("{prefix}/#")]);
    let mut daemon = gateway.start();

    let id = gateway.send("hello over mqtt");
    gateway
        .modem
        .inject_sms(&InboundSms::new("+491709999999", "hi gateway"))
        .expect("injected");
    let heard = subscriber.wait_until("delivered and received events", WAIT, |heard| {
        messages_with(heard, &prefix, "sms.delivered").contains(&id)
            && !on_topic(heard, &format!("{prefix}/event/sms.received")).is_empty()
    });
    for name in ["sms.queued", "sms.sent", "sms.delivered"] {
        let topic = format!("{prefix}/event/{name}");
        let published = on_topic(&heard, &topic);
        assert!(!published.is_empty(), "nothing on {topic}");
        for message in published {
            assert_eq!(message.qos, QoS::AtLeastOnce, "{topic} at QoS 1");
            assert_eq!(message.json()["name"], name, "the envelope names its event");
            assert!(!message.retain, "events are not retained");
        }
    }
    let received = on_topic(&heard, &format!("{prefix}/event/sms.received"))[0].json();
    assert_eq!(received["data"]["from"], "+491709999999");
    assert_eq!(received["data"]["text"], "hi gateway");

    let status = on_topic(&heard, &format!("{prefix}/status"));
    assert_eq!(status.last().map(|h| h.text()).as_deref(), Some("online"));
    let ready_with_operator = |h: &&Heard| {
        let modem = &h.json()["modems"][0];
        modem["state"] == "ready" && modem["operator"].is_string()
    };
    let heard = subscriber.wait_until("a state with the modem ready", WAIT, |heard| {
        on_topic(heard, &format!("{prefix}/state"))
            .iter()
            .any(ready_with_operator)
    });
    let state = on_topic(&heard, &format!("{prefix}/state"));
    let ready = state
        .iter()
        .find(|h| ready_with_operator(h))
        .expect("ready")
        .json();
    assert_eq!(ready["modems"][0]["name"], "modem1");
    assert_eq!(ready["modems"][0]["operator"], "Mock Mobile");
    assert!(ready["modems"][0]["signal_dbm"].is_i64(), "{ready}");
    assert_eq!(ready["device"], "shed");

    // A retained state and status reach a client that subscribes later.
    let late = Subscriber::start(broker.port, "test-late", &[&format!("{prefix}/+")]);
    let retained = late.wait_until("the retained state", WAIT, |heard| {
        heard
            .iter()
            .any(|h| h.retain && h.topic == format!("{prefix}/state"))
            && heard
                .iter()
                .any(|h| h.retain && h.topic == format!("{prefix}/status"))
    });
    assert!(retained.iter().all(|h| h.retain));

    daemon.child.kill().expect("SIGKILL");
    let _ = daemon.child.wait();
    subscriber.wait_until("the will: offline", WAIT, |heard| {
        on_topic(heard, &format!("{prefix}/status"))
            .last()
            .is_some_and(|h| h.text() == "offline")
    });
}

#[test]
fn a_broker_outage_and_a_kill_lose_and_reorder_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::start(dir.path());
    let gateway = Gateway::new(&broker, "outage", "");
    let prefix = gateway.prefix.clone();
    let subscriber = Subscriber::start(broker.port, "test-outage", &[&format!("{prefix}/event/#")]);
    let mut daemon = gateway.start();
    let mut ids: Vec<String> = (0..5)
        .map(|n| gateway.send(&format!("before {n}")))
        .collect();
    subscriber.wait_until("the first events", WAIT, |heard| {
        !messages_with(heard, &prefix, "sms.queued").is_empty()
    });

    // The broker goes away for 10 s under traffic; the daemon is killed while it is away.
    broker.stop();
    let back_at = std::time::Instant::now() + Duration::from_secs(10);
    ids.extend((0..5).map(|n| gateway.send(&format!("during {n}"))));
    gateway
        .modem
        .inject_sms(&InboundSms::new(
            "+491708888888",
            "while the broker was down",
        ))
        .expect("injected");
    let api = &gateway.api;
    crate::support::daemon::wait_for_json(api, "/v1/messages?limit=100", WAIT, |page| {
        page["messages"]
            .as_array()
            .is_some_and(|all| all.iter().filter(|m| m["state"] == "delivered").count() >= 10)
    });
    daemon.child.kill().expect("SIGKILL");
    let _ = daemon.child.wait();
    // The outage's length is the scenario, not a wait for something to happen.
    std::thread::sleep(back_at.saturating_duration_since(std::time::Instant::now()));
    broker.resume();
    let _daemon = gateway.start();

    let heard = subscriber.wait_until(
        "every event after the outage",
        Duration::from_secs(60),
        |heard| {
            let delivered = messages_with(heard, &prefix, "sms.delivered");
            ids.iter().all(|id| delivered.contains(id))
                && !on_topic(heard, &format!("{prefix}/event/sms.received")).is_empty()
        },
    );
    // Each message's events, deduplicated by event id, on every topic.
    for name in ["sms.queued", "sms.sent", "sms.delivered"] {
        let seen = messages_with(&heard, &prefix, name);
        for id in &ids {
            assert!(seen.contains(id), "{name} of {id} lost");
        }
    }
    // Per topic, the first copy of each event comes in the order the events were recorded.
    let mut by_topic: HashMap<String, Vec<u64>> = HashMap::new();
    let mut first = HashSet::new();
    for (topic, event) in events(&heard, &prefix) {
        let id = event["id"].as_str().unwrap_or_default().to_string();
        if first.insert(id) {
            let sequence = event["sequence"].as_u64().expect("a sequence");
            by_topic.entry(topic).or_default().push(sequence);
        }
    }
    for (topic, sequences) in by_topic {
        let mut sorted = sequences.clone();
        sorted.sort_unstable();
        assert_eq!(sequences, sorted, "{topic} out of order");
    }
}

#[test]
fn a_command_is_obeyed_once_and_an_expired_one_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let gateway = Gateway::new(&broker, "cmd", "commands = true");
    let prefix = gateway.prefix.clone();
    let client = Subscriber::start(
        broker.port,
        "test-commands",
        &[&format!("{prefix}/result/#")],
    );
    let _daemon = gateway.start();
    let send = format!("{prefix}/cmd/send");
    let command = r#"{"to":"+491701112223","text":"gate opened","idempotency_key":"alarm-1"}"#;
    client.publish(&send, command, false);
    client.publish(&send, command, false);
    let expired = r#"{"to":"+491701112223","text":"yesterday","idempotency_key":"alarm-0",
        "expires_at":"2020-01-01T00:00:00Z"}"#;
    client.publish(&send, expired, false);
    // Commands are handled in order: once this one is answered, the repeat was handled too.
    let last = r#"{"to":"+491701112224","text":"last","idempotency_key":"alarm-2"}"#;
    client.publish(&send, last, false);
    let heard = client.wait_until("the last command's result", WAIT, |heard| {
        !on_topic(heard, &format!("{prefix}/result/alarm-2")).is_empty()
    });
    let first = on_topic(&heard, &format!("{prefix}/result/alarm-1"));
    assert_eq!(first.len(), 1, "one result for a command sent twice");
    assert_eq!(first[0].json()["status"], "queued");
    let refused = on_topic(&heard, &format!("{prefix}/result/alarm-0"));
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].json()["error"]["code"], "expired");

    // USSD through MQTT: the balance text comes back under the request id, and the same
    // request id delivered again (a broker's redelivery) does not run a second USSD.
    let ussd = format!("{prefix}/cmd/ussd");
    client.publish(
        &ussd,
        r##"{"code": "*100#", "request_id": "balance-1"}"##,
        false,
    );
    client.publish(
        &ussd,
        r##"{"code": "*100#", "request_id": "balance-1"}"##,
        false,
    );
    client.publish(
        &ussd,
        r##"{"code": "*100#", "request_id": "balance-2"}"##,
        false,
    );
    let heard = client.wait_until("the USSD answers", WAIT, |heard| {
        !on_topic(heard, &format!("{prefix}/result/balance-1")).is_empty()
            && !on_topic(heard, &format!("{prefix}/result/balance-2")).is_empty()
    });
    assert_eq!(
        on_topic(&heard, &format!("{prefix}/result/balance-1")).len(),
        1,
        "a repeated request id runs once"
    );
    let answer = on_topic(&heard, &format!("{prefix}/result/balance-1"))[0].json();
    assert_eq!(answer["status"], "answered", "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .is_some_and(|text| text.contains("balance")),
        "{answer}"
    );

    let (texts, page) = gateway.recipients();
    assert_eq!(
        texts.iter().filter(|to| *to == "+491701112223").count(),
        1,
        "{page}"
    );
    assert_eq!(texts.len(), 2, "the alarm once and the last one: {page}");
    let id = first[0].json()["id"].as_str().expect("id").to_string();
    crate::support::daemon::wait_for_json(&gateway.api, &format!("/v1/messages/{id}"), WAIT, |m| {
        m["message"]["state"] == "delivered" || m["state"] == "delivered"
    });
    let submitted = gateway.modem.submitted();
    let to_alarm = submitted
        .iter()
        .filter(|s| s.recipient.ends_with("491701112223"))
        .count();
    assert_eq!(to_alarm, 1, "one SMS on the air");
}

/// Whether the daemon published this as a command result (a document with a `status`): under
/// `result` now, under `cmd/result` before (where its own `cmd/+` subscription read the
/// keyless ones back). The test's own publishes under `cmd/` have no `status`.
fn is_result(prefix: &str, heard: &Heard) -> bool {
    let Some(rest) = heard.topic.strip_prefix(prefix) else {
        return false;
    };
    let topic = rest == "/result"
        || rest.starts_with("/result/")
        || rest == "/cmd/result"
        || rest.starts_with("/cmd/result/");
    topic && heard.json()["status"].is_string()
}

#[test]
fn a_refusal_is_answered_once_and_never_read_back_as_a_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let gateway = Gateway::new(&broker, "loop", "commands = true");
    let prefix = gateway.prefix.clone();
    let client = Subscriber::start(broker.port, "test-loop", &[&format!("{prefix}/#")]);
    let _daemon = gateway.start();
    // The daemon subscribes before it publishes `online` on the same connection, so once
    // `online` is heard its command subscription is in place.
    client.wait_until("the gateway online", WAIT, |heard| {
        on_topic(heard, &format!("{prefix}/status"))
            .last()
            .is_some_and(|h| h.text() == "online")
    });
    let send = format!("{prefix}/cmd/send");
    client.publish(&send, "not json", false);
    client.publish(
        &send,
        r#"{"to":"+491701112223","text":"order shipped","idempotency_key":"order/17"}"#,
        false,
    );
    let results = |heard: &[Heard]| -> Vec<Heard> {
        heard
            .iter()
            .filter(|h| is_result(&prefix, h))
            .cloned()
            .collect()
    };
    let heard = client.wait_until("the two refusals", WAIT, |heard| results(heard).len() >= 2);
    let refusals = results(&heard);
    for (refusal, (code, key)) in refusals.iter().zip([
        ("invalid_json", Value::Null),
        ("invalid_field", "order/17".into()),
    ]) {
        assert_eq!(
            refusal.topic,
            format!("{prefix}/result"),
            "keyless: the bare topic"
        );
        let document = refusal.json();
        assert_eq!(document["status"], "refused", "{document}");
        assert_eq!(document["error"]["code"], code, "{document}");
        assert_eq!(
            document["idempotency_key"], key,
            "the key is echoed: {document}"
        );
    }
    // Names under cmd/ that are no command (a client's echo of a result, a typo) are ignored.
    client.publish(&format!("{prefix}/cmd/result"), "{}", false);
    client.publish(&format!("{prefix}/cmd/sned"), "{}", false);

    // No sleeping to see that nothing more comes. The daemon reads its messages one at a time
    // and publishes a command's result before it reads the next message. Had a refusal been
    // delivered back to it as a command, the broker queued that copy for the daemon when it
    // received the refusal, so before it forwarded the refusal to us, so before the command
    // below exists: the daemon would answer the copy before this command, and mosquitto
    // forwards one client's publishes to a subscriber in the order it received them (one
    // queue per session; MQTT 3.1.1 §4.6 promises it per topic). So every stray answer
    // would be heard before the result of `after-1`, and counting up to it is enough.
    client.publish(
        &send,
        r#"{"to":"+491701112224","text":"after","idempotency_key":"after-1"}"#,
        false,
    );
    let heard = client.wait_until("the valid command's result", WAIT, |heard| {
        !on_topic(heard, &format!("{prefix}/result/after-1")).is_empty()
    });
    let results = results(&heard);
    let topics: Vec<&str> = results.iter().map(|h| h.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("{prefix}/result"),
            format!("{prefix}/result"),
            format!("{prefix}/result/after-1"),
        ],
        "one answer per command, none to the ignored names or to our own results"
    );
    assert_eq!(results[2].json()["status"], "queued");
    let (to, page) = gateway.recipients();
    assert_eq!(
        to,
        ["+491701112224"],
        "the refused key sent nothing: {page}"
    );
}

/// Home Assistant's required keys per platform (docs/mqtt.md).
fn required(platform: &str) -> &'static [&'static str] {
    match platform {
        "sensor" | "binary_sensor" => &["state_topic"],
        "event" => &["state_topic", "event_types"],
        "notify" | "text" | "button" => &["command_topic"],
        other => panic!("unexpected platform {other}"),
    }
}

#[test]
fn home_assistant_discovery_validates_and_follows_the_birth_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    // A balance check every second (the first one a second after start).
    let extra = "commands = true\nhome_assistant = true\nnotify_to = \"+491701234567\"\n\
                 [ussd]\nbalance = \"*100#\"\ninterval = \"1s\"";
    let gateway = Gateway::new(&broker, "house", extra);
    let ha = Subscriber::start(broker.port, "test-ha", &["homeassistant/device/+/config"]);
    let mut daemon = gateway.start();
    let topic = "homeassistant/device/smsrelay_house/config";
    let heard = ha.wait_until("the discovery message", WAIT, |heard| {
        !on_topic(heard, topic).is_empty()
    });
    let payload = on_topic(&heard, topic)[0].json();
    // Retained: Home Assistant starting later still finds it.
    let later = Subscriber::start(broker.port, "test-ha-later", &[topic]);
    let retained = later.wait_until("the retained discovery", WAIT, |heard| !heard.is_empty());
    assert!(retained[0].retain, "discovery is retained");
    assert!(
        payload["dev"]["ids"]
            .as_array()
            .is_some_and(|ids| !ids.is_empty())
    );
    assert_eq!(payload["dev"]["name"], "house");
    assert!(payload["o"]["name"].is_string(), "origin");
    let components = payload["cmps"].as_object().expect("components");
    // Online reads the status itself, without the gateway's availability: it turns `off` when
    // the gateway goes offline (an automation on `to: "off"` fires) instead of `unavailable`.
    // Every other entity is unavailable then.
    assert!(payload.get("availability_topic").is_none(), "{payload}");
    let online = &components["online"];
    assert_eq!(online["state_topic"], "smsrelay/house/status");
    assert_eq!(online["payload_off"], "offline");
    assert!(
        online.get("availability_topic").is_none() && online.get("availability").is_none(),
        "{online}"
    );
    for (key, component) in components.iter().filter(|(key, _)| *key != "online") {
        assert_eq!(
            component["availability_topic"], "smsrelay/house/status",
            "{key}"
        );
    }
    // Last SMS and Balance read the retained state, so a restarted Home Assistant shows them.
    for key in ["last_sms", "balance"] {
        let sensor = &components[key];
        assert_eq!(sensor["state_topic"], "smsrelay/house/state", "{key}");
        assert_eq!(
            sensor["json_attributes_topic"], "smsrelay/house/state",
            "{key}"
        );
    }
    let mut unique = HashSet::new();
    let mut platforms = HashSet::new();
    for (key, component) in components {
        let platform = component["p"].as_str().expect("platform");
        platforms.insert(platform.to_string());
        for field in required(platform) {
            assert!(!component[*field].is_null(), "{key}: {field} missing");
        }
        assert!(
            unique.insert(
                component["unique_id"]
                    .as_str()
                    .expect("unique_id")
                    .to_string()
            )
        );
    }
    for platform in [
        "sensor",
        "binary_sensor",
        "event",
        "notify",
        "text",
        "button",
    ] {
        assert!(platforms.contains(platform), "no {platform} entity");
    }

    // Home Assistant restarts: its birth message brings the discovery again.
    ha.publish("homeassistant/status", "online", false);
    ha.wait_until("discovery again after the birth message", WAIT, |heard| {
        on_topic(heard, topic).len() >= 2
    });

    // An SMS arrives and the balance is checked; Home Assistant, (re)starting later, finds
    // both in the retained state.
    gateway
        .modem
        .inject_sms(&InboundSms::new("+491709999999", "the gate is open"))
        .expect("injected");
    let state_topic = "smsrelay/house/state";
    let complete = |h: &Heard| {
        let state = h.json();
        h.topic == state_topic
            && state["last_sms"]["from"] == "+491709999999"
            && state["balance"]["amount"].is_number()
    };
    let restarted = Subscriber::start(broker.port, "test-ha-restarted", &[state_topic]);
    let heard = restarted.wait_until("the last SMS and balance in the state", WAIT, |heard| {
        heard.iter().any(complete)
    });
    let state = heard.iter().find(|h| complete(h)).expect("found").json();
    assert_eq!(state["last_sms"]["text"], "the gate is open", "{state}");
    assert_eq!(state["last_sms"]["modem"], "modem1", "{state}");
    assert!(state["last_sms"]["received_at"].is_string(), "{state}");
    assert_eq!(state["balance"]["amount"], 12.5, "{state}");
    assert_eq!(state["balance"]["currency"], "EUR", "{state}");
    assert_eq!(state["balance"]["low_balance"], false, "{state}");
    assert!(
        state["balance"]["text"]
            .as_str()
            .is_some_and(|text| text.contains("12.50 EUR")),
        "{state}"
    );
    let late = Subscriber::start(broker.port, "test-ha-late-state", &[state_topic]);
    let retained = late.wait_until("the retained state", WAIT, |heard| !heard.is_empty());
    assert!(
        retained[0].retain && complete(&retained[0]),
        "{:?}",
        retained[0].text()
    );

    assert_eq!(state["balances"][0]["modem"], "modem1", "{state}");
    assert_eq!(state["balances"][0]["amount"], 12.5, "{state}");

    // The daemon restarts: the state it publishes first still names the last SMS and the
    // balance (kept in its store), rather than overwriting the retained ones with nothing.
    daemon.child.kill().expect("SIGKILL");
    let _ = daemon.child.wait();
    let status = Subscriber::start(broker.port, "test-ha-status", &["smsrelay/house/status"]);
    status.wait_until("the will", WAIT, |heard| {
        heard.last().is_some_and(|h| h.text() == "offline")
    });
    // The killed daemon's retained state is cleared, so only the new daemon's can be read
    // below; `late` hears the empty message once the broker has taken it.
    late.publish(state_topic, "", true);
    let heard = late.wait_until("the retained state cleared", WAIT, |heard| {
        heard.iter().any(|h| h.payload.is_empty())
    });
    let cleared = heard.len();
    let _daemon = gateway.start();
    let heard = late.wait_until("a state from the restarted daemon", WAIT, |heard| {
        heard[cleared..].iter().any(|h| !h.payload.is_empty())
    });
    let first = heard[cleared..]
        .iter()
        .find(|h| !h.payload.is_empty())
        .expect("found")
        .json();
    assert_eq!(first["last_sms"]["from"], "+491709999999", "{first}");
    assert_eq!(first["last_sms"]["text"], "the gate is open", "{first}");
    assert_eq!(first["balance"]["amount"], 12.5, "{first}");
    assert_eq!(first["balances"][0]["modem"], "modem1", "{first}");
}

#[test]
fn fleet_status_lists_every_gateway_on_the_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let (a, b) = (
        Gateway::new(&broker, "site-a", ""),
        Gateway::new(&broker, "site-b", ""),
    );
    let watcher = Subscriber::start(broker.port, "test-fleet", &["smsrelay/+/state"]);
    let (_one, _two) = (a.start(), b.start());
    watcher.wait_until("both gateways ready", WAIT, |heard| {
        ["site-a", "site-b"].iter().all(|name| {
            on_topic(heard, &format!("smsrelay/{name}/state"))
                .iter()
                .any(|h| h.json()["modems"][0]["state"] == "ready")
        })
    });
    let output = run_smsrelay(["fleet", "status", "--mqtt", &broker.url(), "--json"]);
    assert!(output.status.success(), "{output:?}");
    let rows: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, name) in rows.iter().zip(["site-a", "site-b"]) {
        assert_eq!(row["gateway"], name);
        assert_eq!(row["status"], "online");
        assert_eq!(row["state"]["modems"][0]["state"], "ready");
    }
    let table = run_smsrelay(["fleet", "status", "--mqtt", &broker.url()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("site-a") && text.contains("site-b"), "{text}");
    assert!(text.contains("modem1 ready"), "{text}");
}

#[test]
fn mqtts_trusts_the_configured_ca_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, certificate, key) = crate::support::smtp::certificates(dir.path());
    let broker = Broker::start_with(dir.path(), Some((&certificate, &key)));
    let tls_port = broker.tls_port.expect("a TLS listener");
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let trusted = Gateway::with_url(&url, "secure", &format!("ca_file = \"{}\"", ca.display()));
    let subscriber = Subscriber::start(broker.port, "test-tls", &["smsrelay/+/status"]);
    let _daemon = trusted.start();
    subscriber.wait_until("online over TLS", WAIT, |heard| {
        on_topic(heard, "smsrelay/secure/status")
            .last()
            .is_some_and(|h| h.text() == "online")
    });
    let (_, status) = trusted.api.get("/v1/status");
    assert_eq!(status["mqtt"]["connected"], true, "{status}");

    // Without the CA the bundled web roots do not trust the test CA: no connection, and the
    // status says why.
    let untrusted = Gateway::with_url(&url, "insecure", "");
    let _other = untrusted.start();
    let status = crate::support::daemon::wait_for_json(&untrusted.api, "/v1/status", WAIT, |s| {
        s["mqtt"]["last_error"].is_string()
    });
    assert_eq!(status["mqtt"]["connected"], false, "{status}");
    let error = status["mqtt"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("tls"),
        "{error}"
    );
}
