//! The dispatcher: one thread per endpoint (a slow or dead endpoint never delays another;
//! one request in flight per endpoint keeps order while it is healthy), one shared ureq
//! agent, every schedule persisted in the store.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};
use serde_json::json;

use super::clock::{Clock, ClockGuard, ClockPolicy, ClockVerdict};
use super::schedule::{DEFAULT_SCHEDULE, delay_before, honour_retry_after, parse_retry_after};
use super::sign::{Secret, signature_header};
use crate::store::{
    AttemptRecord, EndpointHealth, EndpointState, Event, Job, JobOutcome, Store, StoreError,
};

/// One `[[webhook]]` endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Its name (the store's job queue and the API use it).
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Signing secrets, newest first (two during a rotation); none sends unsigned.
    pub secrets: Vec<Secret>,
    /// The whole request's deadline.
    pub timeout: Duration,
    /// The pause before each attempt; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    /// A disabled endpoint holds its events.
    pub enabled: bool,
}

impl EndpointConfig {
    /// An endpoint with the default timeout and schedule.
    pub fn new(name: &str, url: &str) -> EndpointConfig {
        EndpointConfig {
            name: name.into(),
            url: url.into(),
            secrets: Vec::new(),
            timeout: Duration::from_secs(15),
            schedule: DEFAULT_SCHEDULE.to_vec(),
            enabled: true,
        }
    }
}

/// Dispatcher-wide settings.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// When the clock is good enough to deliver (see [`super::clock`]).
    pub clock: ClockPolicy,
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// The most of a response body read (the first 2 KB are kept).
    pub max_response: u64,
    /// Failures in a row that open the circuit.
    pub circuit_after: u32,
    /// An endpoint failing with no success for this long (and over at least
    /// `disable_span`) is disabled.
    pub disable_after: Duration,
    /// See `disable_after`.
    pub disable_span: Duration,
    /// The longest a thread sleeps before looking again (a manual clock moves without
    /// waking anyone).
    pub poll: Duration,
}

impl Default for DispatcherSettings {
    fn default() -> DispatcherSettings {
        DispatcherSettings {
            clock: ClockPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            max_response: 64 * 1024,
            circuit_after: 5,
            disable_after: Duration::from_secs(72 * 3600),
            disable_span: Duration::from_secs(12 * 3600),
            poll: Duration::from_secs(1),
        }
    }
}

/// What an endpoint thread is doing, for the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint.
    pub name: String,
    /// Its health.
    pub health: EndpointHealth,
    /// Jobs waiting.
    pub queue_depth: usize,
    /// Deliveries that ran out of attempts, waiting to be replayed by hand.
    pub dead_letters: usize,
    /// Whether deliveries are held for the clock.
    pub held_for_clock: bool,
}

/// The running dispatcher.
pub struct Dispatcher {
    stop: Arc<AtomicBool>,
    store: Store,
    endpoints: Vec<EndpointConfig>,
    clock: Arc<ClockGuard>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

/// Why a request failed before a status came back, as a class users can act on.
fn classify(error: &ureq::Error) -> &'static str {
    match error {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::HostNotFound => "dns",
        ureq::Error::ConnectionFailed => "connect",
        ureq::Error::Tls(_) => "tls",
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => "redirect",
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout",
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset => {
                "connect"
            }
            _ => "io",
        },
        _ => "protocol",
    }
}

struct Attempt {
    status: Option<u16>,
    error: Option<&'static str>,
    detail: String,
    response: String,
    retry_after: Option<Duration>,
}

