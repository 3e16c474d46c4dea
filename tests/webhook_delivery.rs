//! The dispatcher against real HTTP receivers on 127.0.0.1 (port 0), with events written
//! through the store. Schedules spanning hours run on a manual clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smsrelay::store::{
    AttemptRecord, EndpointState, Event, NewEvent, Store, StoreSettings, Subscription,
};
use smsrelay::webhook::{
    Clock, ClockPolicy, ClockVerdict, Dispatcher, DispatcherSettings, EndpointConfig, ManualClock,
    Secret,
};
use tempfile::TempDir;

use crate::support::receiver::{Receiver, ok};

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn store(dir: &TempDir, endpoints: &[(&str, &[&str])]) -> Store {
    let subscriptions = endpoints
        .iter()
        .map(|(name, events)| Subscription {
            endpoint: name.to_string(),
            events: events.iter().map(|e| e.to_string()).collect(),
            ..Subscription::default()
        })
        .collect();
    Store::open(dir.path(), &StoreSettings::default(), subscriptions).expect("opens")
}

fn event(name: &str, n: u64) -> NewEvent {
    NewEvent {
        name: name.into(),
        data: serde_json::json!({ "message_id": format!("m-{n}"), "text": "Grüße 👋" }),
    }
}

fn settings() -> DispatcherSettings {
    DispatcherSettings {
        clock: ClockPolicy {
            check: false,
            ..ClockPolicy::default()
        },
        poll: Duration::from_millis(20),
        ..DispatcherSettings::default()
    }
}

fn endpoint(name: &str, receiver: &Receiver) -> EndpointConfig {
    EndpointConfig {
        secrets: vec![Secret::parse(SECRET).expect("valid")],
        timeout: Duration::from_secs(5),
        ..EndpointConfig::new(name, &receiver.url)
    }
}

fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_delivery_is_signed_and_carries_the_envelope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(ok);
    let written = store
        .record_events(&[event("sms.received", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        clock,
    );
    let got = receiver.wait_for(1).remove(0);
    let event = &written[0];
    assert_eq!(got.header("webhook-id"), Some(event.id.as_str()));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert!(
        got.header("user-agent")
            .is_some_and(|ua| ua.starts_with("smsrelay/"))
    );
    let body = got.json();
    assert_eq!(body["id"], event.id.as_str());
    assert_eq!(body["name"], "sms.received");
    assert_eq!(body["api_version"], "2026-11-22");
    assert_eq!(body["attempt_number"], 1);
    assert_eq!(body["attempts_total"], 10);
    assert_eq!(body["sequence"], 1);
    assert!(
        body["notification_task_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(body["data"]["text"], "Grüße 👋");
    // Verified by an implementation we did not write.
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(
            name,
            got.header(name).expect("present").parse().expect("valid"),
        );
    }
    standardwebhooks::Webhook::new(SECRET)
        .expect("secret")
        .verify(&got.body, &headers)
        .expect("their verifier accepts our signature");
    until("the job is done", || store.queue_depth("crm") == 0);
    dispatcher.stop();
}

#[test]
fn a_500_is_retried_on_the_schedule_with_the_same_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = if index == 0 { 500 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    receiver.wait_for(1);
    until("rescheduled", || {
        store
            .next_job("crm")
            .ok()
            .flatten()
            .is_some_and(|(_, due, _)| due > clock.now_ms())
    });
    let (_, due, job) = store.next_job("crm").expect("reads").expect("still queued");
    // Attempt 2 comes 5 s (plus at most 1 s of jitter) after the first.
    let first = store.attempts("crm", job.event_sequence).expect("reads")[0].at;
    let wait = due.saturating_sub(first);
    assert!((5000..=6000).contains(&wait), "{wait} ms");
    assert_eq!(job.attempts, 1);
    clock.advance(Duration::from_millis(wait));
    let got = receiver.wait_for(2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_ne!(got[0].header("webhook-signature"), None);
    assert_eq!(got[1].json()["attempt_number"], 2);
    until("done", || store.queue_depth("crm") == 0);
    let attempts = store.attempts("crm", job.event_sequence).expect("reads");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, Some(500));
    assert_eq!(attempts[0].error.as_deref(), Some("status"));
    assert_eq!(attempts[1].status, Some(200));
    assert!(attempts[1].at >= due, "no retry before the due time");
    dispatcher.stop();
}

fn first_attempt_error(
    receiver_url: &str,
    timeout: Duration,
    behaviour: Option<Receiver>,
) -> (String, Option<u16>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let written = store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let endpoint = EndpointConfig {
        timeout,
        ..EndpointConfig::new("crm", receiver_url)
    };
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(store.clone(), vec![endpoint], settings(), clock);
    let sequence = written[0].sequence;
    until("an attempt is recorded", || {
        !store.attempts("crm", sequence).expect("reads").is_empty()
    });
    dispatcher.stop();
    drop(behaviour);
    let attempt = store.attempts("crm", sequence).expect("reads").remove(0);
    (
        attempt.error.unwrap_or_default(),
        attempt.status,
        attempt.detail,
    )
}

#[test]
fn a_receiver_slower_than_the_timeout_is_a_timeout() {
    let receiver = Receiver::start(|_| (200, Vec::new(), Duration::from_secs(3)));
    let url = receiver.url.clone();
    let (error, status, _) = first_attempt_error(&url, Duration::from_millis(500), Some(receiver));
    assert_eq!((error.as_str(), status), ("timeout", None));
}

#[test]
fn a_refused_connection_is_a_connect_error() {
    // A port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binds")
        .local_addr()
        .expect("address")
        .port();
    let (error, status, _) = first_attempt_error(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(2),
        None,
    );
    assert_eq!((error.as_str(), status), ("connect", None));
}

#[test]
fn a_redirect_is_not_followed() {
    let target = Receiver::start(ok);
    let location = target.url.clone();
    let receiver =
        Receiver::start(move |_| (302, vec![("Location", location.clone())], Duration::ZERO));
    let url = receiver.url.clone();
    let (error, status, detail) = first_attempt_error(&url, Duration::from_secs(2), Some(receiver));
    assert_eq!((error.as_str(), status), ("redirect", Some(302)));
    assert!(detail.contains(&target.url), "{detail}");
    assert!(target.got().is_empty(), "the redirect was followed");
}

#[test]
fn a_410_disables_the_endpoint_and_holds_events_until_it_is_enabled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = if index == 0 { 410 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        clock,
    );
    receiver.wait_for(1);
    until("disabled", || {
        store.endpoint_health("crm").expect("reads").state == EndpointState::Disabled
    });
    let second = store
        .record_events(&[event("sms.delivered", 2)])
        .expect("written")[0]
        .sequence;
    assert_eq!(store.queue_depth("crm"), 2, "held, not dropped");
    dispatcher.enable("crm").expect("enabled");
    let got = receiver.wait_for(4);
    let names: Vec<Value> = got[1..].iter().map(|r| r.json()["name"].clone()).collect();
    // Sent only after the test that enabling queues: never while disabled.
    assert_eq!(names, ["webhook.test", "sms.sent", "sms.delivered"]);
    until("delivered", || store.queue_depth("crm") == 0);
    let statuses: Vec<Option<u16>> = store
        .attempts("crm", second)
        .expect("reads")
        .iter()
        .map(|attempt| attempt.status)
        .collect();
    assert_eq!(statuses, [Some(200)], "one attempt, after the enable");
    dispatcher.stop();
}

#[test]
fn retry_after_on_429_pushes_the_retry_later() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|_| (429, vec![("Retry-After", "600".into())], Duration::ZERO));
    store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    receiver.wait_for(1);
    until("rescheduled", || {
        store
            .next_job("crm")
            .ok()
            .flatten()
            .is_some_and(|(_, _, job)| job.attempts == 1)
    });
    let (_, due, job) = store.next_job("crm").expect("reads").expect("queued");
    let first = store.attempts("crm", job.event_sequence).expect("reads")[0].at;
    let wait = due.saturating_sub(first);
    assert!(
        (600_000..=660_000).contains(&wait),
        "{wait} ms, not the server's 600 s"
    );
    dispatcher.stop();
}

