//! `/v1/messages`: send (a checked request becomes `gateway::Gateway::enqueue`, which stores
//! it; the gateway's sender takes it to `AT+CMGS`), look one up, list them.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::extract::{ApiPath, ApiQuery, IdempotencyKey, JsonBody, page_limit};
use super::views::{MessageDetail, MessageList, MessageView};
use super::{ApiError, Shared, with_store};
use crate::gateway::{EnqueueError, NewMessage};
use crate::store::MessageState;

/// The body of `POST /v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    to: String,
    text: String,
    #[serde(default)]
    callback_data: Option<String>,
    #[serde(default)]
    validity: Option<String>,
    #[serde(default)]
    flash: bool,
    /// Everything but the modem: the events of a delivered message, nothing sent.
    #[serde(default)]
    dry_run: bool,
    /// `false` asks no status report for this message (overrides `[sms] status_reports`).
    #[serde(default)]
    status_report: Option<bool>,
    /// Send through this modem (its name) only.
    #[serde(default)]
    modem: Option<String>,
    /// Send through the modem with this SIM slot number only.
    #[serde(default)]
    sim: Option<u32>,
}

/// `POST /v1/messages`: 202 once the message is on disk. The header's error waits until the
/// body is checked, so a request with both wrong reports the body first.
pub async fn send(
    State(state): State<Shared>,
    idempotency_key: Result<IdempotencyKey, ApiError>,
    JsonBody(request): JsonBody<SendRequest>,
) -> Result<Response, ApiError> {
    let validity = parse_validity(request.validity.as_deref())?;
    let IdempotencyKey(idempotency_key) = idempotency_key?;
    let accepted = state
        .gateway
        .enqueue(NewMessage {
            to: request.to,
            text: request.text,
            callback_data: request.callback_data,
            validity,
            flash: request.flash,
            idempotency_key,
            dry_run: request.dry_run,
            status_report: request.status_report,
            modem: request.modem,
            sim: request.sim,
        })
        .await
        .map_err(enqueue_error)?;
    Ok((StatusCode::ACCEPTED, axum::Json(accepted)).into_response())
}

/// `validity` as a humantime duration (`"2h"`), or a 422 naming it.
fn parse_validity(text: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    humantime::parse_duration(text).map(Some).map_err(|error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{text:?}: {error}"),
        )
        .field("validity")
    })
}

/// What the gateway refused, as the API says it.
fn enqueue_error(error: EnqueueError) -> ApiError {
    match error {
        EnqueueError::Invalid { field, message } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
        }
        EnqueueError::KeyReused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used in the last 24 h for a different request",
        )
        .field("Idempotency-Key"),
        EnqueueError::Store(error) => error.into(),
    }
}

/// `GET /v1/messages/{id}`: the message with its events.
pub async fn one(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let found = with_store(&state, move |store| store.message(&id)).await?;
    let Some(message) = found else {
        return Err(ApiError::not_found("no such message"));
    };
    let id = message.id.clone();
    let events = with_store(&state, move |store| store.events_of_message(&id, 50_000)).await?;
    let detail = MessageDetail {
        message: MessageView::new(&message),
        events,
    };
    Ok(axum::Json(detail).into_response())
}

/// The query of `GET /v1/messages`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/messages`: the newest first, optionally in one state.
pub async fn list(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let wanted = query.state.as_deref().map(state_named).transpose()?;
    let limit = page_limit(query.limit, 50)?;
    let messages = with_store(&state, move |store| store.messages(wanted, limit)).await?;
    let list = MessageList {
        messages: messages.iter().map(MessageView::new).collect(),
    };
    Ok(axum::Json(list).into_response())
}

/// The message state a `state=` parameter names.
fn state_named(name: &str) -> Result<MessageState, ApiError> {
    MessageState::ALL
        .into_iter()
        .find(|state| state.name() == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "state is one of queued, sending, sent, delivered, failed, expired",
            )
            .field("state")
        })
}