impl Dispatcher {
    /// Starts one thread per endpoint.
    pub fn start(
        store: Store,
        endpoints: Vec<EndpointConfig>,
        settings: DispatcherSettings,
        clock: Arc<dyn Clock>,
    ) -> Dispatcher {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(settings.connect_timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .user_agent(concat!("smsrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let stop = Arc::new(AtomicBool::new(false));
        let floor = store.clock_floor().unwrap_or_else(|error| {
            warn!("webhooks: cannot read the newest recorded time ({error}); not checked");
            0
        });
        let clock = Arc::new(ClockGuard::new(clock, settings.clock, floor));
        judge_clock(&clock, &store);
        let threads = endpoints
            .iter()
            .cloned()
            .map(|endpoint| {
                let worker = Worker {
                    store: store.clone(),
                    agent: agent.clone(),
                    endpoint,
                    settings: settings.clone(),
                    clock: Arc::clone(&clock),
                    stop: Arc::clone(&stop),
                };
                std::thread::Builder::new()
                    .name(format!("webhook-{}", worker.endpoint.name))
                    .spawn(move || worker.run())
                    .unwrap_or_else(|error| panic!("cannot start a webhook thread: {error}"))
            })
            .collect();
        Dispatcher {
            stop,
            store,
            endpoints,
            clock,
            threads: std::sync::Mutex::new(threads),
        }
    }

    /// Each endpoint's state.
    pub fn status(&self) -> Result<Vec<EndpointStatus>, StoreError> {
        self.endpoints
            .iter()
            .map(|endpoint| {
                Ok(EndpointStatus {
                    name: endpoint.name.clone(),
                    health: self.store.endpoint_health(&endpoint.name)?,
                    queue_depth: self.store.queue_depth(&endpoint.name),
                    dead_letters: self.store.dead_letter_count(&endpoint.name),
                    held_for_clock: self.clock.last().holds(),
                })
            })
            .collect()
    }

    /// Judges the clock now (deliveries, the status, and the marking of new events follow
    /// it). The daemon calls this every second, so events are marked even with no endpoint.
    pub fn check_clock(&self) -> ClockVerdict {
        judge_clock(&self.clock, &self.store)
    }

    /// The clock's verdict as last judged.
    pub fn clock_status(&self) -> ClockVerdict {
        self.clock.last()
    }

    /// Raises the newest trusted time and stores it (blocking: a store write), so a clock
    /// that goes backwards across a reboot is noticed.
    pub fn record_clock_floor(&self) -> Result<(), StoreError> {
        match self.clock.advance_floor() {
            Some(floor) => self.store.raise_clock_floor(floor),
            None => Ok(()),
        }
    }

    /// Re-enables an endpoint: a `webhook.test` goes first, then what it held, in order.
    pub fn enable(&self, name: &str) -> Result<Event, StoreError> {
        // Queue first, open last: the worker must find the test event ahead of the held ones
        // the moment it sees the endpoint active.
        let event = self.store.enqueue_test_event(name, true)?;
        self.store.release_held(name, 1)?;
        let mut health = self.store.endpoint_health(name)?;
        health.state = EndpointState::Active;
        health.consecutive_failures = 0;
        health.first_failure_at = None;
        health.circuit_until = None;
        health.disabled_reason = None;
        self.store.set_endpoint_health(name, &health)?;
        info!("webhook {name}: enabled; sending a test event, then what was held");
        Ok(event)
    }

    /// Stops the threads after their request in flight (dropping does the same).
    pub fn stop(self) {}

    /// Tells the threads to start no new request, without waiting for the ones in flight.
    pub fn begin_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops the threads and waits up to `budget` for them; false if some were still in a
    /// request. That request dies with the process and its job stays due, so the next start
    /// sends it again with the same `webhook-id`: a shutdown never waits out an endpoint's
    /// timeout (up to 60 s) while systemd's stop timeout runs.
    pub fn stop_within(&self, budget: Duration) -> bool {
        self.begin_stop();
        let deadline = Instant::now() + budget;
        let mut threads = self
            .threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while threads.iter().any(|thread| !thread.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let all_stopped = threads.iter().all(JoinHandle::is_finished);
        for thread in threads.drain(..) {
            // An unfinished thread is left to the process's exit.
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        all_stopped
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.begin_stop();
        let threads = self
            .threads
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for thread in threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Judges the clock and tells the store whether the times it stamps now are suspect.
fn judge_clock(guard: &ClockGuard, store: &Store) -> ClockVerdict {
    let verdict = guard.check();
    store.set_clock_suspect(verdict.suspect());
    verdict
}

struct Worker {
    store: Store,
    agent: ureq::Agent,
    endpoint: EndpointConfig,
    settings: DispatcherSettings,
    clock: Arc<ClockGuard>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) {
        let name = self.endpoint.name.clone();
        while !self.stop.load(Ordering::SeqCst) {
            let seen = self.store.jobs_counter();
            match self.step() {
                Ok(Some(wait)) => self.store.wait_for_jobs(seen, wait.min(self.settings.poll)),
                Ok(None) => {}
                Err(error) => {
                    // A failing database is logged by the store, once a minute.
                    if !error.is_storage_failure() {
                        error!("webhook {name}: {error}");
                    }
                    self.store.wait_for_jobs(seen, self.settings.poll);
                }
            }
        }
    }

    /// Delivers the next due job, or says how long to wait.
    fn step(&self) -> Result<Option<Duration>, StoreError> {
        let name = &self.endpoint.name;
        if !self.endpoint.enabled {
            return Ok(Some(self.settings.poll));
        }
        // The guard logs each change of verdict once; held jobs keep their order.
        if judge_clock(&self.clock, &self.store).holds() {
            return Ok(Some(self.settings.poll));
        }
        let health = self.store.endpoint_health(name)?;
        if health.state == EndpointState::Disabled {
            return Ok(Some(self.settings.poll));
        }
        let now = self.clock.clock().now_ms();
        if let Some(until) = health.circuit_until.filter(|until| *until > now) {
            return Ok(Some(Duration::from_millis(until - now)));
        }
        let Some((key, due, job)) = self.store.next_job(name)? else {
            return Ok(Some(self.settings.poll));
        };
        if due > now {
            return Ok(Some(Duration::from_millis(due - now)));
        }
        let Some(event) = self.store.event(job.event_sequence)? else {
            // Pruned, or written by a bug: nothing to send; keep the record of it.
            warn!(
                "webhook {name}: event {} is gone; job moved to the dead letters",
                job.event_sequence
            );
            let record = self.record(
                &job,
                now,
                Duration::ZERO,
                &Attempt {
                    status: None,
                    error: Some("missing_event"),
                    detail: "the event is no longer stored".into(),
                    response: String::new(),
                    retry_after: None,
                },
            );
            self.store
                .settle_job(&key, &job, &record, &health, JobOutcome::DeadLetter)?;
            return Ok(None);
        };
        // Writers flush right after their commit, and this thread can see a job in between: a
        // flush first means no receiver hears of an event that a crash could still take back.
        self.store.flush()?;
        self.deliver(key, job, event, health, now)?;
        Ok(None)
    }

    fn body(&self, event: &Event, job: &Job, attempt: u32) -> Vec<u8> {
        let mut body = json!({
            "id": event.id,
            "name": event.name,
            "api_version": event.api_version,
            "created_at": event.created_at,
            "attempt_number": attempt,
            "attempts_total": self.endpoint.schedule.len(),
            "notification_task_id": job.task_id,
            "sequence": job.sequence,
            "data": event.data,
        });
        if event.clock_suspect {
            // Only when true: receivers that never meet a wrong clock see the same envelope.
            body["clock_suspect"] = json!(true);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn post(&self, event: &Event, body: &[u8]) -> Attempt {
        let timestamp = (self.clock.clock().now_ms() / 1000) as i64;
        let mut request = self
            .agent
            .post(&self.endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string());
        if !self.endpoint.secrets.is_empty() {
            let signature = signature_header(&self.endpoint.secrets, &event.id, timestamp, body);
            request = request.header("webhook-signature", signature);
        }
        let response = request
            .config()
            .timeout_global(Some(self.endpoint.timeout))
            .build()
            .send(body);
        match response {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_string)
                };
                let retry_after = header("retry-after")
                    .and_then(|value| parse_retry_after(&value, SystemTime::now()));
                let location = header("location");
                let mut bytes = Vec::new();
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(self.settings.max_response)
                    .read_to_end(&mut bytes);
                bytes.truncate(2048);
                // Keep at most 2 KB of text: invalid bytes would triple in size as U+FFFD.
                let mut text = String::from_utf8_lossy(&bytes).into_owned();
                while text.len() > 2048 {
                    text.pop();
                }
                let (error, detail) = match status {
                    200..=299 => (None, String::new()),
                    300..=399 => (
                        Some("redirect"),
                        format!("not followed: Location {}", location.unwrap_or_default()),
                    ),
                    _ => (Some("status"), format!("HTTP {status}")),
                };
                Attempt {
                    status: Some(status),
                    error,
                    detail,
                    response: text,
                    retry_after,
                }
            }
            Err(error) => Attempt {
                status: None,
                error: Some(classify(&error)),
                detail: error.to_string(),
                response: String::new(),
                retry_after: None,
            },
        }
    }

    fn record(&self, job: &Job, at: u64, took: Duration, attempt: &Attempt) -> AttemptRecord {
        AttemptRecord {
            endpoint: job.endpoint.clone(),
            event_sequence: job.event_sequence,
            attempt: job.attempts + 1,
            at,
            duration_ms: took.as_millis() as u64,
            status: attempt.status,
            error: attempt.error.map(str::to_string),
            detail: attempt.detail.clone(),
            response: attempt.response.clone(),
        }
    }

    fn deliver(
        &self,
        key: Vec<u8>,
        mut job: Job,
        event: Event,
        mut health: EndpointHealth,
        now: u64,
    ) -> Result<(), StoreError> {
        let name = &self.endpoint.name;
        let number = job.attempts + 1;
        let body = self.body(&event, &job, number);
        let started = Instant::now();
        let attempt = self.post(&event, &body);
        let took = started.elapsed();
        let record = self.record(&job, now, took, &attempt);
        job.attempts = number;
        if attempt.error.is_none() {
            debug!(
                "webhook {name}: {} #{} delivered ({took:?})",
                event.name, event.sequence
            );
            if health.state != EndpointState::Active {
                info!("webhook {name}: delivering again; circuit closed");
            }
            health = EndpointHealth {
                last_success_at: Some(now),
                ..EndpointHealth::default()
            };
            return self
                .store
                .settle_job(&key, &job, &record, &health, JobOutcome::Delivered);
        }
        let what = match attempt.status {
            Some(status) => format!("HTTP {status}"),
            None => format!("{} ({})", attempt.error.unwrap_or("error"), attempt.detail),
        };
        warn!(
            "webhook {name}: {} #{} attempt {number} failed: {what}",
            event.name, event.sequence
        );
        // Only transport errors, 5xx and 429 say the endpoint is unwell (a 4xx is about one
        // request): they alone count towards the circuit.
        if attempt
            .status
            .is_none_or(|status| status >= 500 || status == 429)
        {
            health.consecutive_failures += 1;
        }
        let first = *health.first_failure_at.get_or_insert(now);
        health.last_error = Some(what.clone());
        // Before `enable_probe` existed, an enable's test was the only job with sequence 0
        // (numbers start at 1): one queued by the previous version still counts.
        let legacy_probe = event.name == "webhook.test" && job.sequence == 0;
        if job.enable_probe || legacy_probe {
            // The test after an enable failed: what is held stays held.
            health.state = EndpointState::Disabled;
            health.disabled_reason = Some(format!("the test event after enabling failed: {what}"));
            warn!("webhook {name}: the test event failed; still disabled, events held");
            return self
                .store
                .settle_job(&key, &job, &record, &health, JobOutcome::DeadLetter);
        }
        let failing_for = Duration::from_millis(now.saturating_sub(first));
        let disabled_because = if attempt.status == Some(410) {
            Some("the endpoint answered 410 Gone".to_string())
        } else if failing_for >= self.settings.disable_after
            && failing_for >= self.settings.disable_span
        {
            Some(format!("no success for {} h", failing_for.as_secs() / 3600))
        } else {
            None
        };
        if let Some(reason) = disabled_because {
            warn!("webhook {name}: disabled ({reason}); events are held until it is re-enabled");
            health.state = EndpointState::Disabled;
            health.disabled_reason = Some(reason);
            // The job stays, due now: it is held, not spent.
            return self.store.settle_job(
                &key,
                &job,
                &record,
                &health,
                JobOutcome::Retry { due: now },
            );
        }
        let unit = (now % 1000) as f64 / 1000.0;
        let Some(mut delay) = delay_before(number + 1, &self.endpoint.schedule, unit) else {
            warn!(
                "webhook {name}: {} #{} is out of attempts; dead letter",
                event.name, event.sequence
            );
            return self
                .store
                .settle_job(&key, &job, &record, &health, JobOutcome::DeadLetter);
        };
        let throttled = matches!(attempt.status, Some(429 | 502 | 503 | 504))
            || attempt.error == Some("timeout");
        if matches!(attempt.status, Some(429 | 503)) {
            delay = honour_retry_after(delay, attempt.retry_after);
        }
        if throttled {
            delay = delay.max(Duration::from_secs(60));
        }
        if health.consecutive_failures >= self.settings.circuit_after {
            // Waiting jobs burn no attempts while open: only this one probes, per step.
            let step = health.consecutive_failures - self.settings.circuit_after + 2;
            let pause = delay_before(
                step.min(self.endpoint.schedule.len() as u32),
                &self.endpoint.schedule,
                unit,
            )
            .unwrap_or(delay);
            if health.state != EndpointState::CircuitOpen {
                warn!(
                    "webhook {name}: {} failures in a row; circuit open",
                    health.consecutive_failures
                );
            }
            health.state = EndpointState::CircuitOpen;
            health.circuit_until = Some(now + pause.as_millis() as u64);
            delay = delay.max(pause);
        }
        let due = now.saturating_add(delay.as_millis() as u64);
        if throttled {
            // The server asked for room (429/503 Retry-After, 502/504, a timeout): the whole
            // endpoint waits, not just this job.
            health.circuit_until = Some(health.circuit_until.unwrap_or(0).max(due));
        }
        self.store
            .settle_job(&key, &job, &record, &health, JobOutcome::Retry { due })
    }
}
