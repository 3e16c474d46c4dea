//! A wrong SIM PIN is entered once per SIM and PIN, never once per start (issue #14): through
//! the real binary restarted against one simulated modem, through the init with its record in
//! a temp dir, and the attempts counter that keeps the last try for a person.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use smsrelay::mock::{MockConfig, MockModem};
use smsrelay::modem::pin::{REFUSED_PIN_FILE, RefusedPins, Withheld};
use smsrelay::modem::{InitError, InitSettings, init};

use crate::support::daemon::{Daemon, free_port};
use crate::support::{open_session, outcome, run_smsrelay};

const TOKEN: &str = "a-test-token-long-enough";
/// The mock's ICCID, as the record and the messages name its SIM.
const SIM: &str = "ICCID 8900101234567890123";
/// How long a start may take to reach the state a test waits for (the suite runs in parallel
/// on two cores).
const WAIT: Duration = Duration::from_secs(30);

fn settings(pin: &str, refused_pins: Option<PathBuf>) -> InitSettings {
    InitSettings {
        pin: Some(pin.into()),
        refused_pins,
        poll_interval: Duration::from_millis(50),
        registration_timeout: Duration::from_secs(5),
        sim_ready_timeout: Duration::from_secs(5),
        ..InitSettings::default()
    }
}

fn sim_with_pin() -> MockModem {
    let config = MockConfig {
        pin: Some("1234".into()),
        ..MockConfig::default()
    };
    MockModem::start(config, None).expect("mock starts")
}

/// How many times the host entered a PIN (`AT+CPIN=…`, not `AT+CPINR`).
fn pins_entered(modem: &MockModem) -> usize {
    modem
        .commands()
        .iter()
        .filter(|command| command.starts_with("AT+CPIN=") && command.as_str() != "AT+CPIN=?")
        .count()
}

fn pin_attempts_left(modem: &MockModem) -> u8 {
    modem.with_engine(|engine, _| engine.sim_state().1)
}

