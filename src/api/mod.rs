//! The local HTTP API (axum): send, look up, list events, status, health, metrics, webhooks.
//! A bearer token guards every route but `/healthz`, `/readyz` and `/v1/openapi.json`; errors
//! are JSON `{"error": {"code", "message", "field"}}`.
//!
//! This file owns the shared state, the router and the token check. The handlers sit by
//! resource (`messages`, `events`, `webhooks`, `status`, `probes`, `metrics`); what they
//! answer is typed in `views`, what they accept in `extract`, and every failure is an
//! `error::ApiError`. The API owns no SMS rules: a send is `gateway::Gateway::enqueue`.

mod error;
mod events;
mod extract;
mod messages;
mod metrics;
mod probes;
mod status;
mod token;
mod ussd;
pub(crate) mod views;

pub use views::link_state_name;
pub(crate) mod webhooks;

#[cfg(test)]
pub(crate) mod test_stack;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::gateway::Gateway;
use crate::modem::ModemHandle;
use crate::store::{Store, StoreError, blocking};
use crate::webhook::{Dispatcher, EndpointStatus};

pub use error::ApiError;
pub use probes::Readiness;
pub use token::token;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The OpenAPI 3 document (`docs/openapi.json` in the repository).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What the handlers share.
pub struct AppState {
    /// The gateway (enqueue) and its store (reads).
    pub gateway: Gateway,
    /// The modem, for status.
    pub modem: ModemHandle,
    /// The webhook dispatcher, for its status and controls.
    pub dispatcher: Arc<Dispatcher>,
    /// The bearer token.
    pub token: String,
    /// When the daemon started.
    pub started: Instant,
    /// Since when no modem has been ready, for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// `[api] ready_grace`.
    pub ready_grace: Duration,
    /// The MQTT link, when `[mqtt]` is configured (status, metrics).
    pub mqtt: Option<crate::mqtt::MqttLink>,
}

type Shared = Arc<AppState>;

/// The router: every route, the token check, the JSON fallbacks and the body limit.
pub fn router(state: Shared) -> Router {
    let guarded = Router::new()
        .route("/v1/messages", post(messages::send).get(messages::list))
        .route("/v1/messages/{id}", get(messages::one))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{sequence}/redeliver", post(events::redeliver))
        .route("/v1/status", get(status::status))
        .route("/v1/ussd", post(ussd::send))
        .route("/v1/ussd/cancel", post(ussd::cancel))
        .route("/v1/webhooks", get(webhooks::list))
        .route("/v1/webhooks/{name}/test", post(webhooks::test))
        .route("/v1/webhooks/{name}/enable", post(webhooks::enable))
        .route(
            "/v1/webhooks/{name}/dead-letters",
            get(webhooks::dead_letters),
        )
        .route(
            "/v1/webhooks/{name}/dead-letters/{sequence}/replay",
            post(webhooks::replay_dead_letter),
        )
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorise,
        ));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/v1/openapi.json", get(openapi))
        .merge(guarded)
        .merge(crate::console::router(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The middleware on every guarded route: the request goes on only with the right token.
async fn authorise(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if same(token.as_bytes(), state.token.as_bytes()) => next.run(request).await,
        Some(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token").into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> (see `smsrelay token`)",
        )
        .into_response(),
    }
}

/// The token of an `Authorization` value; `None` for another scheme or none.
fn bearer_token(value: &str) -> Option<&str> {
    value
        .trim()
        .split_once(' ')
        // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` is as good as `Bearer`.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Constant-time comparison: the token must not leak through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs store work off the async runtime (reads scan trees, writes flush).
async fn with_store<T: Send + 'static>(
    state: &Shared,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.gateway.store().clone();
    Ok(blocking(move || work(&store)).await?)
}

/// Each webhook's state, read off the async runtime.
async fn webhook_status(state: &Shared) -> Result<Vec<EndpointStatus>, ApiError> {
    let dispatcher = Arc::clone(&state.dispatcher);
    Ok(blocking(move || dispatcher.status()).await?)
}
