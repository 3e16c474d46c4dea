//! What a user sees when the host is not perfect (issue #10): a clock that never synchronises
//! or went backwards, a data dir that fills up, and the health probes that say so. Each test
//! runs the real binary against the simulated modem.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use smsrelay::mock::{InboundSms, MockConfig, MockModem};
use smsrelay::store::{Store, StoreSettings};

use crate::support::daemon::{Api, Daemon, TOKEN, free_port};
use crate::support::receiver::{Receiver, ok};

const WAIT: Duration = Duration::from_secs(30);

/// A config with the clock check on, `webhook_clock_wait` = `wait` and `[api] ready_grace` =
/// `grace`.
fn config_with(
    dir: &Path,
    data: &Path,
    device: &Path,
    url: &str,
    port: u16,
    (wait, grace): (&str, &str),
) -> PathBuf {
    let path = dir.join("smsrelay.toml");
    let text = format!(
        r#"
data_dir = "{data}"
webhook_clock_check = true
webhook_clock_wait = "{wait}"

[modem]
device = "{device}"

[api]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"
ready_grace = "{grace}"

[[webhook]]
name = "test"
url = "{url}"
events = ["sms.*", "webhook.*"]
"#,
        data = data.display(),
        device = device.display(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

fn config(dir: &Path, data: &Path, device: &Path, url: &str, port: u16, wait: &str) -> PathBuf {
    config_with(dir, data, device, url, port, (wait, "1h"))
}

/// A temp dir with a simulated modem, a webhook receiver and a config (`webhook_clock_wait`
/// 0 s) for the daemon.
struct Site {
    dir: tempfile::TempDir,
    modem: MockModem,
    receiver: Receiver,
    port: u16,
    config: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("modem");
        let modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock");
        let receiver = Receiver::start(ok);
        let port = free_port();
        let data = dir.path().join("data");
        let config = config(dir.path(), &data, &link, &receiver.url, port, "0s");
        Site {
            dir,
            modem,
            receiver,
            port,
            config,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the daemon with the kernel's clock state said by `sync`, and waits for its API.
    fn start(&self, sync: &str) -> (Daemon, Api) {
        let daemon = Daemon::start_with_env(&self.config, &[("SMSRELAY_CLOCK_SYNC", sync)]);
        let api = Api::new(self.port);
        api.wait_up();
        (daemon, api)
    }
}

fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of a metric without labels.
fn metric(api: &Api, name: &str) -> Option<String> {
    let (_, text) = api.text("/metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(str::to_string)
}

fn events(api: &Api) -> Vec<Value> {
    let (_, body) = api.get("/v1/events?limit=1000");
    body["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_host_whose_clock_never_synchronises_still_delivers_webhooks() {
    let site = Site::new();
    let (_daemon, api) = site.start("unsynchronised");
    site.modem
        .inject_sms(&InboundSms::new("+447700900555", "no NTP here"))
        .expect("injects");
    let got = site.receiver.wait_for(1);
    assert_eq!(got[0].json()["data"]["text"], "no NTP here");
    assert!(
        got[0].json().get("clock_suspect").is_none(),
        "a plausible clock is not suspect"
    );
    let (_, status) = api.get("/v1/status");
    assert_eq!(status["clock"]["state"], "unsynchronised", "{status}");
    assert_eq!(status["clock"]["webhooks_held"], false);
    assert_eq!(
        metric(&api, "smsrelay_clock_unsynchronised").as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&api, "smsrelay_webhooks_held_for_clock").as_deref(),
        Some("0")
    );
}

#[test]
fn a_clock_behind_the_newest_recorded_time_holds_webhooks_and_marks_events() {
    let site = Site::new();
    // The last run recorded a time a day ahead of this clock: it went backwards since.
    {
        std::fs::create_dir_all(site.data()).expect("data dir");
        let store = Store::open(
            &site.data().join("db"),
            &StoreSettings::default(),
            Vec::new(),
        )
        .expect("store opens");
        store
            .raise_clock_floor(smsrelay::store::now_ms() + 86_400_000)
            .expect("floor stored");
    }
    let (daemon, api) = site.start("unsynchronised");
    site.modem
        .inject_sms(&InboundSms::new(
            "+447700900555",
            "while the clock is wrong",
        ))
        .expect("injects");
    until("the SMS is recorded", WAIT, || {
        events(&api)
            .iter()
            .any(|event| event["name"] == "sms.received")
    });
    let recorded = events(&api);
    let received = recorded
        .iter()
        .find(|event| event["name"] == "sms.received")
        .expect("recorded");
    assert_eq!(received["clock_suspect"], true, "{received}");
    let (_, status) = api.get("/v1/status");
    assert_eq!(status["clock"]["state"], "implausible", "{status}");
    assert_eq!(status["clock"]["webhooks_held"], true);
    assert!(
        status["clock"]["message"]
            .as_str()
            .is_some_and(|text| text.contains("backwards")),
        "{status}"
    );
    assert_eq!(
        metric(&api, "smsrelay_webhooks_held_for_clock").as_deref(),
        Some("1")
    );
    // Held, not attempted: the job waits and no attempt was recorded.
    let (_, webhooks) = api.get("/v1/webhooks");
    assert_eq!(webhooks["webhooks"][0]["queue_depth"], 1, "{webhooks}");
    assert!(site.receiver.got().is_empty());
    assert_eq!(daemon.terminate(Duration::from_secs(15)), Some(0));

    // NTP sets the clock: the held event goes out, marked.
    let _running = site.start("synchronised");
    let got = site.receiver.wait_for(1);
    assert_eq!(got[0].json()["name"], "sms.received");
    assert_eq!(got[0].json()["clock_suspect"], true);
}

#[test]
fn readyz_says_why_no_modem_is_ready_and_healthz_stays_alive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = Receiver::start(ok);
    let port = free_port();
    let data = dir.path().join("data");
    let missing = dir.path().join("no-such-modem");
    let config = config_with(
        dir.path(),
        &data,
        &missing,
        &receiver.url,
        port,
        ("0s", "0s"),
    );
    let daemon = Daemon::start(&config);
    let api = Api::new(port);
    api.wait_up();
    let (status, _, body) = api.raw("GET", "/readyz", &[], None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reasons"][0]
            .as_str()
            .is_some_and(|reason| reason.starts_with("modem: not ready")),
        "{body}"
    );
    let (status, _, body) = api.raw("GET", "/healthz", &[], None);
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("ok")),
        "{body}"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(15)), Some(0));

    // With a modem, ready; no token needed for either probe.
    let link = dir.path().join("modem");
    let _modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock");
    let config = config_with(dir.path(), &data, &link, &receiver.url, port, ("0s", "0s"));
    let _daemon = Daemon::start(&config);
    api.wait_up();
    until("ready", WAIT, || {
        api.raw("GET", "/readyz", &[], None).0 == 200
    });
    let (_, _, body) = api.raw("GET", "/readyz", &[], None);
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["reasons"], serde_json::json!([]));
}

