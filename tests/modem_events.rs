//! The modem and its SIM as events (issue #16), through the real binary against the simulated
//! modem: `modem.*` debounced, `call.ringing`/`call.missed`, USSD over the API and the CLI,
//! and the scheduled `sim.balance`. Absences are asserted on recorded facts (stored events,
//! the flap counter in `/metrics`, the mock's hang-up count), never after a pause.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use smsrelay::mock::{MockConfig, MockModem, Profile, UssdEncoding, UssdScript};

use crate::support::daemon::{Api, Daemon, TOKEN, free_port};
use crate::support::{outcome, run_smsrelay};

/// Generous: the suite runs in parallel on two cores.
const WAIT: Duration = Duration::from_secs(60);

struct Stack {
    log: PathBuf,
    _dir: tempfile::TempDir,
    modem: MockModem,
    config: PathBuf,
    api: Api,
    daemon: Option<Daemon>,
}

/// A simulated modem, a config with `extra` appended (sections after `[api]`), the daemon.
fn stack(mock: MockConfig, modem_keys: &str, extra: &str) -> Stack {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let modem = MockModem::start(mock, Some(link.clone())).expect("mock starts");
    let port = free_port();
    let config = dir.path().join("smsrelay.toml");
    let text = format!(
        r#"
data_dir = "{data}"
webhook_clock_check = false

[modem]
device = "{device}"
name = "gate"
health_interval = "1s"
{modem_keys}

[api]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"

{extra}
"#,
        data = dir.path().join("data").display(),
        device = link.display(),
    );
    std::fs::write(&config, text).expect("config written");
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start_logging_to(&config, &log);
    let api = Api::new(port);
    api.wait_up();
    let stack = Stack {
        log,
        _dir: dir,
        modem,
        config,
        api,
        daemon: Some(daemon),
    };
    stack.wait_ready();
    stack
}

impl Stack {
    fn wait_ready(&self) {
        self.until("the modem is ready", || {
            self.api.get("/v1/status").1["modem"]["state"] == "ready"
        });
    }

