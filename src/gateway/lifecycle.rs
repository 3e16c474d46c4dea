//! The outbound message lifecycle as pure transitions: each function takes the message as
//! stored and one input (a part begun, the modem's answer, a status report, a crash found at
//! start-up, the clock), changes the message, and returns the [`Effects`] the store carries out
//! in the same transaction (events, leaving the outbox, TP-MR references to add or remove).
//! No I/O and no clock: times are passed in, so each transition is tested from a table.
//! The store may run a transition more than once on a conflict, so each depends on nothing
//! but its arguments.
//!
//! ```text
//! queued ─start─▶ sending ─part_accepted (last part)─▶ sent ─report (all delivered)─▶ delivered
//!                   ├─part_refused: temporary─▶ queued (after retry_pause)
//!                   ├─part_refused: permanent, or out of attempts─▶ failed (submit)
//!                   └─part_refused: unknown, or recover─▶ failed (interrupted), or queued
//! sent ─report (a failure)─▶ failed (delivery)        sent ─expire_overdue─▶ expired
//! ```

use std::time::Duration;

use super::GatewaySettings;
use super::events;
use crate::modem::{LinkState, SendFailure, Verdict};
use crate::pdu::{Status, StatusClass};
use crate::store::{
    Effects, FailureInfo, FailureStage, MessageReference, MessageState, OutboundMessage, PartState,
    Reference,
};

/// The sender takes the message from the outbox: `queued` becomes `sending`. A message that is
/// already finished (or `sent`) only leaves the outbox.
pub fn start(message: &mut OutboundMessage) -> Effects {
    if message.state == MessageState::Queued {
        message.state = MessageState::Sending;
    }
    Effects {
        dequeue: is_done_sending(message),
        ..Effects::default()
    }
}

/// A dry run at `now` (Unix ms), taken from the outbox in place of the modem: `sending`
/// becomes `sent` then `delivered` with both events (`dry_run: true` in their data); no part
/// is submitted, so the parts stay `pending` and have no reference.
pub fn dry_run(message: &mut OutboundMessage, now: u64) -> Effects {
    if !message.dry_run {
        // Not ours: a real message goes to the modem.
        return Effects::default();
    }
    if message.state.is_final() {
        return Effects {
            dequeue: true,
            ..Effects::default()
        };
    }
    message.state = MessageState::Sent;
    message.sent_at = Some(now);
    message.updated_at = now;
    let sent = events::sent(message);
    let at = events::rfc3339(now);
    message.state = MessageState::Delivered;
    message.delivered_at = Some(at.clone());
    let delivered = events::delivered(message, 0, "delivered (dry run)", &at);
    Effects {
        events: vec![sent, delivered],
        dequeue: true,
        ..Effects::default()
    }
}

/// Whether no part of the message is to be submitted any more (finished, or every part sent).
pub fn is_done_sending(message: &OutboundMessage) -> bool {
    message.state.is_final() || message.state == MessageState::Sent
}

/// The next part to submit, in order; `None` once none is pending or the message failed (a
/// delivery report of an earlier part fails it, and then no more parts go out).
pub fn next_part(message: &OutboundMessage) -> Option<usize> {
    if message.state.is_final() {
        return None;
    }
    message
        .parts
        .iter()
        .position(|part| part.state == PartState::Pending)
}

/// Part `index` is about to be handed to the modem at `now` (Unix ms). Recorded first, so a
/// crash before its outcome is recorded is known afterwards ([`recover`]).
pub fn begin_part(message: &mut OutboundMessage, index: usize, now: u64) -> Effects {
    if let Some(part) = message.parts.get_mut(index) {
        part.state = PartState::Submitting { since: now };
    }
    Effects::default()
}

/// The network accepted part `index` with TP-MR `reference` at `now` (Unix ms). Its reference
/// is recorded for the status report; the last part makes the message `sent` (`sms.sent`).
pub fn part_accepted(
    message: &mut OutboundMessage,
    index: usize,
    reference: MessageReference,
    now: u64,
) -> Effects {
    if let Some(part) = message.parts.get_mut(index) {
        part.state = PartState::Submitted { reference, at: now };
    }
    let mut effects = Effects {
        references: vec![(reference, index)],
        ..Effects::default()
    };
    // Failed meanwhile (a report on an earlier part): record the reference, nothing more.
    if message.state.is_final() {
        return effects;
    }
    let all_out = message.parts.iter().all(|part| {
        !matches!(
            part.state,
            PartState::Pending | PartState::Submitting { .. }
        )
    });
    if all_out {
        message.state = MessageState::Sent;
        message.sent_at = Some(now);
        effects.dequeue = true;
        effects.events.push(events::sent(message));
    }
    effects
}

