//! One endpoint's thread: hold for the clock, skip while disabled or while the circuit is
//! open, take the earliest due job, flush, render it (format or template), send it (`http`
//! or `mail`), settle it (`policy::settle`) and store the settlement. No delivery rule
//! lives here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::clock::ClockGuard;
use super::dispatch::{DispatcherSettings, EndpointConfig, Transport, judge_clock};
use super::formats::{self, Context, Rendered};
use super::policy::{AttemptError, AttemptOutcome, EndpointPolicy, Notice, Settlement, settle};
use super::{http, mail};
use crate::store::{
    AttemptRecord, EndpointHealth, EndpointState, Event, Job, JobOutcome, Store, StoreError,
};

/// An endpoint's thread and what it needs.
pub(super) struct Worker {
    pub(super) store: Store,
    pub(super) agent: ureq::Agent,
    pub(super) endpoint: EndpointConfig,
    pub(super) settings: DispatcherSettings,
    pub(super) clock: Arc<ClockGuard>,
    pub(super) stop: Arc<AtomicBool>,
}

/// What a step found to do.
enum Next {
    /// Nothing now: look again after this long (or when a job is queued).
    Wait(Duration),
    /// Send this job.
    Send(Box<Due>),
}

/// A job due now, with what settling it needs.
struct Due {
    /// Its key in the queue.
    key: Vec<u8>,
    job: Job,
    /// None when the event is no longer stored.
    event: Option<Event>,
    /// The endpoint's health before the attempt.
    health: EndpointHealth,
    /// When the attempt starts (Unix ms).
    now: u64,
}

impl Worker {
    /// Runs until told to stop.
    pub(super) fn run(self) {
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
        let due = match self.next()? {
            Next::Wait(wait) => return Ok(Some(wait)),
            Next::Send(due) => *due,
        };
        let Some(event) = &due.event else {
            // Pruned, or written by a bug: nothing to send; keep the record of it.
            let outcome =
                AttemptOutcome::failed(AttemptError::MissingEvent, "the event is no longer stored");
            self.store_settled(due, "", &outcome, Duration::ZERO)?;
            return Ok(None);
        };
        // Writers flush right after their commit, and this thread can see a job in between: a
        // flush first means no receiver hears of an event that a crash could still take back.
        self.store.flush()?;
        let timestamp = (self.clock.clock().now_ms() / 1000) as i64;
        let context = self.context(&due.job, timestamp);
        let event_name = event.name.clone();
        let rendered = match &self.endpoint.template {
            Some(template) => match template.render(event, &due.job, &context) {
                Ok(body) => Rendered {
                    body,
                    headers: Vec::new(),
                },
                Err(reason) => {
                    let outcome = AttemptOutcome::failed(AttemptError::Template, reason);
                    self.store_settled(due, &event_name, &outcome, Duration::ZERO)?;
                    return Ok(None);
                }
            },
            None => match formats::render(self.endpoint.format, event, &due.job, &context) {
                Some(rendered) => rendered,
                None => return self.store_skipped(due, &event_name),
            },
        };
        if let Some(target) = &self.endpoint.mqtt {
            return self.publish(target, due, &event_name, rendered.body);
        }
        let started = Instant::now();
        let outcome = self.send(event, timestamp, rendered);
        let took = started.elapsed();
        self.store_settled(due, &event_name, &outcome, took)?;
        Ok(None)
    }

    /// One attempt over the endpoint's transport.
    fn send(&self, event: &Event, timestamp: i64, rendered: Rendered) -> AttemptOutcome {
        match &self.endpoint.transport {
            Transport::Http => http::post(
                &self.agent,
                &self.endpoint,
                &event.id,
                timestamp,
                &rendered,
                self.settings.max_response,
            ),
            Transport::Mail(mail) => match mail.smtp.transport(self.endpoint.timeout) {
                Ok(transport) => mail::send(
                    &transport,
                    mail,
                    &self.endpoint.name,
                    event,
                    rendered.body,
                    self.endpoint.content_type.as_deref(),
                    &self.stop,
                ),
                Err(error) => AttemptOutcome::failed(AttemptError::Tls, error),
            },
        }
    }

    /// Publishes to MQTT. Only a PUBACK settles the job; a failure (the broker went away, no
    /// PUBACK in time) leaves it at the head of the queue, unsettled, so the next attempt
    /// publishes it again before anything newer: per-topic order holds, and nothing counts
    /// against the retry schedule while the broker is away (the link's status says so).
    fn publish(
        &self,
        target: &crate::mqtt::MqttTarget,
        due: Due,
        event_name: &str,
        body: Vec<u8>,
    ) -> Result<Option<Duration>, StoreError> {
        let started = Instant::now();
        match target.publish_event(event_name, body) {
            Ok(()) => {
                let outcome = AttemptOutcome {
                    result: Ok(0),
                    detail: "PUBACK".into(),
                    response: String::new(),
                    retry_after: None,
                };
                self.store_settled(due, event_name, &outcome, started.elapsed())?;
                Ok(None)
            }
            Err(error) => {
                debug!(
                    "mqtt: {event_name} #{} not acknowledged ({error}); kept first in the queue",
                    due.job.event_sequence
                );
                Ok(Some(self.settings.poll))
            }
        }
    }