#[test]
fn an_undecodable_sms_becomes_an_event_before_it_leaves_the_sim() {
    let site = Site::new();
    // A DELIVER cut short: its user data ends before TP-UDL says.
    let broken = "0791447700090010040C914477000910320000423051410354401BCD72990E";
    let stored_at = site
        .modem
        .with_engine(|engine, now| {
            engine.store_quietly("SM", hex::decode(broken).expect("hex"), now)
        })
        .expect("stored");
    let (_daemon, api) = site.start("synchronised");
    // The start-up sweep finds it.
    let got = site.receiver.wait_for(1);
    let body = got[0].json();
    assert_eq!(body["name"], "sms.undecodable", "{body}");
    assert_eq!(body["data"]["pdu"], broken);
    assert_eq!(body["data"]["storage"], "SM");
    assert_eq!(body["data"]["index"], stored_at);
    assert!(
        body["data"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body["data"]["received_at"].is_string(), "{body}");
    until("deleted from the SIM after it was stored", WAIT, || {
        site.modem
            .with_engine(|engine, _| engine.stored("SM").is_empty())
    });
    let (_, listed) = api.get("/v1/events?name=sms.undecodable");
    assert_eq!(
        listed["events"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["events"][0]["data"]["pdu"], broken);
    assert_eq!(
        metric(&api, "smsrelay_undecodable_total").as_deref(),
        Some("1")
    );
}

/// Mounts a tmpfs of `size` at `at`; false where mounting is not allowed (not root, or a
/// container without CAP_SYS_ADMIN).
fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::fs::create_dir_all(at).expect("mount point");
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|status| status.success())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes a file until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0x55u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    // The last partial block: byte by byte.
    while file.write_all(&[0x55]).is_ok() {}
    let _ = file.sync_all();
}