#[test]
fn a_slow_endpoint_does_not_delay_another_and_order_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("slow", &["sms.*"]), ("fast", &["sms.*"])]);
    // The slow endpoint answers only when the test says so: the fast one must get all of its
    // deliveries while the slow one's first request is still unanswered, however busy the
    // machine is.
    let answer = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let slow = Receiver::start({
        let answer = Arc::clone(&answer);
        move |_| {
            let (released, wake) = &*answer;
            let released = released.lock().expect("not poisoned");
            let _unused = wake
                .wait_timeout_while(released, WAIT * 2, |released| !*released)
                .expect("not poisoned");
            (200, Vec::new(), Duration::ZERO)
        }
    });
    let fast = Receiver::start(ok);
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![
            EndpointConfig {
                timeout: WAIT * 4,
                ..endpoint("slow", &slow)
            },
            endpoint("fast", &fast),
        ],
        settings(),
        clock,
    );
    let started = Instant::now();
    for n in 0..20 {
        store
            .record_events(&[event("sms.sent", n)])
            .expect("written");
    }
    let got = fast.wait_for(20);
    eprintln!(
        "the fast endpoint had all 20 after {:?}, the slow one still at its first",
        got[19].at - started
    );
    // Its thread may not have sent its first request yet on a busy machine; never a second.
    until("the slow endpoint's first request", || {
        slow.got().len() == 1
    });
    assert_eq!(
        slow.got().len(),
        1,
        "the slow endpoint has exactly one request in flight, unanswered"
    );
    let sequences: Vec<u64> = got
        .iter()
        .map(|r| r.json()["sequence"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(sequences, (1..=20).collect::<Vec<_>>(), "in order");
    *answer.0.lock().expect("not poisoned") = true;
    answer.1.notify_all();
    until("the slow endpoint drained", || {
        store.queue_depth("slow") == 0
    });
    dispatcher.stop();
}

#[test]
fn a_restart_mid_backlog_loses_nothing_and_repeats_the_same_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let failing = Receiver::start(|_| (500, Vec::new(), Duration::ZERO));
    let ids: Vec<String> = {
        let store = store(&dir, &[("crm", &["sms.*"])]);
        let written = store
            .record_events(&(0..5).map(|n| event("sms.sent", n)).collect::<Vec<_>>())
            .expect("written");
        let clock = Arc::new(ManualClock::default());
        let dispatcher = Dispatcher::start(
            store.clone(),
            vec![endpoint("crm", &failing)],
            settings(),
            clock,
        );
        failing.wait_for(5);
        dispatcher.stop();
        written.iter().map(|e| e.id.clone()).collect()
    };
    // A new process: the same store, a healthy receiver, and time has passed.
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(ok);
    let clock = Arc::new(ManualClock::ahead(Duration::from_secs(3600)));
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        clock,
    );
    let got = receiver.wait_for(5);
    let mut seen: Vec<String> = got
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(got.iter().all(|r| r.json()["attempt_number"] == 2));
    until("done", || store.queue_depth("crm") == 0);
    dispatcher.stop();
}

#[test]
fn filters_send_each_endpoint_only_what_it_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(
        &dir,
        &[
            ("reports", &["sms.delivered", "sms.failed"]),
            ("all", &["sms.*"]),
        ],
    );
    let reports = Receiver::start(ok);
    let all = Receiver::start(ok);
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("reports", &reports), endpoint("all", &all)],
        settings(),
        clock,
    );
    let mut written = Vec::new();
    for name in ["sms.sent", "sms.delivered", "sms.received", "sms.failed"] {
        written.extend(store.record_events(&[event(name, 1)]).expect("written"));
    }
    all.wait_for(4);
    let got = reports.wait_for(2);
    // Every job queued for `reports` is settled: what it was sent is all it will get.
    until("reports settled", || store.queue_depth("reports") == 0);
    let attempted: Vec<&str> = written
        .iter()
        .filter(|event| {
            !store
                .attempts("reports", event.sequence)
                .expect("reads")
                .is_empty()
        })
        .map(|event| event.name.as_str())
        .collect();
    assert_eq!(attempted, ["sms.delivered", "sms.failed"]);
    let names: Vec<Value> = reports
        .got()
        .iter()
        .map(|r| r.json()["name"].clone())
        .collect();
    assert_eq!(names, ["sms.delivered", "sms.failed"]);
    assert_eq!(got[0].json()["sequence"], 1);
    dispatcher.stop();
}

