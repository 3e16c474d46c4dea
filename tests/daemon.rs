//! `smsrelay run`, the real binary as a child process, against the simulated modem on a PTY
//! and a webhook receiver on 127.0.0.1.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smsrelay::mock::{InboundSms, MockConfig, MockModem, ReportBehaviour};

use crate::support::daemon::{Api, Daemon, TOKEN, free_port};
use crate::support::receiver::{Receiver, ok};
use crate::support::{outcome, run_smsrelay};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn write_config(dir: &std::path::Path, device: &std::path::Path, url: &str) -> std::path::PathBuf {
    write_config_on(dir, device, url, free_port())
}

fn write_config_on(
    dir: &std::path::Path,
    device: &std::path::Path,
    url: &str,
    port: u16,
) -> std::path::PathBuf {
    let path = dir.join("smsrelay.toml");
    let text = format!(
        r#"
data_dir = "{data}"
webhook_clock_check = false

[modem]
device = "{device}"

[api]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"

[[webhook]]
name = "test"
url = "{url}"
secret = "{SECRET}"
# The modem's own events (modem.connected at start) are not what these tests count.
events = ["sms.*", "webhook.*"]
"#,
        data = dir.join("data").display(),
        device = device.display(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

#[test]
fn an_inbound_sms_reaches_the_webhook_signed_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock starts");
    let receiver = Receiver::start(ok);
    let port = free_port();
    let config = write_config_on(dir.path(), &link, &receiver.url, port);
    let daemon = Daemon::start(&config);
    // The driver is up once it has read the storage usage.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !modem.commands().iter().any(|c| c == "AT+CPMS?") {
        assert!(
            Instant::now() < deadline,
            "the daemon did not initialise the modem"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    modem
        .inject_sms(&InboundSms::new("+447700900555", "Hello, daemon 👋"))
        .expect("injects");
    let got = receiver.wait_for(1);
    let body = got[0].json();
    assert_eq!(body["name"], "sms.received");
    assert_eq!(body["data"]["text"], "Hello, daemon 👋");
    assert_eq!(body["data"]["from"], "+447700900555");
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(
            name,
            got[0]
                .header(name)
                .expect("present")
                .parse()
                .expect("valid"),
        );
    }
    standardwebhooks::Webhook::new(SECRET)
        .expect("secret")
        .verify(&got[0].body, &headers)
        .expect("signed");
    // Deleted from the modem once stored.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !modem.with_engine(|engine, _| engine.stored("SM").is_empty()) {
        assert!(Instant::now() < deadline, "the SMS stayed on the modem");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        daemon.terminate(Duration::from_secs(10)),
        Some(0),
        "exit within 10 s"
    );
    // A restart re-sends nothing and takes nothing twice.
    let daemon = Daemon::start(&config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while modem.commands().iter().filter(|c| *c == "AT+CPMS?").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the restarted daemon did not initialise"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Recorded facts, not a pause: one sms.received in the store and no delivery pending,
    // so nothing is sent again; the receiver heard it once.
    let api = Api::new(port);
    api.wait_up();
    let (_, received) = api.get("/v1/events?name=sms.received");
    assert_eq!(
        received["events"].as_array().map(Vec::len),
        Some(1),
        "{received}"
    );
    let (_, webhooks) = api.get("/v1/webhooks");
    assert_eq!(webhooks["webhooks"][0]["queue_depth"], 0, "{webhooks}");
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_webhook_request_hanging_at_sigterm_does_not_hold_the_exit_and_is_sent_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock starts");
    // Answers a minute late: far beyond the daemon's 10 s to exit (and the 15 s timeout).
    let receiver = Receiver::start(|_| (200, Vec::new(), Duration::from_secs(60)));
    let config = write_config(dir.path(), &link, &receiver.url);
    let daemon = Daemon::start(&config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !modem.commands().iter().any(|c| c == "AT+CPMS?") {
        assert!(Instant::now() < deadline, "the daemon did not initialise");
        std::thread::sleep(Duration::from_millis(20));
    }
    modem
        .inject_sms(&InboundSms::new("+447700900555", "caught mid-delivery"))
        .expect("injects");
    let first = receiver.wait_for(1);
    let started = Instant::now();
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The abandoned request's job stayed due: the next start sends the same event again.
    let daemon = Daemon::start(&config);
    let again = receiver.wait_for(2);
    assert_eq!(again[1].json()["name"], "sms.received");
    assert_eq!(again[1].header("webhook-id"), first[0].header("webhook-id"));
    drop(daemon);
}

#[test]
fn a_bad_config_stops_run_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[modem]\ndevice = \"/dev/x\"\nspeed = 1\n").expect("written");
    let (code, _, stderr) = outcome(&run_smsrelay([
        OsStr::new("run"),
        OsStr::new("--config"),
        path.as_os_str(),
    ]));
    assert_eq!(code, 2);
    assert!(stderr.contains("speed"), "{stderr}");
}

#[test]
fn a_message_sent_through_the_api_is_sent_and_delivered_at_the_webhook() {
    let (stack, daemon) = Stack::start(MockConfig {
        submit_delay: Duration::from_millis(50),
        report_delay: Duration::from_millis(50),
        ..MockConfig::default()
    });
    let Stack {
        modem,
        receiver,
        api,
        ..
    } = &stack;
    let body =
        r#"{"to": "+447700900123", "text": "Hello via the API", "callback_data": "order-7"}"#;
    let (status, accepted) = api.post(
        "/v1/messages",
        Some(TOKEN),
        body,
        &[("idempotency-key", "k-1")],
    );
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["parts"], 1);
    assert_eq!(accepted["encoding"], "gsm7");
    let id = accepted["id"].as_str().expect("an id").to_string();
    // The same key again: the first answer, not a second SMS.
    let (status, again) = api.post(
        "/v1/messages",
        Some(TOKEN),
        body,
        &[("idempotency-key", "k-1")],
    );
    assert_eq!((status, &again), (202, &accepted));
    // The same key for a different request is refused, not answered with the first message.
    let (status, error) = api.post(
        "/v1/messages",
        Some(TOKEN),
        r#"{"to": "+447700900123", "text": "something else"}"#,
        &[("idempotency-key", "k-1")],
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    let got = receiver.wait_for(3);
    let names: Vec<_> = got.iter().map(|r| r.json()["name"].clone()).collect();
    assert_eq!(names, ["sms.queued", "sms.sent", "sms.delivered"]);
    assert!(
        got.iter()
            .all(|r| r.json()["data"]["message_id"] == id.as_str())
    );
    assert_eq!(got[2].json()["data"]["callback_data"], "order-7");
    assert_eq!(
        modem.submitted().len(),
        1,
        "one SMS for two identical requests"
    );
    let (status, message) = api.get(&format!("/v1/messages/{id}"));
    assert_eq!(status, 200);
    assert_eq!(message["state"], "delivered");
    let names: Vec<_> = message["events"]
        .as_array()
        .map(|events| events.iter().map(|e| e["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["sms.queued", "sms.sent", "sms.delivered"]);
    let (status, events) = api.get("/v1/events?after=0&limit=10&name=sms.*");
    assert_eq!(status, 200);
    assert_eq!(events["events"].as_array().map(Vec::len), Some(3));
    let (status, state) = api.get("/v1/status");
    assert_eq!(status, 200);
    assert_eq!(state["modem"]["state"], "ready");
    let (status, document) = api.get("/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(document["paths"]["/v1/messages"]["post"].is_object());
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

/// End to end through the real binary's socket: a bad request gets its JSON error and sends
/// nothing. Every other bad request is a case of the router's in-process table test
/// (`src/api/tests.rs`).
#[test]
fn a_bad_request_gets_a_json_error_end_to_end_and_nothing_is_sent() {
    let (stack, daemon) = Stack::start(MockConfig::default());
    let Stack { modem, api, .. } = &stack;
    let (status, error) = api.post("/v1/messages", Some(TOKEN), r#"{"text": "hi"}"#, &[]);
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    assert_eq!(error["error"]["field"], "to", "{error}");
    // A 401 says which scheme it wants.
    let (status, challenge, _) = api.raw("GET", "/v1/status", &[], None);
    assert_eq!(status, 401);
    assert!(
        challenge.is_some_and(|c| c.starts_with("Bearer")),
        "no WWW-Authenticate: Bearer"
    );
    let (status, listed) = api.get("/v1/messages");
    assert_eq!(status, 200);
    assert_eq!(
        listed["messages"].as_array().map(Vec::len),
        Some(0),
        "nothing stored"
    );
    assert!(modem.submitted().is_empty());
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_dead_letter_is_listed_counted_and_replayed_through_the_api() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let _modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock starts");
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start({
        let healthy = Arc::clone(&healthy);
        move |_| {
            let status = if healthy.load(Ordering::SeqCst) {
                200
            } else {
                500
            };
            (status, Vec::new(), Duration::ZERO)
        }
    });
    let port = free_port();
    let config = write_config_on(dir.path(), &link, &receiver.url, port);
    // The [[webhook]] table comes last: two attempts, one second apart, then a dead letter.
    let mut text = std::fs::read_to_string(&config).expect("config read");
    text.push_str("retry_schedule = [\"0s\", \"1s\"]\n");
    std::fs::write(&config, text).expect("config written");
    let daemon = Daemon::start(&config);
    let api = Api::new(port);
    api.wait_up();

    let (status, _) = api.post("/v1/webhooks/test/test", Some(TOKEN), "", &[]);
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (status, listed) = api.get("/v1/webhooks/test/dead-letters");
        assert_eq!(status, 200, "{listed}");
        if listed["dead_letters"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            break listed;
        }
        assert!(Instant::now() < deadline, "no dead letter: {listed}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let dead = &listed["dead_letters"][0];
    assert_eq!(dead["event_name"], "webhook.test");
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["last_attempt"]["status"], 500);
    let (_, webhooks) = api.get("/v1/webhooks");
    assert_eq!(webhooks["webhooks"][0]["dead_letters"], 1, "{webhooks}");
    let (_, metrics) = api.text("/metrics");
    assert!(
        metrics.contains(
            "# TYPE smsrelay_webhook_dead_letters gauge\nsmsrelay_webhook_dead_letters{endpoint=\"test\"} 1\n"
        ),
        "{metrics}"
    );

    let (code, stdout, stderr) = cli(&config, &["webhook", "dead-letters", "test"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("webhook.test"), "{stdout}");

    healthy.store(true, Ordering::SeqCst);
    let sequence = dead["event_sequence"].as_u64().expect("a sequence");
    let (code, stdout, stderr) = cli(
        &config,
        &["webhook", "replay", "test", &sequence.to_string()],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let got = receiver.wait_for(3);
    assert_eq!(
        got[2].json()["id"],
        dead["event_id"],
        "the same event again"
    );
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
    let (_, listed) = api.get("/v1/webhooks/test/dead-letters");
    assert_eq!(listed["dead_letters"], serde_json::json!([]));
    let replay = format!("/v1/webhooks/test/dead-letters/{sequence}/replay");
    let (status, error) = api.post(&replay, Some(TOKEN), "", &[]);
    assert_eq!(
        (status, &error["error"]["code"]),
        (404, &serde_json::json!("not_found"))
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

/// The simulated modem, a webhook receiver, the config of a daemon using both, and its API.
struct Stack {
    _dir: tempfile::TempDir,
    modem: MockModem,
    receiver: Receiver,
    config: std::path::PathBuf,
    api: Api,
}

impl Stack {
    /// Starts the modem and the receiver, writes the config, starts the daemon and waits for
    /// its API.
    fn start(mock: MockConfig) -> (Stack, Daemon) {
        Stack::start_with(mock, "")
    }

    /// As [`Stack::start`], with `extra` TOML appended to the config.
    fn start_with(mock: MockConfig, extra: &str) -> (Stack, Daemon) {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("modem");
        let modem = MockModem::start(mock, Some(link.clone())).expect("mock starts");
        let receiver = Receiver::start(ok);
        let port = free_port();
        let config = write_config_on(dir.path(), &link, &receiver.url, port);
        if !extra.is_empty() {
            let text = std::fs::read_to_string(&config).expect("config read");
            std::fs::write(&config, format!("{text}\n{extra}")).expect("config written");
        }
        let daemon = Daemon::start(&config);
        let api = Api::new(port);
        api.wait_up();
        let stack = Stack {
            _dir: dir,
            modem,
            receiver,
            config,
            api,
        };
        (stack, daemon)
    }
}

fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let args = args.iter().map(OsStr::new);
    outcome(&run_smsrelay(
        args.chain([OsStr::new("--config"), config.as_os_str()]),
    ))
}

#[test]
fn the_cli_sends_and_follows_a_message_and_reads_status_events_and_token() {
    let (stack, daemon) = Stack::start(MockConfig {
        submit_delay: Duration::from_millis(50),
        report_delay: Duration::from_millis(50),
        ..MockConfig::default()
    });
    let Stack { config, .. } = &stack;
    let (code, stdout, stderr) = cli(
        config,
        &[
            "send",
            "--to",
            "+447700900123",
            "--text",
            "from the CLI",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("accepted "), "{stdout}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("delivered at ")),
        "{stdout}"
    );
    let (code, stdout, _) = cli(config, &["events"]);
    assert_eq!(code, 0);
    assert!(
        stdout.lines().any(|l| l.contains("\"sms.delivered\"")),
        "{stdout}"
    );
    let (code, stdout, _) = cli(config, &["status"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("\"state\": \"ready\""), "{stdout}");
    let (code, stdout, _) = cli(config, &["messages", "--state", "delivered"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("from the CLI"), "{stdout}");
    let (code, stdout, _) = cli(config, &["token"]);
    assert_eq!((code, stdout.trim()), (0, TOKEN));
    let (code, _, stderr) = cli(config, &["send", "--to", "nope", "--text", "x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("field to"), "{stderr}");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    let (code, _, stderr) = cli(config, &["status"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach the daemon"), "{stderr}");
}

fn quick_mock(report: ReportBehaviour) -> MockConfig {
    MockConfig {
        submit_delay: Duration::from_millis(50),
        report_delay: Duration::from_millis(50),
        report,
        ..MockConfig::default()
    }
}

const SEND: [&str; 6] = [
    "send",
    "--to",
    "+447700900123",
    "--text",
    "waiting",
    "--wait",
];

/// Issue #14: `send --wait` exits 3 when the message fails, saying why.
#[test]
fn send_wait_exits_3_when_the_message_fails() {
    let (stack, daemon) = Stack::start(quick_mock(ReportBehaviour::Delivered));
    // CMS 21, short message transfer rejected: permanent.
    stack
        .modem
        .with_engine(|engine, _| engine.fail_next_sends(1, 21));
    let (code, stdout, stderr) = cli(&stack.config, &SEND);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("failed: ")),
        "{stdout}"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

/// Issue #14: with status reports off a message is final at `sent`: `send --wait` stops there
/// and exits 0 (the mock sends no report, so waiting for one would run into the timeout).
#[test]
fn send_wait_stops_at_sent_when_no_report_is_requested() {
    let (stack, daemon) = Stack::start_with(
        quick_mock(ReportBehaviour::None),
        "[sms]\nstatus_reports = false\n",
    );
    let (code, stdout, stderr) = cli(&stack.config, &[&SEND[..], &["--timeout", "30s"]].concat());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.lines().last(), Some("sent"), "{stdout}");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

/// Issue #17: `send --no-status-report` asks no report for this one message, so it is final
/// at `sent` although the config asks for reports.
#[test]
fn send_no_status_report_is_final_at_sent() {
    let (stack, daemon) = Stack::start(quick_mock(ReportBehaviour::None));
    let args = [&SEND[..], &["--no-status-report", "--timeout", "30s"]].concat();
    let (code, stdout, stderr) = cli(&stack.config, &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.lines().last(), Some("sent"), "{stdout}");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

/// Issue #17: `send --dry-run` goes through queued, sent and delivered, and no SMS reaches
/// the modem.
#[test]
fn send_dry_run_is_delivered_without_the_modem() {
    let (stack, daemon) = Stack::start(quick_mock(ReportBehaviour::Delivered));
    let args = [&SEND[..], &["--dry-run", "--timeout", "30s"]].concat();
    let (code, stdout, stderr) = cli(&stack.config, &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("delivered at ")),
        "{stdout}"
    );
    assert!(stack.modem.submitted().is_empty(), "the modem got an SMS");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

/// Issue #14: a report that does not come within `--timeout` ends the wait with exit 5.
#[test]
fn send_wait_gives_up_at_its_timeout_with_exit_5() {
    let (stack, daemon) = Stack::start(quick_mock(ReportBehaviour::None));
    let (code, stdout, stderr) = cli(&stack.config, &[&SEND[..], &["--timeout", "2s"]].concat());
    assert_eq!(code, 5, "{stdout}{stderr}");
    // Sent by then, or still sending on a busy machine: either way it is under way.
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("still ") && l.ends_with(" after 2s; stopped waiting")),
        "{stdout}"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn the_demo_shows_an_sms_in_and_one_out_then_cleans_up_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsrelay"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("The gateway stays up"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the demo did not finish its tour: {seen:#?}"),
        }
    }
    let text = seen.join("\n");
    for expected in [
        "webhook ← sms.received (signature valid)",
        "webhook ← sms.sent (signature valid)",
        "webhook ← sms.delivered (signature valid)",
        "delivered at ",
        "webhook ← call.ringing (signature valid)",
        "webhook ← call.missed (signature valid)",
        "the network says: Your balance is 12.50 EUR",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(!text.contains("INVALID"), "{text}");
    let work = std::env::temp_dir().join(format!("smsrelay-demo-{}", child.id()));
    assert!(work.exists(), "the demo's temp dir");
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "Ctrl-C did not stop the demo");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!work.exists(), "the temp dir was left behind");
}

#[test]
fn sigterm_mid_traffic_exits_cleanly_and_a_restart_finishes_the_work() {
    let (stack, daemon) = Stack::start(MockConfig {
        submit_delay: Duration::from_millis(200),
        report_delay: Duration::from_millis(100),
        ..MockConfig::default()
    });
    let Stack {
        modem, config, api, ..
    } = &stack;
    let mut ids = Vec::new();
    for n in 0..12 {
        let body = format!(r#"{{"to": "+447700900123", "text": "traffic {n}"}}"#);
        let (status, accepted) = api.post("/v1/messages", Some(TOKEN), &body, &[]);
        assert_eq!(status, 202, "{accepted}");
        ids.push(accepted["id"].as_str().expect("id").to_string());
    }
    // Some, not all, have gone out.
    let deadline = Instant::now() + Duration::from_secs(20);
    while modem.submitted().len() < 3 {
        assert!(Instant::now() < deadline, "nothing was sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    let took = started.elapsed();
    assert!(
        modem.submitted().len() < 12,
        "the test was too slow to catch traffic"
    );

    let daemon = Daemon::start(config);
    api.wait_up();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut states = Vec::new();
    while Instant::now() < deadline {
        states = ids
            .iter()
            .map(|id| {
                api.get(&format!("/v1/messages/{id}")).1["state"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        if states.iter().all(|s| s == "delivered" || s == "failed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        states.iter().all(|s| s == "delivered" || s == "failed"),
        "{states:?}"
    );
    // Nothing twice: each text reached the network at most once.
    let mut texts: Vec<String> = modem.submitted().into_iter().map(|s| s.text).collect();
    let all = texts.len();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), all, "a message was submitted twice");
    // At most the one part in flight at SIGTERM is reported interrupted; the rest went out.
    let failed = states.iter().filter(|s| *s == "failed").count();
    assert!(failed <= 1, "{states:?} (stopped in {took:?})");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}
