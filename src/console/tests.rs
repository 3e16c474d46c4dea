//! The console through the API's router in process (tower's `oneshot`, no socket): every page
//! and form needs a session, every POST the session's CSRF token, and no page shows the token.

use std::time::Duration;

use axum::http::{Request, header};
use tower::ServiceExt;

use crate::api::test_stack::{TestModem, TestStack};

const TOKEN: &str = "console-test-token-0123456789";

/// The API and console over a temp store, a modem that never opens, and one webhook that is
/// never reached.
struct Fixture {
    stack: TestStack,
}

/// One answer: status, `Location`, `Set-Cookie`, body.
struct Answer {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

/// A signed-in browser: its cookie and its CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Fixture {
    fn start() -> Fixture {
        Fixture {
            stack: TestStack::start(TOKEN),
        }
    }

    /// The fixture with these modems instead of one.
    fn with_modems(modems: &[TestModem<'_>]) -> Fixture {
        Fixture {
            stack: TestStack::with_modems(TOKEN, modems),
        }
    }

    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        request = request.header(header::HOST, "127.0.0.1:8080");
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
        let text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let (location, set_cookie) = (text(header::LOCATION), text(header::SET_COOKIE));
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        Answer {
            status,
            location,
            set_cookie,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Signs in with the token and reads the CSRF token off the Send page.
    async fn sign_in(&self) -> Browser {
        let answer = self
            .call("POST", "/console/signin", FORM, &format!("token={TOKEN}"))
            .await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        let set_cookie = answer.set_cookie.expect("a session cookie");
        let cookie = set_cookie
            .split(';')
            .next()
            .expect("a name=value")
            .to_string();
        let page = self
            .call("GET", "/console/send", &[("cookie", &cookie)], "")
            .await;
        let csrf = csrf_of(&page.body).expect("the form carries a CSRF token");
        Browser { cookie, csrf }
    }

    /// A form POST from a signed-in browser.
    async fn post(&self, browser: &Browser, path: &str, body: &str) -> Answer {
        let headers = [
            ("cookie", browser.cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        self.call("POST", path, &headers, body).await
    }
}

const FORM: &[(&str, &str)] = &[("content-type", "application/x-www-form-urlencoded")];

/// The CSRF token in a page's hidden field.
fn csrf_of(page: &str) -> Option<String> {
    let start = page.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_string())
}

const PAGES: &[&str] = &[
    "/console",
    "/console/messages",
    "/console/messages?number=%2B44",
    "/console/send",
    "/console/webhooks",
    "/console/events",
    "/console/events?name=sms.*",
];

const FORMS: &[&str] = &[
    "/console/send",
    "/console/count",
    "/console/webhooks/crm/test",
    "/console/webhooks/crm/enable",
    "/console/webhooks/crm/dead-letters/1/replay",
    "/console/events/1/redeliver",
    "/console/signout",
];

#[tokio::test]
async fn every_page_and_form_sends_a_stranger_to_sign_in() {
    let fixture = Fixture::start();
    let stale = [("cookie", "smsrelay_console=00ff")];
    for path in PAGES
        .iter()
        .chain(["/console/messages/x", "/console/events/stream"].iter())
    {
        for headers in [&[][..], &stale[..]] {
            let answer = fixture.call("GET", path, headers, "").await;
            assert_eq!(answer.status, 303, "GET {path}");
            assert_eq!(
                answer.location.as_deref(),
                Some("/console/signin"),
                "{path}"
            );
        }
    }
    for path in FORMS {
        let answer = fixture.call("POST", path, FORM, "csrf=x").await;
        assert_eq!(answer.status, 303, "POST {path}");
        assert_eq!(
            answer.location.as_deref(),
            Some("/console/signin"),
            "{path}"
        );
    }
    let root = fixture.call("GET", "/", &[], "").await;
    assert_eq!(root.location.as_deref(), Some("/console"));
    let sign_in = fixture.call("GET", "/console/signin", &[], "").await;
    assert_eq!(sign_in.status, 200);
    assert!(sign_in.body.contains(r#"name="token""#));
}

#[tokio::test]
async fn only_the_api_token_signs_in_and_the_cookie_is_http_only_and_strict() {
    let fixture = Fixture::start();
    for wrong in ["", "console-test-token-012345678", "x"] {
        let answer = fixture
            .call("POST", "/console/signin", FORM, &format!("token={wrong}"))
            .await;
        assert_eq!(answer.status, 303, "{wrong:?}");
        assert_eq!(answer.location.as_deref(), Some("/console/signin?failed=1"));
        assert!(answer.set_cookie.is_none(), "{wrong:?}");
    }
    let answer = fixture
        .call("POST", "/console/signin", FORM, &format!("token={TOKEN}"))
        .await;
    let cookie = answer.set_cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    let cross_site = [FORM[0], ("sec-fetch-site", "cross-site")];
    let answer = fixture
        .call(
            "POST",
            "/console/signin",
            &cross_site,
            &format!("token={TOKEN}"),
        )
        .await;
    assert_eq!(answer.status, 403);
}

#[tokio::test]
async fn signed_in_every_page_renders_and_none_shows_the_token() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    for path in PAGES {
        let answer = fixture
            .call("GET", path, &[("cookie", &browser.cookie)], "")
            .await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(answer.body.contains("<main>"), "{path}");
        assert!(!answer.body.contains(TOKEN), "{path} shows the token");
    }
    let missing = fixture
        .call(
            "GET",
            "/console/messages/nope",
            &[("cookie", &browser.cookie)],
            "",
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    let other = fixture.sign_in().await;
    assert_ne!(browser.csrf, other.csrf);
    let bodies = [
        "to=%2B447700900123&text=hi".to_string(),
        "to=%2B447700900123&text=hi&csrf=".to_string(),
        "to=%2B447700900123&text=hi&csrf=0000".to_string(),
        format!("to=%2B447700900123&text=hi&csrf={}", other.csrf),
    ];
    for path in FORMS {
        for body in &bodies {
            let answer = fixture.post(&browser, path, body).await;
            assert_eq!(answer.status, 403, "POST {path} {body}");
        }
    }
    let sent = fixture.stack.store.messages(None, 10).expect("reads");
    assert!(sent.is_empty(), "a refused form sent {sent:?}");
}

#[tokio::test]
async fn a_post_from_another_site_is_refused_even_with_the_token() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    let body = format!("text=hi&csrf={}", browser.csrf);
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "http://evil.example"),
        ("origin", "null"),
    ] {
        let headers = [("cookie", browser.cookie.as_str()), FORM[0], (name, value)];
        let answer = fixture
            .call("POST", "/console/count", &headers, &body)
            .await;
        assert_eq!(answer.status, 403, "{name}: {value}");
    }
    let same_origin = [
        ("cookie", browser.cookie.as_str()),
        FORM[0],
        ("origin", "http://127.0.0.1:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    let answer = fixture
        .call("POST", "/console/count", &same_origin, &body)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn the_counter_answers_with_the_daemons_split() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    let long = "x".repeat(161);
    let answer = fixture
        .post(
            &browser,
            "/console/count",
            &format!("text={long}&csrf={}", browser.csrf),
        )
        .await;
    let count: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(count["parts"], 2);
    assert_eq!(count["encoding"], "gsm7");
    assert_eq!(count["units"], 161);
}

#[tokio::test]
async fn a_send_from_the_form_is_enqueued_and_a_refusal_shows_the_form_escaped() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    let body = format!("to=%2B447700900123&text=hello&csrf={}", browser.csrf);
    let answer = fixture.post(&browser, "/console/send", &body).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let sent = fixture.stack.store.messages(None, 10).expect("reads");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "hello");
    let expected = format!("/console/messages/{}?done=sent", sent[0].id);
    assert_eq!(answer.location.as_deref(), Some(expected.as_str()));
    let page = fixture
        .call("GET", &expected, &[("cookie", &browser.cookie)], "")
        .await;
    assert!(page.body.contains("Queued for sending."));

    let body = format!(
        "to=nope&text=%3Cscript%3Ex%3C%2Fscript%3E&csrf={}",
        browser.csrf
    );
    let answer = fixture.post(&browser, "/console/send", &body).await;
    assert_eq!(answer.status, 422);
    assert!(answer.body.contains("&lt;script&gt;x"), "{}", answer.body);
    assert!(!answer.body.contains("<script>x"));
    assert_eq!(
        fixture.stack.store.messages(None, 10).expect("reads").len(),
        1
    );
}

/// Two modems that send and one that only receives, as `[[modem]]` tables would give.
const THREE_MODEMS: &[TestModem<'static>] = &[
    ("austria", 1, Some("+436641234567"), true),
    ("uk", 2, None, true),
    ("listener", 3, None, false),
];

#[tokio::test]
async fn the_send_form_offers_a_modem_only_when_there_are_several() {
    let automatic = r#"<option value="">Automatic (routing rules)</option>"#;
    // Modems → what the form shows, what it must not.
    let cases: &[(&[TestModem<'_>], &[&str], &[&str])] = &[
        (
            &[("modem1", 0, Some("+447700900001"), true)],
            &["placeholder=\"+447700900123\">\n  <label for=\"text\">Text</label>"],
            &["<select", r#"name="modem""#, "Automatic"],
        ),
        (
            THREE_MODEMS,
            &[
                r#"<label for="modem">Modem</label>"#,
                r#"<select id="modem" name="modem" aria-describedby="modem-hint">"#,
                automatic,
                r#"<option value="austria">austria — SIM 1, +436641234567</option>"#,
                r#"<option value="uk">uk — SIM 2</option>"#,
                r#"<option value="listener" disabled>listener — SIM 3 (receive-only)</option>"#,
            ],
            &[" selected"],
        ),
    ];
    for (modems, shown, absent) in cases {
        let fixture = Fixture::with_modems(modems);
        let browser = fixture.sign_in().await;
        let page = fixture
            .call("GET", "/console/send", &[("cookie", &browser.cookie)], "")
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        for fragment in *shown {
            assert!(
                page.body.contains(fragment),
                "{fragment} missing: {}",
                page.body
            );
        }
        for fragment in *absent {
            assert!(
                !page.body.contains(fragment),
                "{fragment} shown: {}",
                page.body
            );
        }
    }
}

/// What a send from the form did: the modem the API says the message went to, or a 422
/// with the error and the option shown selected (`None`: none is, so Automatic shows).
enum Outcome {
    Queued(&'static str),
    Refused(&'static str, Option<&'static str>),
}

#[tokio::test]
async fn a_send_goes_through_the_chosen_modem_and_a_refusal_keeps_the_choice() {
    // The extra form fields → what happens. Each case has a fresh gateway, so routing's
    // round robin would pick `austria` first: only a passed choice makes it `uk`.
    let cases = [
        ("", Outcome::Queued("austria")),
        ("&modem=", Outcome::Queued("austria")),
        ("&modem=uk", Outcome::Queued("uk")),
        (
            "&modem=gone",
            Outcome::Refused("modem: no modem is named &quot;gone&quot;", None),
        ),
        (
            "&modem=listener",
            Outcome::Refused(
                "modem: modem &quot;listener&quot; is receive-only",
                Some(r#"<option value="listener" selected disabled>"#),
            ),
        ),
    ];
    for (extra, outcome) in cases {
        let fixture = Fixture::with_modems(THREE_MODEMS);
        let browser = fixture.sign_in().await;
        let body = format!("to=%2B447700900123&text=hello{extra}&csrf={}", browser.csrf);
        let answer = fixture.post(&browser, "/console/send", &body).await;
        let sent = fixture.stack.store.messages(None, 10).expect("reads");
        match outcome {
            Outcome::Queued(modem) => {
                assert_eq!(answer.status, 303, "{extra}: {}", answer.body);
                assert_eq!(sent.len(), 1, "{extra}");
                let path = format!("/v1/messages/{}", sent[0].id);
                let bearer = format!("Bearer {TOKEN}");
                let api = fixture
                    .call("GET", &path, &[("authorization", &bearer)], "")
                    .await;
                assert_eq!(api.status, 200, "{}", api.body);
                let view: serde_json::Value = serde_json::from_str(&api.body).expect("JSON");
                assert_eq!(view["modem"], modem, "{extra}: {view}");
            }
            Outcome::Refused(error, selected) => {
                assert_eq!(answer.status, 422, "{extra}: {}", answer.body);
                assert!(answer.body.contains(error), "{extra}: {}", answer.body);
                match selected {
                    Some(option) => assert!(answer.body.contains(option), "{}", answer.body),
                    None => assert!(!answer.body.contains(" selected"), "{}", answer.body),
                }
                assert!(sent.is_empty(), "{extra}: a refusal sent {sent:?}");
            }
        }
    }

    // A refusal for another field keeps the modem chosen, and what was typed.
    let fixture = Fixture::with_modems(THREE_MODEMS);
    let browser = fixture.sign_in().await;
    let body = format!("to=nope&text=hello&modem=uk&csrf={}", browser.csrf);
    let answer = fixture.post(&browser, "/console/send", &body).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.body.contains(r#"role="alert""#), "{}", answer.body);
    assert!(
        answer
            .body
            .contains(r#"<option value="uk" selected>uk — SIM 2</option>"#)
    );
    assert!(answer.body.contains(r#"value="nope""#));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    let answer = fixture
        .post(
            &browser,
            "/console/signout",
            &format!("csrf={}", browser.csrf),
        )
        .await;
    assert_eq!(answer.status, 303);
    assert!(answer.set_cookie.is_some_and(|c| c.contains("Max-Age=0")));
    let page = fixture
        .call("GET", "/console", &[("cookie", &browser.cookie)], "")
        .await;
    assert_eq!(page.location.as_deref(), Some("/console/signin"));
}

#[tokio::test]
async fn the_webhook_buttons_do_what_the_api_does() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    let csrf = format!("csrf={}", browser.csrf);
    let test = fixture
        .post(&browser, "/console/webhooks/crm/test", &csrf)
        .await;
    assert_eq!(
        test.location.as_deref(),
        Some("/console/webhooks?done=tested")
    );
    let events = fixture.stack.store.events_after(0, 10).expect("reads");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "webhook.test");
    let path = format!("/console/events/{}/redeliver", events[0].sequence);
    let redeliver = fixture.post(&browser, &path, &csrf).await;
    assert_eq!(
        redeliver.location.as_deref(),
        Some("/console/events?done=redelivered")
    );
    for path in [
        "/console/webhooks/nope/test",
        "/console/webhooks/crm/dead-letters/999/replay",
        "/console/events/999/redeliver",
    ] {
        assert_eq!(
            fixture.post(&browser, path, &csrf).await.status,
            404,
            "{path}"
        );
    }
    let overview = fixture
        .call("GET", "/console", &[("cookie", &browser.cookie)], "")
        .await;
    assert!(overview.body.contains("webhook.test"), "{}", overview.body);
}

#[tokio::test]
async fn the_newest_sequence_is_the_last_event_written() {
    let fixture = Fixture::start();
    assert_eq!(
        fixture.stack.store.newest_event_sequence().expect("reads"),
        0
    );
    for expected in 1..=5u64 {
        let event = fixture
            .stack
            .store
            .enqueue_test_event("crm", false)
            .expect("writes");
        assert_eq!(event.sequence, expected);
        let found = fixture.stack.store.newest_event_sequence().expect("reads");
        assert_eq!(found, expected);
    }
}

impl Fixture {
    /// The live stream's text up to and including the first `event` message.
    async fn first_streamed_event(&self, browser: &Browser, headers: &[(&str, &str)]) -> String {
        use futures_util::StreamExt;
        let mut request = Request::builder()
            .uri("/console/events/stream?after=0")
            .header("cookie", &browser.cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(axum::body::Body::empty())
            .expect("a valid request");
        let response = self
            .stack
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        while !text.contains("event: event") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("a message within the tick")
                .expect("the stream goes on")
                .expect("a chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    }
}

#[tokio::test]
async fn the_live_stream_sends_new_events_and_resumes_after_the_last_seen() {
    let fixture = Fixture::start();
    let browser = fixture.sign_in().await;
    for _ in 0..2 {
        fixture
            .stack
            .store
            .enqueue_test_event("crm", false)
            .expect("writes");
    }
    let text = fixture.first_streamed_event(&browser, &[]).await;
    assert!(text.contains("id: 1\n"), "{text}");
    assert!(text.contains(r#""name":"webhook.test""#), "{text}");
    let resumed = fixture
        .first_streamed_event(&browser, &[("last-event-id", "1")])
        .await;
    assert!(resumed.contains("id: 2\n"), "{resumed}");
    assert!(!resumed.contains("id: 1\n"), "{resumed}");
}