/// The modem refused part `index` at `now` (Unix ms); `link` is the modem's state right after.
/// Permanent: `failed` (stage `submit`). Temporary: back to the queue with backoff, counting
/// the attempt only if the modem stayed ready (a dead modem must not burn attempts), and
/// `failed` once `max_attempts` are used. Unknown (the PDU may have gone out): `failed` (stage
/// `interrupted`), or resent when `resend_interrupted` says so.
pub fn part_refused(
    message: &mut OutboundMessage,
    index: usize,
    failure: &SendFailure,
    link: &LinkState,
    settings: &GatewaySettings,
    now: u64,
) -> Effects {
    let unknown = failure.verdict == Verdict::Unknown;
    // An unknown outcome keeps its Submitting marker unless it is resent.
    if !unknown || settings.resend_interrupted {
        if let Some(part) = message.parts.get_mut(index) {
            part.state = PartState::Pending;
        }
    }
    let (code, text) = (failure.code, failure.text.as_str());
    match failure.verdict {
        Verdict::Permanent => fail(message, FailureStage::Submit, code, text),
        Verdict::Unknown if !settings.resend_interrupted => {
            fail(message, FailureStage::Interrupted, code, text)
        }
        Verdict::Unknown | Verdict::Temporary => {
            let counted = *link == LinkState::Ready;
            retry_later(message, settings, counted, code, text, now)
        }
    }
}

/// The pause before attempt `attempts + 1` after `attempts` failed ones: `retry_base`, doubling
/// per attempt, at most `retry_max`.
pub fn retry_pause(attempts: u32, settings: &GatewaySettings) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    settings
        .retry_base
        .saturating_mul(factor)
        .min(settings.retry_max)
}

/// Whether a part is still marked `Submitting`: its outcome was never recorded.
pub fn has_part_in_flight(message: &OutboundMessage) -> bool {
    message
        .parts
        .iter()
        .any(|part| matches!(part.state, PartState::Submitting { .. }))
}

/// After the sender's loop: a part still marked `Submitting` had its outcome lost (a store
/// error after the send); it is settled as a crash would be (`interrupted`) rather than picked
/// again, unless the message is finished or sent by then.
pub fn outcome_lost(message: &mut OutboundMessage) -> Effects {
    if !has_part_in_flight(message) || is_done_sending(message) {
        return Effects::default();
    }
    fail(
        message,
        FailureStage::Interrupted,
        None,
        "the outcome of a part could not be recorded; it may have been sent",
    )
}

/// At start-up, a message the last run left in `sending`: a part marked `Submitting` may or may
/// not have gone out, so the message fails with stage `interrupted` (or is queued again when
/// `resend_interrupted` says so); a message between parts simply goes back to the queue.
pub fn recover(message: &mut OutboundMessage, settings: &GatewaySettings) -> Effects {
    if message.state != MessageState::Sending {
        return Effects::default();
    }
    if has_part_in_flight(message) && !settings.resend_interrupted {
        return fail(
            message,
            FailureStage::Interrupted,
            None,
            "the daemon stopped while a part was being submitted; it may or may not have been sent",
        );
    }
    for part in &mut message.parts {
        if matches!(part.state, PartState::Submitting { .. }) {
            part.state = PartState::Pending;
        }
    }
    message.state = MessageState::Queued;
    Effects::default()
}

