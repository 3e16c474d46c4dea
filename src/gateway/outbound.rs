//! Outbound messages: enqueue, submission part by part, retries, crash recovery, and the
//! matching of status reports.

use std::time::Duration;

use log::{info, warn};
use serde::Serialize;

use super::Gateway;
use super::events::{self, rfc3339};
use crate::modem::{LinkState, Verdict};
use crate::pdu::{
    self, Address, ConcatReference, MessageClass, StatusClass, StatusReport, SubmitOptions,
    Validity,
};
use crate::store::blocking;
use crate::store::{
    Effects, FailureInfo, MessageState, OutPart, OutboundMessage, PartState, StoreError, now_ms,
};

/// What a client asks to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// E.164 (`+447700900123`) or national digits; spaces, dashes, dots and brackets are
    /// ignored.
    pub to: String,
    /// The text, non-empty.
    pub text: String,
    /// Opaque data returned in every event of this message, at most 1 KB.
    pub callback_data: Option<String>,
    /// Overrides the configured validity period.
    pub validity: Option<Duration>,
    /// A class 0 (flash) message.
    pub flash: bool,
    /// A repeat with the same key within 24 h returns the first answer instead of a
    /// second SMS.
    pub idempotency_key: Option<String>,
}

/// What enqueue answers: the message is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// How many SMS it takes.
    pub parts: usize,
    /// `gsm7` or `ucs2`.
    pub encoding: String,
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// A field is wrong; nothing was stored.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The idempotency key was used in the last 24 h for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    KeyReused,
    /// The store failed; nothing was accepted.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> EnqueueError {
    EnqueueError::Invalid {
        field,
        message: message.into(),
    }
}

/// The recipient with separators removed, if it is a number we can send to.
pub fn normalise_number(raw: &str) -> Result<String, EnqueueError> {
    let cleaned: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let (plus, digits) = match cleaned.strip_prefix('+') {
        Some(digits) => (true, digits),
        None => (false, cleaned.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "to",
            "must be an E.164 number (+ and up to 15 digits) or national digits",
        ));
    }
    let longest = if plus { 15 } else { 20 };
    if digits.len() > longest {
        return Err(invalid("to", format!("has more than {longest} digits")));
    }
    Ok(cleaned)
}

/// Whether a report's recipient is the number we sent to. SCs may report the number in
/// another format (national for international), so the last nine digits decide.
fn same_number(reported: &str, sent: &str) -> bool {
    let digits = |text: &str| -> Vec<u8> { text.bytes().filter(u8::is_ascii_digit).collect() };
    let (a, b) = (digits(reported), digits(sent));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let n = a.len().min(b.len()).min(9);
    a[a.len() - n..] == b[b.len() - n..]
}

