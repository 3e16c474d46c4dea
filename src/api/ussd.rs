//! `POST /v1/ussd` and `POST /v1/ussd/cancel`: a USSD code (or the answer to a menu) through
//! the gateway, which waits for the network's answer up to `[ussd] timeout`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::extract::JsonBody;
use super::{ApiError, Shared};
use crate::modem::UssdFailure;

/// The body of `POST /v1/ussd`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UssdRequest {
    code: String,
    /// The modem by name; the only one when left out.
    #[serde(default)]
    modem: Option<String>,
}

/// The body of `POST /v1/ussd/cancel`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    modem: Option<String>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct UssdView {
    modem: String,
    text: String,
    /// The network waits for an answer: send it as the next `code`, or cancel.
    session_open: bool,
    /// `+CUSD` `<m>`.
    status: u8,
}

/// The modem a request names (the first when it names none): its index and name.
fn modem_named(state: &Shared, modem: Option<&str>) -> Result<(usize, String), ApiError> {
    match state.gateway.modem_index(modem) {
        Some(index) => Ok((index, state.gateway.modem_name(index).to_string())),
        None => {
            let ours: Vec<&str> = state
                .gateway
                .modems()
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_modem",
                format!(
                    "no modem named {:?} (this gateway has {ours:?})",
                    modem.unwrap_or("")
                ),
            )
            .field("modem"))
        }
    }
}

/// The status and code of a failure.
fn failure(error: UssdFailure) -> ApiError {
    let status = match &error {
        UssdFailure::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        UssdFailure::NotReady(_) | UssdFailure::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        UssdFailure::Busy => StatusCode::CONFLICT,
        UssdFailure::Refused(_) | UssdFailure::Ended(_) => StatusCode::BAD_GATEWAY,
        UssdFailure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
    };
    let code = error.code();
    let invalid = matches!(error, UssdFailure::Invalid(_));
    let api_error = ApiError::new(status, code, error.to_string());
    if invalid {
        api_error.field("code")
    } else {
        api_error
    }
}

/// `POST /v1/ussd`: 200 with the answer's text.
pub async fn send(
    State(state): State<Shared>,
    JsonBody(request): JsonBody<UssdRequest>,
) -> Result<Response, ApiError> {
    let (index, modem) = modem_named(&state, request.modem.as_deref())?;
    let answer = state
        .gateway
        .ussd(index, request.code.trim())
        .await
        .map_err(failure)?;
    let view = UssdView {
        modem,
        text: answer.text,
        session_open: answer.session_open,
        status: answer.status,
    };
    Ok(axum::Json(view).into_response())
}

/// `POST /v1/ussd/cancel`: ends a menu session.
pub async fn cancel(
    State(state): State<Shared>,
    JsonBody(request): JsonBody<CancelRequest>,
) -> Result<Response, ApiError> {
    let (index, modem) = modem_named(&state, request.modem.as_deref())?;
    state.gateway.ussd_cancel(index).await.map_err(failure)?;
    Ok(axum::Json(serde_json::json!({"modem": modem, "cancelled": true})).into_response())
}