    /// What the format needs to render attempt `job.attempts + 1` at `timestamp` (Unix s).
    fn context(&self, job: &Job, timestamp: i64) -> Context {
        let device = &self.settings.device;
        Context {
            device_id: device.id,
            device_name: device.name.clone(),
            number: device.number.clone(),
            endpoint: self.endpoint.name.clone(),
            secret: self
                .endpoint
                .format_secret
                .as_ref()
                .map(|secret| secret.key().to_vec()),
            attempt: job.attempts + 1,
            attempts_total: self.endpoint.schedule.len(),
            now: timestamp,
        }
    }

    /// A job whose event this endpoint's format has no message for: settled as delivered
    /// without a request (the receiver's service would not have sent one either), its record
    /// saying so with no HTTP status; the endpoint's health is left as it was.
    fn store_skipped(&self, due: Due, event_name: &str) -> Result<Option<Duration>, StoreError> {
        let format = self.endpoint.format.name();
        let record = AttemptRecord {
            endpoint: due.job.endpoint.clone(),
            event_sequence: due.job.event_sequence,
            attempt: due.job.attempts + 1,
            at: due.now,
            duration_ms: 0,
            status: None,
            error: None,
            detail: format!("not sent: the {format} format has no message for {event_name}"),
            response: String::new(),
        };
        let job = Job {
            attempts: due.job.attempts + 1,
            ..due.job.clone()
        };
        debug!(
            "webhook {}: {event_name} #{} skipped ({format})",
            self.endpoint.name, job.event_sequence
        );
        self.store
            .settle_job(&due.key, &job, &record, &due.health, JobOutcome::Delivered)?;
        Ok(None)
    }

    /// The clock, the endpoint's state and its queue: the job to send now, or the wait.
    fn next(&self) -> Result<Next, StoreError> {
        let poll = Next::Wait(self.settings.poll);
        if !self.endpoint.enabled {
            return Ok(poll);
        }
        if self
            .endpoint
            .mqtt
            .as_ref()
            .is_some_and(|target| !target.connected())
        {
            // Held while the broker is away; the link retries the connection and logs it.
            return Ok(poll);
        }
        // The guard logs each change of verdict once; held jobs keep their order.
        if judge_clock(&self.clock, &self.store).holds() {
            return Ok(poll);
        }
        let health = self.store.endpoint_health(&self.endpoint.name)?;
        if health.state == EndpointState::Disabled {
            return Ok(poll);
        }
        let now = self.clock.clock().now_ms();
        if let Some(until) = health.circuit_until.filter(|until| *until > now) {
            return Ok(Next::Wait(Duration::from_millis(until - now)));
        }
        let Some((key, due, job)) = self.store.next_job(&self.endpoint.name)? else {
            return Ok(poll);
        };
        if due > now {
            return Ok(Next::Wait(Duration::from_millis(due - now)));
        }
        let event = self.store.event(job.event_sequence)?;
        Ok(Next::Send(Box::new(Due {
            key,
            job,
            event,
            health,
            now,
        })))
    }

    /// Settles the attempt, logs it, and stores the settlement in one transaction.
    fn store_settled(
        &self,
        due: Due,
        event_name: &str,
        outcome: &AttemptOutcome,
        took: Duration,
    ) -> Result<(), StoreError> {
        let policy = EndpointPolicy {
            schedule: &self.endpoint.schedule,
            circuit_after: self.settings.circuit_after,
            disable_after: self.settings.disable_after,
            disable_span: self.settings.disable_span,
        };
        let record = outcome.record(&due.job, due.now, took);
        let settled = settle(outcome, &due.job, event_name, due.health, &policy, due.now);
        self.log(&due.job, event_name, outcome, took, &settled);
        self.store.settle_job(
            &due.key,
            &settled.job,
            &record,
            &settled.health,
            settled.outcome,
        )
    }

    fn log(
        &self,
        job: &Job,
        event_name: &str,
        outcome: &AttemptOutcome,
        took: Duration,
        settled: &Settlement,
    ) {
        let name = &self.endpoint.name;
        let sequence = job.event_sequence;
        match &outcome.result {
            Ok(_) => debug!("webhook {name}: {event_name} #{sequence} delivered ({took:?})"),
            Err(AttemptError::MissingEvent) => {}
            Err(_) => warn!(
                "webhook {name}: {event_name} #{sequence} attempt {} failed: {}",
                settled.job.attempts,
                outcome.summary()
            ),
        }
        match &settled.notice {
            None => {}
            Some(Notice::Recovered) => info!("webhook {name}: delivering again; circuit closed"),
            Some(Notice::ProbeFailed) => {
                warn!("webhook {name}: the test event failed; still disabled, events held")
            }
            Some(Notice::Disabled(reason)) => {
                warn!("webhook {name}: disabled ({reason}); events are held until it is re-enabled")
            }
            Some(Notice::OutOfAttempts) => {
                warn!("webhook {name}: {event_name} #{sequence} is out of attempts; dead letter")
            }
            Some(Notice::CircuitOpened(failures)) => {
                warn!("webhook {name}: {failures} failures in a row; circuit open")
            }
            Some(Notice::EventMissing) => {
                warn!("webhook {name}: event {sequence} is gone; job moved to the dead letters")
            }
            Some(Notice::Permanent) => {
                warn!("webhook {name}: {event_name} #{sequence} cannot succeed; dead letter")
            }
        }
    }
}
