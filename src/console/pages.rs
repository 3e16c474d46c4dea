//! The console's pages (GET): overview, messages, one message, send, webhooks, events and
//! sign-in. Each reads what the API reads and hands the API's typed views to a template.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::{PageError, Shared, SignedIn, render, session_id, with_store};
use crate::api::views::{MessageView, ModemView, WebhookBrief, WebhookView};
use crate::gateway::{Gateway, rfc3339};
use crate::store::{Event, Store, StoreError};

/// How many events the overview shows (and the live list keeps).
pub const RECENT_EVENTS: usize = 10;

/// How many rows a list page shows.
const PAGE_ROWS: usize = 100;

/// How many of the newest events the inbound list and the event filter look through.
const EVENT_SCAN: usize = 5_000;

/// The query every page may carry: what the last form did.
#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    done: Option<String>,
}

/// The sentence for a `?done=` code; unknown codes say nothing (no text is reflected).
fn notice_text(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "sent" => Some("Queued for sending."),
        "tested" => Some("A test event is queued for this webhook."),
        "enabled" => Some("Enabled; a test event is on its way."),
        "replayed" => Some("The dead letter is queued again."),
        "redelivered" => Some("The event is queued again for its webhooks."),
        _ => None,
    }
}

/// The context every page shares: which page, the CSRF token, the notice.
fn base(page: &str, signed_in: &SignedIn, notice: &Notice) -> Value {
    context! {
        page => page,
        csrf => signed_in.session.csrf,
        notice => notice_text(notice.done.as_deref()),
    }
}

/// An event as a row: when, what, and the fields a person looks for.
#[derive(Debug, Serialize)]
pub struct EventRow {
    sequence: u64,
    name: String,
    at: String,
    outbound_id: Option<String>,
    summary: String,
}

impl EventRow {
    /// The row of `event`.
    pub fn new(event: &Event) -> EventRow {
        let field = |name: &str| event.data.get(name).and_then(|value| value.as_str());
        let mut summary = Vec::new();
        if let Some(to) = field("to") {
            summary.push(format!("to {to}"));
        }
        if let Some(from) = field("from") {
            summary.push(format!("from {from}"));
        }
        if let Some(text) = field("text") {
            summary.push(shorten(text, 60));
        }
        for name in ["status_text", "reason", "error", "endpoint"] {
            if let Some(value) = field(name) {
                summary.push(shorten(value, 80));
            }
        }
        EventRow {
            sequence: event.sequence,
            name: event.name.clone(),
            at: rfc3339(event.created_at.saturating_mul(1000)),
            // Only an outbound message has a page; an inbound one's id is not a message's.
            outbound_id: field("to").and(field("message_id")).map(str::to_string),
            summary: summary.join(" · "),
        }
    }
}

/// `text` cut to `limit` characters, with an ellipsis when cut.
fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_string()
    } else {
        let cut: String = text.chars().take(limit).collect();
        format!("{cut}…")
    }
}

/// The newest `count` events matching `name` (all when `None`) among the newest `scan`,
/// newest first.
pub fn recent_events(
    store: &Store,
    name: Option<&str>,
    count: usize,
    scan: usize,
) -> Result<Vec<Event>, StoreError> {
    let last = store.newest_event_sequence()?;
    let after = last.saturating_sub(scan as u64);
    let mut events = match name {
        Some(name) => store.events_named(after, name, scan, scan)?,
        None => store.events_after(after, scan)?,
    };
    events.reverse();
    events.truncate(count);
    Ok(events)
}

/// Signal strength as 0–4 bars from the `+CSQ` RSSI (99 is unknown: no bars).
pub fn signal_bars(rssi: u8) -> u8 {
    match rssi {
        20..=31 => 4,
        15..=19 => 3,
        10..=14 => 2,
        1..=9 => 1,
        _ => 0,
    }
}

