//! Several modems in one daemon: the real binary with two simulated modems (each its own PTY,
//! in this process), routing, failover when one is unplugged, and inbound on both.
//! Both mocks hand out the same TP-MRs, so every delivered message here also shows that a
//! status report matched only its own modem's references.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smsrelay::mock::{InboundSms, MockConfig, MockModem};

use crate::support::daemon::{Api, Daemon, TOKEN, free_port};
use crate::support::receiver::{Receiver, ok};

/// Two mocks on links in `dir`, the daemon on them with `modems` as the `[[modem]]` tables
/// (`{first}`/`{second}` stand for the devices), and its API once both modems are ready.
struct TwoModems {
    first: MockModem,
    second: MockModem,
    api: Api,
    _daemon: Daemon,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TwoModems {
    fn start(first: MockConfig, second: MockConfig, modems: &str, webhook: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let links = [dir.path().join("modem-a"), dir.path().join("modem-b")];
        let first = MockModem::start(first, Some(links[0].clone())).expect("mock starts");
        let second = MockModem::start(second, Some(links[1].clone())).expect("mock starts");
        let port = free_port();
        let modems = modems
            .replace("{first}", &links[0].display().to_string())
            .replace("{second}", &links[1].display().to_string());
        let webhook = webhook
            .map(|url| format!("[[webhook]]\nname = \"test\"\nurl = \"{url}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "data_dir = \"{data}\"\nwebhook_clock_check = false\n\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\n{modems}\n{webhook}",
            data = dir.path().join("data").display(),
        );
        let config = dir.path().join("smsrelay.toml");
        std::fs::write(&config, text).expect("config written");
        let log = dir.path().join("daemon.log");
        let daemon = Daemon::start_logging_to(&config, &log);
        let api = Api::new(port);
        api.wait_up();
        let both = TwoModems {
            first,
            second,
            api,
            _daemon: daemon,
            log,
            _dir: dir,
        };
        both.wait_until("both modems are ready", |status| {
            let states: Vec<&str> = status["modems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|modem| modem["state"].as_str())
                .collect();
            states == ["ready", "ready"]
        });
        both
    }

    /// Polls `/v1/status` until `done` holds (at most 30 s).
    fn wait_until(&self, what: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, status) = self.api.get("/v1/status");
            if done(&status) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the daemon's log, for a failure message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Waits (at most 30 s) until the daemon's log contains each of `wanted`.
    fn wait_for_log(&self, wanted: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|text| !log.contains(text))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not in the daemon's log: {missing:?}; its tail:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&self, body: Value) -> String {
        let (code, accepted) = self
            .api
            .post("/v1/messages", Some(TOKEN), &body.to_string(), &[]);
        assert_eq!(code, 202, "{accepted}");
        accepted["id"].as_str().expect("an id").to_string()
    }

    fn message(&self, id: &str) -> Value {
        let (code, message) = self.api.get(&format!("/v1/messages/{id}"));
        assert_eq!(code, 200, "{message}");
        message
    }

    /// Waits until every message in `ids` is in one of `states`; returns them.
    fn wait_final(&self, ids: &[String], states: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let messages: Vec<Value> = ids.iter().map(|id| self.message(id)).collect();
            let open: Vec<&Value> = messages
                .iter()
                .filter(|m| !states.contains(&m["state"].as_str().unwrap_or_default()))
                .collect();
            if open.is_empty() {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{} message(s) not final, e.g. {}; the daemon's log:\n{}",
                open.len(),
                open[0],
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How many times each text was submitted to `modem`.
fn submitted_texts(modem: &MockModem) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for submitted in modem.submitted() {
        *counts.entry(submitted.text).or_insert(0) += 1;
    }
    counts
}

const ROUTED: &str = r#"
[[modem]]
device = "{first}"

[[modem]]
name = "austria"
device = "{second}"
sim = 1
prefixes = ["+43"]
"#;

#[test]
fn round_robin_spreads_20_messages_10_10_and_a_prefix_picks_its_sim() {
    let receiver = Receiver::start(ok);
    let both = TwoModems::start(
        MockConfig::default(),
        MockConfig::default(),
        ROUTED,
        Some(&receiver.url),
    );
    let ids: Vec<String> = (0..20)
        .map(|n| both.send(json!({"to": "+447700900123", "text": format!("spread {n}")})))
        .collect();
    // The international form with 00 matches the +43 prefix too. Sent at an even turn (20),
    // where round robin would pick the first modem.
    let mut austrian = vec![both.send(json!({"to": "0043 664 1234567", "text": "servus 00"}))];
    austrian.extend(
        (0..3).map(|n| both.send(json!({"to": "+436641234567", "text": format!("servus {n}")}))),
    );
    // Named: a +43 number through the first modem, by name and by SIM slot.
    let pinned = [
        both.send(json!({"to": "+436641234567", "text": "pinned by name", "modem": "modem1"})),
        both.send(json!({"to": "+436641234567", "text": "pinned by sim", "sim": 0})),
    ];
    let all: Vec<String> = ids
        .iter()
        .chain(&austrian)
        .chain(&pinned)
        .cloned()
        .collect();
    let messages = both.wait_final(&all, &["delivered", "failed"]);
    assert!(
        messages.iter().all(|m| m["state"] == "delivered"),
        "every message delivered, each report matched on its own modem"
    );

    let first = submitted_texts(&both.first);
    let second = submitted_texts(&both.second);
    let spread = |counts: &HashMap<String, usize>| {
        counts
            .keys()
            .filter(|text| text.starts_with("spread"))
            .count()
    };
    assert_eq!(
        (spread(&first), spread(&second)),
        (10, 10),
        "{first:?} {second:?}"
    );
    for text in ["servus 0", "servus 1", "servus 2", "servus 00"] {
        assert_eq!(second.get(text), Some(&1), "{second:?}");
        assert!(!first.contains_key(text), "{first:?}");
    }
    for text in ["pinned by name", "pinned by sim"] {
        assert_eq!(first.get(text), Some(&1), "{first:?}");
        assert!(!second.contains_key(text), "{second:?}");
    }
    assert!(
        first
            .values()
            .chain(second.values())
            .all(|&count| count == 1)
    );

    // The message and its events say which modem and SIM sent it.
    let servus = both.message(&austrian[1]);
    assert_eq!(
        (&servus["modem"], &servus["sim"]),
        (&json!("austria"), &json!(1))
    );
    assert_eq!(servus["parts"][0]["modem"], "austria");
    let sent = servus["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|event| event["name"] == "sms.sent")
        .expect("an sms.sent event");
    assert_eq!(
        (&sent["data"]["modem"], &sent["data"]["sim"]),
        (&json!("austria"), &json!(1))
    );

    // A modem that does not exist, or both ways of naming one, are refused.
    for (body, field) in [
        (json!({"to": "+44", "text": "x", "modem": "nope"}), "modem"),
        (json!({"to": "+44", "text": "x", "sim": 7}), "sim"),
        (
            json!({"to": "+44", "text": "x", "modem": "austria", "sim": 1}),
            "modem",
        ),
    ] {
        let (code, error) = both
            .api
            .post("/v1/messages", Some(TOKEN), &body.to_string(), &[]);
        assert_eq!(code, 422, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }

    // Status and metrics show each modem.
    let (_, status) = both.api.get("/v1/status");
    assert_eq!(status["modems"][1]["name"], "austria");
    assert_eq!(status["modems"][1]["sim"], 1);
    assert_eq!(
        status["modem"]["state"], "ready",
        "the first modem, as before"
    );
    let (_, metrics) = both.api.text("/metrics");
    assert!(
        metrics.contains("smsrelay_parts_sent_total{modem=\"austria\"} 14"),
        "{metrics}"
    );
}

#[test]
fn unplugging_a_modem_moves_its_queue_to_the_other_with_nothing_sent_twice_or_lost() {
    // The first modem is slow to answer a submit, so it still has a queue when unplugged.
    let slow = MockConfig {
        submit_delay: Duration::from_millis(400),
        ..MockConfig::default()
    };
    let both = TwoModems::start(
        slow,
        MockConfig::default(),
        // A hung submit is given up after 5 s (the PTY vanishing is seen as silence).
        "[[modem]]\ndevice = \"{first}\"\nsend_timeout = \"5s\"\n\n[[modem]]\ndevice = \"{second}\"\n",
        None,
    );
    let ids: Vec<String> = (0..20)
        .map(|n| both.send(json!({"to": "+447700900123", "text": format!("move {n}")})))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while both.first.submitted().len() < 2 {
        assert!(Instant::now() < deadline, "the first modem sent nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Unplugged: the PTY goes away and does not come back during the test.
    both.first.disconnect(Duration::from_secs(600));
    // Sent is far enough: the report of a part sent just before the unplug goes with it.
    let messages = both.wait_final(&ids, &["sent", "delivered", "failed"]);

    let first = submitted_texts(&both.first);
    let second = submitted_texts(&both.second);
    let mut moved = 0;
    for (n, message) in messages.iter().enumerate() {
        let text = format!("move {n}");
        let times = first.get(&text).unwrap_or(&0) + second.get(&text).unwrap_or(&0);
        match message["state"].as_str() {
            // Sent (the report of one sent just before the unplug is lost with the modem) or
            // delivered: submitted exactly once, on one of the two.
            Some("sent" | "delivered") => assert_eq!(times, 1, "{text}: {message}"),
            // Only a submit cut by the unplug may fail, as interrupted: never resent.
            _ => {
                assert_eq!(message["last_error"]["stage"], "interrupted", "{message}");
                assert!(times <= 1, "{text} sent {times} times");
            }
        }
        if n % 2 == 0 && message["modem"] == "modem2" {
            moved += 1;
        }
    }
    let interrupted = messages.iter().filter(|m| m["state"] == "failed").count();
    assert!(interrupted <= 1, "{interrupted} interrupted");
    assert!(
        moved > 0,
        "none of the first modem's queue moved to the second"
    );
}

#[test]
fn inbound_on_both_modems_carries_its_modem_and_sim_and_same_reference_parts_do_not_mix() {
    let receiver = Receiver::start(ok);
    let both = TwoModems::start(
        MockConfig::default(),
        MockConfig::default(),
        ROUTED,
        Some(&receiver.url),
    );
    // The same sender and concatenation reference on both SIMs, different texts.
    let long = |word: &str| word.repeat(200 / word.len());
    let mut on_first = InboundSms::new("+447700900555", &long("alpha "));
    on_first.reference = 42;
    let mut on_second = InboundSms::new("+447700900555", &long("omega "));
    on_second.reference = 42;
    assert_eq!(both.first.inject_sms(&on_first).expect("injects"), 2);
    assert_eq!(both.second.inject_sms(&on_second).expect("injects"), 2);
    both.first
        .inject_sms(&InboundSms::new("+447700900666", "short one"))
        .expect("injects");
    // Each modem's `modem.connected` goes to the same endpoint, in any order with these.
    let got = receiver.wait_for_event("sms.received", 3);
    let mut received: Vec<(String, String, u64)> = got
        .iter()
        .map(|delivery| delivery.json())
        .map(|body| {
            let data = &body["data"];
            (
                data["text"].as_str().unwrap_or_default().to_string(),
                data["modem"].as_str().unwrap_or_default().to_string(),
                data["sim"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    received.sort();
    assert_eq!(
        received,
        vec![
            (long("alpha "), "modem1".to_string(), 0),
            (long("omega "), "austria".to_string(), 1),
            ("short one".to_string(), "modem1".to_string(), 0),
        ]
    );
    // With two modems the log says which one each line is about.
    both.wait_for_log(&[
        "modem1: ready (",
        "austria: ready (",
        "modem1 events: modem.connected ",
        "austria events: modem.connected ",
    ]);
}

#[test]
fn mock_modem_count_2_serves_two_ptys_with_their_own_links() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smsrelay"))
        .args(["mock-modem", "--count", "2", "--link"])
        .arg(&link)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mock-modem starts");
    let stdout = child.stdout.take().expect("piped");
    let paths: Vec<String> = std::io::BufReader::new(stdout)
        .lines()
        .take(2)
        .map(|line| line.expect("a line"))
        .collect();
    let targets: Vec<std::path::PathBuf> = ["modem-1", "modem-2"]
        .iter()
        .map(|name| std::fs::read_link(dir.path().join(name)).expect("a link per modem"))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(paths.len(), 2);
    assert_ne!(paths[0], paths[1], "two PTYs");
    assert_eq!(
        targets,
        vec![
            std::path::PathBuf::from(&paths[0]),
            std::path::PathBuf::from(&paths[1])
        ]
    );
}

#[test]
fn a_temporary_refusal_moves_the_message_to_the_other_modem_at_once() {
    let both = TwoModems::start(
        MockConfig::default(),
        MockConfig::default(),
        "[sms]\nrouting = \"first\"\n\n[[modem]]\ndevice = \"{first}\"\n\n[[modem]]\ndevice = \"{second}\"\n",
        None,
    );
    // The first modem (the primary under "first") refuses one send with congestion (42).
    both.first
        .with_engine(|engine, _| engine.fail_next_sends(1, 42));
    let moved = both.send(json!({"to": "+447700900123", "text": "moved on"}));
    // Pinned to the first: it waits there and is never sent by the second.
    both.first
        .with_engine(|engine, _| engine.fail_next_sends(1, 42));
    let pinned = both.send(json!({"to": "+447700900123", "text": "stays", "modem": "modem1"}));
    let messages = both.wait_final(std::slice::from_ref(&moved), &["delivered"]);
    assert_eq!(messages[0]["modem"], "modem2", "{}", messages[0]);
    assert_eq!(messages[0]["attempts"], 1, "{}", messages[0]);
    assert_eq!(submitted_texts(&both.second).get("moved on"), Some(&1));
    // The retry pause (30 s by default) is not waited: it went to the second at once.
    let refusals = both
        .first
        .commands()
        .iter()
        .filter(|c| c.starts_with("AT+CMGS"))
        .count();
    assert!(refusals >= 1);
    let pinned_now = both.message(&pinned);
    assert_eq!(pinned_now["modem"], "modem1", "{pinned_now}");
    assert!(!submitted_texts(&both.second).contains_key("stays"));
}

#[test]
fn each_modem_checks_its_own_balance_with_its_own_code() {
    // [ussd] balance is the first modem's; the spare SIM has its own code and threshold.
    let both = TwoModems::start(
        MockConfig::default(),
        MockConfig::default(),
        r#"
[ussd]
balance = "*100#"
interval = "1s"
low_balance = 5

[[modem]]
device = "{first}"

[[modem]]
name = "spare"
device = "{second}"
sim = 1
balance = "*101#"
low_balance = 20
"#,
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let balances = loop {
        let (_, body) = both.api.get("/v1/events?name=sim.balance&limit=1000");
        let events = body["events"].as_array().cloned().unwrap_or_default();
        let of = |modem: &str| {
            events
                .iter()
                .find(|event| event["data"]["modem"] == modem)
                .map(|event| event["data"].clone())
        };
        if let (Some(first), Some(spare)) = (of("modem1"), of("spare")) {
            break [first, spare];
        }
        assert!(
            Instant::now() < deadline,
            "a sim.balance of each modem: {body}; the daemon's log:\n{}",
            both.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let seen: Vec<(&Value, &Value, &Value, &Value)> = balances
        .iter()
        .map(|data| {
            (
                &data["sim"],
                &data["code"],
                &data["amount"],
                &data["low_balance"],
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (&json!(0), &json!("*100#"), &json!(12.5), &json!(false)),
            (&json!(1), &json!("*101#"), &json!(12.5), &json!(true)),
        ]
    );
    // Each code went to its own modem only.
    let requests = |modem: &MockModem| -> Vec<String> {
        modem
            .commands()
            .into_iter()
            .filter(|command| command.starts_with("AT+CUSD=1"))
            .collect()
    };
    let (first, spare) = (requests(&both.first), requests(&both.second));
    assert!(
        !first.is_empty() && first.iter().all(|c| c == r#"AT+CUSD=1,"*100#",15"#),
        "{first:?}"
    );
    assert!(
        !spare.is_empty() && spare.iter().all(|c| c == r#"AT+CUSD=1,"*101#",15"#),
        "{spare:?}"
    );
    // The status keeps the first modem's balance, as with one modem, and lists each one's.
    let (_, status) = both.api.get("/v1/status");
    assert_eq!(status["last_balance"]["modem"], "modem1", "{status}");
    let listed: Vec<&Value> = status["balances"]
        .as_array()
        .map(|balances| balances.iter().map(|balance| &balance["modem"]).collect())
        .unwrap_or_default();
    assert_eq!(listed, [&json!("modem1"), &json!("spare")], "{status}");
}
