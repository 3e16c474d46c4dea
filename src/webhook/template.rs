//! Body templates (`template = "…"` / `template_file = "…"` per endpoint): minijinja, with no
//! access to files or the environment, rendered over the event. Pure: the template is parsed
//! once when the config is checked (a syntax error stops the start), and each delivery
//! renders it; a rendering error becomes a permanent failure of that delivery, never a panic.
//!
//! What a template sees: `id`, `name`, `api_version`, `created_at` (Unix s), `created_at_iso`
//! (RFC 3339), `sequence` (this endpoint's delivery number), `attempt`, `endpoint`,
//! `device` (`id`, `name`, `number`), `data` (the event's fields, as in our own envelope).
//! Filters besides minijinja's built-ins: `tojson` (JSON text, safe to paste into a JSON
//! body), `rfc3339` (Unix seconds → RFC 3339, UTC), `first_words(n)` (the first n words).

use minijinja::{Environment, Error, ErrorKind, Value, context};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use minijinja::UndefinedBehavior;
use serde_json::json;

use super::formats::Context;
use crate::store::{Event, Job};

/// The name the template is kept under (no extension: no auto-escaping).
const NAME: &str = "body";

/// How much work one rendering may do (minijinja's fuel: about one unit per instruction),
/// so a template with a huge loop fails instead of holding its endpoint's thread.
const FUEL: u64 = 1_000_000;

/// A checked body template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTemplate {
    source: String,
}

impl BodyTemplate {
    /// Parses `source`; the error names the line.
    pub fn parse(source: &str) -> Result<BodyTemplate, String> {
        let template = BodyTemplate {
            source: source.to_string(),
        };
        template.environment().map_err(|error| describe(&error))?;
        Ok(template)
    }

    /// Renders the template over a sample of every event it can be sent: each known event
    /// `wants` takes, each exact name in `events` we have no sample for (over generic data),
    /// and `webhook.test` (any endpoint can be sent one). The error names the line and the
    /// event when the template uses a filter, test or function minijinja does not know;
    /// every other rendering error is left to the delivery, as it may depend on the data.
    pub fn check_names(
        &self,
        events: &[String],
        wants: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let mut names: Vec<&str> = SAMPLE_EVENTS
            .iter()
            .copied()
            .filter(|name| *name == TEST_EVENT || wants(name))
            .collect();
        names.extend(
            events
                .iter()
                .map(|name| name.trim())
                .filter(|name| !name.contains('*') && !SAMPLE_EVENTS.contains(name)),
        );
        let mut environment = self.environment().map_err(|error| describe(&error))?;
        // `data.a.b` with no `a` is the data's business: carry on to the names after it.
        environment.set_undefined_behavior(UndefinedBehavior::Chainable);
        let template = environment
            .get_template(NAME)
            .map_err(|error| describe(&error))?;
        let job = Job {
            event_sequence: 1,
            sequence: 1,
            endpoint: "sample".into(),
            task_id: "sample".into(),
            attempts: 0,
            created_at: 1_700_000_000_000,
            enable_probe: false,
        };
        let context = Context {
            device_id: 1,
            device_name: "smsrelay".into(),
            number: Some("+447700900123".into()),
            endpoint: "sample".into(),
            attempt: 1,
            attempts_total: 10,
            now: 1_700_000_000,
            ..Context::default()
        };
        for name in names {
            let event = Event {
                sequence: 1,
                id: "0190c0de-0000-7000-8000-000000000001".into(),
                name: name.to_string(),
                api_version: crate::store::API_VERSION.into(),
                created_at: 1_700_000_000,
                clock_suspect: false,
                data: sample_data(name),
            };
            if let Err(error) = template.render(values(&event, &job, &context)) {
                if matches!(
                    error.kind(),
                    ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
                ) {
                    return Err(format!("{} (rendering a sample {name})", describe(&error)));
                }
            }
        }
        Ok(())
    }

    /// The template's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The body for one delivery of `event`, or why it cannot be rendered.
    pub fn render(&self, event: &Event, job: &Job, context: &Context) -> Result<Vec<u8>, String> {
        let environment = self.environment().map_err(|error| describe(&error))?;
        let template = environment
            .get_template(NAME)
            .map_err(|error| describe(&error))?;
        template
            .render(values(event, job, context))
            .map(String::into_bytes)
            .map_err(|error| describe(&error))
    }

