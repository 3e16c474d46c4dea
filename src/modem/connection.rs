//! The connection's life: open the device with backoff, start a session, run the init
//! (answering requests "not ready" meanwhile), serve until the link is lost, then close and
//! start again; stop for good on a PIN problem or a shutdown.
//!
//! [`Driver::run`] is the outer loop, [`Driver::connect`] opens and initialises,
//! [`Driver::serve`] is the steady state's `select!`, [`Driver::end`] closes. What is done with
//! a URC, a request, a sweep or a health tick is in [`super::driver`].

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use log::{debug, error, info, warn};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_serial::SerialPortBuilderExt;

use crate::at::{Command, FinalResult, Response, Session, SessionError, SessionHandle, Urc};

use super::classify::{SendFailure, Verdict};
use super::driver::{Driver, Step};
use super::handle::{INIT_BACKLOG_CAP, LinkState, ModemEvent, Request};
use super::init::{InitError, InitStage, Setup, init_with_progress};

/// How a connection ended.
pub(super) enum End {
    /// Reopen the port.
    Lost(String),
    /// Stop the driver.
    Shutdown(Option<oneshot::Sender<()>>),
}

/// How soon a sweep follows a failed read of an indicated message.
pub(super) const EARLY_SWEEP: Duration = Duration::from_secs(2);

/// An open port with its session.
pub(super) struct Link {
    pub(super) handle: SessionHandle,
    pub(super) urcs: mpsc::Receiver<Urc>,
    pub(super) task: JoinHandle<SessionError>,
    pub(super) setup: Option<Setup>,
    /// The memory `AT+CMGR`/`AT+CMGL`/`AT+CMGD` act on (mem1).
    pub(super) mem1: String,
    pub(super) consecutive_timeouts: u32,
    pub(super) storage_warned: bool,
    /// URCs taken off the channel during a re-init, handled next.
    pub(super) backlog: VecDeque<Urc>,
}

impl Link {
    async fn close(self) {
        drop(self.handle);
        self.task.abort();
        // Waiting makes sure the port is closed before it is opened again.
        let _ = self.task.await;
    }
}

