//! What one delivery attempt means for its job and its endpoint: done, retried, held or a
//! dead letter, and the endpoint's health after it (circuit, disable). Pure: the outcome of
//! the attempt, the job, the health and the time go in; [`Settlement`] comes out, and the
//! worker stores it. The HTTP call lives in `http`, the loop around it in `worker`.

use std::time::Duration;

use super::schedule::{delay_before, honour_retry_after};
use crate::store::{AttemptRecord, EndpointHealth, EndpointState, Job, JobOutcome};

/// Why an attempt failed, as a class users can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// No answer within the endpoint's timeout.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The connection was refused or reset.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// A redirect, never followed: a 3xx answer (with its `Location`), or one the transport
    /// refused (no status, empty location).
    Redirect {
        /// The 3xx status, when the answer came.
        status: Option<u16>,
        /// Where it pointed.
        location: String,
    },
    /// An answer other than 2xx or 3xx.
    Status(u16),
    /// Another I/O error.
    Io,
    /// Anything else the transport reported (bad answer, bad URL…).
    Protocol,
    /// The event is no longer stored: nothing to send.
    MissingEvent,
    /// The SMTP server refused the e-mail for good (a 5xx reply): not retried.
    MailRejected(u16),
    /// The SMTP server asked to try later (a 4xx reply).
    MailDeferred(u16),
    /// The endpoint's template (or content type) cannot make a body for this event: not
    /// retried, as every attempt would fail the same way.
    Template,
}

impl AttemptError {
    /// The class as stored in [`AttemptRecord::error`] (the strings are part of the store
    /// and of the API, so they never change).
    pub fn class(&self) -> &'static str {
        match self {
            AttemptError::Timeout => "timeout",
            AttemptError::Dns => "dns",
            AttemptError::Connect => "connect",
            AttemptError::Tls => "tls",
            AttemptError::Redirect { .. } => "redirect",
            AttemptError::Status(_) => "status",
            AttemptError::Io => "io",
            AttemptError::Protocol => "protocol",
            AttemptError::MissingEvent => "missing_event",
            AttemptError::MailRejected(_) => "mail_rejected",
            AttemptError::MailDeferred(_) => "mail_deferred",
            AttemptError::Template => "template",
        }
    }

    /// Whether another attempt would fail the same way: a dead letter at once.
    pub fn is_permanent(&self) -> bool {
        matches!(self, AttemptError::MailRejected(_) | AttemptError::Template)
    }

    /// The HTTP status, when one came back.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptError::Redirect { status, .. } => *status,
            AttemptError::Status(status) => Some(*status),
            _ => None,
        }
    }
}

/// What one attempt came to, as the HTTP side saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// `Ok(status)` when a 2xx came back, else why not.
    pub result: Result<u16, AttemptError>,
    /// Words for the record: the transport's error text, `HTTP 500`, the redirect's target.
    pub detail: String,
    /// The first 2 KB of the answer's body.
    pub response: String,
    /// The server's `Retry-After`, as a pause.
    pub retry_after: Option<Duration>,
}

impl AttemptOutcome {
    /// A failure with no answer (transport error, missing event).
    pub fn failed(error: AttemptError, detail: impl Into<String>) -> AttemptOutcome {
        AttemptOutcome {
            result: Err(error),
            detail: detail.into(),
            response: String::new(),
            retry_after: None,
        }
    }

    /// The HTTP status (or SMTP reply code), when one came back; none for an MQTT PUBACK,
    /// which carries no status (its outcome is `Ok(0)`).
    pub fn status(&self) -> Option<u16> {
        match &self.result {
            Ok(0) => None,
            Ok(status) => Some(*status),
            Err(error) => error.status(),
        }
    }

    /// The failure in a few words (`HTTP 503`, `timeout (…)`), for the health and the log.
    pub fn summary(&self) -> String {
        match (&self.result, self.status()) {
            (_, Some(status)) => format!("HTTP {status}"),
            (Err(error), None) => format!("{} ({})", error.class(), self.detail),
            (Ok(_), None) => String::new(),
        }
    }

