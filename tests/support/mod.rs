//! Shared by the test modules: the binary ([`run_smsrelay`], [`daemon`]), a webhook receiver
//! ([`receiver`]), an SMTP server ([`smtp`]), our AT session on a simulated modem's PTY, and
//! driver settings for tests.

pub mod broker;
pub mod daemon;
pub mod receiver;
pub mod smtp;

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::Duration;

use smsrelay::at::{Session, SessionConfig, SessionHandle, Urc};
use smsrelay::mock::MockModem;
use smsrelay::modem::{InitSettings, ModemEvent, ModemSettings};
use tokio::sync::mpsc::Receiver;
use tokio::time::{Instant, sleep, timeout};
use tokio_serial::SerialPortBuilderExt;

/// Runs the smsrelay binary, as a user would, to its end.
pub fn run_smsrelay<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_smsrelay"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A finished run's exit code (-1 when a signal ended it), stdout and stderr.
pub fn outcome(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Opens the mock's device with tokio-serial, as the driver does, and runs a session on it.
/// The mock needs no quiet time between commands, so tests pass a short `command_gap`.
pub fn open_session(modem: &MockModem, command_gap: Duration) -> (SessionHandle, Receiver<Urc>) {
    let port = tokio_serial::new(modem.path().to_string_lossy(), 115_200)
        .open_native_async()
        .expect("the mock's PTY opens");
    let config = SessionConfig {
        command_gap,
        ..SessionConfig::default()
    };
    let (session, handle, urcs) = Session::new(port, config);
    tokio::spawn(session.run());
    (handle, urcs)
}

/// Driver settings for tests: short init timings so a start-up takes well under a second; the
/// sweep and health intervals stay at their defaults (5 min, 1 min), far beyond any test,
/// unless a test shortens them.
pub fn quick_modem_settings(device: impl Into<std::path::PathBuf>) -> ModemSettings {
    let mut settings = ModemSettings::new(device);
    settings.init = InitSettings {
        poll_interval: Duration::from_millis(50),
        registration_timeout: Duration::from_secs(5),
        sim_ready_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(2),
        ..InitSettings::default()
    };
    settings.session = SessionConfig {
        command_gap: Duration::from_millis(5),
        settle: Duration::from_millis(100),
        ..SessionConfig::default()
    };
    settings.send_timeout = Duration::from_secs(3);
    settings
}

/// How long the driver tests wait for anything: generous, as the suite runs in parallel on a
/// 2-core machine.
pub const WAIT: Duration = Duration::from_secs(15);

/// The first driver event matching `wanted`, skipping others; fails with what was seen.
pub async fn wait_for(
    events: &mut Receiver<ModemEvent>,
    what: &str,
    wanted: impl Fn(&ModemEvent) -> bool,
) -> ModemEvent {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Some(event)) if wanted(&event) => return event,
            Ok(Some(event)) => seen.push(format!("{event:?}")),
            Ok(None) => panic!("event stream ended waiting for {what}; saw {seen:#?}"),
            Err(_) => panic!("no {what} within {WAIT:?}; saw {seen:#?}"),
        }
    }
}

/// Waits until `check` holds, polling; for what the driver does without an event.
pub async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        sleep(Duration::from_millis(10)).await;
    }
}