impl Driver {
    /// The task: connect, serve, and again after a loss, until shut down.
    pub(super) async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let link = match self.connect(&mut failures).await {
                Ok(link) => link,
                Err(shutdown) => return self.stop(shutdown),
            };
            failures = 0;
            match self.serve(link).await {
                End::Lost(reason) => {
                    warn!("modem: connection lost: {reason}");
                    self.update(|status| {
                        status.last_error = Some(reason.clone());
                        status.connected_since = None;
                        status.counters.reconnects += 1;
                    });
                    self.emit(ModemEvent::Disconnected { reason });
                }
                End::Shutdown(reply) => return self.stop(reply),
            }
        }
    }

    fn stop(&mut self, reply: Option<oneshot::Sender<()>>) {
        info!("modem: driver stopped");
        self.update(|status| status.state = LinkState::Stopped);
        // Events still queued go out if there is room; the owner is shutting down too.
        while let Some(event) = self.queued_events.pop_front() {
            if self.events.try_send(event).is_err() {
                break;
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    /// Opens the device and runs the init, retrying with backoff, until ready or shut down.
    async fn connect(&mut self, failures: &mut u32) -> Result<Link, Option<oneshot::Sender<()>>> {
        let mut open_attempt = 0u32;
        loop {
            open_attempt += 1;
            self.update(|status| status.state = LinkState::Opening(open_attempt));
            let port =
                tokio_serial::new(self.settings.device.to_string_lossy(), self.settings.baud)
                    .timeout(Duration::from_secs(1))
                    .open_native_async();
            let port = match port {
                Ok(port) => port,
                Err(error) => {
                    if open_attempt == 1 || open_attempt % 60 == 0 {
                        warn!(
                            "modem: cannot open {}: {error}{}; retrying",
                            self.settings.device.display(),
                            open_hint(&error)
                        );
                    }
                    let pause = backoff(
                        self.settings.reopen_min,
                        self.settings.reopen_max,
                        open_attempt,
                    );
                    self.wait_serving(pause, format!("cannot open the device: {error}"))
                        .await?;
                    continue;
                }
            };
            open_attempt = 0;
            self.inbox.on_link_opened();
            let (session, handle, urcs) = Session::new(port, self.settings.session.clone());
            let mut link = Link {
                handle,
                urcs,
                task: tokio::spawn(session.run()),
                setup: None,
                mem1: self.settings.init.storage.clone(),
                consecutive_timeouts: 0,
                storage_warned: false,
                backlog: VecDeque::new(),
            };
            match self.initialise(&mut link).await? {
                Ok(()) => return Ok(link),
                Err(error) => {
                    *failures += 1;
                    let permanent = matches!(
                        error,
                        InitError::WrongPin(_)
                            | InitError::PinWithheld { .. }
                            | InitError::PukRequired
                            | InitError::PinRequired
                    );
                    error!("modem: start-up failed: {error}");
                    self.emit(ModemEvent::InitFailed(error.clone()));
                    if permanent {
                        link.close().await;
                        let reason = error.to_string();
                        self.update(|status| {
                            status.state = LinkState::Failed(reason.clone());
                            status.last_error = Some(reason);
                        });
                        return Err(self.serve_failed().await);
                    }
                    let reset = self.settings.reset_command.clone().filter(|_| {
                        *failures >= self.settings.reset_after
                            && !matches!(error, InitError::Session(_))
                    });
                    if let Some(command) = reset {
                        warn!("modem: {failures} failed start-ups; sending {command}");
                        let _ = link
                            .handle
                            .execute(Command::new(&command).with_timeout(Duration::from_secs(5)))
                            .await;
                        *failures = 0;
                    }
                    link.close().await;
                    let pause = match error {
                        // The device went away or stopped answering: reopen soon (closing
                        // the port is what revives some deaf modems).
                        InitError::Session(_) | InitError::NoResponse => self.settings.reopen_max,
                        _ => backoff(Duration::from_secs(1), self.settings.retry_max, *failures),
                    };
                    self.wait_serving(pause, error.to_string()).await?;
                }
            }
        }
    }

    /// The init sequence, serving requests meanwhile (sends are refused as not ready).
    pub(super) async fn initialise(
        &mut self,
        link: &mut Link,
    ) -> Result<Result<(), InitError>, Option<oneshot::Sender<()>>> {
        let status = self.status.clone();
        let progress = move |stage: InitStage| {
            status.send_modify(|status| status.state = LinkState::Initialising(stage));
        };
        let handle = link.handle.clone();
        let settings = self.settings.init.clone();
        let init = init_with_progress(&handle, &settings, &progress);
        tokio::pin!(init);
        let result = loop {
            tokio::select! {
                result = &mut init => break result,
                request = self.requests.recv() => {
                    if let Some(shutdown) = self.refuse(request) {
                        return Err(shutdown);
                    }
                }
                // Keep the URC channel from filling during a long wait for the network;
                // banners and SIM states belong to the boot this init handles.
                Some(urc) = link.urcs.recv() => self.keep_for_later(link, urc),
            }
        };
        let setup = match result {
            Ok(setup) => setup,
            Err(error) => return Ok(Err(error)),
        };
        // Banners and SIM states that came during the init belong to the boot it handled.
        while let Ok(urc) = link.urcs.try_recv() {
            self.keep_for_later(link, urc);
        }
        self.inbox.on_connected();
        link.mem1 = self.settings.init.storage.clone();
        info!(
            "modem: ready ({} {}, CNMI {}, CSMS {})",
            setup.identity.manufacturer, setup.identity.model, setup.cnmi, setup.csms
        );
        self.update(|status| {
            status.state = LinkState::Ready;
            status.identity = Some(setup.identity.clone());
            status.registration = Some(setup.registration);
            status.cnmi = Some(setup.cnmi.clone());
            status.connected_since = Some(SystemTime::now());
            status.last_error = None;
        });
        link.setup = Some(setup.clone());
        self.emit(ModemEvent::Connected(setup.clone()));
        self.emit(ModemEvent::Registered(setup.registration));
        Ok(Ok(()))
    }

    /// Keeps a URC that came during an init for after it, within [`INIT_BACKLOG_CAP`]. Banners
    /// and SIM states belong to the boot the init handles and are not kept.
    fn keep_for_later(&mut self, link: &mut Link, urc: Urc) {
        if matches!(urc, Urc::Boot(_) | Urc::SimState(_)) {
            return;
        }
        let routed = matches!(urc, Urc::Message { .. } | Urc::StatusReport { .. });
        if link.backlog.len() >= INIT_BACKLOG_CAP && !routed {
            self.update(|status| status.counters.dropped += 1);
            debug!("modem: init backlog full; dropped {urc:?}");
            return;
        }
        link.backlog.push_back(urc);
    }

    /// Answers a request while there is no usable connection. Returns the shutdown reply
    /// channel when asked to stop.
    fn refuse(&mut self, request: Option<Request>) -> Option<Option<oneshot::Sender<()>>> {
        match request {
            None => Some(None),
            Some(Request::Shutdown(reply)) => Some(Some(reply)),
            Some(Request::Send { reply, .. }) => {
                let state = format!("{:?}", self.status.borrow().state);
                let _ = reply.send(Err(SendFailure {
                    verdict: Verdict::Temporary,
                    code: None,
                    text: format!("the modem is not ready ({state})"),
                }));
                None
            }
            Some(Request::Confirm(receipt)) => {
                self.inbox.defer(receipt);
                None
            }
            Some(Request::Sweep(reply)) => {
                let _ = reply.send(0);
                None
            }
        }
    }

    /// Sleeps `pause`, serving requests, unless told to stop.
    async fn wait_serving(
        &mut self,
        pause: Duration,
        reason: String,
    ) -> Result<(), Option<oneshot::Sender<()>>> {
        self.update(|status| {
            status.state = LinkState::Waiting(reason.clone());
            status.last_error = Some(reason);
        });
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                () = sleep_until(until) => return Ok(()),
                request = self.requests.recv() => {
                    if let Some(shutdown) = self.refuse(request) {
                        return Err(shutdown);
                    }
                }
            }
        }
    }

    /// After a permanent failure: refuse everything until shut down.
    async fn serve_failed(&mut self) -> Option<oneshot::Sender<()>> {
        loop {
            let request = self.requests.recv().await;
            if let Some(shutdown) = self.refuse(request) {
                return shutdown;
            }
        }
    }

    async fn serve(&mut self, mut link: Link) -> End {
        for receipt in self.inbox.take_deferred() {
            if let Err(end) = self.confirm(&mut link, receipt).await {
                return self.end(link, end).await;
            }
        }
        if let Err(end) = self.sweep(&mut link).await {
            return self.end(link, end).await;
        }
        if let Err(end) = self.health(&mut link).await {
            return self.end(link, end).await;
        }
        let mut next_sweep = Instant::now() + self.settings.sweep_interval;
        let mut next_health = Instant::now() + self.settings.health_interval;
        loop {
            if self.inbox.has_deferred() {
                for receipt in self.inbox.take_deferred() {
                    if let Err(end) = self.confirm(&mut link, receipt).await {
                        return self.end(link, end).await;
                    }
                }
                continue;
            }
            if let Some(urc) = link.backlog.pop_front() {
                if let Err(end) = self.on_urc(&mut link, urc).await {
                    return self.end(link, end).await;
                }
                continue;
            }
            if self.inbox.take_early_sweep() {
                next_sweep = next_sweep.min(Instant::now() + EARLY_SWEEP);
            }
            self.flush_events();
            let waiting = !self.queued_events.is_empty();
            let events = self.events.clone();
            let step: Step = tokio::select! {
                request = self.requests.recv() => self.on_request(&mut link, request).await,
                urc = link.urcs.recv() => match urc {
                    Some(urc) => self.on_urc(&mut link, urc).await,
                    None => Err(End::Lost("the serial session ended".into())),
                },
                () = sleep_until(next_sweep) => {
                    next_sweep = Instant::now() + self.settings.sweep_interval;
                    self.sweep(&mut link).await.map(|_| ())
                }
                () = sleep_until(next_health) => {
                    next_health = Instant::now() + self.settings.health_interval;
                    self.health(&mut link).await
                }
                // Wakes when the owner makes room for a queued event.
                permit = events.reserve(), if waiting => {
                    if let (Ok(permit), Some(event)) = (permit, self.queued_events.pop_front()) {
                        permit.send(event);
                    }
                    Ok(())
                }
            };
            if let Err(end) = step {
                return self.end(link, end).await;
            }
        }
    }

    async fn end(&mut self, link: Link, end: End) -> End {
        let end = match end {
            // The session task knows best why it ended (EOF, EIO).
            End::Lost(reason) if link.task.is_finished() => {
                let Link { task, .. } = link;
                match task.await {
                    Ok(error) => End::Lost(error.to_string()),
                    Err(_) => End::Lost(reason),
                }
            }
            other => {
                link.close().await;
                other
            }
        };
        self.update(|status| {
            if !matches!(status.state, LinkState::Stopped) {
                status.state = LinkState::Waiting("reconnecting".into());
            }
        });
        end
    }

    /// Runs a command, turning session failures into recovery: a timeout resyncs, repeated
    /// timeouts or a closed port end the connection.
    pub(super) async fn execute(
        &mut self,
        link: &mut Link,
        command: Command,
    ) -> Result<Response, End> {
        let outcome = link.handle.execute(command).await;
        self.check(link, outcome).await
    }

    pub(super) async fn check(
        &mut self,
        link: &mut Link,
        outcome: Result<Response, SessionError>,
    ) -> Result<Response, End> {
        match outcome {
            Ok(response) => {
                link.consecutive_timeouts = 0;
                Ok(response)
            }
            Err(SessionError::Timeout { command, .. } | SessionError::NoPrompt { command }) => {
                self.update(|status| status.counters.timeouts += 1);
                link.consecutive_timeouts += 1;
                warn!("modem: no answer to {command}; resynchronising");
                if link.consecutive_timeouts >= 3 || !resync(link).await {
                    return Err(End::Lost(format!(
                        "the modem stopped answering ({command} timed out)"
                    )));
                }
                // The modem answers again; the command that got no answer counts as refused.
                Ok(Response {
                    info: Vec::new(),
                    result: FinalResult::Error,
                })
            }
            Err(error) => Err(End::Lost(error.to_string())),
        }
    }
}

