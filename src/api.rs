//! The local HTTP API (axum): send, look up, list events, status, health, metrics, webhooks.
//! A bearer token guards every route but `/healthz`; errors are JSON
//! `{"error": {"code", "message", "field"}}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gateway::{EnqueueError, Gateway, NewMessage};
use crate::modem::ModemHandle;
use crate::store::{MessageState, OutboundMessage, PartState, Store, StoreError, blocking};
use crate::webhook::{ClockVerdict, Dispatcher, EndpointStatus};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

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
}

/// Since when the modem has not been ready: `/readyz` tolerates a modem that is starting or
/// reconnecting for `ready_grace`, so a probe does not flap on every re-init.
#[derive(Debug)]
pub struct Readiness {
    not_ready_since: std::sync::Mutex<Option<Instant>>,
}

impl Default for Readiness {
    fn default() -> Readiness {
        // The start is the moment it was last not ready.
        Readiness {
            not_ready_since: std::sync::Mutex::new(Some(Instant::now())),
        }
    }
}

impl Readiness {
    /// Records whether the modem is ready now.
    pub fn observe(&self, ready: bool) {
        let mut since = self
            .not_ready_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (ready, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// How long the modem has not been ready; `None` while it is.
    pub fn not_ready_for(&self) -> Option<Duration> {
        self.not_ready_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .map(|since| since.elapsed())
    }
}

/// An API error: status, code, message, and the field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": {
            "code": self.code,
            "message": self.message,
            "field": self.field,
        }});
        let mut response = (self.status, axum::Json(body)).into_response();
        // RFC 9110 §11.6.1: a 401 names the scheme it wants.
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"smsrelay\""),
            );
        }
        response
    }
}

/// A query string that does not parse (`limit=abc`): the JSON error, naming the parameter.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        let text = rejection.body_text();
        // axum words it "Failed to deserialize query string: limit: invalid digit …".
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        let field = detail.split_once(": ").map(|(field, _)| field.to_string());
        let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", text.clone());
        match field {
            Some(field) => error.field(field),
            None => error,
        }
    }
}

/// A path segment of the wrong type (`/v1/events/abc/redeliver`): the JSON error.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

/// `limit` as the OpenAPI document states it: 1 to 1000, `default` when absent.
fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(limit @ 1..=1000) => Ok(limit),
        Some(limit) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and 1000, not {limit}"),
        )
        .field("limit")),
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        if error.is_storage_failure() {
            // Logged by the store once a minute; the client may try again later.
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the gateway cannot write to its database: {error}"),
            );
        }
        log::error!("api: store: {error}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            error.to_string(),
        )
    }
}

type Shared = Arc<AppState>;

/// The router.
pub fn router(state: Shared) -> Router {
    let guarded = Router::new()
        .route("/v1/messages", post(send).get(list_messages))
        .route("/v1/messages/{id}", get(message))
        .route("/v1/events", get(events))
        .route("/v1/events/{sequence}/redeliver", post(redeliver))
        .route("/v1/status", get(status))
        .route("/v1/webhooks", get(webhooks))
        .route("/v1/webhooks/{name}/test", post(webhook_test))
        .route("/v1/webhooks/{name}/enable", post(webhook_enable))
        .route("/v1/webhooks/{name}/dead-letters", get(dead_letters))
        .route(
            "/v1/webhooks/{name}/dead-letters/{sequence}/replay",
            post(replay_dead_letter),
        )
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorise,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi))
        .merge(guarded)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The OpenAPI 3 document (`docs/openapi.json` in the repository).
pub const OPENAPI: &str = include_str!("../docs/openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Constant-time comparison: the token must not leak through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorise(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` is as good as `Bearer`.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
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

/// Why the daemon is not alive: the store cannot write (a full disk, an I/O error).
fn liveness_problems(state: &AppState) -> Vec<String> {
    state
        .gateway
        .store()
        .failure()
        .map(|failure| {
            format!(
                "store: cannot write since {}: {}",
                crate::gateway::rfc3339(failure.since_ms),
                failure.error
            )
        })
        .into_iter()
        .collect()
}

/// A probe's answer: 200 with `ok_word`, or 503 with `failing_word` and the reasons.
fn probe_answer(ok_word: &str, failing_word: &str, reasons: Vec<String>, extra: Value) -> Response {
    let (status, word) = if reasons.is_empty() {
        (StatusCode::OK, ok_word)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failing_word)
    };
    let mut body = json!({ "status": word, "reasons": reasons });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, axum::Json(body)).into_response()
}

