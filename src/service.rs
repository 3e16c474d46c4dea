//! The service manager's side of the daemon, and the only module that knows systemd: signals
//! that ask it to stop, and `sd_notify` READY, STATUS, WATCHDOG and STOPPING. Outside systemd
//! there is no notify socket and every notification is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

/// Resolves with the signal's name at the first SIGTERM or SIGINT. Watching starts when this
/// is called, so a signal that comes before the future is polled is not lost.
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

fn notify(states: &[NotifyState]) {
    // Outside systemd there is no socket and nothing to tell: not an error.
    let _ = sd_notify::notify(false, states);
}

/// Start-up is done: systemd's `Type=notify` unit becomes active.
pub fn ready() {
    notify(&[NotifyState::Ready]);
}

/// The shutdown has begun.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// The period to ping the watchdog at (half of `WatchdogSec=`), when systemd asks for pings.
pub fn watchdog_period() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// A `STATUS=` line for `systemctl status`, with a watchdog ping when `alive` (a daemon that
/// cannot do its work stops pinging, so systemd restarts it).
pub fn status(line: &str, alive: bool) {
    let mut states = vec![NotifyState::Status(line)];
    if alive && watchdog_period().is_some() {
        states.push(NotifyState::Watchdog);
    }
    notify(&states);
}