/// A status report matched to `matched` (a part waiting for its report, picked by
/// `reports::candidates`), with TP-ST `status` and the SC's `discharge` time (RFC 3339).
/// Pending: noted on the part, with an `sms.pending` when its status changed. Delivered: the part is; the last one makes the message
/// `delivered`.
/// Failed (temporary or permanent, 23.040 9.2.3.15): the message fails at stage `delivery`.
/// A final report removes the reference.
pub fn report(
    message: &mut OutboundMessage,
    matched: &Reference,
    status: Status,
    discharge: &str,
) -> Effects {
    let (index, reference) = (matched.part, matched.reference);
    let Some(part) = message.parts.get_mut(index) else {
        return Effects::default();
    };
    match status.class() {
        StatusClass::Pending => return note_pending(message, index, status),
        StatusClass::Delivered => {
            part.state = PartState::Delivered {
                reference,
                status: status.0,
                at: discharge.to_string(),
            };
        }
        StatusClass::PermanentFailure | StatusClass::TemporaryFailure => {
            part.state = PartState::Failed {
                reference,
                status: status.0,
            };
        }
    }
    let unreference = vec![matched.key.clone()];
    if message.state.is_final() {
        return Effects {
            unreference,
            ..Effects::default()
        };
    }
    if matches!(message.parts[index].state, PartState::Failed { .. }) {
        let code = Some(u16::from(status.0));
        let failure = fail(message, FailureStage::Delivery, code, status.description());
        return Effects {
            unreference,
            ..failure
        };
    }
    let mut effects = Effects {
        unreference,
        ..Effects::default()
    };
    let all_delivered = message
        .parts
        .iter()
        .all(|part| matches!(part.state, PartState::Delivered { .. }));
    if all_delivered && message.state == MessageState::Sent {
        message.state = MessageState::Delivered;
        message.delivered_at = Some(discharge.to_string());
        let event = events::delivered(message, status.0, status.description(), discharge);
        effects.events.push(event);
    }
    effects
}