/// `GET /console`: the modem, the outbox, the webhooks and the last events.
pub async fn overview(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let status = console.app.modem.status();
    let slots = console.app.gateway.modems();
    let statuses: Vec<_> = slots.iter().map(|slot| slot.handle.status()).collect();
    let (outbox, events) = with_store(&console, |store| {
        let events = recent_events(store, None, RECENT_EVENTS, RECENT_EVENTS)?;
        Ok((store.outbox_len(), events))
    })
    .await?;
    let webhooks = webhook_status(&console).await?;
    let store_failure = console.app.gateway.store().failure();
    let context = context! {
        modem => Value::from_serialize(ModemView::new(&status)),
        modems => Value::from_serialize(
            statuses.iter().zip(slots).map(|(status, slot)| ModemView::named(status, slot)).collect::<Vec<_>>()
        ),
        bars => status.signal.map(|signal| signal_bars(signal.rssi)),
        outbox => outbox,
        store_error => store_failure.map(|failure| failure.error),
        webhooks => Value::from_serialize(webhooks.iter().map(WebhookBrief::from).collect::<Vec<_>>()),
        events => Value::from_serialize(events.iter().map(EventRow::new).collect::<Vec<_>>()),
        last_sequence => events.first().map_or(0, |event| event.sequence),
        version => env!("CARGO_PKG_VERSION"),
        uptime => humantime::format_duration(std::time::Duration::from_secs(console.app.started.elapsed().as_secs())).to_string(),
        ..base("overview", &signed_in, &notice)
    };
    render(&console, "overview.html", context)
}

/// Each webhook's state, read off the async runtime.
async fn webhook_status(
    console: &Shared,
) -> Result<Vec<crate::webhook::EndpointStatus>, PageError> {
    let dispatcher = Arc::clone(&console.app.dispatcher);
    Ok(crate::store::blocking(move || dispatcher.status()).await?)
}

/// The messages page's query: a number (or part of one) to look for.
#[derive(Debug, Default, Deserialize)]
pub struct MessagesQuery {
    number: Option<String>,
    done: Option<String>,
}

/// The digits of a number, for matching `+44 7700 900123` with `07700900123`'s tail.
fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// `GET /console/messages`: outbound with state and parts, inbound, search by number.
pub async fn messages(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
    Query(query): Query<MessagesQuery>,
) -> Result<Response, PageError> {
    let wanted = query.number.as_deref().map(digits).unwrap_or_default();
    let matches = {
        let wanted = wanted.clone();
        move |number: &str| wanted.is_empty() || digits(number).contains(&wanted)
    };
    let outbound_match = matches.clone();
    let (outbound, inbound) = with_store(&console, move |store| {
        let mut outbound = store.messages(None, 1000)?;
        outbound.retain(|message| outbound_match(&message.to));
        outbound.truncate(PAGE_ROWS);
        let mut inbound = recent_events(store, Some("sms.received"), EVENT_SCAN, EVENT_SCAN)?;
        inbound.retain(|event| matches(event.data["from"].as_str().unwrap_or_default()));
        inbound.truncate(PAGE_ROWS);
        Ok((outbound, inbound))
    })
    .await?;
    let notice = Notice { done: query.done };
    let context = context! {
        number => query.number,
        outbound => Value::from_serialize(outbound.iter().map(MessageView::new).collect::<Vec<_>>()),
        inbound => Value::from_serialize(inbound.iter().map(|event| &event.data).collect::<Vec<_>>()),
        ..base("messages", &signed_in, &notice)
    };
    render(&console, "messages.html", context)
}

/// `GET /console/messages/{id}`: one message, its parts and its timeline.
pub async fn message(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let (message, events) = with_store(&console, move |store| {
        let Some(message) = store.message(&id)? else {
            return Ok((None, Vec::new()));
        };
        let events = store.events_of_message(&message.id, 50_000)?;
        Ok((Some(message), events))
    })
    .await?;
    let Some(message) = message else {
        return Err(PageError::new(StatusCode::NOT_FOUND, "No such message."));
    };
    let context = context! {
        message => Value::from_serialize(MessageView::new(&message)),
        events => Value::from_serialize(events.iter().map(EventRow::new).collect::<Vec<_>>()),
        ..base("messages", &signed_in, &notice)
    };
    render(&console, "message.html", context)
}