    fn until(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {WAIT:?}; status {:#}; events {:#}; log:\n{}",
                self.api.get("/v1/status").1["modem"],
                Value::Array(self.events("*")),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stored events whose name matches `pattern` (`modem.*`), oldest first.
    fn events(&self, pattern: &str) -> Vec<Value> {
        let (_, body) = self
            .api
            .get(&format!("/v1/events?name={pattern}&limit=1000"));
        body["events"].as_array().cloned().unwrap_or_default()
    }

    fn names(&self, pattern: &str) -> Vec<String> {
        self.events(pattern)
            .iter()
            .map(|event| event["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits for the first stored event named `name` and returns it.
    fn wait_event(&self, name: &str) -> Value {
        self.until(name, || !self.events(name).is_empty());
        self.events(name).remove(0)
    }

    /// A metric's value: the unlabelled sample, or the first modem's (`{modem="…"}`).
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.api.text("/metrics");
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse().ok()
            })
            .unwrap_or(f64::NAN)
    }

    fn ussd(&self, body: &str) -> (u16, Value) {
        self.api.post("/v1/ussd", Some(TOKEN), body, &[])
    }

    fn restart(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
        }
        self.daemon = Some(Daemon::start_logging_to(&self.config, &self.log));
        self.api.wait_up();
        self.wait_ready();
    }
}

fn data(event: &Value) -> &Value {
    &event["data"]
}

#[test]
fn a_short_unplug_is_no_event_and_a_restart_does_not_repeat_the_state() {
    // A debounce far longer than the reconnection: the unplug must be swallowed.
    let mut stack = stack(
        MockConfig::default(),
        "",
        "[modem_events]\ndebounce = \"20s\"\n",
    );
    let connected = stack.wait_event("modem.connected");
    assert_eq!(data(&connected)["modem"], "gate");
    assert_eq!(data(&connected)["manufacturer"], "smsrelay");
    assert_eq!(data(&connected)["signal_dbm"], -71);
    assert!(data(&connected)["operator"].is_string(), "{connected}");

    let reconnects = stack.metric("smsrelay_modem_reconnects_total");
    stack.modem.disconnect(Duration::from_millis(200));
    stack.until("the modem reconnected", || {
        stack.metric("smsrelay_modem_reconnects_total") > reconnects
    });
    // The recorded fact: the debouncer saw the loss and the return, and counted a flap.
    stack.until("the flap is counted", || {
        stack.metric("smsrelay_modem_flaps_suppressed_total") >= 1.0
    });
    assert_eq!(stack.names("modem.*"), ["modem.connected"]);

    // A restart: the modem connects again, and that is the state already published. The
    // weak signal after it is the fact that the debouncer has run since.
    stack.restart();
    stack.modem.with_engine(|engine, _| engine.set_signal(2));
    stack.until("the signal is low", || {
        !stack.events("modem.signal_low").is_empty()
    });
    assert_eq!(stack.names("modem.connected").len(), 1);
}

#[test]
fn a_long_unplug_gives_disconnected_then_connected() {
    let stack = stack(
        MockConfig::default(),
        "",
        "[modem_events]\ndebounce = \"1s\"\n",
    );
    stack.wait_event("modem.connected");
    stack.modem.disconnect(Duration::from_secs(4));
    let disconnected = stack.wait_event("modem.disconnected");
    assert_eq!(data(&disconnected)["modem"], "gate");
    assert!(data(&disconnected)["reason"].is_string());
    stack.until("connected again", || {
        stack.names("modem.connected").len() == 2
    });
    assert_eq!(
        stack.names("modem.*"),
        ["modem.connected", "modem.disconnected", "modem.connected"]
    );
}

#[test]
fn a_weak_signal_crosses_the_threshold_once_each_way_and_a_full_sim_is_said() {
    let stack = stack(
        MockConfig::default(),
        "sim = 2",
        "[modem_events]\ndebounce = \"0s\"\nsignal_low = -100\nsignal_hysteresis = 6\n",
    );
    stack.wait_event("modem.connected");
    let signal_is = |dbm: i64| {
        stack.until(&format!("the signal read as {dbm} dBm"), || {
            stack.api.get("/v1/status").1["modem"]["signal"]["dbm"] == dbm
        });
    };
    // rssi 3 = -107 dBm: low. rssi 7 = -99 dBm: above the threshold, inside the hysteresis.
    stack.modem.with_engine(|engine, _| engine.set_signal(3));
    let low = stack.wait_event("modem.signal_low");
    assert_eq!(data(&low)["signal_dbm"], -107);
    assert_eq!(data(&low)["threshold_dbm"], -100);
    stack.modem.with_engine(|engine, _| engine.set_signal(7));
    signal_is(-99);
    stack.modem.with_engine(|engine, _| engine.set_signal(3));
    signal_is(-107);
    stack.modem.with_engine(|engine, _| engine.set_signal(21));
    let ok = stack.wait_event("modem.signal_ok");
    assert_eq!(data(&ok)["signal_dbm"], -71);
    assert_eq!(
        stack.names("modem.signal_*"),
        ["modem.signal_low", "modem.signal_ok"]
    );

    // Registration lost (searching) and back.
    stack
        .modem
        .with_engine(|engine, _| engine.set_registration(2));
    stack.wait_event("modem.registration_lost");
    stack
        .modem
        .with_engine(|engine, _| engine.set_registration(1));
    stack.wait_event("modem.registered");

    let filler = smsrelay::pdu::decode_hex(FILLER).expect("hex");
    stack
        .modem
        .with_engine(|engine, _| engine.fill_storage("SM", &filler));
    let full = stack.wait_event("modem.storage_full");
    assert_eq!(data(&full)["total"], 30);
    assert_eq!(data(&full)["used"], 30);
    // Every modem event names the modem and its SIM slot, as SMS events do.
    for event in stack.events("modem.*") {
        assert_eq!(
            (&data(&event)["modem"], &data(&event)["sim"]),
            (&Value::from("gate"), &Value::from(2)),
            "{event}"
        );
    }
}

#[test]
fn a_refused_pin_is_a_sim_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let modem = MockModem::start(
        MockConfig {
            pin: Some("1234".into()),
            ..MockConfig::default()
        },
        Some(link.clone()),
    )
    .expect("mock starts");
    let port = free_port();
    let config = dir.path().join("smsrelay.toml");
    let text = format!(
        "data_dir = \"{}\"\nwebhook_clock_check = false\n[modem]\ndevice = \"{}\"\npin = \"9999\"\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n[modem_events]\ndebounce = \"0s\"\n",
        dir.path().join("data").display(),
        link.display(),
    );
    std::fs::write(&config, text).expect("config written");
    let _daemon = Daemon::start(&config);
    let api = Api::new(port);
    api.wait_up();
    let deadline = Instant::now() + WAIT;
    let sim_error = loop {
        let (_, body) = api.get("/v1/events?name=modem.sim_error");
        if let Some(event) = body["events"].as_array().and_then(|events| events.first()) {
            break event.clone();
        }
        assert!(Instant::now() < deadline, "no modem.sim_error");
        std::thread::sleep(Duration::from_millis(50));
    };
    let reason = sim_error["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.to_ascii_lowercase().contains("pin"), "{sim_error}");
    assert_eq!(sim_error["data"]["modem"], "modem1");
    drop(modem);
}

/// A plain DELIVER (docs/at-sms.md §5 E6), to fill the SIM with.
const FILLER: &str = "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713";

#[test]
fn a_call_rings_then_is_missed_with_the_number_and_a_withheld_one_with_null() {
    let stack = stack(MockConfig::default(), "sim = 1", "");
    stack.until("caller id on", || {
        stack.modem.commands().iter().any(|c| c == "AT+CLIP=1")
    });
    stack
        .modem
        .call(Some("+447700900123"), 2, Duration::from_millis(500));
    let missed = stack.wait_event("call.missed");
    assert_eq!(data(&missed)["from"], "+447700900123");
    assert_eq!(data(&missed)["rejected"], false);
    assert_eq!(data(&missed)["rings"], 2);
    assert_eq!(data(&missed)["modem"], "gate");
    let calls = stack.events("call.*");
    assert_eq!(calls[0]["name"], "call.ringing");
    assert_eq!(data(&calls[0])["from"], "+447700900123");
    assert_eq!(
        stack.modem.hang_ups(),
        0,
        "not rejected without [calls] reject"
    );

    stack.modem.call(None, 1, Duration::from_millis(500));
    stack.until("the second call", || stack.events("call.missed").len() == 2);
    let calls = stack.events("call.*");
    assert_eq!(
        calls.iter().map(|e| e["name"].clone()).collect::<Vec<_>>(),
        ["call.ringing", "call.missed", "call.ringing", "call.missed"]
    );
    assert_eq!(data(&calls[2])["from"], Value::Null);
    for call in &calls {
        assert_eq!(
            (&data(call)["modem"], &data(call)["sim"]),
            (&Value::from("gate"), &Value::from(1)),
            "{call}"
        );
    }
    let (_, status) = stack.api.get("/v1/status");
    assert_eq!(status["last_call"]["event"], "call.missed");
    assert_eq!(stack.metric("smsrelay_calls_total"), 2.0);
}

#[test]
fn with_reject_the_call_is_hung_up_and_missed() {
    let stack = stack(MockConfig::default(), "", "[calls]\nreject = true\n");
    stack.until("caller id on", || {
        stack.modem.commands().iter().any(|c| c == "AT+CLIP=1")
    });
    stack
        .modem
        .call(Some("+447700900777"), 20, Duration::from_secs(1));
    let missed = stack.wait_event("call.missed");
    assert_eq!(data(&missed)["rejected"], true);
    assert_eq!(data(&missed)["from"], "+447700900777");
    assert_eq!(stack.modem.hang_ups(), 1);
    assert!(stack.modem.commands().iter().any(|c| c == "AT+CHUP"));
}

#[test]
fn ussd_returns_the_balance_in_both_encodings_a_menu_and_a_clear_timeout() {
    let stack = stack(MockConfig::default(), "", "[ussd]\ntimeout = \"2s\"\n");
    let (status, answer) = stack.ussd(r#"{"code": "*100#"}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["text"],
        "Your balance is 12.50 EUR, valid until 31.12.2026"
    );
    assert_eq!(answer["session_open"], false);
    assert_eq!(answer["modem"], "gate");

    stack.modem.set_ussd(UssdScript {
        balance: "Баланс: 120,50 ₽".into(),
        encoding: Some(UssdEncoding::Ucs2),
        ..UssdScript::default()
    });
    let (status, answer) = stack.ussd(r#"{"code": "*100#", "modem": "gate"}"#);
    assert_eq!(
        (status, answer["text"].clone()),
        (200, "Баланс: 120,50 ₽".into())
    );

    // The menu: answered, then another one cancelled.
    let (_, menu) = stack.ussd(r#"{"code": "*123#"}"#);
    assert_eq!(menu["session_open"], true, "{menu}");
    let (_, choice) = stack.ussd(r#"{"code": "2"}"#);
    assert_eq!(choice["text"], "No bundles active");
    stack.ussd(r#"{"code": "*123#"}"#);
    let (status, _) = stack.api.post("/v1/ussd/cancel", Some(TOKEN), "{}", &[]);
    assert_eq!(status, 200);
    stack.until("AT+CUSD=2", || {
        stack.modem.commands().iter().any(|c| c == "AT+CUSD=2")
    });

    // The CLI prints the answer.
    stack.modem.set_ussd(UssdScript::default());
    let output = run_smsrelay([
        "--config",
        stack.config.to_str().expect("utf-8"),
        "ussd",
        "*100#",
    ]);
    let (code, stdout, stderr) = outcome(&output);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "Your balance is 12.50 EUR, valid until 31.12.2026"
    );

    // Bad requests name their field.
    let (status, error) = stack.ussd(r##"{"code": "*1\"#"}"##);
    assert_eq!(
        (status, error["error"]["field"].clone()),
        (422, "code".into())
    );
    let (status, error) = stack.ussd(r#"{"code": "*100#", "modem": "other"}"#);
    assert_eq!(
        (status, error["error"]["code"].clone()),
        (404, "unknown_modem".into())
    );

    // No answer from the network: a 504 that says so, and the session cancelled.
    stack.modem.set_ussd(UssdScript {
        silent: true,
        ..UssdScript::default()
    });
    let cancels = count(&stack.modem.commands(), "AT+CUSD=2");
    let (status, error) = stack.ussd(r#"{"code": "*100#"}"#);
    assert_eq!(status, 504, "{error}");
    assert_eq!(error["error"]["code"], "ussd_timeout");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no USSD answer within 2 s"), "{message}");
    stack.until("the session cancelled", || {
        count(&stack.modem.commands(), "AT+CUSD=2") > cancels
    });
    assert!(stack.metric("smsrelay_ussd_failures_total") >= 1.0);
}

#[test]
fn ussd_on_a_huawei_stick_goes_packed_both_ways() {
    let stack = stack(
        MockConfig {
            profile: Profile::Huawei,
            ..MockConfig::default()
        },
        "",
        "[ussd]\nrequest_encoding = \"packed_hex\"\n",
    );
    let (status, answer) = stack.ussd(r#"{"code": "*100#"}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["text"],
        "Your balance is 12.50 EUR, valid until 31.12.2026"
    );
    assert!(
        stack
            .modem
            .commands()
            .iter()
            .any(|c| c == r#"AT+CUSD=1,"AA180C3602",15"#)
    );
}

#[test]
fn the_scheduled_balance_check_emits_sim_balance() {
    let stack = stack(
        MockConfig::default(),
        "sim = 3",
        "[ussd]\nbalance = \"*100#\"\ninterval = \"1s\"\nlow_balance = 20\n",
    );
    let balance = stack.wait_event("sim.balance");
    assert_eq!(
        data(&balance)["text"],
        "Your balance is 12.50 EUR, valid until 31.12.2026"
    );
    assert_eq!(data(&balance)["amount"], 12.5);
    assert_eq!(data(&balance)["low_balance"], true);
    assert_eq!(data(&balance)["modem"], "gate");
    assert_eq!(data(&balance)["sim"], 3);
    let (_, status) = stack.api.get("/v1/status");
    assert_eq!(status["last_balance"]["amount"], 12.5);
    assert_eq!(stack.metric("smsrelay_sim_balance"), 12.5);
}

fn count(commands: &[String], command: &str) -> usize {
    commands.iter().filter(|c| *c == command).count()
}