    fn environment(&self) -> Result<Environment<'static>, Error> {
        let mut environment = Environment::new();
        environment.set_fuel(Some(FUEL));
        environment.add_filter("rfc3339", |unix: i64| rfc3339(unix));
        environment.add_filter("first_words", first_words);
        environment.add_template_owned(NAME, self.source.clone())?;
        Ok(environment)
    }
}

/// What a template sees of one delivery of `event`.
fn values(event: &Event, job: &Job, context: &Context) -> Value {
    context! {
        id => &event.id,
        name => &event.name,
        api_version => &event.api_version,
        created_at => event.created_at,
        created_at_iso => rfc3339(event.created_at as i64),
        sequence => job.sequence,
        attempt => context.attempt,
        endpoint => &context.endpoint,
        device => context! {
            id => context.device_id,
            name => &context.device_name,
            number => &context.number,
        },
        data => Value::from_serialize(&event.data),
    }
}

/// The event every endpoint can be sent (`smsrelay webhook test`, re-enabling).
const TEST_EVENT: &str = "webhook.test";

/// The events the config check renders a template over, when the endpoint subscribes.
const SAMPLE_EVENTS: [&str; 12] = [
    "sms.received",
    "sms.queued",
    "sms.pending",
    "sms.sent",
    "sms.delivered",
    "sms.failed",
    "sms.expired",
    "sms.undecodable",
    "call.ringing",
    "call.missed",
    "sim.balance",
    TEST_EVENT,
];

/// Sample `data` of event `name`, in the shape src/gateway/events.rs, sim_events.rs and the
/// store give it; for a name without a sample, fields most events have.
fn sample_data(name: &str) -> serde_json::Value {
    let outbound = |extra: serde_json::Value| {
        let mut data = json!({
            "message_id": "0190c0de-0000-7000-8000-0000000000aa",
            "message_number": 42,
            "to": "+447700900555",
            "parts": 1,
            "callback_data": "order-17",
            "modem": "modem1",
            "sim": 1,
        });
        if let (Some(fields), Some(more)) = (data.as_object_mut(), extra.as_object()) {
            fields.extend(more.clone());
        }
        data
    };
    let references = json!([17]);
    match name {
        "sms.received" => json!({
            "message_id": "0190c0de-0000-7000-8000-0000000000bb",
            "message_number": 43,
            "from": "+447700900555",
            "to": "+447700900123",
            "text": "INFO opening hours please",
            "encoding": "gsm7",
            "parts": 1,
            "incomplete": false,
            "smsc": "+447785016005",
            "sent_at": "2023-11-14T22:13:18+00:00",
            "received_at": "2023-11-14T22:13:20Z",
            "modem": "modem1",
            "sim": 1,
            "keyword": "INFO",
        }),
        "sms.queued" => outbound(json!({
            "encoding": "gsm7",
            "status_report": true,
            "queued_at": "2023-11-14T22:13:20Z",
        })),
        "sms.pending" => outbound(json!({
            "part": 0,
            "status": "pending",
            "status_code": 32,
            "status_text": "congestion, still trying",
            "message_references": references,
        })),
        "sms.sent" => outbound(json!({
            "encoding": "gsm7",
            "message_references": references,
            "sent_at": "2023-11-14T22:13:21Z",
        })),
        "sms.delivered" => outbound(json!({
            "status": "delivered",
            "status_code": 0,
            "status_text": "received by the recipient",
            "delivered_at": "2023-11-14T22:13:25Z",
            "message_references": references,
        })),
        "sms.failed" => outbound(json!({
            "stage": "submit",
            "error_code": 38,
            "error": "network out of order",
        })),
        "sms.expired" => outbound(json!({
            "message_references": references,
            "sent_at": "2023-11-14T22:13:21Z",
            "expired_at": "2023-11-17T22:13:21Z",
            "reason": "no status report within the validity period",
        })),
        "sms.undecodable" => json!({
            "pdu": "0791447758100650040C914477",
            "error": "the PDU ends early",
            "storage": "SM",
            "index": 3,
            "received_at": "2023-11-14T22:13:20Z",
            "modem": "modem1",
            "sim": 1,
        }),
        "call.ringing" => json!({
            "modem": "modem1",
            "sim": 1,
            "from": "+447700900555",
            "at": "2023-11-14T22:13:20Z",
        }),
        "call.missed" => json!({
            "modem": "modem1",
            "sim": 1,
            "from": "+447700900555",
            "rings": 3,
            "rejected": false,
            "at": "2023-11-14T22:13:30Z",
        }),
        "sim.balance" => json!({
            "modem": "modem1",
            "sim": 1,
            "code": "*100#",
            "text": "Your balance is 4.20 EUR",
            "amount": 4.2,
            "low_balance": false,
            "low_balance_below": 5.0,
            "checked_at": "2023-11-14T22:13:20Z",
        }),
        TEST_EVENT => json!({ "endpoint": "sample", "message": "a test from smsrelay" }),
        _ => json!({
            "message_id": "0190c0de-0000-7000-8000-0000000000cc",
            "from": "+447700900555",
            "to": "+447700900123",
            "text": "sample text",
            "modem": "modem1",
            "sim": 1,
        }),
    }
}