/// Moves the clock in steps; after each, waits (up to 2 s) for `settle`, then a little more
/// so the dispatcher can act.
fn run_clock(clock: &ManualClock, step: Duration, steps: usize, settle: impl Fn() -> bool) {
    for _ in 0..steps {
        clock.advance(step);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !settle() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Every attempt at these events' delivery to `endpoint`, earliest first.
fn attempts_of(store: &Store, endpoint: &str, events: &[Event]) -> Vec<AttemptRecord> {
    let mut attempts: Vec<AttemptRecord> = events
        .iter()
        .flat_map(|event| store.attempts(endpoint, event.sequence).expect("reads"))
        .collect();
    attempts.sort_by_key(|attempt| attempt.at);
    attempts
}

#[test]
fn out_of_attempts_is_a_dead_letter_that_can_be_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = if index < 3 { 500 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    let written = store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let endpoint = EndpointConfig {
        schedule: vec![
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(10),
        ],
        ..endpoint("crm", &receiver)
    };
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    receiver.wait_for(1);
    clock.advance(Duration::from_secs(12));
    receiver.wait_for(2);
    clock.advance(Duration::from_secs(12));
    until("dead letter", || {
        store.dead_letters().map(|d| d.len()).unwrap_or(0) == 1
    });
    assert_eq!(receiver.got().len(), 3);
    assert_eq!(store.queue_depth("crm"), 0);
    let sequence = written[0].sequence;
    assert!(store.replay_dead_letter("crm", sequence).expect("replays"));
    let got = receiver.wait_for(4);
    assert_eq!(
        got[3].json()["attempt_number"],
        1,
        "a replay starts a fresh schedule"
    );
    until("delivered", || store.queue_depth("crm") == 0);
    assert!(store.dead_letters().expect("reads").is_empty());
    dispatcher.stop();
}

#[test]
fn an_open_circuit_spends_no_attempts_of_waiting_jobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|_| (500, Vec::new(), Duration::ZERO));
    let written = store
        .record_events(&(0..3).map(|n| event("sms.sent", n)).collect::<Vec<_>>())
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    // Three immediate attempts, then two retries after 5 s: five failures in a row.
    receiver.wait_for(3);
    run_clock(&clock, Duration::from_secs(7), 1, || {
        receiver.got().len() >= 5
    });
    until("circuit open", || {
        store.endpoint_health("crm").expect("reads").state == EndpointState::CircuitOpen
    });
    let at_open = attempts_of(&store, "crm", &written).len();
    // An hour passes in 10-minute steps: one probe per step at most, the rest wait.
    run_clock(&clock, Duration::from_secs(600), 6, || true);
    let attempts = attempts_of(&store, "crm", &written);
    let probes = attempts.len() - at_open;
    assert!(probes <= 6, "{probes} requests while the circuit was open");
    // Each probe came a step after the one before (the shortest step open is 5 s).
    for pair in attempts[at_open - 1..].windows(2) {
        let apart = pair[1].at - pair[0].at;
        assert!(apart >= 5000, "two probes {apart} ms apart");
    }
    // Once it answers, the circuit closes and everything goes.
    dispatcher.stop();
    let healthy = Receiver::start(ok);
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &healthy)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    run_clock(&clock, Duration::from_secs(6 * 3600), 1, || true);
    until("all delivered", || store.queue_depth("crm") == 0);
    assert_eq!(
        store.endpoint_health("crm").expect("reads").state,
        EndpointState::Active
    );
    assert_eq!(healthy.got().len(), 3);
    dispatcher.stop();
}

