//! The web console in a real browser: headless Chromium, driven over the DevTools protocol
//! (one websocket, `tungstenite`), signs in, sends an SMS from the form, sees it delivered
//! on the Messages page, and screenshots every page at 360 px and 1280 px into
//! `target/console-screenshots/`. Without Chromium the test skips, except with `CI=true`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use smsrelay::mock::{InboundSms, MockConfig};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::console::{Harness, TOKEN};
use crate::support::receiver::{Receiver, ok};

/// How long one wait in the browser may take.
const WAIT: Duration = Duration::from_secs(30);

/// The widths every page is photographed at: a phone and a desktop.
const WIDTHS: [u32; 2] = [360, 1280];

/// Chromium, if installed.
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// Headless Chromium with its DevTools socket, killed when dropped.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(binary: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let url = devtools_url(&mut child);
        let (socket, _) = tungstenite::connect(url.as_str()).expect("the DevTools socket");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
        }
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].clone();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .expect("the command is sent");
        loop {
            let message = self.socket.read().expect("an answer from Chromium");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `script` in the page; its value.
    fn eval(&mut self, script: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": script, "returnByValue": true, "awaitPromise": true }),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `script` evaluates to true.
    fn wait_until(&mut self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        while self.eval(script) != json!(true) {
            let location = self.eval("location.href");
            assert!(Instant::now() < deadline, "{what}: not seen at {location}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens `url` and waits for it to load.
    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_loaded();
    }

    fn wait_loaded(&mut self) {
        self.wait_until(
            "the page loads",
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
    }

    /// The viewport: `width` CSS pixels wide, a phone below 600.
    fn resize(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
        );
    }

    /// A PNG of the whole page at `width`.
    fn screenshot(&mut self, width: u32) -> Vec<u8> {
        self.resize(width, 800);
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .as_u64()
            .unwrap_or(800)
            .clamp(400, 4000);
        self.resize(width, height as u32);
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = shot["data"].as_str().expect("PNG data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser-level DevTools websocket URL Chromium prints on stderr.
fn devtools_url(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (found, receive) = std::sync::mpsc::channel();
    // Reads stderr to its end on a thread of its own, so Chromium never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = found.send(url.trim().to_string());
            }
        }
    });
    receive.recv_timeout(WAIT).expect("Chromium's DevTools URL")
}

/// Where the screenshots go: `target/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot dir");
    dir
}

/// Reopens `url` until `script` is true there.
fn reload_until(browser: &mut Browser, url: &str, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        browser.open(url);
        if browser.eval(script) == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: never seen at {url}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `name`-360.png and `name`-1280.png of the page shown.
fn shoot(browser: &mut Browser, name: &str) {
    let dir = screenshot_dir();
    for width in WIDTHS {
        let png = browser.screenshot(width);
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
    }
    browser.resize(1280, 800);
}

/// A stranger is sent to the sign-in page; the token signs in.
fn sign_in(browser: &mut Browser, base: &str) {
    browser.resize(1280, 800);
    browser.open(&format!("{base}/console/messages"));
    browser.wait_until(
        "a stranger is sent to sign in",
        "location.pathname === '/console/signin'",
    );
    shoot(browser, "signin");
    browser.eval(&format!(
        "document.getElementById('token').value = '{TOKEN}'; \
         document.querySelector('button[type=submit]').click(); true"
    ));
    browser.wait_until(
        "signed in",
        "location.pathname === '/console' && document.readyState === 'complete'",
    );
}

/// Types a two-part text (the live counter must say so) and sends it.
fn send_from_form(browser: &mut Browser, base: &str) {
    browser.open(&format!("{base}/console/send"));
    browser.eval(
        "document.getElementById('to').value = '+447700900123'; \
         const text = document.getElementById('text'); \
         text.value = 'Hello from the browser test. ' + 'This text runs past one SMS. '.repeat(5); \
         text.dispatchEvent(new Event('input')); true",
    );
    browser.wait_until(
        "the live counter asks the daemon",
        "document.getElementById('counter').textContent.includes('2 SMS parts')",
    );
    shoot(browser, "send");
    browser.eval("document.querySelector('#send-form button[type=submit]').click(); true");
    browser.wait_until(
        "the message's page",
        "location.pathname.startsWith('/console/messages/') && document.readyState === 'complete'",
    );
}

/// The daemon with the simulated modem, the `test` webhook at `receiver`, a second webhook
/// nobody listens on (tried once: its dead letters show the Replay button) and one SMS in.
fn stack(receiver: &Receiver) -> Harness {
    let mock = MockConfig {
        submit_delay: Duration::from_millis(20),
        report_delay: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let unreachable = "[[webhook]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\n\
                       retry_schedule = [\"0s\"]\n";
    let harness = Harness::start(mock, &receiver.url, unreachable);
    let inbound = InboundSms::new("+447700900456", "Is the gateway up? Reply YES.");
    harness.modem.inject_sms(&inbound).expect("an inbound SMS");
    harness
}

#[test]
fn a_browser_signs_in_sends_sees_it_delivered_and_screenshots_every_page() {
    let Some(binary) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and no chromium: install it (.ci/run does)"
        );
        eprintln!("skipped: no chromium (apt-get install chromium)");
        return;
    };
    let receiver = Receiver::start(ok);
    let harness = stack(&receiver);
    let base = harness.base.clone();
    let mut browser = Browser::launch(&binary);
    sign_in(&mut browser, &base);
    send_from_form(&mut browser, &base);

    let delivered = "document.querySelector('td[data-label=State] .state')?.textContent === 'delivered' \
         && document.body.textContent.includes('Is the gateway up?')";
    let messages = format!("{base}/console/messages");
    reload_until(&mut browser, &messages, "delivered and received", delivered);
    let parts = harness.modem.submitted().len();
    assert_eq!(parts, 2, "two parts reached the modem");
    shoot(&mut browser, "messages");
    let message = browser.eval("document.querySelector('td[data-label=To] a').href");
    browser.open(message.as_str().expect("a link to the message"));
    shoot(&mut browser, "message");

    browser.open(&format!("{base}/console"));
    browser.wait_until(
        "the live stream connects",
        "document.getElementById('live-status').textContent.includes('live')",
    );
    shoot(&mut browser, "overview");
    let webhooks = format!("{base}/console/webhooks");
    let replay = "document.body.textContent.includes('Replay')";
    reload_until(&mut browser, &webhooks, "a dead letter", replay);
    shoot(&mut browser, "webhooks");
    browser.open(&format!("{base}/console/events"));
    shoot(&mut browser, "events");
    receiver.wait_for(2);
}