/// Liveness: the process serves and the store writes.
async fn healthz(State(state): State<Shared>) -> Response {
    let status = state.modem.status();
    let problems = liveness_problems(&state);
    let store = if problems.is_empty() { "ok" } else { "failing" };
    probe_answer(
        "ok",
        "failing",
        problems,
        json!({ "store": store, "modem": format!("{:?}", status.state) }),
    )
}

/// Readiness: alive, and a modem ready (or not ready for less than `ready_grace`).
async fn readyz(State(state): State<Shared>) -> Response {
    let status = state.modem.status();
    let mut problems = liveness_problems(&state);
    let not_ready_for = state.readiness.not_ready_for();
    if let Some(waited) = not_ready_for.filter(|waited| *waited >= state.ready_grace) {
        let why = status
            .last_error
            .clone()
            .unwrap_or_else(|| format!("{:?}", status.state));
        problems.push(format!(
            "modem: not ready for {} s ({why})",
            waited.as_secs()
        ));
    }
    probe_answer(
        "ready",
        "not_ready",
        problems,
        json!({
            "modem": format!("{:?}", status.state),
            "modem_not_ready_seconds": not_ready_for.map(|waited| waited.as_secs()),
        }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    to: String,
    text: String,
    #[serde(default)]
    callback_data: Option<String>,
    #[serde(default)]
    validity: Option<String>,
    #[serde(default)]
    flash: bool,
}

/// `missing field `to`` → `to`: serde names the field in backticks.
fn field_of(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}

/// `application/json`, any case, with parameters, or a `+json` type (RFC 6839).
fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// The send request, or a 400 naming the field at fault: serde's path for a wrong type, the
/// backticked name for a missing or unknown one.
fn parse_send_request(body: &[u8]) -> Result<SendRequest, ApiError> {
    let invalid_json = |error: serde_json::Error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string())
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return invalid_json(inner);
        }
        let message = inner.to_string();
        let field = if path == "." {
            field_of(&message)
        } else {
            Some(path)
        };
        let invalid = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        match field {
            Some(field) => invalid.field(field),
            None => invalid,
        }
    })?;
    // Trailing characters after the object make the body invalid JSON.
    deserializer.end().map_err(invalid_json)?;
    Ok(request)
}

async fn send(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(
            status,
            code,
            format!("{rejection} (the limit is {BODY_LIMIT} bytes)"),
        )
    })?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(is_json_media_type);
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ));
    }
    let request = parse_send_request(&body)?;
    let validity = match &request.validity {
        Some(text) => Some(humantime::parse_duration(text).map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{text:?}: {error}"),
            )
            .field("validity")
        })?),
        None => None,
    };
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    if idempotency_key
        .as_ref()
        .is_some_and(|key| key.is_empty() || key.len() > 255)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            "Idempotency-Key must be 1–255 characters",
        )
        .field("Idempotency-Key"));
    }
    let accepted = state
        .gateway
        .enqueue(NewMessage {
            to: request.to,
            text: request.text,
            callback_data: request.callback_data,
            validity,
            flash: request.flash,
            idempotency_key,
        })
        .await
        .map_err(|error| match error {
            EnqueueError::Invalid { field, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
                    .field(field)
            }
            EnqueueError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used in the last 24 h for a different request",
            )
            .field("Idempotency-Key"),
            EnqueueError::Store(error) => error.into(),
        })?;
    Ok((StatusCode::ACCEPTED, axum::Json(accepted)).into_response())
}

