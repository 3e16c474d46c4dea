//! The outbound shell: enqueue (validate, encode, store), the sender task (outbox → modem),
//! crash recovery, status reports and the expiry sweep. Each step reads, talks to the modem,
//! and writes with `Store::update_message` a transition of [`super::lifecycle`]; which part a
//! report is for is [`super::reports`].

use std::time::Duration;

use log::{info, warn};
use serde::Serialize;

use super::{Gateway, GatewaySettings, Requested, events, lifecycle, reports, routing};
use crate::modem::LinkState;
use crate::pdu::{
    self, Address, Alphabet, ConcatReference, MessageClass, StatusReport, SubmitOptions, Validity,
};
use crate::store::blocking;
use crate::store::{
    Effects, Encoding, MessageReference, MessageState, OutPart, OutboundMessage, PartState,
    Reference, StoreError, now_ms,
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
    /// Runs the whole pipeline except the modem: queued → sent → delivered, nothing sent.
    pub dry_run: bool,
    /// Overrides `[sms] status_reports` for this message (`false`: no report asked).
    pub status_report: Option<bool>,
    /// Send through this modem (a name), and only through it.
    pub modem: Option<String>,
    /// Send through the modem with this SIM slot number, and only through it.
    pub sim: Option<u32>,
}

/// What enqueue answers: the message is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// How many SMS it takes.
    pub parts: usize,
    /// `gsm7` or `ucs2`.
    pub encoding: Encoding,
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

/// The recipient as normalised and as an address, after the checks that need no encoding.
fn check_request(
    request: &NewMessage,
    settings: &GatewaySettings,
) -> Result<(String, Address), EnqueueError> {
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
    let recipient = Address::from_number(&to).map_err(|error| invalid("to", error.to_string()))?;
    Ok((to, recipient))
}

/// What a repeat under the same idempotency key must match to be the same request.
fn fingerprint(request: &NewMessage, to: &str) -> serde_json::Value {
    let mut fields = serde_json::json!({
        "to": to,
        "text": request.text,
        "callback_data": request.callback_data,
        "validity_ms": request.validity.map(|validity| validity.as_millis() as u64),
        "flash": request.flash,
    });
    // Only when set: a key stored before these options existed still matches a repeat.
    if request.dry_run {
        fields["dry_run"] = true.into();
    }
    if let Some(report) = request.status_report {
        fields["status_report"] = report.into();
    }
    if let Some(modem) = &request.modem {
        fields["modem"] = modem.as_str().into();
    }
    if let Some(sim) = request.sim {
        fields["sim"] = sim.into();
    }
    fields
}

/// The parts of a message as encoded for the modem.
struct Encoded {
    encoding: Encoding,
    parts: Vec<OutPart>,
    /// The validity period as encoded (ms).
    validity_ms: Option<u64>,
}

/// Encodes the text into SMS-SUBMIT PDUs (concatenation reference from `counter`), within
/// `max_parts`.
fn encode(
    request: &NewMessage,
    recipient: &Address,
    counter: u64,
    settings: &GatewaySettings,
) -> Result<Encoded, EnqueueError> {
    let validity = request
        .validity
        .or(settings.validity)
        .map(Validity::relative);
    let options = SubmitOptions {
        smsc: None,
        status_report: request.status_report.unwrap_or(settings.status_reports),
        validity,
        class: request.flash.then_some(MessageClass::Flash),
        force_ucs2: false,
        reference: ConcatReference::Eight((counter % 256) as u8),
    };
    let outgoing = pdu::submit_parts(recipient, &request.text, &options)
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
    let encoding = match outgoing.alphabet {
        Alphabet::Gsm7 => Encoding::Gsm7,
        Alphabet::Ucs2 => Encoding::Ucs2,
        // Text is encoded in one of the two; 8-bit data is never made from it.
        Alphabet::EightBit => return Err(invalid("text", "cannot be sent as 8-bit data")),
    };
    let parts = outgoing.parts.into_iter().map(|part| OutPart {
        hex: part.hex,
        cmgs_length: part.cmgs_length,
        state: PartState::Pending,
        pending_status: None,
        modem: None,
    });
    Ok(Encoded {
        encoding,
        parts: parts.collect(),
        // The period as encoded (rounded up to the relative format's steps): the SC keeps
        // trying that long, so that is how long a report may take.
        validity_ms: validity
            .and_then(|validity| validity.duration())
            .map(|period| period.as_millis() as u64),
    })
}

