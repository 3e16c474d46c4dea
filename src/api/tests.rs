//! The router in process (tower's `oneshot`, no socket): every bad request gets its JSON error
//! and stores nothing; the OpenAPI document lists every route.

use axum::http::{Request, header};
use serde_json::Value;
use tower::ServiceExt;

use super::test_stack::TestStack;
use super::{OPENAPI, same};

const TOKEN: &str = "test-token-0123456789";

/// The API over a store in a temp dir, a modem driver that keeps failing to open a device
/// that does not exist, and a dispatcher with one endpoint that is never reached (no event
/// is written, so it has nothing to deliver).
struct Fixture {
    stack: TestStack,
}

impl Fixture {
    fn start() -> Fixture {
        Fixture {
            stack: TestStack::start(TOKEN),
        }
    }

    /// The status, the `WWW-Authenticate` header and the JSON body of one request.
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Option<String>, Value) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(axum::body::Body::from(body.to_string()))
            .expect("a valid request");
        let response = self
            .stack
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router always answers");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, challenge, json)
    }
}

/// One request and the error it must get.
struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Body,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

/// A request body.
#[derive(Clone, Copy)]
enum Body {
    /// Exactly this.
    Raw(&'static str),
    /// A valid send request whose text is this many `x`.
    TextOf(usize),
}

impl Body {
    fn text(self) -> String {
        match self {
            Body::Raw(text) => text.to_string(),
            Body::TextOf(length) => send_body(&"x".repeat(length)),
        }
    }
}

const TOKEN_HEADER: (&str, &str) = ("authorization", "Bearer test-token-0123456789");
const JSON: (&str, &str) = ("content-type", "application/json");
const SEND: &[(&str, &str)] = &[TOKEN_HEADER, JSON];
const OK: Body = Body::Raw(r#"{"to": "+447700900123", "text": "hi"}"#);

/// A send request body with this text.
fn send_body(text: &str) -> String {
    format!(r#"{{"to": "+447700900123", "text": "{text}"}}"#)
}

/// What a case does not say: a send with the token, answered 400.
const POST: Case = Case {
    what: "",
    method: "POST",
    path: "/v1/messages",
    headers: SEND,
    body: OK,
    status: 400,
    code: "",
    field: None,
};
/// What a case does not say: a GET with the token, answered 400.
const GET: Case = Case {
    method: "GET",
    headers: &[TOKEN_HEADER],
    body: Body::Raw(""),
    ..POST
};

#[rustfmt::skip]
const CASES: &[Case] = &[
    Case { what: "missing field", body: Body::Raw(r#"{"text": "hi"}"#), code: "invalid_request", field: Some("to"), ..POST },
    Case { what: "bad number", body: Body::Raw(r#"{"to": "call me", "text": "hi"}"#), status: 422, code: "invalid_field", field: Some("to"), ..POST },
    Case { what: "too long", body: Body::TextOf(2000), status: 422, code: "invalid_field", field: Some("text"), ..POST },
    Case { what: "wrong token", headers: &[("authorization", "Bearer nope"), JSON], status: 401, code: "unauthorized", ..POST },
    Case { what: "no token", headers: &[JSON], status: 401, code: "unauthorized", ..POST },
    Case { what: "another scheme", headers: &[("authorization", "Basic dGVzdA=="), JSON], status: 401, code: "unauthorized", ..POST },
    Case { what: "invalid JSON", body: Body::Raw("{not json"), code: "invalid_json", ..POST },
    Case { what: "unknown field", body: Body::Raw(r#"{"to": "+447700900123", "text": "hi", "priority": 1}"#), code: "invalid_request", field: Some("priority"), ..POST },
    Case { what: "a number where a string goes", body: Body::Raw(r#"{"to": 447700900123, "text": "hi"}"#), code: "invalid_request", field: Some("to"), ..POST },
    Case { what: "a string where a boolean goes", body: Body::Raw(r#"{"to": "+447700900123", "text": "hi", "flash": "yes"}"#), code: "invalid_request", field: Some("flash"), ..POST },
    Case { what: "dry_run not a boolean", body: Body::Raw(r#"{"to": "+447700900123", "text": "hi", "dry_run": "yes"}"#), code: "invalid_request", field: Some("dry_run"), ..POST },
    Case { what: "status_report not a boolean", body: Body::Raw(r#"{"to": "+447700900123", "text": "hi", "status_report": 0}"#), code: "invalid_request", field: Some("status_report"), ..POST },
    Case { what: "trailing characters", body: Body::Raw(r#"{"to": "+447700900123", "text": "hi"} x"#), code: "invalid_json", ..POST },
    Case { what: "oversized body", body: Body::TextOf(100_000), status: 413, code: "body_too_large", ..POST },
    Case { what: "no media type", headers: &[TOKEN_HEADER], status: 415, code: "unsupported_media_type", ..POST },
    Case { what: "a media type not JSON", headers: &[TOKEN_HEADER, ("content-type", "text/plain")], status: 415, code: "unsupported_media_type", ..POST },
    Case { what: "a validity that is no duration", body: Body::Raw(r#"{"to": "+447700900123", "text": "hi", "validity": "soon"}"#), status: 422, code: "invalid_field", field: Some("validity"), ..POST },
    Case { what: "an empty Idempotency-Key", headers: &[TOKEN_HEADER, JSON, ("idempotency-key", "")], code: "invalid_header", field: Some("Idempotency-Key"), ..POST },
    Case { what: "a sequence not a number", path: "/v1/events/abc/redeliver", headers: &[TOKEN_HEADER], code: "invalid_path", ..POST },
    Case { what: "no such route", path: "/v1/nothing-here", status: 404, code: "not_found", ..GET },
    Case { what: "a method the route does not take", method: "DELETE", path: "/v1/status", status: 405, code: "method_not_allowed", ..GET },
    Case { what: "limit not a number", path: "/v1/events?limit=abc", code: "invalid_query", field: Some("limit"), ..GET },
    Case { what: "after negative", path: "/v1/events?after=-1", code: "invalid_query", field: Some("after"), ..GET },
    Case { what: "limit 0", path: "/v1/events?limit=0", code: "invalid_query", field: Some("limit"), ..GET },
    Case { what: "limit over 1000", path: "/v1/messages?limit=1001", code: "invalid_query", field: Some("limit"), ..GET },
    Case { what: "no such state", path: "/v1/messages?state=lost", code: "invalid_query", field: Some("state"), ..GET },
    Case { what: "no such message", path: "/v1/messages/nope", status: 404, code: "not_found", ..GET },
    Case { what: "no such webhook", path: "/v1/webhooks/nope/dead-letters", status: 404, code: "not_found", ..GET },
    Case { what: "no token on status", path: "/v1/status", headers: &[], status: 401, code: "unauthorized", ..GET },
    Case { what: "USSD without a code", path: "/v1/ussd", body: Body::Raw("{}"), code: "invalid_request", field: Some("code"), ..POST },
    Case { what: "USSD code with a quote", path: "/v1/ussd", body: Body::Raw(r##"{"code": "*1\"#"}"##), status: 422, code: "invalid_code", field: Some("code"), ..POST },
    Case { what: "USSD on another modem", path: "/v1/ussd", body: Body::Raw(r#"{"code": "*100#", "modem": "other"}"#), status: 404, code: "unknown_modem", field: Some("modem"), ..POST },
    Case { what: "USSD while the modem is not ready", path: "/v1/ussd", body: Body::Raw(r#"{"code": "*100#"}"#), status: 503, code: "modem_not_ready", ..POST },
    Case { what: "USSD cancel with an unknown field", path: "/v1/ussd/cancel", body: Body::Raw(r#"{"session": 1}"#), code: "invalid_request", field: Some("session"), ..POST },
];

/// The case's status, code and field; a non-empty message; a 401 names the Bearer scheme.
async fn check(fixture: &Fixture, case: &Case) {
    let what = case.what;
    let (status, challenge, error) = fixture
        .call(case.method, case.path, case.headers, &case.body.text())
        .await;
    assert_eq!(status, case.status, "{what}: {error}");
    assert_eq!(error["error"]["code"], case.code, "{what}: {error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: {error}");
    if let Some(field) = case.field {
        assert_eq!(error["error"]["field"], field, "{what}: {error}");
    }
    if status == 401 {
        assert!(
            challenge.is_some_and(|challenge| challenge.starts_with("Bearer")),
            "{what}: no WWW-Authenticate: Bearer"
        );
    }
}

#[tokio::test]
async fn bad_requests_get_a_clear_json_error_and_store_nothing() {
    let fixture = Fixture::start();
    for case in CASES {
        check(&fixture, case).await;
    }
    let (status, _, listed) = fixture
        .call("GET", "/v1/messages", &[TOKEN_HEADER], "")
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["messages"].as_array().map(Vec::len), Some(0));
    assert_eq!(fixture.stack.store.outbox_len(), 0, "nothing queued");
    // Header names, the auth scheme and the media type are case-insensitive (RFC 9110).
    let headers = [
        ("Authorization", "bearer test-token-0123456789"),
        ("Content-Type", "Application/JSON; charset=UTF-8"),
    ];
    let (status, _, accepted) = fixture
        .call("POST", "/v1/messages", &headers, &send_body("hi"))
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(fixture.stack.store.outbox_len(), 1, "{accepted}");
}

#[tokio::test]
async fn the_probes_and_the_document_need_no_token() {
    let fixture = Fixture::start();
    let (status, _, health) = fixture.call("GET", "/healthz", &[], "").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "ok");
    let (status, _, document) = fixture.call("GET", "/v1/openapi.json", &[], "").await;
    assert_eq!(status, 200);
    assert!(document["openapi"].is_string(), "{document}");
}

#[test]
fn the_openapi_document_lists_every_route() {
    let document: Value = serde_json::from_str(OPENAPI).expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let source = include_str!("mod.rs");
    let mut checked = 0;
    // Every `.route("…"` in the router is documented (axum's {param} is OpenAPI's too).
    // rustfmt may put the path on the next line, so whitespace after `(` is skipped.
    for route in source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"'))
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
    assert_eq!(checked, 16, "every route is found");
}

#[test]
fn tokens_compare_whole() {
    assert!(same(b"abc", b"abc"));
    assert!(!same(b"abc", b"abd"));
    assert!(!same(b"abc", b"abcd"));
}