#[test]
fn three_days_of_failures_disable_the_endpoint_and_hold_the_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|_| (500, Vec::new(), Duration::ZERO));
    store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    receiver.wait_for(1);
    // Time moves in 2-hour steps until the endpoint is disabled; the deadline is real time,
    // so a dispatcher slowed down by a busy machine only takes more steps.
    let started = clock.now_ms();
    let deadline = Instant::now() + WAIT;
    loop {
        let health = store.endpoint_health("crm").expect("reads");
        if health.state == EndpointState::Disabled {
            break;
        }
        assert!(Instant::now() < deadline, "not disabled: {health:?}");
        clock.advance(Duration::from_secs(2 * 3600));
        std::thread::sleep(Duration::from_millis(30));
    }
    let failing_for = Duration::from_millis(clock.now_ms() - started);
    assert!(
        failing_for >= Duration::from_secs(72 * 3600),
        "disabled after only {failing_for:?} of failures"
    );
    assert!(
        store.dead_letters().expect("reads").is_empty(),
        "held, not dead"
    );
    assert_eq!(store.queue_depth("crm"), 1);
    dispatcher.stop();
}

fn clock_checked() -> DispatcherSettings {
    DispatcherSettings {
        clock: ClockPolicy {
            wait: Duration::from_secs(300),
            ..ClockPolicy::default()
        },
        ..settings()
    }
}

fn held(dispatcher: &Dispatcher) -> bool {
    dispatcher
        .status()
        .map(|status| status[0].held_for_clock)
        .unwrap_or(false)
}

/// One event queued for `crm`, a clock not synchronised one minute after boot, and the
/// dispatcher holding the delivery for it.
struct HeldForTheClock {
    _dir: TempDir,
    store: Store,
    receiver: Receiver,
    clock: Arc<ManualClock>,
    dispatcher: Dispatcher,
}

impl HeldForTheClock {
    fn start() -> HeldForTheClock {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(&dir, &[("crm", &["sms.*"])]);
        let receiver = Receiver::start(ok);
        store
            .record_events(&[event("sms.sent", 1)])
            .expect("written");
        let clock = Arc::new(ManualClock::default());
        clock.set_synchronised(false);
        clock.set_uptime(Duration::from_secs(60));
        let dispatcher = Dispatcher::start(
            store.clone(),
            vec![endpoint("crm", &receiver)],
            clock_checked(),
            Arc::clone(&clock) as Arc<_>,
        );
        until("held", || held(&dispatcher));
        HeldForTheClock {
            _dir: dir,
            store,
            receiver,
            clock,
            dispatcher,
        }
    }
}

#[test]
fn deliveries_wait_for_a_synchronised_clock_while_the_boot_is_young() {
    let held = HeldForTheClock::start();
    assert!(matches!(
        held.dispatcher.clock_status(),
        ClockVerdict::Waiting { .. }
    ));
    // Held, not tried: no attempt is recorded while the clock is waited for.
    assert_eq!(held.store.queue_depth("crm"), 1);
    assert!(held.store.attempts("crm", 1).expect("reads").is_empty());
    held.clock.set_synchronised(true);
    held.receiver.wait_for(1);
}

#[test]
fn a_clock_that_never_synchronises_delivers_after_the_wait() {
    let held = HeldForTheClock::start();
    // Five minutes after boot NTP has had its chance: the clock is used as it is.
    held.clock.set_uptime(Duration::from_secs(301));
    held.receiver.wait_for(1);
    assert_eq!(held.dispatcher.clock_status(), ClockVerdict::Unsynchronised);
}

#[test]
fn a_clock_in_1970_holds_deliveries_and_marks_new_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(ok);
    // A Pi without a real-time clock boots on the epoch; the boot is long over.
    let clock = Arc::new(ManualClock::at(3_600_000));
    clock.set_synchronised(false);
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        clock_checked(),
        Arc::clone(&clock) as Arc<_>,
    );
    assert!(matches!(
        dispatcher.check_clock(),
        ClockVerdict::Implausible { .. }
    ));
    let written = store
        .record_events(&[event("sms.received", 1)])
        .expect("written");
    assert!(
        written[0].clock_suspect,
        "an event stamped in 1970 is marked"
    );
    until("held", || held(&dispatcher));
    assert_eq!(store.queue_depth("crm"), 1);
    assert!(store.attempts("crm", 1).expect("reads").is_empty());
    // NTP sets the clock: the held event goes out, still marked.
    clock.set_now(smsrelay::store::now_ms());
    clock.set_synchronised(true);
    let got = receiver.wait_for(1);
    assert_eq!(got[0].json()["clock_suspect"], true);
    dispatcher.stop();
}

