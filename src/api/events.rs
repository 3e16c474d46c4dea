//! `/v1/events`: the event log, read in sequence (optionally by name), and redelivery of one
//! event to its webhooks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::extract::{ApiPath, ApiQuery, page_limit};
use super::views::{EventList, Redelivered};
use super::{ApiError, Shared, with_store};

/// How many events a `name` filter looks at per request.
const NAME_FILTER_SCAN: usize = 100_000;

/// The query of `GET /v1/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
    /// An event name, or a prefix ending in `*`.
    name: Option<String>,
}

/// `GET /v1/events`: the events after a sequence.
pub async fn list(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let after = query.after.unwrap_or(0);
    let limit = page_limit(query.limit, 100)?;
    let events = match query.name {
        Some(name) => {
            with_store(&state, move |store| {
                store.events_named(after, &name, limit, NAME_FILTER_SCAN)
            })
            .await?
        }
        None => with_store(&state, move |store| store.events_after(after, limit)).await?,
    };
    Ok(axum::Json(EventList { events }).into_response())
}

/// `POST /v1/events/{sequence}/redeliver`: the event goes to its webhooks again.
pub async fn redeliver(
    State(state): State<Shared>,
    ApiPath(sequence): ApiPath<u64>,
) -> Result<Response, ApiError> {
    let jobs = with_store(&state, move |store| store.redeliver(sequence)).await?;
    match jobs {
        Some(endpoints) => {
            Ok((StatusCode::ACCEPTED, axum::Json(Redelivered { endpoints })).into_response())
        }
        None => Err(ApiError::not_found("no such event")),
    }
}
