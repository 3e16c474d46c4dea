//! What a handler takes from a request, with every failure already the JSON `ApiError`:
//! a JSON body (media type, size, and serde's path to the field at fault), the
//! `Idempotency-Key` header, a query string, path segments, and the `limit` rule.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::BODY_LIMIT;
use super::error::{ApiError, field_of};

/// A JSON request body: `Content-Type: application/json` (or `+json`), at most `BODY_LIMIT`
/// bytes, deserialised with the path to the field at fault kept for the error.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_media_type);
        // The body is read first, so an oversized body is a 413 whatever its type.
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
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
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            ));
        }
        parse_json(&body).map(JsonBody)
    }
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

/// The body, or a 400 naming the field at fault: serde's path for a wrong type, the
/// backticked name for a missing or unknown one; `invalid_json` when it is not JSON at all.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid_json = |error: serde_json::Error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string())
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
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
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message).maybe_field(field)
    })?;
    // Trailing characters after the object make the body invalid JSON.
    deserializer.end().map_err(invalid_json)?;
    Ok(parsed)
}

/// The `Idempotency-Key` header, when sent: 1 to 255 characters. A value that is not visible
/// ASCII counts as absent, as it always has.
#[derive(Debug)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<IdempotencyKey, ApiError> {
        let key = parts
            .headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        if key
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
        Ok(IdempotencyKey(key))
    }
}

/// A query string, or the JSON `invalid_query` error naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiQuery<T>, ApiError> {
        let Query(query) = Query::from_request_parts(parts, state).await?;
        Ok(ApiQuery(query))
    }
}

/// Path segments, or the JSON `invalid_path` error.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiPath<T>, ApiError> {
        let Path(path) = Path::from_request_parts(parts, state).await?;
        Ok(ApiPath(path))
    }
}

/// `limit` as the OpenAPI document states it: 1 to 1000, `default` when absent.
pub fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::is_json_media_type;

    fn check(content_type: &str, expected: bool) {
        assert_eq!(is_json_media_type(content_type), expected, "{content_type}");
    }

    #[test]
    fn json_media_types_are_recognised_in_any_case_and_with_parameters() {
        check("application/json", true);
        check("Application/JSON; charset=UTF-8", true);
        check("application/merge-patch+json", true);
        check(" application/json ;x=y", true);
        check("text/plain", false);
        check("application/jsonp", false);
        check("json", false);
        check("", false);
    }
}