/// AT until OK, a few times, after a timeout.
async fn resync(link: &mut Link) -> bool {
    for _ in 0..3 {
        match link
            .handle
            .execute(Command::new("AT").with_timeout(Duration::from_secs(2)))
            .await
        {
            Ok(response) if response.result.is_ok() => return true,
            Ok(_) | Err(SessionError::Timeout { .. }) => {}
            Err(_) => return false,
        }
        sleep(Duration::from_millis(200)).await;
    }
    false
}

/// What an operator can do about a device that will not open, for the log line.
fn open_hint(error: &tokio_serial::Error) -> &'static str {
    use tokio_serial::ErrorKind;
    // serialport reports EACCES as PermissionDenied, a port held by another program (EBUSY
    // from TIOCEXCL, or its flock) as NoDevice, and EPERM (a device cgroup's refusal) as
    // Unknown with the errno's text.
    match error.kind() {
        ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
            " (the daemon's user needs read-write access: group dialout, or a udev rule's GROUP)"
        }
        ErrorKind::NoDevice => {
            " (another program holds the port: ModemManager? stop it, or tag the modem \
             ID_MM_DEVICE_IGNORE=1 in a udev rule)"
        }
        ErrorKind::Unknown if error.description.contains("not permitted") => {
            " (refused by the device policy: the unit's DeviceAllow= lines do not cover this \
             device; add one for its major number with `systemctl edit smsrelay`)"
        }
        _ => "",
    }
}

/// `min`, doubling per attempt, capped at `max`.
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::{backoff, open_hint};
    use std::time::Duration;
    use tokio_serial::{Error, ErrorKind};

    #[test]
    fn refusals_to_open_the_port_come_with_what_to_do() {
        let denied = Error::new(
            ErrorKind::Io(std::io::ErrorKind::PermissionDenied),
            "Permission denied",
        );
        assert!(open_hint(&denied).contains("dialout"));
        let busy = Error::new(ErrorKind::NoDevice, "Device or resource busy");
        assert!(open_hint(&busy).contains("ModemManager"));
        let cgroup = Error::new(ErrorKind::Unknown, "Operation not permitted");
        assert!(open_hint(&cgroup).contains("DeviceAllow="));
        let missing = Error::new(
            ErrorKind::Io(std::io::ErrorKind::NotFound),
            "No such file or directory",
        );
        assert_eq!(open_hint(&missing), "");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(500);
        let pauses: Vec<_> = (1..=5).map(|n| backoff(min, max, n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
        assert_eq!(backoff(min, max, u32::MAX), max);
    }
}