fn message_json(message: &OutboundMessage) -> Value {
    let parts: Vec<Value> = message
        .parts
        .iter()
        .map(|part| match &part.state {
            PartState::Pending => json!({ "state": "pending" }),
            PartState::Submitting { .. } => json!({ "state": "submitting" }),
            PartState::Submitted { reference, .. } => {
                json!({ "state": "submitted", "message_reference": reference })
            }
            PartState::Delivered {
                reference,
                status,
                at,
            } => json!({
                "state": "delivered", "message_reference": reference,
                "status_code": status, "delivered_at": at,
            }),
            PartState::Failed { reference, status } => json!({
                "state": "failed", "message_reference": reference, "status_code": status,
            }),
        })
        .collect();
    let time = |ms: Option<u64>| ms.map(crate::gateway::rfc3339);
    json!({
        "id": message.id,
        "to": message.to,
        "text": message.text,
        "encoding": message.encoding,
        "state": message.state.name(),
        "status_report": message.status_report,
        "parts": parts,
        "attempts": message.attempts,
        "last_error": message.last_error,
        "callback_data": message.callback_data,
        "created_at": time(Some(message.created_at)),
        "updated_at": time(Some(message.updated_at)),
        "sent_at": time(message.sent_at),
        "delivered_at": message.delivered_at,
    })
}

async fn message(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let found = with_store(&state, move |store| store.message(&id)).await?;
    match found {
        Some(message) => {
            let id = message.id.clone();
            let events =
                with_store(&state, move |store| store.events_of_message(&id, 50_000)).await?;
            let mut body = message_json(&message);
            body["events"] = json!(events);
            Ok(axum::Json(body).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such message",
        )),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn list_messages(
    State(state): State<Shared>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some(name) => Some(
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
                })?,
        ),
    };
    let limit = page_limit(query.limit, 50)?;
    let messages = with_store(&state, move |store| store.messages(wanted, limit)).await?;
    let list: Vec<Value> = messages.iter().map(message_json).collect();
    Ok(axum::Json(json!({ "messages": list })).into_response())
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
    /// An event name, or a prefix ending in `*`.
    name: Option<String>,
}

/// How many events a `name` filter looks at per request.
const NAME_FILTER_SCAN: usize = 100_000;

async fn events(
    State(state): State<Shared>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
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
    Ok(axum::Json(json!({ "events": events })).into_response())
}

async fn redeliver(
    State(state): State<Shared>,
    sequence: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(sequence) = sequence?;
    let jobs = with_store(&state, move |store| store.redeliver(sequence)).await?;
    match jobs {
        Some(endpoints) => Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "endpoints": endpoints })),
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such event",
        )),
    }
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

async fn status(State(state): State<Shared>) -> Result<Response, ApiError> {
    let modem = state.modem.status();
    let queued = with_store(&state, |store| Ok(store.outbox_len())).await?;
    let webhooks = webhook_status(&state).await?;
    let identity = modem.identity.as_ref().map(|identity| {
        json!({
            "manufacturer": identity.manufacturer, "model": identity.model,
            "revision": identity.revision, "imei": identity.imei, "imsi": identity.imsi,
            "iccid": identity.iccid,
        })
    });
    Ok(axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "modem": {
            "device": modem.device,
            "state": format!("{:?}", modem.state),
            "identity": identity,
            "registration": modem.registration.map(|r| format!("{r:?}")),
            "operator": modem.operator,
            "signal": modem.signal.map(|s| json!({ "rssi": s.rssi, "dbm": s.dbm() })),
            "storage": modem.storage.map(|s| json!({ "name": s.name, "used": s.used, "total": s.total })),
            "last_error": modem.last_error,
        },
        "queue": { "outbox": queued },
        "store": store_json(&state),
        "clock": clock_json(&state.dispatcher.clock_status()),
        "webhooks": webhooks.iter().map(|w| json!({
            "name": w.name, "state": w.health.state, "queue_depth": w.queue_depth,
            "held_for_clock": w.held_for_clock, "last_error": w.health.last_error,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

fn store_json(state: &AppState) -> Value {
    match state.gateway.store().failure() {
        None => json!({ "ok": true }),
        Some(failure) => json!({
            "ok": false,
            "error": failure.error,
            "failing_since": crate::gateway::rfc3339(failure.since_ms),
        }),
    }
}

fn clock_json(verdict: &ClockVerdict) -> Value {
    json!({
        "state": verdict.name(),
        "webhooks_held": verdict.holds(),
        "message": verdict.describe(),
    })
}

async fn webhooks(State(state): State<Shared>) -> Result<Response, ApiError> {
    let list = webhook_status(&state).await?;
    Ok(axum::Json(json!({ "webhooks": list.iter().map(|w| json!({
        "name": w.name,
        "state": w.health.state,
        "queue_depth": w.queue_depth,
        "dead_letters": w.dead_letters,
        "consecutive_failures": w.health.consecutive_failures,
        "last_error": w.health.last_error,
        "disabled_reason": w.health.disabled_reason,
        "held_for_clock": w.held_for_clock,
    })).collect::<Vec<_>>() }))
    .into_response())
}

async fn known_webhook(state: &Shared, name: &str) -> Result<(), ApiError> {
    let known = webhook_status(state)
        .await?
        .iter()
        .any(|status| status.name == name);
    if known {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such webhook",
        ))
    }
}

async fn webhook_test(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    known_webhook(&state, &name).await?;
    let event = with_store(&state, move |store| store.enqueue_test_event(&name, false)).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "event_id": event.id })),
    )
        .into_response())
}