#[test]
fn held_events_are_replayed_in_event_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = if index == 0 { 410 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    // Both queued before the 410 re-keys the first to a later time.
    store
        .record_events(&[event("sms.sent", 1), event("sms.delivered", 2)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        clock,
    );
    until("disabled", || {
        store.endpoint_health("crm").expect("reads").state == EndpointState::Disabled
    });
    dispatcher.enable("crm").expect("enabled");
    let got = receiver.wait_for(4);
    let names: Vec<Value> = got[1..].iter().map(|r| r.json()["name"].clone()).collect();
    assert_eq!(names, ["webhook.test", "sms.sent", "sms.delivered"]);
    dispatcher.stop();
}

#[test]
fn retry_after_pauses_the_whole_endpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|_| (429, vec![("Retry-After", "600".into())], Duration::ZERO));
    let written = store
        .record_events(&(0..6).map(|n| event("sms.sent", n)).collect::<Vec<_>>())
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    receiver.wait_for(1);
    until("paused", || {
        store
            .endpoint_health("crm")
            .expect("reads")
            .circuit_until
            .is_some()
    });
    // Time passes well inside the 600 s the server asked for, then beyond it.
    run_clock(&clock, Duration::from_secs(60), 5, || true);
    clock.advance(Duration::from_secs(400));
    until("the request after Retry-After", || receiver.got().len() > 1);
    dispatcher.stop();
    // Whichever job went next, it went only after the 600 s.
    let attempts = attempts_of(&store, "crm", &written);
    let apart = attempts[1].at - attempts[0].at;
    assert!(apart >= 600_000, "a request {apart} ms after the 429");
}

#[test]
fn a_replayed_dead_letter_keeps_its_attempt_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = if index < 2 { 500 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    let written = store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let endpoint = EndpointConfig {
        schedule: vec![Duration::ZERO, Duration::from_secs(10)],
        ..endpoint("crm", &receiver)
    };
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    receiver.wait_for(1);
    clock.advance(Duration::from_secs(12));
    until("dead letter", || {
        store.dead_letters().map(|d| d.len()).unwrap_or(0) == 1
    });
    let sequence = written[0].sequence;
    assert!(store.replay_dead_letter("crm", sequence).expect("replays"));
    receiver.wait_for(3);
    until("delivered", || store.queue_depth("crm") == 0);
    dispatcher.stop();
    let statuses: Vec<Option<u16>> = store
        .attempts("crm", sequence)
        .expect("reads")
        .iter()
        .map(|a| a.status)
        .collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
}

#[test]
fn held_events_stay_held_when_the_test_after_enabling_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = match index {
            0 => 410,
            1 | 4 => 500,
            _ => 200,
        };
        (status, Vec::new(), Duration::ZERO)
    });
    store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        clock,
    );
    until("disabled", || {
        store.endpoint_health("crm").expect("reads").state == EndpointState::Disabled
    });
    dispatcher.enable("crm").expect("enabled");
    receiver.wait_for(2);
    until("disabled again", || {
        store.endpoint_health("crm").expect("reads").state == EndpointState::Disabled
    });
    assert_eq!(store.queue_depth("crm"), 1, "still held");
    // A second enable, now answered: the test, then the held event.
    dispatcher.enable("crm").expect("enabled");
    let got = receiver.wait_for(4);
    let names: Vec<Value> = got.iter().map(|r| r.json()["name"].clone()).collect();
    assert_eq!(
        names,
        ["sms.sent", "webhook.test", "webhook.test", "sms.sent"]
    );
    // The failed test is a dead letter; replayed by hand on a working endpoint it is an
    // ordinary delivery, and its failure does not disable the endpoint again.
    until("delivered", || store.queue_depth("crm") == 0);
    let dead = store.dead_letters().expect("reads");
    assert_eq!(dead.len(), 1);
    assert!(
        store
            .replay_dead_letter("crm", dead[0].event_sequence)
            .expect("replays")
    );
    receiver.wait_for(5);
    until("attempt recorded", || {
        store
            .endpoint_health("crm")
            .expect("reads")
            .consecutive_failures
            == 1
    });
    assert_eq!(
        store.endpoint_health("crm").expect("reads").state,
        EndpointState::Active
    );
    dispatcher.stop();
}

