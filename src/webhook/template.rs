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
        let values = context! {
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
        };
        template
            .render(values)
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
}