/// RFC 3339 in UTC for Unix seconds ("" when out of range).
fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The first `count` words of `text`, joined by single spaces.
fn first_words(text: &str, count: usize) -> Result<String, Error> {
    if count == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "first_words needs a count of at least 1",
        ));
    }
    Ok(text
        .split_whitespace()
        .take(count)
        .collect::<Vec<_>>()
        .join(" "))
}

/// The error in one line: what and where.
fn describe(error: &Error) -> String {
    match error.line() {
        Some(line) => format!(
            "template line {line}: {}",
            error.detail().unwrap_or(&error.kind().to_string())
        ),
        None => format!("template: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> Event {
        Event {
            sequence: 7,
            id: "0190c0de-0000-7000-8000-000000000001".into(),
            name: "sms.received".into(),
            api_version: "2025-01-01".into(),
            created_at: 1_700_000_000,
            clock_suspect: false,
            data: json!({ "from": "+4917012345", "text": "Hello \"world\"\nline two", "keyword": "INFO" }),
        }
    }

    fn job() -> Job {
        Job {
            event_sequence: 7,
            sequence: 3,
            endpoint: "tg".into(),
            task_id: "t".into(),
            attempts: 0,
            created_at: 0,
            enable_probe: false,
        }
    }

    fn render(source: &str) -> Result<String, String> {
        let context = Context {
            attempt: 1,
            endpoint: "tg".into(),
            device_id: 1,
            device_name: "pi".into(),
            ..Context::default()
        };
        let template = BodyTemplate::parse(source)?;
        template
            .render(&event(), &job(), &context)
            .map(|bytes| String::from_utf8(bytes).expect("utf-8"))
    }

    #[test]
    fn templates_render_the_event() {
        let cases = [
            (
                "{{ name }} {{ id }}",
                "sms.received 0190c0de-0000-7000-8000-000000000001",
            ),
            (
                "{{ data.from }}: {{ data.text | first_words(1) }}",
                "+4917012345: Hello",
            ),
            (
                r#"{"text": {{ data.text | tojson }}}"#,
                r#"{"text": "Hello \"world\"\nline two"}"#,
            ),
            (
                "{{ created_at | rfc3339 }} {{ created_at_iso }}",
                "2023-11-14T22:13:20Z 2023-11-14T22:13:20Z",
            ),
            (
                "{{ sequence }}/{{ attempt }} {{ endpoint }} {{ device.name }}",
                "3/1 tg pi",
            ),
            ("{{ data.keyword or 'none' }}", "INFO"),
            ("<{{ data.text | first_words(1) }}>", "<Hello>"),
        ];
        for (source, expected) in cases {
            assert_eq!(render(source).as_deref(), Ok(expected), "{source}");
        }
    }

    #[test]
    fn a_bad_template_is_refused_at_parse_and_a_failing_one_says_why() {
        let parse = BodyTemplate::parse("{{ data.text ").expect_err("syntax");
        assert!(parse.starts_with("template line 1"), "{parse}");
        for source in [
            "{{ data.missing.deeper }}",
            "{{ data.text | no_such_filter }}",
            "{{ data.text | first_words(0) }}",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        ] {
            let error = render(source).expect_err(source);
            assert!(error.starts_with("template"), "{source}: {error}");
        }
    }

    #[test]
    fn the_check_refuses_unknown_names_but_leaves_data_to_the_delivery() {
        let all = vec!["*".to_string()];
        let received = vec!["sms.received".to_string()];
        let sent = vec!["sms.sent".to_string()];
        let custom = vec!["sms.received".to_string(), "custom.event".to_string()];
        // (source, events, error fragment or None when the check passes)
        let cases: [(&str, &[String], Option<&str>); 14] = [
            ("{{ data.text | tojson }}", &all, None),
            (
                "{{ data.text | tojsn }}",
                &all,
                Some("line 1: filter tojsn is unknown"),
            ),
            (
                "x\n{% if data.text is strng %}{% endif %}",
                &all,
                Some("line 2: test strng is unknown"),
            ),
            ("{{ now() }}", &all, Some("now is unknown")),
            (
                "{{ range(3) | join(',') }} {{ data.text | first_words(2) | upper }}",
                &all,
                None,
            ),
            // Names in a branch the event takes are found; the error says which event.
            (
                "{% if name == 'sms.sent' %}{{ data.to | bogus }}{% endif %}",
                &sent,
                Some("bogus is unknown (rendering a sample sms.sent)"),
            ),
            (
                "{% if name == 'sms.delivered' %}{{ data.to | bogus }}{% endif %}",
                &all,
                Some("(rendering a sample sms.delivered)"),
            ),
            // The endpoint never gets sms.delivered: that branch is not its problem.
            (
                "{% if name == 'sms.delivered' %}{{ data.to | bogus }}{% endif %}",
                &received,
                None,
            ),
            // webhook.test reaches every endpoint.
            (
                "{% if name == 'webhook.test' %}{{ data | bogus }}{% endif %}",
                &received,
                Some("(rendering a sample webhook.test)"),
            ),
            // An exact name without a sample is tried with generic data.
            (
                "{% if name == 'custom.event' %}{{ data.from | bogus }}{% endif %}",
                &custom,
                Some("(rendering a sample custom.event)"),
            ),
            // Missing fields, and filters refusing a value, depend on the data: left alone.
            (
                "{{ data.missing.deeper }} {{ data.text | tojson }}",
                &all,
                None,
            ),
            ("{{ data.text | first_words(0) }}", &all, None),
            // ... and do not hide an unknown name after them.
            (
                "{{ data.missing.deeper }}{{ data.text | tojsn }}",
                &all,
                Some("tojsn is unknown"),
            ),
            ("{{ data.text | int + 1 }}", &all, None),
        ];
        for (source, events, expected) in cases {
            let template = BodyTemplate::parse(source).expect(source);
            let result =
                template.check_names(events, |name| events.iter().any(|e| e == "*" || e == name));
            match (expected, result) {
                (None, Ok(())) => {}
                (Some(fragment), Err(error)) => {
                    assert!(error.starts_with("template line"), "{source}: {error}");
                    assert!(error.contains(fragment), "{source}: {error}");
                }
                (expected, result) => panic!("{source}: wanted {expected:?}, got {result:?}"),
            }
        }
    }

    #[test]
    fn every_sample_event_renders_with_the_usual_fields() {
        let template = BodyTemplate::parse("{{ name }} {{ data | tojson }}").expect("parses");
        template
            .check_names(&["*".into()], |_| true)
            .expect("renders");
        for name in SAMPLE_EVENTS {
            let data = sample_data(name);
            assert!(data.is_object(), "{name}");
            if name.starts_with("sms.") && name != "sms.undecodable" {
                assert!(data["message_id"].is_string(), "{name}");
            }
            // Every real event but the test says which modem and SIM slot (`data.sim`).
            if name != TEST_EVENT {
                assert!(data["modem"].is_string(), "{name}");
                assert!(data["sim"].is_u64(), "{name}");
            }
        }
        assert_eq!(sample_data("sms.received")["keyword"], "INFO");
    }
}
