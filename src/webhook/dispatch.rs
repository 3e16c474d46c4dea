//! The dispatcher: one thread per endpoint (a slow or dead endpoint never delays another;
//! one request in flight per endpoint keeps order while it is healthy), one shared ureq
//! agent, every schedule persisted in the store. This file starts and stops the threads
//! (`worker`), answers the status API, re-enables endpoints and judges the clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::clock::{Clock, ClockGuard, ClockPolicy, ClockVerdict};
use super::formats::{Device, Format};
use super::http;
use super::mail::MailTo;
use super::schedule::DEFAULT_SCHEDULE;
use super::sign::Secret;
use super::template::BodyTemplate;
use super::worker::Worker;
use crate::store::{EndpointHealth, EndpointState, Event, Store, StoreError};

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
    /// How deliveries are rendered (`format = …`).
    pub format: Format,
    /// The raw signing key of a format that signs itself (GatewayAPI, SMSGate).
    pub format_secret: Option<Secret>,
    /// HTTP, or e-mail for a `mailto:` URL.
    pub transport: Transport,
    /// A body template, used instead of `format`.
    pub template: Option<BodyTemplate>,
    /// The body's media type when not the transport's default (JSON for a format over HTTP,
    /// plain text for a template and for e-mail).
    pub content_type: Option<String>,
    /// Extra HTTP headers for every request.
    pub headers: Vec<(String, String)>,
    /// Publish to MQTT instead of POSTing (the `[mqtt]` section's queue).
    pub mqtt: Option<crate::mqtt::MqttTarget>,
}

/// How an endpoint's deliveries travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A POST to the `url`.
    Http,
    /// An e-mail through `[smtp]`.
    Mail(MailTo),
}

impl Transport {
    /// The name `check-config` shows.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Mail(_) => "email",
        }
    }
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
            format: Format::Smsrelay,
            format_secret: None,
            transport: Transport::Http,
            template: None,
            content_type: None,
            headers: Vec::new(),
            mqtt: None,
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
    /// Who is sending: the device identity and receiving number the formats name.
    pub device: Device,
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
            device: Device::default(),
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

impl Dispatcher {
    /// Starts one thread per endpoint.
    pub fn start(
        store: Store,
        endpoints: Vec<EndpointConfig>,
        settings: DispatcherSettings,
        clock: Arc<dyn Clock>,
    ) -> Dispatcher {
        let agent = http::agent(settings.connect_timeout);
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
pub(super) fn judge_clock(guard: &ClockGuard, store: &Store) -> ClockVerdict {
    let verdict = guard.check();
    store.set_clock_suspect(verdict.suspect());
    verdict
}