/// Deliveries to one endpoint that ran out of attempts, with their last attempt.
async fn dead_letters(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    known_webhook(&state, &name).await?;
    let listed = with_store(&state, move |store| {
        let mut listed = Vec::new();
        for job in store.dead_letters_of(&name)? {
            let event = store.event(job.event_sequence)?;
            let last = store
                .attempts(&name, job.event_sequence)?
                .into_iter()
                .next_back();
            listed.push(json!({
                "event_sequence": job.event_sequence,
                "event_id": event.as_ref().map(|e| e.id.clone()),
                "event_name": event.as_ref().map(|e| e.name.clone()),
                "sequence": job.sequence,
                "attempts": job.attempts,
                "last_attempt": last,
            }));
        }
        Ok(listed)
    })
    .await?;
    Ok(axum::Json(json!({ "dead_letters": listed })).into_response())
}

/// Puts one dead letter back in its endpoint's queue, due now, with a fresh schedule.
async fn replay_dead_letter(
    State(state): State<Shared>,
    path: Result<Path<(String, u64)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((name, sequence)) = path?;
    known_webhook(&state, &name).await?;
    let replayed = with_store(&state, move |store| {
        store.replay_dead_letter(&name, sequence)
    })
    .await?;
    if !replayed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no dead letter for this event on this webhook",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "replayed": sequence })),
    )
        .into_response())
}

async fn webhook_enable(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    known_webhook(&state, &name).await?;
    let dispatcher = Arc::clone(&state.dispatcher);
    let event = blocking(move || dispatcher.enable(&name)).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "test_event_id": event.id })),
    )
        .into_response())
}

