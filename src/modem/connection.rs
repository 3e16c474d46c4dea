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
use super::driver::{Driver, ModemSettings, Step};
use super::handle::{INIT_BACKLOG_CAP, LinkState, ModemEvent, Request};
use super::init::{InitError, InitStage, Setup, init_with_progress};
use super::voice::UssdFailure;

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
                    warn!("{}: connection lost: {reason}", self.settings.name);
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
        info!("{}: driver stopped", self.settings.name);
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
        loop {
            let mut link = self.open().await?;
            let error = match self.initialise(&mut link).await? {
                Ok(()) => return Ok(link),
                Err(error) => error,
            };
            *failures += 1;
            error!("{}: start-up failed: {error}", self.settings.name);
            self.emit(ModemEvent::InitFailed(error.clone()));
            if is_permanent(&error) {
                link.close().await;
                let reason = error.to_string();
                self.update(|status| {
                    status.state = LinkState::Failed(reason.clone());
                    status.last_error = Some(reason);
                });
                return Err(self.serve_failed().await);
            }
            let retry = plan_retry(&error, *failures, &self.settings);
            if let Some(command) = &retry.reset {
                warn!(
                    "{}: {failures} failed start-ups; sending {command}",
                    self.settings.name
                );
                let _ = link
                    .handle
                    .execute(Command::new(command).with_timeout(Duration::from_secs(5)))
                    .await;
            }
            *failures = retry.failures;
            link.close().await;
            self.wait_serving(retry.pause, error.to_string()).await?;
        }
    }

    /// Opens the device, retrying with backoff (`reopen_min` doubling to `reopen_max`), and
    /// starts a session on it.
    async fn open(&mut self) -> Result<Link, Option<oneshot::Sender<()>>> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.update(|status| status.state = LinkState::Opening(attempt));
            let port =
                tokio_serial::new(self.settings.device.to_string_lossy(), self.settings.baud)
                    .timeout(Duration::from_secs(1))
                    .open_native_async();
            let error = match port {
                Ok(port) => return Ok(self.start_session(port)),
                Err(error) => error,
            };
            if attempt == 1 || attempt % 60 == 0 {
                warn!(
                    "{}: cannot open {}: {error}{}; retrying",
                    self.settings.name,
                    self.settings.device.display(),
                    open_hint(&error)
                );
            }
            let pause = backoff(self.settings.reopen_min, self.settings.reopen_max, attempt);
            self.wait_serving(pause, format!("cannot open the device: {error}"))
                .await?;
        }
    }

    fn start_session(&mut self, port: tokio_serial::SerialStream) -> Link {
        self.inbox.on_link_opened();
        let (session, handle, urcs) = Session::new(port, self.settings.session.clone());
        Link {
            handle,
            urcs,
            task: tokio::spawn(session.run()),
            setup: None,
            mem1: self.settings.init.storage.clone(),
            consecutive_timeouts: 0,
            storage_warned: false,
            backlog: VecDeque::new(),
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
        self.on_ready(link, setup);
        Ok(Ok(()))
    }

    /// The init succeeded: a new connection for the inbox, the status, and the events.
    fn on_ready(&mut self, link: &mut Link, setup: Setup) {
        self.inbox.on_connected();
        link.mem1 = self.settings.init.storage.clone();
        info!(
            "{}: ready ({} {}, CNMI {}, CSMS {})",
            self.settings.name,
            setup.identity.manufacturer,
            setup.identity.model,
            setup.cnmi,
            setup.csms
        );
        self.update(|status| {
            status.state = LinkState::Ready;
            status.identity = Some(setup.identity.clone());
            status.registration = Some(setup.registration);
            status.cnmi = Some(setup.cnmi.clone());
            status.connected_since = Some(SystemTime::now());
            status.last_error = None;
        });
        let registration = setup.registration;
        link.setup = Some(setup.clone());
        self.emit(ModemEvent::Connected(setup));
        self.emit(ModemEvent::Registered(registration));
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
            debug!("{}: init backlog full; dropped {urc:?}", self.settings.name);
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
            Some(Request::Ussd { reply, .. }) => {
                let state = format!("{:?}", self.status.borrow().state);
                let _ = reply.send(Err(UssdFailure::NotReady(state)));
                None
            }
            Some(Request::UssdCancel) => None,
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

    /// Serves a ready connection until it is lost or the driver is told to stop.
    async fn serve(&mut self, mut link: Link) -> End {
        let end = self.serve_until_end(&mut link).await;
        self.end(link, end).await
    }

    async fn serve_until_end(&mut self, link: &mut Link) -> End {
        // What waited for the connection, then what may have come while it was down.
        let catch_up = async {
            self.enable_caller_id(link).await?;
            self.confirm_deferred(link).await?;
            self.sweep(link).await?;
            self.health(link).await
        };
        if let Err(end) = catch_up.await {
            return end;
        }
        let mut next_sweep = Instant::now() + self.settings.sweep_interval;
        let mut next_health = Instant::now() + self.settings.health_interval;
        loop {
            if let Err(end) = self.step(link, &mut next_sweep, &mut next_health).await {
                return end;
            }
        }
    }

    /// One thing: a deferred confirm, a URC kept during an init, or whatever wakes first.
    async fn step(
        &mut self,
        link: &mut Link,
        next_sweep: &mut Instant,
        next_health: &mut Instant,
    ) -> Step {
        if self.inbox.has_deferred() {
            return self.confirm_deferred(link).await;
        }
        if let Some(urc) = link.backlog.pop_front() {
            return self.on_urc(link, urc).await;
        }
        if self.inbox.take_early_sweep() {
            *next_sweep = (*next_sweep).min(Instant::now() + EARLY_SWEEP);
        }
        self.flush_events();
        let waiting = !self.queued_events.is_empty();
        let events = self.events.clone();
        let call_deadline = self.calls.deadline();
        let call_wake = call_deadline.map_or_else(Instant::now, Instant::from_std);
        tokio::select! {
            // A call whose rings stopped without NO CARRIER.
            () = sleep_until(call_wake), if call_deadline.is_some() => {
                let effects = self.calls.on_tick(Instant::now().into_std());
                self.apply_call(link, effects).await
            }
            request = self.requests.recv() => self.on_request(link, request).await,
            urc = link.urcs.recv() => match urc {
                Some(urc) => self.on_urc(link, urc).await,
                None => Err(End::Lost("the serial session ended".into())),
            },
            () = sleep_until(*next_sweep) => {
                *next_sweep = Instant::now() + self.settings.sweep_interval;
                self.sweep(link).await.map(|_| ())
            }
            () = sleep_until(*next_health) => {
                *next_health = Instant::now() + self.settings.health_interval;
                self.health(link).await
            }
            // Wakes when the owner makes room for a queued event.
            permit = events.reserve(), if waiting => {
                if let (Ok(permit), Some(event)) = (permit, self.queued_events.pop_front()) {
                    permit.send(event);
                }
                Ok(())
            }
        }
    }

    /// Carries out the confirms that waited for a connection.
    pub(super) async fn confirm_deferred(&mut self, link: &mut Link) -> Step {
        for receipt in self.inbox.take_deferred() {
            self.confirm(link, receipt).await?;
        }
        Ok(())
    }

    async fn end(&mut self, link: Link, end: End) -> End {
        // A USSD answer cannot come over a lost connection: the waiting request hears now.
        self.pending_ussd = None;
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
                warn!(
                    "{}: no answer to {command}; resynchronising",
                    self.settings.name
                );
                // Not ready while it does not answer: sends wait, `/v1/status` says why, and
                // the modem events count the outage from here, not from when it is given up.
                let before = self.status.borrow().state.clone();
                self.update(|status| {
                    status.state =
                        LinkState::Waiting(format!("no answer to {command}; resynchronising"))
                });
                if link.consecutive_timeouts >= 3 || !resync(link).await {
                    return Err(End::Lost(format!(
                        "the modem stopped answering ({command} timed out)"
                    )));
                }
                self.update(|status| status.state = before);
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

/// A PIN problem: only a person can fix it, so the driver stops trying.
fn is_permanent(error: &InitError) -> bool {
    matches!(
        error,
        InitError::WrongPin(_)
            | InitError::PinWithheld { .. }
            | InitError::PukRequired
            | InitError::PinRequired
    )
}

/// What to do before the next start-up after a failed one.
#[derive(Debug, PartialEq, Eq)]
struct Retry {
    /// The reset command to send first (after `reset_after` failures in a row).
    reset: Option<String>,
    /// The pause before opening again.
    pause: Duration,
    /// The failures in a row counted from now (0 after a reset).
    failures: u32,
}

/// Plans the retry after `failures` failed start-ups in a row, the last with `error`.
fn plan_retry(error: &InitError, failures: u32, settings: &ModemSettings) -> Retry {
    // A session error means the port is gone: a reset command would not reach the modem.
    let reset = settings
        .reset_command
        .clone()
        .filter(|_| failures >= settings.reset_after && !matches!(error, InitError::Session(_)));
    let failures = if reset.is_some() { 0 } else { failures };
    let pause = match error {
        // The device went away or stopped answering: reopen soon (closing the port is what
        // revives some deaf modems).
        InitError::Session(_) | InitError::NoResponse => settings.reopen_max,
        _ => backoff(Duration::from_secs(1), settings.retry_max, failures),
    };
    Retry {
        reset,
        pause,
        failures,
    }
}

/// `min`, doubling per attempt, capped at `max`.
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    min.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::{Retry, backoff, is_permanent, open_hint, plan_retry};
    use crate::at::SessionError;
    use crate::modem::{InitError, ModemSettings};
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

    #[test]
    fn a_failed_start_up_waits_resets_or_stops() {
        let mut settings = ModemSettings::new("/dev/null");
        settings.reset_command = Some("AT+CFUN=1,1".into());
        settings.reset_after = 3;
        let secs = Duration::from_secs;
        let closed = || InitError::Session(SessionError::Closed);
        let other = || InitError::NoSmsc;
        // (error, failures in a row, reset sent, pause, failures after)
        let check = |error: InitError, failures, reset: bool, pause, after| {
            let expected = Retry {
                reset: reset.then(|| "AT+CFUN=1,1".to_string()),
                pause,
                failures: after,
            };
            assert_eq!(
                plan_retry(&error, failures, &settings),
                expected,
                "{error} {failures}"
            );
        };
        check(other(), 1, false, secs(1), 1);
        check(other(), 2, false, secs(2), 2);
        check(other(), 3, true, secs(1), 0);
        check(closed(), 3, false, settings.reopen_max, 3);
        check(InitError::NoResponse, 1, false, settings.reopen_max, 1);
        check(InitError::NoResponse, 4, true, settings.reopen_max, 0);
        let mut no_reset = settings.clone();
        no_reset.reset_command = None;
        assert_eq!(plan_retry(&other(), 6, &no_reset).pause, secs(30));
        assert!(is_permanent(&InitError::PukRequired));
        assert!(is_permanent(&InitError::PinRequired));
        assert!(!is_permanent(&other()));
        assert!(!is_permanent(&closed()));
    }
}
