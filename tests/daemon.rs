//! `smsrelay run`, the real binary as a child process, against the simulated modem on a PTY
//! and a webhook receiver on 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smsrelay::mock::{InboundSms, MockConfig, MockModem};

use crate::webhook_delivery::{Receiver, ok};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(config: &std::path::Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_smsrelay"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the daemon starts");
        Daemon { child }
    }

    /// SIGTERM, then the exit status within `limit`.
    fn terminate(mut self, limit: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &std::path::Path, device: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("smsrelay.toml");
    let text = format!(
        r#"
data_dir = "{data}"
webhook_clock_check = false

[modem]
device = "{device}"

[[webhook]]
name = "test"
url = "{url}"
secret = "{SECRET}"
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
    let config = write_config(dir.path(), &link, &receiver.url);
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
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_bad_config_stops_run_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[modem]\ndevice = \"/dev/x\"\nspeed = 1\n").expect("written");
    let output = Command::new(env!("CARGO_BIN_EXE_smsrelay"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("speed"));
}
