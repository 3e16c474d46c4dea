//! `/v1/webhooks`: each endpoint's state, a test event, re-enabling a disabled endpoint, and
//! its dead letters (list, replay). Delivery itself is `webhook::Dispatcher`'s.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::extract::ApiPath;
use super::views::{
    DeadLetterList, DeadLetterView, Enabled, Replayed, TestQueued, WebhookList, WebhookView,
};
use super::{ApiError, Shared, webhook_status, with_store};
use crate::store::{Store, StoreError, blocking};

/// `GET /v1/webhooks`.
pub async fn list(State(state): State<Shared>) -> Result<Response, ApiError> {
    let status = webhook_status(&state).await?;
    let list = WebhookList {
        webhooks: status.iter().map(WebhookView::from).collect(),
    };
    Ok(axum::Json(list).into_response())
}

/// A 404 unless `name` is a configured endpoint.
async fn known_webhook(state: &Shared, name: &str) -> Result<(), ApiError> {
    let known = webhook_status(state)
        .await?
        .iter()
        .any(|status| status.name == name);
    if known {
        Ok(())
    } else {
        Err(ApiError::not_found("no such webhook"))
    }
}

/// `POST /v1/webhooks/{name}/test`: a `webhook.test` event for this endpoint only.
pub async fn test(
    State(state): State<Shared>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    known_webhook(&state, &name).await?;
    let event = with_store(&state, move |store| store.enqueue_test_event(&name, false)).await?;
    let queued = TestQueued { event_id: event.id };
    Ok((StatusCode::ACCEPTED, axum::Json(queued)).into_response())
}

/// `POST /v1/webhooks/{name}/enable`: a disabled endpoint is tried again, with a test event.
pub async fn enable(
    State(state): State<Shared>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    known_webhook(&state, &name).await?;
    let dispatcher = Arc::clone(&state.dispatcher);
    let event = blocking(move || dispatcher.enable(&name)).await?;
    let enabled = Enabled {
        test_event_id: event.id,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(enabled)).into_response())
}

/// `GET /v1/webhooks/{name}/dead-letters`: deliveries to one endpoint that ran out of
/// attempts, with their last attempt.
pub async fn dead_letters(
    State(state): State<Shared>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    known_webhook(&state, &name).await?;
    let dead_letters = with_store(&state, move |store| dead_letters_of(store, &name)).await?;
    Ok(axum::Json(DeadLetterList { dead_letters }).into_response())
}

/// An endpoint's dead letters, each with its event and its last attempt.
pub(crate) fn dead_letters_of(
    store: &Store,
    name: &str,
) -> Result<Vec<DeadLetterView>, StoreError> {
    let mut listed = Vec::new();
    for job in store.dead_letters_of(name)? {
        let event = store.event(job.event_sequence)?;
        let last_attempt = store
            .attempts(name, job.event_sequence)?
            .into_iter()
            .next_back();
        listed.push(DeadLetterView {
            event_sequence: job.event_sequence,
            event_id: event.as_ref().map(|event| event.id.clone()),
            event_name: event.map(|event| event.name),
            sequence: job.sequence,
            attempts: job.attempts,
            last_attempt,
        });
    }
    Ok(listed)
}

/// `POST /v1/webhooks/{name}/dead-letters/{sequence}/replay`: one dead letter back in its
/// endpoint's queue, due now, with a fresh schedule.
pub async fn replay_dead_letter(
    State(state): State<Shared>,
    ApiPath((name, sequence)): ApiPath<(String, u64)>,
) -> Result<Response, ApiError> {
    known_webhook(&state, &name).await?;
    let replayed = with_store(&state, move |store| {
        store.replay_dead_letter(&name, sequence)
    })
    .await?;
    if !replayed {
        return Err(ApiError::not_found(
            "no dead letter for this event on this webhook",
        ));
    }
    let replayed = Replayed { replayed: sequence };
    Ok((StatusCode::ACCEPTED, axum::Json(replayed)).into_response())
}