    /// The attempt as recorded: `job` as it was before it, started at `at`, lasting `took`.
    pub fn record(&self, job: &Job, at: u64, took: Duration) -> AttemptRecord {
        AttemptRecord {
            endpoint: job.endpoint.clone(),
            event_sequence: job.event_sequence,
            attempt: job.attempts + 1,
            at,
            duration_ms: took.as_millis() as u64,
            status: self.status(),
            error: self
                .result
                .as_ref()
                .err()
                .map(|error| error.class().to_string()),
            detail: self.detail.clone(),
            response: self.response.clone(),
        }
    }
}

/// An endpoint's delivery rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPolicy<'a> {
    /// The pause before each attempt; its length is the number of attempts.
    pub schedule: &'a [Duration],
    /// Failures in a row that open the circuit.
    pub circuit_after: u32,
    /// No success for this long (and over at least `disable_span`) disables the endpoint.
    pub disable_after: Duration,
    /// See `disable_after`.
    pub disable_span: Duration,
}

/// Something the worker logs about a settlement, beyond the attempt's own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Delivered while the endpoint was not active: the circuit is closed.
    Recovered,
    /// The test after an enable failed: the endpoint stays disabled.
    ProbeFailed,
    /// The endpoint is disabled, for this reason.
    Disabled(String),
    /// The job is out of attempts: a dead letter.
    OutOfAttempts,
    /// This many failures in a row opened the circuit.
    CircuitOpened(u32),
    /// The event is gone: the job is a dead letter.
    EventMissing,
    /// The failure is permanent (an SMTP 5xx, a template error): a dead letter at once.
    Permanent,
}

/// What to store after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The job as it is stored (its attempt counted).
    pub job: Job,
    /// Done, retried at a time, or a dead letter.
    pub outcome: JobOutcome,
    /// The endpoint's health after the attempt.
    pub health: EndpointHealth,
    /// What to log, if anything beyond the attempt.
    pub notice: Option<Notice>,
}

/// Settles `job` (of event `event_name`) after an attempt made at `now` (Unix ms) on an
/// endpoint in `health`.
pub fn settle(
    outcome: &AttemptOutcome,
    job: &Job,
    event_name: &str,
    health: EndpointHealth,
    policy: &EndpointPolicy<'_>,
    now: u64,
) -> Settlement {
    match &outcome.result {
        Err(AttemptError::MissingEvent) => Settlement {
            // Nothing was sent: no attempt is spent and the endpoint's health is not its fault.
            job: job.clone(),
            outcome: JobOutcome::DeadLetter,
            health,
            notice: Some(Notice::EventMissing),
        },
        Ok(_) => Settlement {
            job: counted(job),
            outcome: JobOutcome::Delivered,
            notice: (health.state != EndpointState::Active).then_some(Notice::Recovered),
            health: EndpointHealth {
                last_success_at: Some(now),
                ..EndpointHealth::default()
            },
        },
        Err(_) => settle_failure(outcome, counted(job), event_name, health, policy, now),
    }
}

/// The job with this attempt counted.
fn counted(job: &Job) -> Job {
    Job {
        attempts: job.attempts + 1,
        ..job.clone()
    }
}

/// Only transport errors, 5xx and 429 say the endpoint is unwell (a 4xx is about one
/// request): they alone count towards the circuit.
fn counts_towards_circuit(status: Option<u16>) -> bool {
    status.is_none_or(|status| status >= 500 || status == 429)
}

/// The server asked for room (429/503 Retry-After, 502/504, a timeout): retries wait at
/// least a minute and the whole endpoint waits, not just this job.
fn throttled(outcome: &AttemptOutcome) -> bool {
    matches!(outcome.status(), Some(429 | 502 | 503 | 504))
        || outcome.result == Err(AttemptError::Timeout)
}

/// Whether the job is the test an enable sends first. Before `enable_probe` existed, an
/// enable's test was the only job with sequence 0 (numbers start at 1): one queued by the
/// previous version still counts.
fn is_enable_probe(job: &Job, event_name: &str) -> bool {
    job.enable_probe || (event_name == "webhook.test" && job.sequence == 0)
}