// ---- through the init -------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn the_last_attempts_are_kept_for_a_person() {
    let modem = sim_with_pin();
    modem.with_engine(|engine, _| engine.set_pin_attempts(1));
    // Even the right PIN is withheld: the daemon cannot know it is right, and a wrong one now
    // would lock the SIM.
    let error = init(
        &open_session(&modem, Duration::from_millis(5)).0,
        &settings("1234", None),
    )
    .await
    .expect_err("the PIN is withheld");
    assert_eq!(
        error,
        InitError::PinWithheld {
            sim: SIM.into(),
            reason: Withheld::FewAttempts(1),
        }
    );
    let message = error.to_string();
    assert!(message.contains("only 1 PIN attempt(s) left"), "{message}");
    assert_eq!(pins_entered(&modem), 0);
    assert_eq!(pin_attempts_left(&modem), 1);
    assert!(
        modem.commands().iter().any(|c| c == "AT+CPINR=\"SIM PIN\""),
        "{:?}",
        modem.commands()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_refusal_is_remembered_and_a_new_pin_clears_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join(REFUSED_PIN_FILE);
    let modem = sim_with_pin();
    let handle = open_session(&modem, Duration::from_millis(5)).0;
    let wrong = settings("0000", Some(record.clone()));
    let error = init(&handle, &wrong).await.expect_err("refused");
    assert!(
        matches!(&error, InitError::WrongPin(detail) if detail.contains(SIM)),
        "{error}"
    );
    assert!(
        RefusedPins::load(&record)
            .expect("readable")
            .is_refused(SIM, "0000")
    );
    // A second init with the same PIN does not enter it (the driver is restarted, say).
    let error = init(&handle, &wrong).await.expect_err("withheld");
    assert_eq!(
        error,
        InitError::PinWithheld {
            sim: SIM.into(),
            reason: Withheld::RefusedBefore,
        }
    );
    assert_eq!((pins_entered(&modem), pin_attempts_left(&modem)), (1, 2));
    // The right PIN is a different PIN: entered, accepted, and the mark is gone.
    init(&handle, &settings("1234", Some(record.clone())))
        .await
        .expect("the right PIN unlocks");
    assert_eq!((pins_entered(&modem), pin_attempts_left(&modem)), (2, 3));
    let marks = RefusedPins::load(&record).expect("readable");
    assert_eq!(marks.sims().count(), 0, "{marks:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_unreadable_record_withholds_the_pin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join(REFUSED_PIN_FILE);
    std::fs::write(&record, b"{\"refused\": {").expect("written");
    let modem = sim_with_pin();
    let handle = open_session(&modem, Duration::from_millis(5)).0;
    let error = init(&handle, &settings("1234", Some(record.clone())))
        .await
        .expect_err("withheld");
    assert!(
        matches!(&error, InitError::PinWithheld { reason: Withheld::MarksUnreadable(why), .. } if why.contains(REFUSED_PIN_FILE)),
        "{error}"
    );
    assert!(
        error.to_string().contains("smsrelay forget-refused-pin"),
        "{error}"
    );
    assert_eq!(pins_entered(&modem), 0);
}

// ---- through the binary -----------------------------------------------------------------------

fn write_config(dir: &Path, device: &Path, pin: &str, port: u16) -> PathBuf {
    let path = dir.join("smsrelay.toml");
    let text = format!(
        "data_dir = {data:?}\nwebhook_clock_check = false\n\n[modem]\ndevice = {device:?}\n\
         pin = \"{pin}\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n",
        data = dir.join("data").display().to_string(),
        device = device.display().to_string(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

/// `modem` of `/v1/status` once `done` holds for it; fails with the last one seen.
fn wait_for_modem(
    port: u16,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let deadline = Instant::now() + WAIT;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        let answer = agent
            .get(format!("http://127.0.0.1:{port}/v1/status"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .call()
            .ok()
            .and_then(|mut response| response.body_mut().read_to_string().ok())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        if let Some(status) = answer {
            last = status["modem"].clone();
            if done(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {WAIT:?}; last modem status {last}");
}

#[test]
fn five_restarts_with_a_wrong_pin_cost_one_attempt_and_the_right_pin_then_unlocks() {
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
    let log = dir.path().join("daemon.log");
    for start in 1..=5 {
        let port = free_port();
        let config = write_config(dir.path(), &link, "0000", port);
        let daemon = Daemon::start_logging_to(&config, &log);
        let status = wait_for_modem(port, "the modem stopped for the PIN", |modem| {
            modem["state"] == "failed"
        });
        assert_eq!(status["reason"], status["last_error"], "{status}");
        let reason = status["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for words in ["refused", SIM, "[modem] pin", "smsrelay forget-refused-pin"] {
            assert!(
                reason.contains(words),
                "start {start}: {words:?} missing from {reason:?}"
            );
        }
        assert_eq!(
            daemon.terminate(WAIT),
            Some(0),
            "start {start}: stops cleanly"
        );
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(logged.contains("refused"), "start {start}: log {logged}");
        assert!(
            !logged.contains('\u{1b}'),
            "terminal colour codes in a log file: {logged:?}"
        );
        // The first start spends one attempt (3 → 2); the others none.
        assert_eq!(
            (pins_entered(&modem), pin_attempts_left(&modem)),
            (1, 2),
            "after start {start}"
        );
    }
    // The right PIN in the config is a new PIN: entered once, and the modem becomes ready.
    let port = free_port();
    let config = write_config(dir.path(), &link, "1234", port);
    let daemon = Daemon::start_logging_to(&config, &log);
    wait_for_modem(port, "the modem ready", |modem| modem["state"] == "ready");
    assert_eq!(daemon.terminate(WAIT), Some(0), "stops cleanly");
    assert_eq!(
        modem.with_engine(|engine, _| engine.sim_state()),
        ("ready", 3, 10)
    );
    assert_eq!(pins_entered(&modem), 2);
    let record = dir.path().join("data").join(REFUSED_PIN_FILE);
    let marks = RefusedPins::load(&record).expect("readable");
    assert_eq!(marks.sims().count(), 0, "{marks:?}");
}

#[test]
fn forget_refused_pin_clears_the_record_offline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &dir.path().join("modem"), "0000", free_port());
    let record = dir.path().join("data").join(REFUSED_PIN_FILE);
    let forget = || {
        outcome(&run_smsrelay([
            "forget-refused-pin".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ]))
    };
    let (code, stdout, stderr) = forget();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("no refused PIN is recorded"), "{stdout}");
    let mut marks = RefusedPins::default();
    marks.mark(SIM, "0000");
    marks.save(&record).expect("saved");
    let (code, stdout, stderr) = forget();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(SIM), "{stdout}");
    assert!(!record.exists());
}