fn message_state(api: &Api, id: &str) -> String {
    let (_, body) = api.get(&format!("/v1/messages/{id}"));
    body["state"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_full_disk_is_loud_loses_nothing_and_a_restart_after_freeing_space_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    if !mount_tmpfs(&data, "24m") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _unmount = Unmount(data.clone());
    let link = dir.path().join("modem");
    let modem = MockModem::start(
        MockConfig {
            submit_delay: Duration::from_millis(20),
            report_delay: Duration::from_millis(20),
            ..MockConfig::default()
        },
        Some(link.clone()),
    )
    .expect("mock starts");
    let receiver = Receiver::start(ok);
    let port = free_port();
    let config = config(dir.path(), &data, &link, &receiver.url, port, "0s");
    let env = [("SMSRELAY_CLOCK_SYNC", "synchronised")];
    let mut daemon = Daemon::start_with_env(&config, &env);
    let api = Api::new(port);
    api.wait_up();
    let send = |text: &str| {
        api.post(
            "/v1/messages",
            Some(TOKEN),
            &serde_json::json!({ "to": "+447700900123", "text": text }).to_string(),
            &[],
        )
    };
    let (code, first) = send("before the disk fills");
    assert_eq!(code, 202, "{first}");
    let first = first["id"].as_str().expect("id").to_string();
    until("the first message is delivered", WAIT, || {
        message_state(&api, &first) == "delivered"
    });

    fill(&data.join("filler"));
    // sled writes into space it already has until that runs out: send until it refuses.
    let mut accepted = vec![first];
    let mut refused = None;
    for n in 0..2000 {
        let (code, body) = send(&format!("while the disk is full {n}"));
        match code {
            202 => accepted.push(body["id"].as_str().expect("id").to_string()),
            _ => {
                refused = Some((code, body));
                break;
            }
        }
    }
    let (code, body) = refused.expect("the API refuses once the store cannot write");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    // Inbound SMS now stay on the SIM: none is deleted before it is stored.
    for n in 0..3 {
        modem
            .inject_sms(&InboundSms::new("+447700900555", &format!("inbound {n}")))
            .expect("injects");
    }
    let (health, reasons) = loop_health(&api);
    assert_eq!(health, 503, "{reasons}");
    assert!(
        reasons["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("store:")),
        "{reasons}"
    );
    let (_, status) = api.get("/v1/status");
    assert_eq!(status["store"]["ok"], false, "{status}");
    assert_eq!(metric(&api, "smsrelay_store_ok").as_deref(), Some("0"));
    // Distinct exit code, so the service manager restarts it (sled keeps the error).
    let deadline = Instant::now() + Duration::from_secs(90);
    let code = loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(75));
    let on_sim = modem.with_engine(|engine, _| engine.stored("SM").len());
    assert!(
        on_sim >= 3,
        "inbound SMS were deleted before they were stored ({on_sim} left)"
    );

    // Space is freed; the restart finishes every accepted message and takes the inbound SMS.
    std::fs::remove_file(data.join("filler")).expect("filler removed");
    daemon = Daemon::start_with_env(&config, &env);
    api.wait_up();
    for id in &accepted {
        until(&format!("message {id} is final"), WAIT * 2, || {
            let state = message_state(&api, id);
            state == "delivered" || state == "failed"
        });
    }
    until("the inbound SMS reach the webhook", WAIT, || {
        let texts: Vec<String> = receiver
            .got()
            .iter()
            .filter(|request| request.json()["name"] == "sms.received")
            .filter_map(|request| request.json()["data"]["text"].as_str().map(str::to_string))
            .collect();
        (0..3).all(|n| texts.contains(&format!("inbound {n}")))
    });
    until("the SIM is emptied", WAIT, || {
        modem.with_engine(|engine, _| engine.stored("SM").is_empty())
    });
    let (health, _, _) = api.raw("GET", "/healthz", &[], None);
    assert_eq!(health, 200);
    drop(daemon);
}

/// `/healthz` until it fails, with its body.
fn loop_health(api: &Api) -> (u16, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, body) = api.raw("GET", "/healthz", &[], None);
        if status != 200 || Instant::now() >= deadline {
            return (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