#[test]
fn a_failed_test_on_an_active_endpoint_leaves_it_active() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = if index == 0 { 500 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    // What `POST /v1/webhooks/crm/test` does.
    store.enqueue_test_event("crm", false).expect("queued");
    receiver.wait_for(1);
    until("attempt recorded", || {
        store
            .endpoint_health("crm")
            .expect("reads")
            .consecutive_failures
            == 1
    });
    assert_eq!(
        store.endpoint_health("crm").expect("reads").state,
        EndpointState::Active
    );
    // Events keep flowing, and the test is retried on the schedule like any delivery.
    store
        .record_events(&[event("sms.sent", 1)])
        .expect("written");
    clock.advance(Duration::from_secs(60));
    let got = receiver.wait_for(3);
    let names: Vec<Value> = got.iter().map(|r| r.json()["name"].clone()).collect();
    assert_eq!(names, ["webhook.test", "sms.sent", "webhook.test"]);
    until("test delivered", || store.queue_depth("crm") == 0);
    assert_eq!(
        store.endpoint_health("crm").expect("reads").state,
        EndpointState::Active
    );
    dispatcher.stop();
}

#[test]
fn redelivering_a_held_event_neither_loses_nor_doubles_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("crm", &["sms.*"])]);
    let receiver = Receiver::start(|index| {
        let status = if index == 0 { 410 } else { 200 };
        (status, Vec::new(), Duration::ZERO)
    });
    let written = store
        .record_events(&[event("sms.sent", 1), event("sms.delivered", 2)])
        .expect("written");
    let clock = Arc::new(ManualClock::default());
    let dispatcher = Dispatcher::start(
        store.clone(),
        vec![endpoint("crm", &receiver)],
        settings(),
        Arc::clone(&clock) as Arc<_>,
    );
    until("disabled", || {
        store.endpoint_health("crm").expect("reads").state == EndpointState::Disabled
    });
    // Held events are already queued: a redelivery keeps their one job each.
    let endpoints = store.redeliver(written[0].sequence).expect("redelivers");
    assert_eq!(endpoints, Some(vec!["crm".to_string()]));
    assert_eq!(store.queue_depth("crm"), 2);
    dispatcher.enable("crm").expect("enabled");
    let got = receiver.wait_for(4);
    until("delivered", || store.queue_depth("crm") == 0);
    let delivered: Vec<(Value, Value)> = got[1..]
        .iter()
        .map(|r| (r.json()["name"].clone(), r.json()["sequence"].clone()))
        .collect();
    assert_eq!(
        delivered,
        [
            (json!("webhook.test"), json!(3)),
            (json!("sms.sent"), json!(1)),
            (json!("sms.delivered"), json!(2)),
        ]
    );
    // Once delivered, a redelivery is a new delivery with the next number.
    store.redeliver(written[0].sequence).expect("redelivers");
    clock.advance(Duration::from_secs(1));
    let again = receiver.wait_for(5).remove(4).json();
    assert_eq!(
        (again["name"].clone(), again["sequence"].clone()),
        (json!("sms.sent"), json!(4))
    );
    assert_eq!(again["id"], written[0].id);
    dispatcher.stop();
}

#[test]
fn dropping_the_dispatcher_stops_its_threads() {
    let threads = |name: &str| {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter(|task| {
                        std::fs::read_to_string(task.path().join("comm"))
                            .is_ok_and(|comm| comm.trim() == name)
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir, &[("leakcheck", &["sms.*"])]);
    let receiver = Receiver::start(ok);
    let dispatcher = Dispatcher::start(
        store,
        vec![endpoint("leakcheck", &receiver)],
        settings(),
        Arc::new(ManualClock::default()),
    );
    // The thread names itself once it runs; names are cut at 15 bytes.
    until("the thread runs", || threads("webhook-leakche") == 1);
    drop(dispatcher);
    assert_eq!(threads("webhook-leakche"), 0);
}