/// Why a failing endpoint is disabled now, if it is.
fn disable_reason(
    status: Option<u16>,
    failing_for: Duration,
    policy: &EndpointPolicy<'_>,
) -> Option<String> {
    if status == Some(410) {
        Some("the endpoint answered 410 Gone".to_string())
    } else if failing_for >= policy.disable_after && failing_for >= policy.disable_span {
        Some(format!("no success for {} h", failing_for.as_secs() / 3600))
    } else {
        None
    }
}

fn settle_failure(
    outcome: &AttemptOutcome,
    job: Job,
    event_name: &str,
    mut health: EndpointHealth,
    policy: &EndpointPolicy<'_>,
    now: u64,
) -> Settlement {
    let what = outcome.summary();
    let status = outcome.status();
    let permanent = outcome
        .result
        .as_ref()
        .is_err_and(AttemptError::is_permanent);
    // A permanent failure is about this one delivery, not the endpoint's health.
    if counts_towards_circuit(status) && !permanent {
        health.consecutive_failures += 1;
    }
    // Likewise it starts no "failing since" clock: only a probe's failure disables.
    let first = if permanent {
        health.first_failure_at.unwrap_or(now)
    } else {
        *health.first_failure_at.get_or_insert(now)
    };
    health.last_error = Some(what.clone());
    let settled = |outcome, health, notice| Settlement {
        job: job.clone(),
        outcome,
        health,
        notice: Some(notice),
    };
    if is_enable_probe(&job, event_name) {
        // The test after an enable failed: what is held stays held.
        health.state = EndpointState::Disabled;
        health.disabled_reason = Some(format!("the test event after enabling failed: {what}"));
        return settled(JobOutcome::DeadLetter, health, Notice::ProbeFailed);
    }
    if permanent {
        return settled(JobOutcome::DeadLetter, health, Notice::Permanent);
    }
    let failing_for = Duration::from_millis(now.saturating_sub(first));
    if let Some(reason) = disable_reason(status, failing_for, policy) {
        health.state = EndpointState::Disabled;
        health.disabled_reason = Some(reason.clone());
        // The job stays, due now: it is held, not spent.
        let held = JobOutcome::Retry { due: now };
        return settled(held, health, Notice::Disabled(reason));
    }
    retry(outcome, job, health, policy, now)
}

/// A failure that leaves the endpoint enabled: the next attempt's due time (or a dead
/// letter when the schedule has none), and the circuit.
fn retry(
    outcome: &AttemptOutcome,
    job: Job,
    mut health: EndpointHealth,
    policy: &EndpointPolicy<'_>,
    now: u64,
) -> Settlement {
    // The jitter comes from the time, so the same inputs settle the same way.
    let unit = (now % 1000) as f64 / 1000.0;
    let Some(mut delay) = delay_before(job.attempts + 1, policy.schedule, unit) else {
        return Settlement {
            job,
            outcome: JobOutcome::DeadLetter,
            health,
            notice: Some(Notice::OutOfAttempts),
        };
    };
    if matches!(outcome.status(), Some(429 | 503)) {
        delay = honour_retry_after(delay, outcome.retry_after);
    }
    if throttled(outcome) {
        delay = delay.max(Duration::from_secs(60));
    }
    let mut notice = None;
    if health.consecutive_failures >= policy.circuit_after {
        let pause = circuit_pause(&health, policy, unit).unwrap_or(delay);
        if health.state != EndpointState::CircuitOpen {
            notice = Some(Notice::CircuitOpened(health.consecutive_failures));
        }
        health.state = EndpointState::CircuitOpen;
        health.circuit_until = Some(now + pause.as_millis() as u64);
        delay = delay.max(pause);
    }
    let due = now.saturating_add(delay.as_millis() as u64);
    if throttled(outcome) {
        health.circuit_until = Some(health.circuit_until.unwrap_or(0).max(due));
    }
    Settlement {
        job,
        outcome: JobOutcome::Retry { due },
        health,
        notice,
    }
}