/// One modem in the send form's choice.
#[derive(Debug, Serialize)]
pub struct ModemChoice {
    /// The value posted: the modem's name.
    name: String,
    /// What the option shows: name, SIM slot, and its number when configured.
    label: String,
    /// Whether it may send (a receive-only modem is listed but cannot be chosen).
    send: bool,
}

/// The send form's modem choices: none with one modem (the form stays as it was), else
/// every modem in config order.
pub fn modem_choices(gateway: &Gateway) -> Vec<ModemChoice> {
    let slots = gateway.modems();
    if slots.len() < 2 {
        return Vec::new();
    }
    slots
        .iter()
        .map(|slot| {
            let mut label = format!("{} — SIM {}", slot.name, slot.sim);
            if let Some(number) = &slot.number {
                label.push_str(&format!(", {number}"));
            }
            if !slot.send {
                label.push_str(" (receive-only)");
            }
            ModemChoice {
                name: slot.name.clone(),
                label,
                send: slot.send,
            }
        })
        .collect()
}

/// `GET /console/send`: the form.
pub async fn send(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let context = context! {
        count => super::actions::count_text(""),
        modems => Value::from_serialize(modem_choices(&console.app.gateway)),
        ..base("send", &signed_in, &notice)
    };
    render(&console, "send.html", context)
}

/// `GET /console/webhooks`: each endpoint, its dead letters, and the buttons.
pub async fn webhooks(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let status = webhook_status(&console).await?;
    let names: Vec<String> = status.iter().map(|webhook| webhook.name.clone()).collect();
    let dead_letters = with_store(&console, move |store| {
        names
            .iter()
            .map(|name| crate::api::webhooks::dead_letters_of(store, name))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let rows: Vec<Value> = status
        .iter()
        .zip(&dead_letters)
        .map(|(webhook, dead)| {
            context! {
                webhook => Value::from_serialize(WebhookView::from(webhook)),
                dead_letters => Value::from_serialize(dead),
            }
        })
        .collect();
    let context = context! {
        webhooks => rows,
        ..base("webhooks", &signed_in, &notice)
    };
    render(&console, "webhooks.html", context)
}

/// The events page's query: a name filter (`sms.*` patterns as the API takes them).
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    name: Option<String>,
    done: Option<String>,
}

/// `GET /console/events`: the newest events, filterable by name, with Redeliver.
pub async fn events(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, PageError> {
    let name = query.name.filter(|name| !name.trim().is_empty());
    let filter = name.clone();
    let events = with_store(&console, move |store| {
        recent_events(store, filter.as_deref(), PAGE_ROWS, EVENT_SCAN)
    })
    .await?;
    let notice = Notice { done: query.done };
    let context = context! {
        name => name,
        events => Value::from_serialize(events.iter().map(EventRow::new).collect::<Vec<_>>()),
        ..base("events", &signed_in, &notice)
    };
    render(&console, "events.html", context)
}

/// Why the sign-in page is shown again.
#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    failed: Option<String>,
}

/// `GET /console/signin`: the form, or straight to the overview when signed in.
pub async fn sign_in(
    State(console): State<Shared>,
    headers: axum::http::HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Result<Response, PageError> {
    let live = session_id(&headers).is_some_and(|id| {
        console
            .sessions()
            .get(&id, std::time::Instant::now())
            .is_some()
    });
    if live {
        return Ok(Redirect::to("/console").into_response());
    }
    let context = context! { page => "signin", failed => query.failed.is_some() };
    render(&console, "signin.html", context)
}

#[cfg(test)]
mod tests {
    use super::{shorten, signal_bars};

    #[test]
    fn rssi_reads_as_bars() {
        for (rssi, bars) in [
            (0, 0),
            (1, 1),
            (9, 1),
            (10, 2),
            (15, 3),
            (20, 4),
            (31, 4),
            (99, 0),
        ] {
            assert_eq!(signal_bars(rssi), bars, "{rssi}");
        }
    }

    #[test]
    fn long_texts_are_cut_on_characters() {
        assert_eq!(shorten("héllo", 5), "héllo");
        assert_eq!(shorten("héllo!", 5), "héllo…");
        assert_eq!(shorten("", 5), "");
    }
}
