//! The HTTP side of an attempt, and the only code that touches ureq: the shared agent, the
//! POST of a rendered body (`formats` or a template) with the Standard Webhooks headers and
//! the endpoint's own, and the answer read into an [`AttemptOutcome`].

use std::io::Read;
use std::time::{Duration, SystemTime};

use super::dispatch::EndpointConfig;
use super::formats::Rendered;
use super::policy::{AttemptError, AttemptOutcome};
use super::schedule::parse_retry_after;
use super::sign::signature_header;

/// How much of an answer's body is kept for the record.
const KEPT_RESPONSE: usize = 2048;

/// The agent every endpoint shares: no redirects, no environment proxies, statuses as
/// answers rather than errors.
pub(super) fn agent(connect_timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect_timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .user_agent(concat!("smsrelay/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// POSTs `rendered` as message `webhook_id` to `endpoint`, signed at `timestamp` (Unix s)
/// with the Standard Webhooks headers (and the format's own), and reads at most
/// `max_response` bytes of the answer.
pub(super) fn post(
    agent: &ureq::Agent,
    endpoint: &EndpointConfig,
    webhook_id: &str,
    timestamp: i64,
    rendered: &Rendered,
    max_response: u64,
) -> AttemptOutcome {
    let body = rendered.body.as_slice();
    let default_type = if endpoint.template.is_some() {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    let content_type = endpoint.content_type.as_deref().unwrap_or(default_type);
    let mut request = agent
        .post(&endpoint.url)
        .header("content-type", content_type)
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string());
    if !endpoint.secrets.is_empty() {
        let signature = signature_header(&endpoint.secrets, webhook_id, timestamp, body);
        request = request.header("webhook-signature", signature);
    }
    for (name, value) in rendered.headers.iter().chain(&endpoint.headers) {
        request = request.header(name, value);
    }
    let response = request
        .config()
        .timeout_global(Some(endpoint.timeout))
        .build()
        .send(body);
    match response {
        Ok(mut response) => answered(&mut response, max_response),
        Err(error) => AttemptOutcome::failed(classify(&error), error.to_string()),
    }
}

/// An answer, whatever its status.
fn answered(response: &mut ureq::http::Response<ureq::Body>, max_response: u64) -> AttemptOutcome {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let retry_after =
        header("retry-after").and_then(|value| parse_retry_after(&value, SystemTime::now()));
    let location = header("location");
    let mut bytes = Vec::new();
    // What could be read is kept; a broken body does not change what the status said.
    let _ = response
        .body_mut()
        .as_reader()
        .take(max_response)
        .read_to_end(&mut bytes);
    let (result, detail) = match status {
        200..=299 => (Ok(status), String::new()),
        300..=399 => {
            let location = location.unwrap_or_default();
            let detail = format!("not followed: Location {location}");
            let status = Some(status);
            (Err(AttemptError::Redirect { status, location }), detail)
        }
        _ => (Err(AttemptError::Status(status)), format!("HTTP {status}")),
    };
    AttemptOutcome {
        result,
        detail,
        response: kept_text(bytes),
        retry_after,
    }
}

/// At most 2 KB of the body as text: invalid bytes would triple in size as U+FFFD, so the
/// text is cut again after decoding.
fn kept_text(mut bytes: Vec<u8>) -> String {
    bytes.truncate(KEPT_RESPONSE);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    while text.len() > KEPT_RESPONSE {
        text.pop();
    }
    text
}

/// Why a request failed before a status came back.
fn classify(error: &ureq::Error) -> AttemptError {
    match error {
        ureq::Error::Timeout(_) => AttemptError::Timeout,
        ureq::Error::HostNotFound => AttemptError::Dns,
        ureq::Error::ConnectionFailed => AttemptError::Connect,
        ureq::Error::Tls(_) => AttemptError::Tls,
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => AttemptError::Redirect {
            status: None,
            location: String::new(),
        },
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => AttemptError::Timeout,
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset => {
                AttemptError::Connect
            }
            _ => AttemptError::Io,
        },
        _ => AttemptError::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], expected_len: usize) {
        let text = kept_text(bytes.to_vec());
        assert_eq!(text.len(), expected_len, "{bytes:?}");
        assert!(text.len() <= KEPT_RESPONSE);
    }

    #[test]
    fn the_kept_answer_is_at_most_2_kb_of_text() {
        check(b"ok", 2);
        check(&[b'a'; 5000], 2048);
        // 2048 invalid bytes become 2048 U+FFFD (3 bytes each), cut back to 682 of them.
        check(&[0xff; 5000], 682 * 3);
    }
}