/// A report saying the network still tries part `index`: noted on the part, with one
/// `sms.pending` per change of that status (a repeat of the same status is no news).
fn note_pending(message: &mut OutboundMessage, index: usize, status: Status) -> Effects {
    let Some(part) = message.parts.get_mut(index) else {
        return Effects::default();
    };
    let changed = part.pending_status != Some(status.0);
    part.pending_status = Some(status.0);
    let mut effects = Effects::default();
    if changed && !message.state.is_final() {
        let event = events::pending(message, index, status.0, status.description());
        effects.events.push(event);
    }
    effects
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

/// At `now` (Unix ms), a message whose report is overdue ([`report_overdue`], decided again on
/// the record as stored: a report may have landed since) is `expired` (`sms.expired`), and its
/// references (`unreference`) go with it: a late report then matches nothing.
pub fn expire_overdue(
    message: &mut OutboundMessage,
    now: u64,
    margin: Duration,
    unreference: &[Vec<u8>],
) -> Effects {
    let Some(reason) = report_overdue(message, now, margin) else {
        return Effects::default();
    };
    message.state = MessageState::Expired;
    message.last_error = Some(FailureInfo {
        stage: FailureStage::Expired,
        code: None,
        text: reason.clone(),
    });
    Effects {
        events: vec![events::expired(message, now, &reason)],
        unreference: unreference.to_vec(),
        ..Effects::default()
    }
}

/// The message fails for good at `stage` (`sms.failed`) and leaves the outbox.
fn fail(
    message: &mut OutboundMessage,
    stage: FailureStage,
    code: Option<u16>,
    text: &str,
) -> Effects {
    message.state = MessageState::Failed;
    message.next_attempt_at = None;
    message.last_error = Some(FailureInfo {
        stage,
        code,
        text: text.into(),
    });
    Effects {
        events: vec![events::failed(message, stage, code, text)],
        dequeue: true,
        ..Effects::default()
    }
}

/// A temporary error at `now`: back to the queue after [`retry_pause`], or failed when out of
/// attempts. `counted`: whether this attempt counts towards `max_attempts`.
fn retry_later(
    message: &mut OutboundMessage,
    settings: &GatewaySettings,
    counted: bool,
    code: Option<u16>,
    text: &str,
    now: u64,
) -> Effects {
    if counted {
        message.attempts += 1;
    }
    if message.attempts >= settings.max_attempts {
        let text = format!("{text} (gave up after {} attempts)", message.attempts);
        return fail(message, FailureStage::Submit, code, &text);
    }
    let pause = retry_pause(message.attempts, settings);
    message.state = MessageState::Queued;
    message.next_attempt_at = Some(now + pause.as_millis() as u64);
    message.last_error = Some(FailureInfo {
        stage: FailureStage::Submit,
        code,
        text: text.into(),
    });
    Effects::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::SendFailure;
    use crate::store::OutPart;

    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;
    const NOW: u64 = 5 * DAY;
    const MR: MessageReference = MessageReference(7);

    fn part(state: PartState) -> OutPart {
        OutPart {
            hex: String::new(),
            cmgs_length: 0,
            state,
            pending_status: None,
            modem: None,
        }
    }

    fn submitting() -> PartState {
        PartState::Submitting { since: 1 }
    }

    fn submitted() -> PartState {
        PartState::Submitted {
            reference: MR,
            at: 0,
        }
    }

    fn delivered() -> PartState {
        PartState::Delivered {
            reference: MR,
            status: 0,
            at: "2026-11-22T10:00:00+01:00".into(),
        }
    }

    fn failed_part(status: u8) -> PartState {
        PartState::Failed {
            reference: MR,
            status,
        }
    }

    /// A message sent at 0 with a 1-day validity and a report requested, with `parts`.
    fn message(state: MessageState, parts: Vec<PartState>) -> OutboundMessage {
        OutboundMessage {
            id: "m1".into(),
            to: "+447700900123".into(),
            text: "hi".into(),
            encoding: crate::store::Encoding::Gsm7,
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
            number: None,
            dry_run: false,
            modem: None,
            sim: None,
            pinned: false,
        }
    }

    fn settings() -> GatewaySettings {
        GatewaySettings {
            max_attempts: 3,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(100),
            ..GatewaySettings::default()
        }
    }

    fn resending() -> GatewaySettings {
        GatewaySettings {
            resend_interrupted: true,
            ..settings()
        }
    }

    /// What a transition did, as a table states it.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        state: MessageState,
        parts: Vec<OutPart>,
        attempts: u32,
        retry_at: Option<u64>,
        stage: Option<FailureStage>,
        events: Vec<String>,
        dequeue: bool,
        references: Vec<(MessageReference, usize)>,
        unreference: Vec<Vec<u8>>,
    }

    /// The expected outcome: `state` and `parts`, nothing else changed or done.
    fn to(state: MessageState, parts: Vec<PartState>) -> Outcome {
        Outcome {
            state,
            parts: parts.into_iter().map(part).collect(),
            attempts: 0,
            retry_at: None,
            stage: None,
            events: Vec::new(),
            dequeue: false,
            references: Vec::new(),
            unreference: Vec::new(),
        }
    }

    impl Outcome {
        fn event(mut self, name: &str) -> Outcome {
            self.events.push(name.into());
            self
        }
        fn dequeued(mut self) -> Outcome {
            self.dequeue = true;
            self
        }
        fn failed(self, stage: FailureStage) -> Outcome {
            Outcome {
                stage: Some(stage),
                ..self.event("sms.failed").dequeued()
            }
        }
        fn retry(self, attempts: u32, after: Duration) -> Outcome {
            Outcome {
                attempts,
                retry_at: Some(NOW + after.as_millis() as u64),
                stage: Some(FailureStage::Submit),
                ..self
            }
        }
        fn referenced(self, index: usize) -> Outcome {
            Outcome {
                references: vec![(MR, index)],
                ..self
            }
        }
        fn unreferenced(self) -> Outcome {
            Outcome {
                unreference: vec![b"key".to_vec()],
                ..self
            }
        }
    }

    fn check(
        case: &str,
        mut message: OutboundMessage,
        transition: impl Fn(&mut OutboundMessage) -> Effects,
        expected: Outcome,
    ) {
        let effects = transition(&mut message);
        let got = Outcome {
            state: message.state,
            parts: message.parts,
            attempts: message.attempts,
            retry_at: message.next_attempt_at,
            stage: message.last_error.map(|error| error.stage),
            events: effects.events.into_iter().map(|event| event.name).collect(),
            dequeue: effects.dequeue,
            references: effects.references,
            unreference: effects.unreference,
        };
        assert_eq!(got, expected, "{case}");
    }

    use MessageState::{Delivered, Expired, Failed, Queued, Sending, Sent};
    use PartState::Pending;

    #[test]
    fn the_sender_starts_a_queued_message_and_drops_a_finished_one() {
        let start = |m: &mut OutboundMessage| super::start(m);
        let one = || vec![Pending];
        check("queued", message(Queued, one()), start, to(Sending, one()));
        check(
            "sending",
            message(Sending, one()),
            start,
            to(Sending, one()),
        );
        for done in [Sent, Delivered, Failed, Expired] {
            let outcome = to(done, one()).dequeued();
            check("finished", message(done, one()), start, outcome);
        }
    }

    #[test]
    fn parts_go_in_order_until_none_is_pending_or_the_message_failed() {
        let check = |state, parts: Vec<PartState>, expected: Option<usize>| {
            assert_eq!(
                next_part(&message(state, parts.clone())),
                expected,
                "{parts:?}"
            );
        };
        check(Sending, vec![Pending, Pending], Some(0));
        check(Sending, vec![submitted(), Pending], Some(1));
        check(Sending, vec![submitted(), submitting()], None);
        check(Failed, vec![failed_part(0x41), Pending], None);
    }

    #[test]
    fn a_part_is_marked_before_it_goes_to_the_modem() {
        let begin = |m: &mut OutboundMessage| begin_part(m, 1, NOW);
        let marked = PartState::Submitting { since: NOW };
        let expected = to(Sending, vec![submitted(), marked]);
        check(
            "second",
            message(Sending, vec![submitted(), Pending]),
            begin,
            expected,
        );
        let expected = to(Sending, vec![Pending]);
        check(
            "no such part",
            message(Sending, vec![Pending]),
            begin,
            expected,
        );
    }

    #[test]
    fn an_accepted_part_records_its_reference_and_the_last_one_sends_the_message() {
        let accept = |index| move |m: &mut OutboundMessage| part_accepted(m, index, MR, NOW);
        let now_submitted = PartState::Submitted {
            reference: MR,
            at: NOW,
        };
        check(
            "the only part",
            message(Sending, vec![submitting()]),
            accept(0),
            to(Sent, vec![now_submitted.clone()])
                .referenced(0)
                .event("sms.sent")
                .dequeued(),
        );
        check(
            "the first of two",
            message(Sending, vec![submitting(), Pending]),
            accept(0),
            to(Sending, vec![now_submitted.clone(), Pending]).referenced(0),
        );
        check(
            "after a report failed the message",
            message(Failed, vec![failed_part(0x41), submitting()]),
            accept(1),
            to(Failed, vec![failed_part(0x41), now_submitted]).referenced(1),
        );
    }

    #[test]
    fn a_refused_part_is_retried_failed_or_interrupted_by_its_verdict() {
        let refuse = |verdict, link: LinkState, settings: GatewaySettings, attempts: u32| {
            move |m: &mut OutboundMessage| {
                m.attempts = attempts;
                let failure = SendFailure {
                    verdict,
                    code: Some(42),
                    text: "refused".into(),
                };
                part_refused(m, 0, &failure, &link, &settings, NOW)
            }
        };
        let (ready, down) = (LinkState::Ready, LinkState::Waiting("no answer".into()));
        let one = || vec![submitting()];
        let retried = |attempts, after| to(Queued, vec![Pending]).retry(attempts, after);
        let table = vec![
            (
                "permanent",
                refuse(Verdict::Permanent, ready.clone(), settings(), 0),
                to(Failed, vec![Pending]).failed(FailureStage::Submit),
            ),
            (
                "temporary, modem ready: counted",
                refuse(Verdict::Temporary, ready.clone(), settings(), 0),
                retried(1, Duration::from_secs(30)),
            ),
            (
                "temporary, modem gone: not counted",
                refuse(Verdict::Temporary, down.clone(), settings(), 0),
                retried(0, Duration::from_secs(30)),
            ),
            (
                "temporary, second attempt: the pause doubles",
                refuse(Verdict::Temporary, ready.clone(), settings(), 1),
                retried(2, Duration::from_secs(60)),
            ),
            (
                "temporary, out of attempts",
                refuse(Verdict::Temporary, ready.clone(), settings(), 2),
                Outcome {
                    attempts: 3,
                    ..to(Failed, vec![Pending]).failed(FailureStage::Submit)
                },
            ),
            (
                "unknown: it may have gone out",
                refuse(Verdict::Unknown, ready.clone(), settings(), 0),
                to(Failed, one()).failed(FailureStage::Interrupted),
            ),
            (
                "unknown, resend allowed",
                refuse(Verdict::Unknown, ready.clone(), resending(), 0),
                retried(1, Duration::from_secs(30)),
            ),
            (
                "unknown, resend allowed, modem gone",
                refuse(Verdict::Unknown, down.clone(), resending(), 0),
                retried(0, Duration::from_secs(30)),
            ),
        ];
        for (case, transition, expected) in table {
            check(case, message(Sending, one()), transition, expected);
        }
    }

    #[test]
    fn giving_up_says_after_how_many_attempts() {
        let mut m = message(Sending, vec![submitting()]);
        m.attempts = 2;
        let failure = SendFailure {
            verdict: Verdict::Temporary,
            code: None,
            text: "busy".into(),
        };
        part_refused(&mut m, 0, &failure, &LinkState::Ready, &settings(), NOW);
        let text = m.last_error.map(|error| error.text);
        assert_eq!(text.as_deref(), Some("busy (gave up after 3 attempts)"));
    }

    #[test]
    fn the_retry_pause_doubles_up_to_the_maximum() {
        let check = |attempts, seconds| {
            let pause = retry_pause(attempts, &settings());
            assert_eq!(pause, Duration::from_secs(seconds), "{attempts}");
        };
        check(0, 30);
        check(1, 30);
        check(2, 60);
        check(3, 100);
        check(40, 100);
        check(u32::MAX, 100);
    }

    #[test]
    fn a_lost_outcome_is_settled_as_interrupted() {
        let lost = |m: &mut OutboundMessage| outcome_lost(m);
        let interrupted = FailureStage::Interrupted;
        let cut = vec![submitted(), submitting()];
        check(
            "a part in flight",
            message(Sending, cut.clone()),
            lost,
            to(Failed, cut.clone()).failed(interrupted),
        );
        let done = vec![submitted()];
        check(
            "nothing in flight",
            message(Sending, done.clone()),
            lost,
            to(Sending, done),
        );
        check(
            "already failed",
            message(Failed, cut.clone()),
            lost,
            to(Failed, cut),
        );
    }

    #[test]
    fn a_crash_mid_submission_fails_the_message_or_resends_it() {
        let recover_with =
            |settings: GatewaySettings| move |m: &mut OutboundMessage| super::recover(m, &settings);
        let cut = || vec![submitted(), submitting()];
        let between = || vec![submitted(), Pending];
        let table = vec![
            (
                "a part was in flight",
                message(Sending, cut()),
                recover_with(settings()),
                to(Failed, cut()).failed(FailureStage::Interrupted),
            ),
            (
                "a part was in flight, resend allowed",
                message(Sending, cut()),
                recover_with(resending()),
                to(Queued, between()),
            ),
            (
                "between parts",
                message(Sending, between()),
                recover_with(settings()),
                to(Queued, between()),
            ),
            (
                "not sending",
                message(Queued, cut()),
                recover_with(settings()),
                to(Queued, cut()),
            ),
        ];
        for (case, before, transition, expected) in table {
            check(case, before, transition, expected);
        }
    }

    #[test]
    fn a_report_delivers_fails_or_notes_a_part_by_its_status_class() {
        let matched = |index| Reference {
            key: b"key".to_vec(),
            reference: MR,
            submitted_at: 0,
            message_id: "m1".into(),
            part: index,
            recipient: "+447700900123".into(),
            modem: String::new(),
        };
        let report_on = |index, status| {
            move |m: &mut OutboundMessage| {
                report(
                    m,
                    &matched(index),
                    Status(status),
                    "2026-11-22T10:00:00+01:00",
                )
            }
        };
        let noted = OutPart {
            pending_status: Some(0x20),
            ..part(submitted())
        };
        let table = vec![
            (
                "delivered, the only part",
                message(Sent, vec![submitted()]),
                report_on(0, 0x00),
                to(Delivered, vec![delivered()])
                    .unreferenced()
                    .event("sms.delivered"),
            ),
            (
                "delivered, one part of two",
                message(Sent, vec![submitted(), submitted()]),
                report_on(0, 0x00),
                to(Sent, vec![delivered(), submitted()]).unreferenced(),
            ),
            (
                "delivered, the last part of two",
                message(Sent, vec![delivered(), submitted()]),
                report_on(1, 0x00),
                to(Delivered, vec![delivered(), delivered()])
                    .unreferenced()
                    .event("sms.delivered"),
            ),
            (
                "delivered before the message is sent",
                message(Sending, vec![submitted(), Pending]),
                report_on(0, 0x00),
                to(Sending, vec![delivered(), Pending]).unreferenced(),
            ),
            (
                "still trying (congestion)",
                message(Sent, vec![submitted()]),
                report_on(0, 0x20),
                Outcome {
                    parts: vec![noted.clone()],
                    ..to(Sent, vec![])
                }
                .event("sms.pending"),
            ),
            (
                "still trying, the same status again: no news",
                OutboundMessage {
                    parts: vec![noted.clone()],
                    ..message(Sent, vec![])
                },
                report_on(0, 0x20),
                Outcome {
                    parts: vec![noted.clone()],
                    ..to(Sent, vec![])
                },
            ),
            (
                "still trying, another status: news",
                OutboundMessage {
                    parts: vec![noted],
                    ..message(Sent, vec![])
                },
                report_on(0, 0x21),
                Outcome {
                    parts: vec![OutPart {
                        pending_status: Some(0x21),
                        ..part(submitted())
                    }],
                    ..to(Sent, vec![])
                }
                .event("sms.pending"),
            ),
            (
                "permanent failure",
                message(Sent, vec![submitted()]),
                report_on(0, 0x41),
                to(Failed, vec![failed_part(0x41)])
                    .failed(FailureStage::Delivery)
                    .unreferenced(),
            ),
            (
                "temporary failure, SC gave up",
                message(Sending, vec![submitted(), Pending]),
                report_on(0, 0x60),
                to(Failed, vec![failed_part(0x60), Pending])
                    .failed(FailureStage::Delivery)
                    .unreferenced(),
            ),
            (
                "on a message already failed",
                message(Failed, vec![failed_part(0x41), submitted()]),
                report_on(1, 0x00),
                to(Failed, vec![failed_part(0x41), delivered()]).unreferenced(),
            ),
            (
                "no such part",
                message(Sent, vec![submitted()]),
                report_on(3, 0x00),
                to(Sent, vec![submitted()]),
            ),
        ];
        for (case, before, transition, expected) in table {
            check(case, before, transition, expected);
        }
    }

    #[test]
    fn a_dry_run_is_sent_and_delivered_without_a_part_going_out() {
        let dry = |state| OutboundMessage {
            dry_run: true,
            ..message(state, vec![Pending])
        };
        let dry_run = |m: &mut OutboundMessage| dry_run(m, NOW);
        let table = vec![
            (
                "taken from the outbox",
                dry(Sending),
                to(Delivered, vec![Pending])
                    .event("sms.sent")
                    .event("sms.delivered")
                    .dequeued(),
            ),
            (
                "already delivered",
                dry(Delivered),
                to(Delivered, vec![Pending]).dequeued(),
            ),
            (
                "not a dry run: left for the modem",
                message(Sending, vec![Pending]),
                to(Sending, vec![Pending]),
            ),
        ];
        for (case, before, expected) in table {
            check(case, before, dry_run, expected);
        }
    }

    #[test]
    fn a_report_is_overdue_only_after_the_validity_plus_the_margin() {
        let margin = Duration::from_secs(3600);
        let sent = || message(Sent, vec![submitted()]);
        let no_reports = || OutboundMessage {
            status_report: false,
            ..sent()
        };
        let unknown_validity = || OutboundMessage {
            validity_ms: None,
            ..sent()
        };
        let one_of_two = || message(Sent, vec![delivered(), submitted()]);
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
                message(Sending, vec![submitted()]),
                30 * DAY,
                false,
            ),
            (
                "delivered",
                message(Delivered, vec![delivered()]),
                30 * DAY,
                false,
            ),
            (
                "failed by a report",
                message(Failed, vec![failed_part(0x41)]),
                30 * DAY,
                false,
            ),
            (
                "already expired",
                message(Expired, vec![submitted()]),
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
    fn an_overdue_message_expires_with_its_references() {
        let margin = Duration::from_secs(3600);
        let expire_at =
            |now| move |m: &mut OutboundMessage| expire_overdue(m, now, margin, &[b"key".to_vec()]);
        let expired = Outcome {
            stage: Some(FailureStage::Expired),
            ..to(Expired, vec![submitted()])
                .event("sms.expired")
                .unreferenced()
        };
        let sent = || message(Sent, vec![submitted()]);
        check("overdue", sent(), expire_at(DAY + HOUR), expired);
        check(
            "not yet",
            sent(),
            expire_at(DAY),
            to(Sent, vec![submitted()]),
        );
        let done = || vec![delivered()];
        let delivered_meanwhile = message(Delivered, done());
        check(
            "reported meanwhile",
            delivered_meanwhile,
            expire_at(30 * DAY),
            to(Delivered, done()),
        );
    }
}