async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let outbox = with_store(&state, |store| Ok(store.outbox_len())).await?;
    let webhooks = webhook_status(&state).await?;
    let modem = state.modem.status();
    let counters = modem.counters;
    let gateway = state.gateway.counters();
    let load =
        |value: &std::sync::atomic::AtomicU64| value.load(std::sync::atomic::Ordering::Relaxed);
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: String| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "smsrelay_up",
        "1 while the daemon runs.",
        "gauge",
        "1".into(),
    );
    metric(
        "smsrelay_uptime_seconds",
        "Seconds since start.",
        "gauge",
        state.started.elapsed().as_secs().to_string(),
    );
    metric(
        "smsrelay_modem_ready",
        "1 when the modem is ready.",
        "gauge",
        u8::from(modem.state == crate::modem::LinkState::Ready).to_string(),
    );
    metric(
        "smsrelay_modem_signal_dbm",
        "Received signal strength.",
        "gauge",
        modem
            .signal
            .and_then(|s| s.dbm())
            .map_or("NaN".into(), |d| d.to_string()),
    );
    metric(
        "smsrelay_parts_sent_total",
        "Parts accepted by the network.",
        "counter",
        counters.sent.to_string(),
    );
    metric(
        "smsrelay_send_failures_total",
        "Sends that failed.",
        "counter",
        counters.send_failures.to_string(),
    );
    metric(
        "smsrelay_inbound_total",
        "Inbound PDUs handed up.",
        "counter",
        counters.received.to_string(),
    );
    metric(
        "smsrelay_modem_timeouts_total",
        "AT commands without an answer.",
        "counter",
        counters.timeouts.to_string(),
    );
    metric(
        "smsrelay_modem_reconnects_total",
        "Port reopenings.",
        "counter",
        counters.reconnects.to_string(),
    );
    metric(
        "smsrelay_modem_dropped_total",
        "Modem events and URCs dropped by a full queue (never an inbound message).",
        "counter",
        counters.dropped.to_string(),
    );
    metric(
        "smsrelay_unmatched_reports_total",
        "Status reports that matched no message.",
        "counter",
        load(&gateway.unmatched_reports).to_string(),
    );
    metric(
        "smsrelay_undecodable_total",
        "Inbound PDUs that did not decode, recorded as sms.undecodable.",
        "counter",
        load(&gateway.undecodable).to_string(),
    );
    metric(
        "smsrelay_store_ok",
        "1 while the database writes; 0 after a write failed (a full disk).",
        "gauge",
        u8::from(state.gateway.store().failure().is_none()).to_string(),
    );
    let clock = state.dispatcher.clock_status();
    metric(
        "smsrelay_clock_unsynchronised",
        "1 when webhooks go out with a clock NTP has not synchronised.",
        "gauge",
        u8::from(clock == ClockVerdict::Unsynchronised).to_string(),
    );
    metric(
        "smsrelay_webhooks_held_for_clock",
        "1 while webhooks wait for a plausible or synchronised clock.",
        "gauge",
        u8::from(clock.holds()).to_string(),
    );
    metric(
        "smsrelay_outbox_depth",
        "Messages waiting to be sent.",
        "gauge",
        outbox.to_string(),
    );
    // One family per metric, HELP and TYPE first, then a sample per endpoint.
    type Gauge = fn(&EndpointStatus) -> usize;
    let per_endpoint: [(&str, &str, Gauge); 2] = [
        (
            "smsrelay_webhook_queue_depth",
            "Deliveries waiting, per endpoint.",
            |webhook| webhook.queue_depth,
        ),
        (
            "smsrelay_webhook_dead_letters",
            "Deliveries out of attempts, waiting to be replayed.",
            |webhook| webhook.dead_letters,
        ),
    ];
    for (name, help, value) in per_endpoint {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for webhook in &webhooks {
            text.push_str(&format!(
                "{name}{{endpoint=\"{}\"}} {}\n",
                webhook.name,
                value(webhook)
            ));
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// The API token: the configured one, else the one generated into `data_dir/api-token` at
/// first start (mode 0600).
pub fn token(configured: Option<&str>, data_dir: &std::path::Path) -> std::io::Result<String> {
    if let Some(token) = configured {
        return Ok(token.to_string());
    }
    let path = data_dir.join("api-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let token = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// How long a shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::{field_of, same};

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            field_of("missing field `to` at line 1 column 2").as_deref(),
            Some("to")
        );
        assert_eq!(
            field_of("unknown field `txt`, expected one of").as_deref(),
            Some("txt")
        );
        assert_eq!(field_of("EOF while parsing"), None);
    }

    #[test]
    fn the_openapi_document_lists_every_route() {
        let document: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("JSON");
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3."))
        );
        let source = include_str!("api.rs");
        let mut checked = 0;
        // Every `.route("…"` in the router is documented (axum's {param} is OpenAPI's too).
        for route in source
            .split(".route(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
        {
            if route.starts_with('/') {
                assert!(
                    document["paths"].get(route).is_some(),
                    "{route} is not in openapi.json"
                );
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} routes found");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
