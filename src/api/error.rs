//! `ApiError`, the one shape of every failure the API answers, and the conversions into it:
//! axum's query and path rejections, store errors. The request body's errors are made in
//! `extract`, the send's in `messages`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// An API error: status, code, message, and the field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

/// The body of every error: `{"error": {"code", "message", "field"}}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with no field at fault.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A 404 `not_found`.
    pub fn not_found(message: &'static str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The same error, naming the field (or header, or parameter) at fault.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// The same error, naming the field when one is known.
    pub fn maybe_field(self, field: Option<String>) -> ApiError {
        match field {
            Some(field) => self.field(field),
            None => self,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        // RFC 9110 §11.6.1: a 401 names the scheme it wants.
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"smsrelay\""),
            );
        }
        response
    }
}

/// A query string that does not parse (`limit=abc`): the JSON error, naming the parameter.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        let text = rejection.body_text();
        let field = query_parameter_of(&text);
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", text).maybe_field(field)
    }
}

/// The parameter axum's query rejection names: it words it
/// "Failed to deserialize query string: limit: invalid digit …".
fn query_parameter_of(text: &str) -> Option<String> {
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    detail.split_once(": ").map(|(field, _)| field.to_string())
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

/// `missing field `to`` → `to`: serde names the field in backticks.
pub fn field_of(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::{field_of, query_parameter_of};

    fn check(found: Option<String>, expected: Option<&str>) {
        assert_eq!(found.as_deref(), expected);
    }

    #[test]
    fn serde_messages_name_their_field() {
        check(
            field_of("missing field `to` at line 1 column 2"),
            Some("to"),
        );
        check(
            field_of("unknown field `txt`, expected one of"),
            Some("txt"),
        );
        check(field_of("EOF while parsing"), None);
    }

    #[test]
    fn query_rejections_name_their_parameter() {
        let text = "Failed to deserialize query string: limit: invalid digit found in string";
        check(query_parameter_of(text), Some("limit"));
        check(query_parameter_of("something else"), None);
    }
}
