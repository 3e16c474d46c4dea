//! The overview's live updates: `GET /console/events/stream`, server-sent events. Each second
//! it sends the events recorded since the last look (at most [`BATCH`] a time) and the modem's
//! line when it changed; the page keeps the newest few.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::Shared;
use super::pages::{EventRow, last_sequence};
use crate::api::views::ModemView;
use crate::store::blocking;

/// The most events one tick sends.
const BATCH: usize = 20;

/// How often the stream looks for news.
const TICK: Duration = Duration::from_secs(1);

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
}

/// `GET /console/events/stream`: `event` messages (an event row as JSON) and `modem`
/// messages (the modem's state line).
pub async fn stream(
    State(console): State<Shared>,
    Query(query): Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let after = match query.after {
        Some(after) => after,
        None => {
            let store = console.app.gateway.store().clone();
            blocking(move || last_sequence(&store)).await.unwrap_or(0)
        }
    };
    let cursor = Cursor {
        console,
        after,
        modem_line: String::new(),
        first: true,
    };
    let ticks = stream::unfold(cursor, |mut cursor| async move {
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
