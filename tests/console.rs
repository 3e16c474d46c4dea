//! The web console over real HTTP against the daemon run in process (`daemon::run_on`) with
//! the simulated modem and a real webhook receiver: a send from the form reaches the modem,
//! a replay from the form delivers.

use std::path::Path;
use std::time::{Duration, Instant};

use smsrelay::config::Config;
use smsrelay::mock::{MockConfig, MockModem};

use crate::support::receiver::Receiver;

/// The API token of these daemons.
pub(crate) const TOKEN: &str = "console-suite-token-0123456789abcdef";

/// How long a test waits for the daemon to do something.
const WAIT: Duration = Duration::from_secs(20);

/// The daemon in process on a port of its own, with the simulated modem and one webhook
/// (`test`) at `receiver`; stopped when dropped.
pub(crate) struct Harness {
    /// The simulated modem: its submit log.
    pub(crate) modem: MockModem,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    daemon: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts the modem and the daemon; `extra` is appended to the `[[webhook]]` table.
    pub(crate) fn start(mock: MockConfig, webhook_url: &str, extra: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("modem");
        let modem = MockModem::start(mock, Some(link.clone())).expect("mock");
        let config = config(dir.path(), &link, webhook_url, extra);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let shutdown = async move {
                    let _ = stopped.await;
                    "the test"
                };
                let outcome = smsrelay::daemon::run_on(config, listener, shutdown).await;
                assert!(outcome.is_ok(), "{outcome:?}");
            });
        });
        let harness = Harness {
            modem,
            base,
            stop: Some(stop),
            daemon: Some(daemon),
            _dir: dir,
        };
        harness.wait_up();
        harness
    }

    fn wait_up(&self) {
        let client = Client::new(&self.base);
        let deadline = Instant::now() + WAIT;
        while client.get("/healthz").status != 200 {
            assert!(Instant::now() < deadline, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.join();
        }
    }
}

fn config(dir: &Path, device: &Path, url: &str, extra: &str) -> Config {
    let text = format!(
        "data_dir = \"{data}\"\nwebhook_clock_check = false\n[modem]\ndevice = \"{device}\"\n\
         [api]\ntoken = \"{TOKEN}\"\n[[webhook]]\nname = \"test\"\nurl = \"{url}\"\n\
         events = [\"sms.*\", \"webhook.*\"]\n{extra}",
        data = dir.join("data").display(),
        device = device.display(),
    );
    Config::parse(&text).expect("config")
}

/// One answer: status, `Location`, `Set-Cookie`, body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    set_cookie: Option<String>,
    pub(crate) body: String,
}

/// A browser without JavaScript: follows no redirect, keeps the session cookie.
pub(crate) struct Client {
    base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
}

impl Client {
    pub(crate) fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Client {
            base: base.to_string(),
            agent,
            cookie: None,
        }
    }

    fn answer(outcome: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = outcome.expect("a response");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            location,
            set_cookie,
            body,
        }
    }

    pub(crate) fn get(&self, path: &str) -> Answer {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Client::answer(request.call())
    }

    /// A form POST with these fields (URL-encoded here).
    pub(crate) fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        Client::answer(request.send(body.join("&").as_bytes()))
    }

    /// Signs in with the API token and keeps the cookie.
    pub(crate) fn sign_in(&mut self) {
        let answer = self.post("/console/signin", &[("token", TOKEN)]);
        assert_eq!(answer.status, 303, "{}", answer.body);
        let cookie = answer.set_cookie.expect("a session cookie");
        self.cookie = cookie.split(';').next().map(str::to_string);
    }

    /// The CSRF token on a page.
    pub(crate) fn csrf(&self, path: &str) -> String {
        let page = self.get(path).body;
        field_value(&page, r#"name="csrf" value=""#).expect("a CSRF field")
    }

    /// GETs `path` until its body contains `wanted`; the last body.
    pub(crate) fn wait_for(&self, path: &str, wanted: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let body = self.get(path).body;
            if body.contains(wanted) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path} never showed {wanted:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The quoted value after `marker` in a page.
pub(crate) fn field_value(page: &str, marker: &str) -> Option<String> {
    let start = page.find(marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_string())
}

/// Percent-encodes a form value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn quick_mock() -> MockConfig {
    MockConfig {
        submit_delay: Duration::from_millis(20),
        report_delay: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

#[test]
fn a_send_from_the_form_reaches_the_simulated_modem_and_shows_delivered() {
    let receiver = Receiver::start(crate::support::receiver::ok);
    let harness = Harness::start(quick_mock(), &receiver.url, "");
    let mut client = Client::new(&harness.base);
    assert_eq!(
        client.get("/console/send").location.as_deref(),
        Some("/console/signin")
    );
    client.sign_in();
    let csrf = client.csrf("/console/send");
    let text = "Hello from the console: £5 ok?";
    let refused = client.post("/console/send", &[("to", "+447700900123"), ("text", text)]);
    assert_eq!(refused.status, 403, "no CSRF token, no send");
    let answer = client.post(
        "/console/send",
        &[("to", "+447700900123"), ("text", text), ("csrf", &csrf)],
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let page = answer.location.expect("to the message's page");
    assert!(page.starts_with("/console/messages/"), "{page}");
    let shown = client.wait_for(&page, r#"id="message-state">delivered<"#);
    assert!(shown.contains("sms.delivered"), "the timeline shows it");
    let submitted = harness.modem.submitted();
    assert_eq!(submitted.len(), 1, "one SMS reached the modem");
    let list = client.get("/console/messages?number=7700900123");
    assert!(list.body.contains("+447700900123"), "{}", list.body);
    let none = client.get("/console/messages?number=999999");
    assert!(!none.body.contains("+447700900123"));
    receiver.wait_for(2);
}

#[test]
fn a_replay_from_the_form_delivers_the_dead_letter() {
    // The first delivery fails and is the only attempt; the replay succeeds.
    let receiver = Receiver::start(|index| {
        let status = if index == 0 { 500 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    let harness = Harness::start(quick_mock(), &receiver.url, "retry_schedule = [\"0s\"]\n");
    let mut client = Client::new(&harness.base);
    client.sign_in();
    let csrf = client.csrf("/console/webhooks");
    let tested = client.post("/console/webhooks/test/test", &[("csrf", &csrf)]);
    assert_eq!(
        tested.location.as_deref(),
        Some("/console/webhooks?done=tested")
    );
    let page = client.wait_for("/console/webhooks", "/replay\"");
    let marker = r#"<form method="post" action=""#;
    let replay = page
        .match_indices(marker)
        .filter_map(|(at, _)| field_value(&page[at..], marker))
        .find(|action| action.ends_with("/replay"))
        .expect("a Replay button");
    let replayed = client.post(&replay, &[("csrf", &csrf)]);
    assert_eq!(
        replayed.location.as_deref(),
        Some("/console/webhooks?done=replayed"),
        "{}",
        replayed.body
    );
    let got = receiver.wait_for(2);
    assert_eq!(got[1].json()["name"], "webhook.test");
    assert_eq!(got[0].json()["id"], got[1].json()["id"], "the same event");
    client.wait_for("/console/webhooks", "Dead letters (0)");
}