impl Gateway {
    /// Validates, encodes and stores a message; it is on disk when this returns.
    pub async fn enqueue(&self, request: NewMessage) -> Result<Accepted, EnqueueError> {
        let settings = &self.inner.settings;
        let to = normalise_number(&request.to)?;
        if request.text.is_empty() {
            return Err(invalid("text", "must not be empty"));
        }
        // Cheap bound before encoding: no part holds more than 160 characters.
        if request.text.chars().count() > 160 * settings.max_parts {
            return Err(invalid(
                "text",
                format!("is longer than {} SMS parts can carry", settings.max_parts),
            ));
        }
        if let Some(data) = &request.callback_data {
            if data.len() > 1024 {
                return Err(invalid("callback_data", "must be at most 1024 bytes"));
            }
        }
        let recipient =
            Address::from_number(&to).map_err(|error| invalid("to", error.to_string()))?;
        // What a repeat under the same idempotency key must match to be the same request.
        let fingerprint = serde_json::json!({
            "to": to,
            "text": request.text,
            "callback_data": request.callback_data,
            "validity_ms": request.validity.map(|validity| validity.as_millis() as u64),
            "flash": request.flash,
        });
        let store = self.inner.store.clone();
        let counter = blocking(move || store.next_counter("concat_reference")).await?;
        let validity = request
            .validity
            .or(settings.validity)
            .map(Validity::relative);
        let options = SubmitOptions {
            smsc: None,
            status_report: settings.status_reports,
            validity,
            class: request.flash.then_some(MessageClass::Flash),
            force_ucs2: false,
            reference: ConcatReference::Eight((counter % 256) as u8),
        };
        let outgoing = pdu::submit_parts(&recipient, &request.text, &options)
            .map_err(|error| invalid("text", error.to_string()))?;
        if outgoing.parts.len() > settings.max_parts {
            return Err(invalid(
                "text",
                format!(
                    "needs {} SMS parts; at most {} are allowed",
                    outgoing.parts.len(),
                    settings.max_parts
                ),
            ));
        }
        let now = now_ms();
        let message = OutboundMessage {
            id: uuid::Uuid::now_v7().to_string(),
            to,
            text: request.text,
            encoding: outgoing.alphabet.name().to_string(),
            parts: outgoing
                .parts
                .into_iter()
                .map(|part| OutPart {
                    hex: part.hex,
                    cmgs_length: part.cmgs_length,
                    state: PartState::Pending,
                    pending_status: None,
                })
                .collect(),
            callback_data: request.callback_data,
            state: MessageState::Queued,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            status_report: settings.status_reports,
            // The period as encoded (rounded up to the relative format's steps): the SC keeps
            // trying that long, so that is how long a report may take.
            validity_ms: validity
                .and_then(|validity| validity.duration())
                .map(|period| period.as_millis() as u64),
            created_at: now,
            updated_at: now,
            sent_at: None,
            delivered_at: None,
            queue_key: None,
        };
        let accepted = Accepted {
            id: message.id.clone(),
            parts: message.parts.len(),
            encoding: message.encoding.clone(),
        };
        let store = self.inner.store.clone();
        match request.idempotency_key {
            Some(key) => {
                let answer = serde_json::to_value(&accepted).unwrap_or_default();
                let ours = fingerprint.clone();
                let earlier = blocking(move || {
                    store.enqueue_once(
                        &message,
                        &key,
                        &fingerprint,
                        &answer,
                        Duration::from_secs(86_400),
                    )
                })
                .await?;
                if let Some(earlier) = earlier {
                    // Records from before fingerprints were kept have none: taken as the same.
                    if earlier.get("request").is_some_and(|then| *then != ours) {
                        return Err(EnqueueError::KeyReused);
                    }
                    if let Ok(answer) = serde_json::from_value(earlier["answer"].clone()) {
                        return Ok(answer);
                    }
                }
            }
            None => blocking(move || store.enqueue(&message)).await?,
        }
        self.inner.wake_sender.notify_one();
        Ok(accepted)
    }

    /// Settles messages a crash left in `sending`: a part marked `Submitting` may or may not
    /// have gone out, so the message fails with stage `interrupted` (or is resent when the
    /// config says so); a message between parts simply resumes.
    pub(super) async fn recover(&self) -> Result<(), StoreError> {
        let store = self.inner.store.clone();
        let resend = self.inner.settings.resend_interrupted;
        let recovered = blocking(move || {
            let mut count = 0;
            for id in store.outbox()? {
                let Some(message) = store.message(&id)? else {
                    continue;
                };
                if message.state != MessageState::Sending {
                    continue;
                }
                count += 1;
                store.update_message(&id, |message| {
                    let cut = message
                        .parts
                        .iter()
                        .any(|part| matches!(part.state, PartState::Submitting { .. }));
                    if !cut || resend {
                        for part in &mut message.parts {
                            if matches!(part.state, PartState::Submitting { .. }) {
                                part.state = PartState::Pending;
                            }
                        }
                        message.state = MessageState::Queued;
                        return Effects::default();
                    }
                    fail(message, "interrupted", None, "the daemon stopped while a part was being submitted; it may or may not have been sent")
                })?;
            }
            Ok(count)
        })
        .await?;
        if recovered > 0 {
            info!("gateway: settled {recovered} message(s) left in sending by the last run");
        }
        Ok(())
    }