/// The message as first stored at `now` (Unix ms): queued, with its encoded parts.
fn new_message(
    request: &NewMessage,
    to: String,
    encoded: Encoded,
    settings: &GatewaySettings,
    now: u64,
) -> OutboundMessage {
    OutboundMessage {
        id: uuid::Uuid::now_v7().to_string(),
        to,
        text: request.text.clone(),
        encoding: encoded.encoding,
        parts: encoded.parts,
        callback_data: request.callback_data.clone(),
        state: MessageState::Queued,
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        status_report: request.status_report.unwrap_or(settings.status_reports),
        validity_ms: encoded.validity_ms,
        created_at: now,
        updated_at: now,
        sent_at: None,
        delivered_at: None,
        queue_key: None,
        number: None,
        dry_run: request.dry_run,
        modem: None,
        sim: None,
        pinned: false,
    }
}

/// How many overdue messages one sweep settles; the next tick takes the rest.
const EXPIRY_BATCH: usize = 100;

impl Gateway {
    /// Validates, encodes and stores a message; it is on disk when this returns.
    pub async fn enqueue(&self, request: NewMessage) -> Result<Accepted, EnqueueError> {
        let settings = &self.inner.settings;
        let (to, recipient) = check_request(&request, settings)?;
        let fingerprint = fingerprint(&request, &to);
        let store = self.inner.store.clone();
        let counter = blocking(move || store.next_counter("concat_reference")).await?;
        let encoded = encode(&request, &recipient, counter, settings)?;
        let (modem, pinned) = self.route(&request, &to)?;
        let mut message = new_message(&request, to, encoded, settings, now_ms());
        let slot = &self.inner.modems[modem];
        message.modem = Some(slot.name.clone());
        message.sim = Some(slot.sim);
        message.pinned = pinned;
        let accepted = Accepted {
            id: message.id.clone(),
            parts: message.parts.len(),
            encoding: message.encoding,
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
                        |message| vec![events::queued(message)],
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
            None => {
                blocking(move || store.enqueue_with(&message, |m| vec![events::queued(m)])).await?;
            }
        }
        self.wake_senders();
        Ok(accepted)
    }

