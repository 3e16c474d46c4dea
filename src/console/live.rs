//! The overview's live updates: `GET /console/events/stream`, server-sent events. Each second
//! it sends the events recorded since the last look (at most [`BATCH`] a time) and the modem's
//! line when it changed; the page keeps the newest few. A stream ends after
//! [`STREAM_LIFETIME`]; the browser reconnects with `Last-Event-ID` and misses nothing.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::Shared;
use super::pages::EventRow;
use crate::api::views::ModemView;
use crate::store::blocking;

/// The most events one tick sends.
const BATCH: usize = 20;

/// How often the stream looks for news.
const TICK: Duration = Duration::from_secs(1);

/// How long one stream lasts before the browser is made to reconnect.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// Where the page's list ends: the newest sequence it shows.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    after: Option<u64>,
}

/// What the stream carries between ticks.
struct Cursor {
    console: Shared,
    after: u64,
    modem_line: String,
    first: bool,
    ends: tokio::time::Instant,
}

/// `GET /console/events/stream`: `event` messages (an event row as JSON) and `modem`
/// messages (the modem's state line).
pub async fn stream(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // A reconnecting browser says the last event it got; that wins over the page's cursor.
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let after = match last_seen.or(query.after) {
        Some(after) => after,
        None => {
            let store = console.app.gateway.store().clone();
            blocking(move || store.newest_event_sequence())
                .await
                .unwrap_or(0)
        }
    };
    let cursor = Cursor {
        console,
        after,
        modem_line: String::new(),
        first: true,
        ends: tokio::time::Instant::now() + STREAM_LIFETIME,
    };
    let ticks = stream::unfold(cursor, |mut cursor| async move {
        if tokio::time::Instant::now() >= cursor.ends {
            return None;
        }
        if !cursor.first {
            tokio::time::sleep(TICK).await;
        }
        cursor.first = false;
        let news = news(&mut cursor).await;
        Some((stream::iter(news.into_iter().map(Ok)), cursor))
    });
    Sse::new(futures_util::StreamExt::flatten(ticks)).keep_alive(KeepAlive::default())
}

/// The messages for one tick: new events, then the modem's line if it changed.
async fn news(cursor: &mut Cursor) -> Vec<SseEvent> {
    let store = cursor.console.app.gateway.store().clone();
    let after = cursor.after;
    let events = blocking(move || store.events_after(after, BATCH))
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for event in &events {
        cursor.after = event.sequence;
        if let Ok(message) = SseEvent::default()
            .event("event")
            .id(event.sequence.to_string())
            .json_data(EventRow::new(event))
        {
            out.push(message);
        }
    }
    let status = cursor.console.app.modem.status();
    let line = serde_json::to_string(&ModemView::new(&status)).unwrap_or_default();
    if line != cursor.modem_line {
        out.push(SseEvent::default().event("modem").data(line.clone()));
        cursor.modem_line = line;
    }
    out
}