/// How long an open circuit waits: one step of the schedule further per failure beyond
/// `circuit_after`. Waiting jobs burn no attempts while it is open: only the job that
/// failed probes, once per step.
fn circuit_pause(
    health: &EndpointHealth,
    policy: &EndpointPolicy<'_>,
    unit: f64,
) -> Option<Duration> {
    let step = health.consecutive_failures - policy.circuit_after + 2;
    delay_before(
        step.min(policy.schedule.len() as u32),
        policy.schedule,
        unit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::schedule::DEFAULT_SCHEDULE;

    /// A time with no jitter in it (`now % 1000 == 0`).
    const T: u64 = 1_000_000_000_000;
    const SECOND: u64 = 1000;
    const HOUR: u64 = 3600 * SECOND;
    const DEFAULTS: EndpointPolicy<'static> = EndpointPolicy {
        schedule: &DEFAULT_SCHEDULE,
        circuit_after: 5,
        disable_after: Duration::from_secs(72 * 3600),
        disable_span: Duration::from_secs(12 * 3600),
    };
    /// Disabled after 1 h of failures, but only over at least 12 h.
    const SPAN: EndpointPolicy<'static> = EndpointPolicy {
        disable_after: Duration::from_secs(3600),
        ..DEFAULTS
    };

    fn answer(status: u16) -> AttemptOutcome {
        let result = match status {
            200..=299 => Ok(status),
            300..=399 => Err(AttemptError::Redirect {
                status: Some(status),
                location: "http://elsewhere/".into(),
            }),
            _ => Err(AttemptError::Status(status)),
        };
        AttemptOutcome {
            result,
            detail: format!("HTTP {status}"),
            response: String::new(),
            retry_after: None,
        }
    }

    fn retry_after(status: u16, seconds: u64) -> AttemptOutcome {
        AttemptOutcome {
            retry_after: Some(Duration::from_secs(seconds)),
            ..answer(status)
        }
    }

    fn failed(error: AttemptError) -> AttemptOutcome {
        AttemptOutcome::failed(error, "transport words")
    }

    /// An ordinary job after `attempts` attempts.
    fn job(attempts: u32) -> Job {
        Job {
            event_sequence: 7,
            sequence: 3,
            endpoint: "crm".into(),
            task_id: "task".into(),
            attempts,
            created_at: T,
            enable_probe: false,
        }
    }

    /// The test an enable sends first.
    fn probe() -> Job {
        Job {
            enable_probe: true,
            ..job(0)
        }
    }

    /// An enable's test as the previous version queued it: sequence 0, no flag.
    fn legacy_probe() -> Job {
        Job {
            sequence: 0,
            ..job(0)
        }
    }

    /// An endpoint with `failures` in a row, failing since `since`.
    fn failing(failures: u32, since: u64) -> EndpointHealth {
        EndpointHealth {
            consecutive_failures: failures,
            first_failure_at: Some(since),
            ..EndpointHealth::default()
        }
    }

    fn open(failures: u32) -> EndpointHealth {
        EndpointHealth {
            state: EndpointState::CircuitOpen,
            circuit_until: Some(T - SECOND),
            ..failing(failures, T - HOUR)
        }
    }

    fn disabled() -> EndpointHealth {
        EndpointHealth {
            state: EndpointState::Disabled,
            ..failing(0, T - HOUR)
        }
    }

    fn healthy() -> EndpointHealth {
        EndpointHealth::default()
    }

    fn retry(due: u64) -> JobOutcome {
        JobOutcome::Retry { due }
    }

    use EndpointState::{Active, CircuitOpen, Disabled};
    use JobOutcome::{DeadLetter, Delivered};

    /// What a settlement comes to: the job's fate, the endpoint's state, failures in a row,
    /// no attempt before, and the notice.
    type Expected = (JobOutcome, EndpointState, u32, Option<u64>, Option<Notice>);

    #[allow(clippy::too_many_arguments)] // one table row: the inputs, then what comes out
    fn check(
        outcome: AttemptOutcome,
        job: Job,
        event_name: &str,
        health: EndpointHealth,
        policy: EndpointPolicy<'_>,
        now: u64,
        expected: Expected,
    ) {
        let settled = settle(&outcome, &job, event_name, health, &policy, now);
        let got = (
            settled.outcome,
            settled.health.state,
            settled.health.consecutive_failures,
            settled.health.circuit_until,
            settled.notice,
        );
        assert_eq!(got, expected, "{outcome:?} for {job:?}");
        let spent = outcome.result != Err(AttemptError::MissingEvent);
        assert_eq!(settled.job.attempts, job.attempts + u32::from(spent));
    }

    #[test]
    fn settle_follows_every_rule() {
        let (ev, p) = ("sms.sent", DEFAULTS);
        #[rustfmt::skip]
        let cases: &[(AttemptOutcome, Job, &str, EndpointHealth, EndpointPolicy, u64, Expected)] = &[
            // 2xx: done, health reset; after trouble, the circuit closes.
            (answer(200), job(0), ev, healthy(), p, T, (Delivered, Active, 0, None, None)),
            (answer(204), job(3), ev, failing(2, T - HOUR), p, T, (Delivered, Active, 0, None, None)),
            (answer(200), job(3), ev, open(7), p, T, (Delivered, Active, 0, None, Some(Notice::Recovered))),
            (answer(200), probe(), "webhook.test", disabled(), p, T, (Delivered, Active, 0, None, Some(Notice::Recovered))),
            // Retried on the schedule: attempt 2 after 5 s, attempt 5 after 2 h.
            (answer(500), job(0), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 1, None, None)),
            (answer(500), job(3), ev, failing(3, T - HOUR), p, T, (retry(T + 2 * HOUR), Active, 4, None, None)),
            // Jitter comes from the time: half a unit adds half of the 1 s spread.
            (answer(500), job(0), ev, healthy(), p, T + 500, (retry(T + 500 + 5500), Active, 1, None, None)),
            // Only transport errors, 5xx and 429 count towards the circuit.
            (answer(404), job(0), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 0, None, None)),
            (answer(302), job(0), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 0, None, None)),
            (failed(AttemptError::Connect), job(0), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 1, None, None)),
            (failed(AttemptError::Dns), job(0), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 1, None, None)),
            (answer(404), job(0), ev, failing(4, T - HOUR), p, T, (retry(T + 5 * SECOND), Active, 4, None, None)),
            // Throttled (429, 502, 503, 504, timeout): ≥ 60 s, and the whole endpoint waits.
            (answer(429), job(0), ev, healthy(), p, T, (retry(T + 60 * SECOND), Active, 1, Some(T + 60 * SECOND), None)),
            (answer(502), job(0), ev, healthy(), p, T, (retry(T + 60 * SECOND), Active, 1, Some(T + 60 * SECOND), None)),
            (answer(504), job(0), ev, healthy(), p, T, (retry(T + 60 * SECOND), Active, 1, Some(T + 60 * SECOND), None)),
            (failed(AttemptError::Timeout), job(0), ev, healthy(), p, T, (retry(T + 60 * SECOND), Active, 1, Some(T + 60 * SECOND), None)),
            // A throttled retry later in the schedule keeps its own, longer pause.
            (answer(503), job(2), ev, failing(2, T - HOUR), p, T, (retry(T + 1800 * SECOND), Active, 3, Some(T + 1800 * SECOND), None)),
            // 429 and 503 honour Retry-After (capped at 6 h); 502 and 500 do not.
            (retry_after(429, 600), job(0), ev, healthy(), p, T, (retry(T + 600 * SECOND), Active, 1, Some(T + 600 * SECOND), None)),
            (retry_after(503, 600), job(0), ev, healthy(), p, T, (retry(T + 600 * SECOND), Active, 1, Some(T + 600 * SECOND), None)),
            (retry_after(429, 86_400), job(0), ev, healthy(), p, T, (retry(T + 6 * HOUR), Active, 1, Some(T + 6 * HOUR), None)),
            (retry_after(429, 1), job(0), ev, healthy(), p, T, (retry(T + 60 * SECOND), Active, 1, Some(T + 60 * SECOND), None)),
            (retry_after(502, 600), job(0), ev, healthy(), p, T, (retry(T + 60 * SECOND), Active, 1, Some(T + 60 * SECOND), None)),
            (retry_after(500, 600), job(0), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 1, None, None)),
            // 410: disabled, the job held due now; it does not count as a failure in a row.
            (answer(410), job(0), ev, healthy(), p, T, (retry(T), Disabled, 0, None, Some(Notice::Disabled("the endpoint answered 410 Gone".into())))),
            // No success for ≥ 72 h (and ≥ the span): disabled, held.
            (answer(500), job(3), ev, failing(3, T - 72 * HOUR), p, T, (retry(T), Disabled, 4, None, Some(Notice::Disabled("no success for 72 h".into())))),
            (answer(500), job(3), ev, failing(3, T - 71 * HOUR), p, T, (retry(T + 2 * HOUR), Active, 4, None, None)),
            (answer(500), job(1), ev, failing(1, T - 2 * HOUR), SPAN, T, (retry(T + 300 * SECOND), Active, 2, None, None)),
            (answer(500), job(1), ev, failing(1, T - 12 * HOUR), SPAN, T, (retry(T), Disabled, 2, None, Some(Notice::Disabled("no success for 12 h".into())))),
            // Out of attempts: a dead letter; the endpoint stays as it is.
            (answer(500), job(9), ev, healthy(), p, T, (DeadLetter, Active, 1, None, Some(Notice::OutOfAttempts))),
            (answer(404), job(9), ev, healthy(), p, T, (DeadLetter, Active, 0, None, Some(Notice::OutOfAttempts))),
            // The test after an enable fails: a dead letter, and the endpoint stays disabled.
            (answer(500), probe(), "webhook.test", healthy(), p, T, (DeadLetter, Disabled, 1, None, Some(Notice::ProbeFailed))),
            (answer(404), probe(), "webhook.test", healthy(), p, T, (DeadLetter, Disabled, 0, None, Some(Notice::ProbeFailed))),
            (answer(500), legacy_probe(), "webhook.test", healthy(), p, T, (DeadLetter, Disabled, 1, None, Some(Notice::ProbeFailed))),
            // A test asked for on an active endpoint, or sequence 0 of another event: ordinary.
            (answer(500), job(0), "webhook.test", healthy(), p, T, (retry(T + 5 * SECOND), Active, 1, None, None)),
            (answer(500), legacy_probe(), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 1, None, None)),
            // The 5th failure in a row opens the circuit for step 2 (5 s).
            (answer(500), job(0), ev, failing(4, T - HOUR), p, T, (retry(T + 5 * SECOND), CircuitOpen, 5, Some(T + 5 * SECOND), Some(Notice::CircuitOpened(5)))),
            // Each further failure waits a step more (8th: step 5, 2 h), longer than the job's own.
            (answer(500), job(1), ev, open(7), p, T, (retry(T + 2 * HOUR), CircuitOpen, 8, Some(T + 2 * HOUR), None)),
            // The step stops at the schedule's last (24 h).
            (answer(500), job(1), ev, open(20), p, T, (retry(T + 24 * HOUR), CircuitOpen, 21, Some(T + 24 * HOUR), None)),
            // Open and throttled: the endpoint waits for the later of the two.
            (retry_after(429, 600), job(0), ev, failing(4, T - HOUR), p, T, (retry(T + 600 * SECOND), CircuitOpen, 5, Some(T + 600 * SECOND), Some(Notice::CircuitOpened(5)))),
            // Permanent (SMTP 5xx, a template that cannot render): a dead letter at once,
            // no count towards the circuit; an SMTP 4xx is retried and counts.
            (failed(AttemptError::MailRejected(550)), job(0), ev, healthy(), p, T, (DeadLetter, Active, 0, None, Some(Notice::Permanent))),
            (failed(AttemptError::Template), job(0), ev, failing(2, T - HOUR), p, T, (DeadLetter, Active, 2, None, Some(Notice::Permanent))),
            (failed(AttemptError::Template), probe(), "webhook.test", healthy(), p, T, (DeadLetter, Disabled, 0, None, Some(Notice::ProbeFailed))),
            (failed(AttemptError::MailDeferred(451)), job(0), ev, healthy(), p, T, (retry(T + 5 * SECOND), Active, 1, None, None)),
            // The event is gone: a dead letter, no attempt spent, the endpoint untouched.
            (failed(AttemptError::MissingEvent), job(2), "", failing(2, T - HOUR), p, T, (DeadLetter, Active, 2, None, Some(Notice::EventMissing))),
            (failed(AttemptError::MissingEvent), job(0), "", open(6), p, T, (DeadLetter, CircuitOpen, 6, Some(T - SECOND), Some(Notice::EventMissing))),
        ];
        for (outcome, job, event_name, health, policy, now, expected) in cases.iter().cloned() {
            check(outcome, job, event_name, health, policy, now, expected);
        }
    }

    #[test]
    fn a_success_clears_the_health_and_stamps_the_time() {
        let settled = settle(&answer(200), &job(4), "sms.sent", open(9), &DEFAULTS, T);
        let expected = EndpointHealth {
            last_success_at: Some(T),
            ..EndpointHealth::default()
        };
        assert_eq!(settled.health, expected);
    }

    #[test]
    fn a_failure_keeps_its_words_and_the_first_failure_time() {
        let check = |outcome: AttemptOutcome, health, first, error: &str| {
            let settled = settle(&outcome, &job(0), "sms.sent", health, &DEFAULTS, T);
            assert_eq!(settled.health.first_failure_at, Some(first), "{outcome:?}");
            assert_eq!(
                settled.health.last_error.as_deref(),
                Some(error),
                "{outcome:?}"
            );
        };
        check(answer(500), healthy(), T, "HTTP 500");
        check(answer(302), healthy(), T, "HTTP 302");
        check(
            failed(AttemptError::Timeout),
            failing(1, 5),
            5,
            "timeout (transport words)",
        );
        check(
            failed(AttemptError::Tls),
            failing(1, 5),
            5,
            "tls (transport words)",
        );
    }

    #[test]
    fn disabling_says_why() {
        let check = |outcome: AttemptOutcome, job: Job, name, reason: &str| {
            let settled = settle(&outcome, &job, name, healthy(), &DEFAULTS, T);
            assert_eq!(settled.health.disabled_reason.as_deref(), Some(reason));
        };
        check(
            answer(410),
            job(0),
            "sms.sent",
            "the endpoint answered 410 Gone",
        );
        let probe_failed = "the test event after enabling failed: HTTP 500";
        check(answer(500), probe(), "webhook.test", probe_failed);
        let timed_out = "the test event after enabling failed: timeout (transport words)";
        check(
            failed(AttemptError::Timeout),
            probe(),
            "webhook.test",
            timed_out,
        );
    }

    #[test]
    fn records_keep_the_stored_strings() {
        let check = |outcome: AttemptOutcome, status: Option<u16>, error: Option<&str>| {
            let record = outcome.record(&job(2), T, Duration::from_millis(42));
            assert_eq!((record.status, record.error.as_deref()), (status, error));
            assert_eq!((record.attempt, record.at, record.duration_ms), (3, T, 42));
            assert_eq!(record.detail, outcome.detail);
        };
        check(answer(200), Some(200), None);
        check(answer(500), Some(500), Some("status"));
        check(answer(410), Some(410), Some("status"));
        check(answer(302), Some(302), Some("redirect"));
        check(failed(AttemptError::Timeout), None, Some("timeout"));
        check(failed(AttemptError::Dns), None, Some("dns"));
        check(failed(AttemptError::Connect), None, Some("connect"));
        check(failed(AttemptError::Tls), None, Some("tls"));
        check(failed(AttemptError::Io), None, Some("io"));
        check(failed(AttemptError::Protocol), None, Some("protocol"));
        check(
            failed(AttemptError::MissingEvent),
            None,
            Some("missing_event"),
        );
        let refused = AttemptError::Redirect {
            status: None,
            location: String::new(),
        };
        check(failed(refused), None, Some("redirect"));
    }
}