    /// What routing can see of the modems now.
    pub(super) fn candidates(&self) -> Vec<routing::Candidate<'_>> {
        self.inner
            .modems
            .iter()
            .map(|slot| routing::Candidate {
                name: &slot.name,
                sim: slot.sim,
                send: slot.send,
                prefixes: &slot.prefixes,
                ready: slot.ready(),
            })
            .collect()
    }

    /// The modem a new message goes to, and whether the client pinned it there.
    fn route(&self, request: &NewMessage, to: &str) -> Result<(usize, bool), EnqueueError> {
        let requested = match (&request.modem, request.sim) {
            (Some(_), Some(_)) => return Err(invalid("modem", "give modem or sim, not both")),
            (Some(name), None) => Some(Requested::Name(name.clone())),
            (None, Some(sim)) => Some(Requested::Sim(sim)),
            (None, None) => None,
        };
        let turn = match requested {
            Some(_) => 0,
            None => self
                .inner
                .turn
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let field = if request.sim.is_some() {
            "sim"
        } else {
            "modem"
        };
        routing::assign(
            &self.candidates(),
            to,
            requested.as_ref(),
            self.inner.settings.routing,
            turn,
        )
        .map_err(|error| invalid(field, error.to_string()))
    }

    /// Settles messages a crash left in `sending` ([`lifecycle::recover`]).
    pub(super) async fn recover(&self) -> Result<(), StoreError> {
        let store = self.inner.store.clone();
        let settings = self.inner.settings.clone();
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
                store.update_message(&id, |message| lifecycle::recover(message, &settings))?;
            }
            Ok(count)
        })
        .await?;
        if recovered > 0 {
            info!("gateway: settled {recovered} message(s) left in sending by the last run");
        }
        Ok(())
    }

    /// Modem `modem`'s sender: while it is ready, submits the due messages routing lets it
    /// take ([`routing::may_take`]), one at a time; a message another sender is submitting
    /// is claimed and skipped.
    pub(super) async fn send_loop(self, modem: usize) {
        let mut status = self.inner.modems[modem].handle.watch_status();
        let wake = &self.inner.wake_sender[modem];
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
                () = wake.notified() => continue,
            }
            let store = self.inner.store.clone();
            let gateway = self.clone();
            let next = blocking(move || {
                let candidates = gateway.candidates();
                next_due(&store, now_ms(), |message| {
                    gateway.claim(&candidates, modem, message)
                })
            })
            .await;
            match next {
                Ok(Due::Now(id)) => {
                    let submitted = self.submit(modem, &id).await;
                    self.release(&id);
                    if let Err(error) = submitted {
                        if !error.is_storage_failure() {
                            log::error!("gateway: message {id}: {error}");
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Ok(Due::Later(wait)) => {
                    tokio::select! {
                        () = wake.notified() => {}
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

    /// Claims `message` for modem `modem`'s sender if routing lets it take the message and no
    /// other sender has claimed it; the claim holds until [`Gateway::release`].
    fn claim(
        &self,
        candidates: &[routing::Candidate<'_>],
        modem: usize,
        message: &OutboundMessage,
    ) -> bool {
        let modems = &self.inner.modems;
        let assigned = message.modem.as_ref().map(|name| {
            modems
                .iter()
                .position(|slot| &slot.name == name)
                .unwrap_or(usize::MAX)
        });
        if !routing::may_take(candidates, modem, assigned, message.pinned) {
            return false;
        }
        match self.inner.claimed.lock() {
            Ok(mut claimed) => claimed.insert(message.id.clone()),
            Err(_) => false,
        }
    }

    fn release(&self, id: &str) {
        if let Ok(mut claimed) = self.inner.claimed.lock() {
            claimed.remove(id);
        }
    }

    /// Writes one transition of message `id`; returns the message as written.
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

    /// Submits the pending parts of one message through modem `modem`, in order: each is
    /// marked `Submitting` (with the modem's name), sent with `AT+CMGS`
    /// (`ModemHandle::send`), and its outcome recorded. A temporary refusal hands the message
    /// to another ready modem ([`routing::failover_target`]).
    async fn submit(&self, modem: usize, id: &str) -> Result<(), StoreError> {
        let slot = &self.inner.modems[modem];
        let (name, sim) = (slot.name.clone(), slot.sim);
        let mut message = self
            .update(id, move |message| {
                if !message.dry_run && !message.state.is_final() {
                    // Taken over (failover) or from before several modems: events say who
                    // sends it.
                    message.modem = Some(name.clone());
                    message.sim = Some(sim);
                }
                lifecycle::start(message)
            })
            .await?;
        if lifecycle::is_done_sending(&message) {
            return Ok(());
        }
        if message.dry_run {
            // Everything but the modem: nothing below this line may run for a dry run.
            let now = now_ms();
            self.update(id, move |message| lifecycle::dry_run(message, now))
                .await?;
            return Ok(());
        }
        while let Some(index) = lifecycle::next_part(&message) {
            if self.stopping() {
                // Shutting down between parts: the rest go after the restart.
                return Ok(());
            }
            let since = now_ms();
            let name = slot.name.clone();
            self.update(id, move |message| {
                let effects = lifecycle::begin_part(message, index, since);
                if let Some(part) = message.parts.get_mut(index) {
                    part.modem = Some(name.clone());
                }
                effects
            })
            .await?;
            let part = &message.parts[index];
            let outcome = slot.handle.send(part.cmgs_length, &part.hex).await;
            let link = slot.handle.status().state;
            let now = now_ms();
            message = match outcome {
                Ok(reference) => {
                    let reference = MessageReference(reference);
                    let written = self
                        .update(id, move |message| {
                            lifecycle::part_accepted(message, index, reference, now)
                        })
                        .await?;
                    self.rematch(modem, reference, since).await;
                    written
                }
                Err(failure) => {
                    warn!(
                        "gateway: message {id} part {} on {}: {failure}",
                        index + 1,
                        slot.name
                    );
                    let settings = self.inner.settings.clone();
                    let temporary = failure.verdict == crate::modem::Verdict::Temporary;
                    let written = self
                        .update(id, move |message| {
                            lifecycle::part_refused(message, index, &failure, &link, &settings, now)
                        })
                        .await?;
                    if temporary && written.state == MessageState::Queued {
                        self.fail_over(modem, id, &written).await?;
                    }
                    return Ok(());
                }
            };
        }
        if lifecycle::has_part_in_flight(&message) && !lifecycle::is_done_sending(&message) {
            self.update(id, lifecycle::outcome_lost).await?;
        }
        Ok(())
    }

    /// After a temporary refusal on modem `failed`: the message goes to the next ready modem
    /// that may send, at once while each modem has had one try ([`routing::retry_at_once`]),
    /// else after its pause (its attempt is counted as before); with none, it stays and
    /// retries after its pause.
    async fn fail_over(
        &self,
        failed: usize,
        id: &str,
        message: &OutboundMessage,
    ) -> Result<(), StoreError> {
        let Some(target) = routing::failover_target(&self.candidates(), failed, message.pinned)
        else {
            return Ok(());
        };
        let slot = &self.inner.modems[target];
        info!(
            "gateway: message {id} moves from {} to {} after a temporary failure",
            self.inner.modems[failed].name, slot.name
        );
        let (name, sim) = (slot.name.clone(), slot.sim);
        let senders = self.inner.modems.iter().filter(|slot| slot.send).count();
        self.update(id, move |message| {
            if message.state == MessageState::Queued {
                message.modem = Some(name.clone());
                message.sim = Some(sim);
                if routing::retry_at_once(message.attempts, senders) {
                    message.next_attempt_at = None;
                }
            }
            Effects::default()
        })
        .await?;
        self.inner.wake_sender[target].notify_one();
        Ok(())
    }

    /// Tries the kept unmatched reports again now that TP-MR `reference` is recorded for a part
    /// handed to modem `modem` at `since` ([`reports::worth_rematching`]).
    async fn rematch(&self, modem: usize, reference: MessageReference, since: u64) {
        let store = self.inner.store.clone();
        let name = self.inner.modems[modem].name.clone();
        let first = modem == 0;
        // Only reports that came on this modem: TP-MRs are per SIM.
        let ours = move |on: &str| reports::of_modem(on, &name, first);
        let Ok(unmatched) = blocking(move || store.unmatched_on(ours)).await else {
            return;
        };
        for (key, report) in reports::worth_rematching(unmatched, reference, since) {
            if let Ok(true) = self.apply_report(modem, &report).await {
                let store = self.inner.store.clone();
                let _ = blocking(move || store.remove_unmatched(&key)).await;
            }
        }
    }

    /// A status report from the modem: matched and applied, or kept as unmatched.
    pub(super) async fn on_report(
        &self,
        modem: usize,
        report: StatusReport,
        hex: &str,
    ) -> Result<(), StoreError> {
        if self.apply_report(modem, &report).await? {
            return Ok(());
        }
        warn!(
            "gateway: status report on {} for TP-MR {} to {} matches no message; kept",
            self.inner.modems[modem].name, report.message_reference, report.recipient
        );
        super::Gateway::count(&self.inner.counters.unmatched_reports);
        let store = self.inner.store.clone();
        let hex = hex.to_string();
        let json = pdu::tpdu_json(&pdu::Tpdu::StatusReport(report.clone()));
        let name = self.inner.modems[modem].name.clone();
        let key = blocking(move || store.record_unmatched(&hex, &json, &name)).await?;
        // The sender may have recorded the TP-MR (and re-matched) between our lookup and the
        // write above: one more try closes that window.
        if self.apply_report(modem, &report).await? {
            let store = self.inner.store.clone();
            blocking(move || store.remove_unmatched(&key)).await?;
        }
        Ok(())
    }

    /// Applies a report that came on modem `modem` to the part [`reports::candidates`] picks
    /// among that modem's references (the first modem's include those recorded before
    /// several modems); false when none matches.
    async fn apply_report(&self, modem: usize, report: &StatusReport) -> Result<bool, StoreError> {
        let store = self.inner.store.clone();
        let owned = report.clone();
        let max_age = self.inner.settings.report_max_age;
        let now = now_ms();
        let name = self.inner.modems[modem].name.clone();
        let first = modem == 0;
        let matched = blocking(move || {
            let mut waiting = store.references(MessageReference(owned.message_reference))?;
            waiting.retain(|found| reports::of_modem(&found.modem, &name, first));
            for candidate in reports::candidates(&waiting, &owned, now, max_age) {
                // A message pruned meanwhile leaves its reference behind: not a match.
                if store.message(&candidate.message_id)?.is_some() {
                    return Ok(Some(candidate.clone()));
                }
            }
            Ok(None)
        })
        .await?;
        let Some(matched) = matched else {
            return Ok(false);
        };
        let status = report.status;
        let discharge = reports::discharge_time(report, now);
        let id = matched.message_id.clone();
        self.update(&id, move |message| {
            lifecycle::report(message, &matched, status, &discharge)
        })
        .await?;
        Ok(true)
    }

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
                let unreference = references_of(&store, &message)?;
                let (written, _) = store.update_message(&id, |message| {
                    lifecycle::expire_overdue(message, now, margin, &unreference)
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

/// The keys of the references of `message`'s submitted parts.
fn references_of(
    store: &crate::store::Store,
    message: &OutboundMessage,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut keys = Vec::new();
    for (index, part) in message.parts.iter().enumerate() {
        if let PartState::Submitted { reference, .. } = part.state {
            let ours = |found: &Reference| found.message_id == message.id && found.part == index;
            keys.extend(
                store
                    .references(reference)?
                    .into_iter()
                    .filter(ours)
                    .map(|found| found.key),
            );
        }
    }
    Ok(keys)
}

enum Due {
    Now(String),
    Later(Duration),
}

/// How long a sender with nothing it may take waits before it looks again, when other
/// modems hold queued messages (their modem may go away without an event reaching us).
const OTHERS_RECHECK: Duration = Duration::from_secs(5);

/// The first message in the outbox that may be tried at `now` (Unix ms) and that `claim`
/// takes, else how long until one may.
fn next_due(
    store: &crate::store::Store,
    now: u64,
    mut claim: impl FnMut(&OutboundMessage) -> bool,
) -> Result<Due, StoreError> {
    let mut soonest: Option<u64> = None;
    let mut others = false;
    for id in store.outbox()? {
        let Some(message) = store.message(&id)? else {
            continue;
        };
        match message.next_attempt_at {
            Some(at) if at > now => soonest = Some(soonest.map_or(at, |s| s.min(at))),
            _ if claim(&message) => return Ok(Due::Now(id)),
            _ => others = true,
        }
    }
    let mut wait = soonest.map_or(Duration::from_secs(3600), |at| {
        Duration::from_millis(at - now)
    });
    if others {
        wait = wait.min(OTHERS_RECHECK);
    }
    Ok(Due::Later(wait))
}

#[cfg(test)]
mod tests {
    use super::normalise_number;

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
}