    pub(super) async fn send_loop(self) {
        let mut status = self.inner.modem.watch_status();
        loop {
            if self.stopping() {
                return;
            }
            // Sending only while the modem is ready keeps a dead modem from burning attempts.
            tokio::select! {
                ready = status.wait_for(|status| status.state == LinkState::Ready) => {
                    if ready.is_err() {
                        return;
                    }
                }
                () = self.inner.wake_sender.notified() => continue,
            }
            let store = self.inner.store.clone();
            let next = blocking(move || next_due(&store)).await;
            match next {
                Ok(Due::Now(id)) => {
                    if let Err(error) = self.submit(&id).await {
                        if !error.is_storage_failure() {
                            log::error!("gateway: message {id}: {error}");
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Ok(Due::Later(wait)) => {
                    tokio::select! {
                        () = self.inner.wake_sender.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(error) => {
                    if !error.is_storage_failure() {
                        log::error!("gateway: reading the outbox: {error}");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn update(
        &self,
        id: &str,
        change: impl Fn(&mut OutboundMessage) -> Effects + Send + 'static,
    ) -> Result<OutboundMessage, StoreError> {
        let store = self.inner.store.clone();
        let id = id.to_string();
        blocking(move || {
            store
                .update_message(&id, change)
                .map(|(message, _)| message)
        })
        .await
    }

    /// Submits the pending parts of one message, in order.
    async fn submit(&self, id: &str) -> Result<(), StoreError> {
        let mut message = self
            .update(id, |message| {
                if message.state == MessageState::Queued {
                    message.state = MessageState::Sending;
                }
                Effects::default()
            })
            .await?;
        if message.state.is_final() || message.state == MessageState::Sent {
            self.update(id, |_| Effects {
                dequeue: true,
                ..Effects::default()
            })
            .await?;
            return Ok(());
        }
        while let Some(index) = message
            .parts
            .iter()
            .position(|part| part.state == PartState::Pending)
        {
            if message.state.is_final() {
                // Failed by a delivery report of an earlier part: send no more parts.
                return Ok(());
            }
            if self.stopping() {
                // Shutting down between parts: the rest go after the restart.
                return Ok(());
            }
            let since = now_ms();
            self.update(id, move |message| {
                if let Some(part) = message.parts.get_mut(index) {
                    part.state = PartState::Submitting { since };
                }
                Effects::default()
            })
            .await?;
            let part = &message.parts[index];
            let outcome = self.inner.modem.send(part.cmgs_length, &part.hex).await;
            let ready = self.inner.modem.status().state == LinkState::Ready;
            let settings = self.inner.settings.clone();
            message = match outcome {
                Ok(reference) => {
                    let at = now_ms();
                    let written = self
                        .update(id, move |message| {
                            if let Some(part) = message.parts.get_mut(index) {
                                part.state = PartState::Submitted { reference, at };
                            }
                            let mut effects = Effects {
                                references: vec![(reference, index)],
                                ..Effects::default()
                            };
                            // Failed meanwhile (a report on an earlier part): record, no more.
                            if message.state.is_final() {
                                return effects;
                            }
                            if message.parts.iter().all(|part| {
                                !matches!(
                                    part.state,
                                    PartState::Pending | PartState::Submitting { .. }
                                )
                            }) {
                                message.state = MessageState::Sent;
                                message.sent_at = Some(at);
                                effects.dequeue = true;
                                effects.events.push(events::sent(message));
                            }
                            effects
                        })
                        .await?;
                    self.rematch(reference, since).await;
                    written
                }
                Err(failure) => {
                    warn!("gateway: message {id} part {}: {failure}", index + 1);
                    let code = failure.code;
                    let text = failure.text.clone();
                    self.update(id, move |message| {
                        let unknown = failure.verdict == Verdict::Unknown;
                        // An unknown outcome keeps its Submitting marker unless it is resent.
                        if !unknown || settings.resend_interrupted {
                            if let Some(part) = message.parts.get_mut(index) {
                                part.state = PartState::Pending;
                            }
                        }
                        match failure.verdict {
                            Verdict::Permanent => fail(message, "submit", code, &text),
                            Verdict::Unknown if !settings.resend_interrupted => {
                                fail(message, "interrupted", code, &text)
                            }
                            Verdict::Unknown | Verdict::Temporary => {
                                retry_later(message, &settings, ready, code, &text)
                            }
                        }
                    })
                    .await?;
                    return Ok(());
                }
            };
        }
        // A part still marked Submitting here means its outcome was never recorded (a store
        // error after the send): settle it as a crash would be, rather than pick it again.
        let cut = message
            .parts
            .iter()
            .any(|part| matches!(part.state, PartState::Submitting { .. }));
        if cut && !message.state.is_final() && message.state != MessageState::Sent {
            self.update(id, |message| {
                fail(
                    message,
                    "interrupted",
                    None,
                    "the outcome of a part could not be recorded; it may have been sent",
                )
            })
            .await?;
        }
        Ok(())
    }

    /// Matches status reports kept as unmatched against a TP-MR just recorded (a fast report
    /// can overtake the recording of its `+CMGS`).
    async fn rematch(&self, reference: u8, since: u64) {
        let store = self.inner.store.clone();
        let Ok(unmatched) = blocking(move || store.unmatched()).await else {
            return;
        };
        for (key, hex, at) in unmatched {
            // Only a report that came after this part went to the modem can be its report
            // (an older one with the same TP-MR belongs to a message before the wrap).
            if at < since {
                continue;
            }
            let Ok(pdu) = pdu::Pdu::from_hex(&hex) else {
                continue;
            };
            let pdu::Tpdu::StatusReport(report) = pdu.tpdu else {
                continue;
            };
            if report.message_reference != reference {
                continue;
            }
            if let Ok(true) = self.apply_report(&report).await {
                let store = self.inner.store.clone();
                let _ = blocking(move || store.remove_unmatched(&key)).await;
            }
        }
    }

    /// A status report from the modem: matched and applied, or kept as unmatched.
    pub(super) async fn on_report(
        &self,
        report: StatusReport,
        hex: &str,
    ) -> Result<(), StoreError> {
        if self.apply_report(&report).await? {
            return Ok(());
        }
        warn!(
            "gateway: status report for TP-MR {} to {} matches no message; kept",
            report.message_reference, report.recipient
        );
        super::Gateway::count(&self.inner.counters.unmatched_reports);
        let store = self.inner.store.clone();
        let hex = hex.to_string();
        let json = pdu::tpdu_json(&pdu::Tpdu::StatusReport(report.clone()));
        let key = blocking(move || store.record_unmatched(&hex, &json)).await?;
        // The sender may have recorded the TP-MR (and re-matched) between our lookup and the
        // write above: one more try closes that window.
        if self.apply_report(&report).await? {
            let store = self.inner.store.clone();
            blocking(move || store.remove_unmatched(&key)).await?;
        }
        Ok(())
    }

    /// Applies a report to the most recent unmatched part with its TP-MR and recipient.
    async fn apply_report(&self, report: &StatusReport) -> Result<bool, StoreError> {
        let store = self.inner.store.clone();
        let reference = report.message_reference;
        let recipient = report.recipient.to_string();
        let oldest = now_ms().saturating_sub(self.inner.settings.report_max_age.as_millis() as u64);
        let candidate = blocking(move || {
            for candidate in store.references(reference)? {
                if candidate.submitted_at < oldest {
                    break;
                }
                let Some(message) = store.message(&candidate.message_id)? else {
                    continue;
                };
                if same_number(&recipient, &message.to) {
                    return Ok(Some(candidate));
                }
            }
            Ok(None)
        })
        .await?;
        let Some(candidate) = candidate else {
            return Ok(false);
        };
        let status = report.status;
        let discharge = report
            .discharge_time
            .to_datetime()
            .map(|_| report.discharge_time.to_string())
            .unwrap_or_else(|| rfc3339(now_ms()));
        let key = candidate.key.clone();
        let index = candidate.part;
        self.update(&candidate.message_id, move |message| {
            let mut effects = Effects::default();
            let Some(part) = message.parts.get_mut(index) else {
                return effects;
            };
            match status.class() {
                StatusClass::Pending => {
                    part.pending_status = Some(status.0);
                    return effects;
                }
                StatusClass::Delivered => {
                    part.state = PartState::Delivered {
                        reference,
                        status: status.0,
                        at: discharge.clone(),
                    };
                }
                StatusClass::PermanentFailure | StatusClass::TemporaryFailure => {
                    part.state = PartState::Failed {
                        reference,
                        status: status.0,
                    };
                }
            }
            effects.unreference.push(key.clone());
            if message.state.is_final() {
                return effects;
            }
            let failed = matches!(part.state, PartState::Failed { .. });
            if failed {
                let mut failure = fail(
                    message,
                    "delivery",
                    Some(u16::from(status.0)),
                    status.description(),
                );
                failure.unreference = effects.unreference;
                return failure;
            }
            let all_delivered = message
                .parts
                .iter()
                .all(|part| matches!(part.state, PartState::Delivered { .. }));
            if all_delivered && message.state == MessageState::Sent {
                message.state = MessageState::Delivered;
                message.delivered_at = Some(discharge.clone());
                effects.events.push(events::delivered(
                    message,
                    status.0,
                    status.description(),
                    &discharge,
                ));
            }
            effects
        })
        .await?;
        Ok(true)
    }
}

/// Why a `sent` message is given up on at `now` (Unix ms): it asked for a status report and
/// not every part got its final one within the validity period plus `margin`. `None` while
/// a report may still come, and for a message that asked for none (final at `sent`) or whose
/// validity is unknown (written before it was kept). A part with a failure report has already
/// failed the message, and all parts delivered made it `delivered`, so neither is `sent`.
pub fn report_overdue(message: &OutboundMessage, now: u64, margin: Duration) -> Option<String> {
    let due = message.report_due()?;
    let waiting = message
        .parts
        .iter()
        .any(|part| !matches!(part.state, PartState::Delivered { .. }));
    if !waiting || now < due.saturating_add(margin.as_millis() as u64) {
        return None;
    }
    let validity = Duration::from_millis(message.validity_ms.unwrap_or_default());
    Some(format!(
        "no status report within the validity period ({}) plus {}",
        humantime::format_duration(validity),
        humantime::format_duration(margin)
    ))
}

/// How many overdue messages one sweep settles; the next tick takes the rest.
const EXPIRY_BATCH: usize = 100;

impl Gateway {
    /// Expires the messages whose status report is overdue at `now` (Unix ms; passed in so
    /// tests can move time), at most a batch per call; returns how many it expired. Their
    /// `refs` go with them: a late report then matches nothing (it is kept as unmatched) and
    /// cannot be taken for another message's.
    pub async fn expire_overdue(&self, now: u64) -> Result<usize, StoreError> {
        let store = self.inner.store.clone();
        let margin = self.inner.settings.report_timeout_margin;
        let due_by = now.saturating_sub(margin.as_millis() as u64);
        blocking(move || {
            let mut expired = 0;
            for id in store.overdue_reports(due_by, EXPIRY_BATCH)? {
                let Some(message) = store.message(&id)? else {
                    continue;
                };
                let mut unreference = Vec::new();
                for (index, part) in message.parts.iter().enumerate() {
                    if let PartState::Submitted { reference, .. } = part.state {
                        unreference.extend(
                            store
                                .references(reference)?
                                .into_iter()
                                .filter(|found| found.message_id == id && found.part == index)
                                .map(|found| found.key),
                        );
                    }
                }
                let (written, _) = store.update_message(&id, |message| {
                    // Decided again inside the transaction: a report may have landed since.
                    match report_overdue(message, now, margin) {
                        Some(reason) => expire(message, now, &reason, unreference.clone()),
                        None => Effects::default(),
                    }
                })?;
                if written.state == MessageState::Expired {
                    expired += 1;
                }
            }
            Ok(expired)
        })
        .await
        .inspect(|expired| {
            if *expired > 0 {
                info!("gateway: {expired} message(s) expired without a status report");
            }
        })
    }
}

/// The message is given up on: no report came in time.
fn expire(
    message: &mut OutboundMessage,
    now: u64,
    reason: &str,
    unreference: Vec<Vec<u8>>,
) -> Effects {
    message.state = MessageState::Expired;
    message.last_error = Some(FailureInfo {
        stage: "expired".into(),
        code: None,
        text: reason.into(),
    });
    Effects {
        events: vec![events::expired(message, now, reason)],
        unreference,
        ..Effects::default()
    }
}

/// The message fails for good at `stage`.
fn fail(message: &mut OutboundMessage, stage: &str, code: Option<u16>, text: &str) -> Effects {
    message.state = MessageState::Failed;
    message.next_attempt_at = None;
    message.last_error = Some(FailureInfo {
        stage: stage.into(),
        code,
        text: text.into(),
    });
    Effects {
        events: vec![events::failed(message, stage, code, text)],
        dequeue: true,
        ..Effects::default()
    }
}

/// A temporary error: back to the queue with backoff, or failed when out of attempts.
fn retry_later(
    message: &mut OutboundMessage,
    settings: &super::GatewaySettings,
    count_attempt: bool,
    code: Option<u16>,
    text: &str,
) -> Effects {
    if count_attempt {
        message.attempts += 1;
    }
    if message.attempts >= settings.max_attempts {
        return fail(
            message,
            "submit",
            code,
            &format!("{text} (gave up after {} attempts)", message.attempts),
        );
    }
    let factor = 1u32 << message.attempts.saturating_sub(1).min(16);
    let pause = settings
        .retry_base
        .saturating_mul(factor)
        .min(settings.retry_max);
    message.state = MessageState::Queued;
    message.next_attempt_at = Some(now_ms() + pause.as_millis() as u64);
    message.last_error = Some(FailureInfo {
        stage: "submit".into(),
        code,
        text: text.into(),
    });
    Effects::default()
}

enum Due {
    Now(String),
    Later(Duration),
}

/// The first message in the outbox that may be tried now, else how long until one may.
fn next_due(store: &crate::store::Store) -> Result<Due, StoreError> {
    let now = now_ms();
    let mut soonest: Option<u64> = None;
    for id in store.outbox()? {
        let Some(message) = store.message(&id)? else {
            continue;
        };
        match message.next_attempt_at {
            Some(at) if at > now => soonest = Some(soonest.map_or(at, |s| s.min(at))),
            _ => return Ok(Due::Now(id)),
        }
    }
    let wait = soonest.map_or(Duration::from_secs(3600), |at| {
        Duration::from_millis(at - now)
    });
    Ok(Due::Later(wait))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{normalise_number, report_overdue, same_number};
    use crate::store::{MessageState, OutPart, OutboundMessage, PartState};

    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;

    fn part(state: PartState) -> OutPart {
        OutPart {
            hex: String::new(),
            cmgs_length: 0,
            state,
            pending_status: None,
        }
    }

    fn submitted() -> PartState {
        PartState::Submitted {
            reference: 7,
            at: 0,
        }
    }

    fn delivered() -> PartState {
        PartState::Delivered {
            reference: 7,
            status: 0,
            at: String::new(),
        }
    }

    /// A message sent at 0 with a 1-day validity and a report requested, with `parts`.
    fn message(state: MessageState, parts: Vec<PartState>) -> OutboundMessage {
        OutboundMessage {
            id: "m1".into(),
            to: "+447700900123".into(),
            text: "hi".into(),
            encoding: "gsm7".into(),
            parts: parts.into_iter().map(part).collect(),
            callback_data: None,
            state,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            status_report: true,
            validity_ms: Some(DAY),
            created_at: 0,
            updated_at: 0,
            sent_at: Some(0),
            delivered_at: None,
            queue_key: None,
        }
    }

    #[test]
    fn a_report_is_overdue_only_after_the_validity_plus_the_margin() {
        let margin = Duration::from_secs(3600);
        let sent = || message(MessageState::Sent, vec![submitted()]);
        let no_reports = || OutboundMessage {
            status_report: false,
            ..sent()
        };
        let unknown_validity = || OutboundMessage {
            validity_ms: None,
            ..sent()
        };
        let one_of_two = || message(MessageState::Sent, vec![delivered(), submitted()]);
        let cases: Vec<(&str, OutboundMessage, u64, bool)> = vec![
            ("within the validity", sent(), DAY - 1, false),
            ("within the margin", sent(), DAY + HOUR - 1, false),
            ("at validity plus margin", sent(), DAY + HOUR, true),
            ("long after", sent(), 30 * DAY, true),
            ("one part of two reported", one_of_two(), DAY + HOUR, true),
            ("no report requested", no_reports(), 30 * DAY, false),
            ("validity unknown", unknown_validity(), 30 * DAY, false),
            (
                "still sending",
                message(MessageState::Sending, vec![submitted()]),
                30 * DAY,
                false,
            ),
            (
                "delivered",
                message(MessageState::Delivered, vec![delivered()]),
                30 * DAY,
                false,
            ),
            (
                "failed by a report",
                message(
                    MessageState::Failed,
                    vec![PartState::Failed {
                        reference: 7,
                        status: 0x41,
                    }],
                ),
                30 * DAY,
                false,
            ),
            (
                "already expired",
                message(MessageState::Expired, vec![submitted()]),
                30 * DAY,
                false,
            ),
        ];
        for (case, message, now, overdue) in cases {
            assert_eq!(
                report_overdue(&message, now, margin).is_some(),
                overdue,
                "{case}"
            );
        }
        assert_eq!(
            report_overdue(&sent(), DAY + HOUR, margin).as_deref(),
            Some("no status report within the validity period (1day) plus 1h")
        );
    }

    #[test]
    fn numbers_are_cleaned_and_checked() {
        assert_eq!(
            normalise_number("+44 7700-900 123").expect("valid"),
            "+447700900123"
        );
        assert_eq!(
            normalise_number("(0)7700.900123").expect("valid"),
            "07700900123"
        );
        for bad in ["", "+", "abc", "+44 77x", "+1234567890123456", "++44"] {
            assert!(normalise_number(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reports_match_numbers_in_another_format() {
        assert!(same_number("447700900123", "+447700900123"));
        assert!(same_number("07700900123", "+447700900123"));
        assert!(!same_number("+447700900124", "+447700900123"));
        assert!(!same_number("", "+447700900123"));
    }
}
