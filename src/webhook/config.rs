//! The `[[webhook]]` entries of the config file, checked and turned into what the dispatcher
//! and the store need.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::dispatch::{EndpointConfig, Transport};
use super::formats::Format;
use super::mail::{self, MailTo, SmtpSettings};
use super::schedule::DEFAULT_SCHEDULE;
use super::sign::Secret;
use super::template::BodyTemplate;
use crate::store::Subscription;
use crate::store::routing::{ROUTED_EVENT, Routing};

/// One `[[webhook]]` table as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// A short name (letters, digits, `-`, `_`): the API and the logs use it.
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    /// Event names or `sms.*`-style patterns; every event when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// `whsec_…`: sign with it.
    #[serde(default)]
    pub secret: Option<String>,
    /// The secret being retired: both sign during a rotation.
    #[serde(default)]
    pub previous_secret: Option<String>,
    /// The whole request's deadline, e.g. `"15s"`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Pauses before each attempt, e.g. `["0s", "5s", "5m"]`; the default has 10 attempts
    /// over about 75 h.
    #[serde(default)]
    pub retry_schedule: Option<Vec<String>>,
    /// `false` holds this endpoint's events until it is enabled.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The payload shape: `smsrelay` (the default), `lox24`, `gatewayapi`, `smsgateway24`,
    /// `smsgate`.
    #[serde(default)]
    pub format: Option<String>,
    /// Inbound SMS whose first word is one of these (any case; punctuation around the word,
    /// as in `STOP.` or `#info`, is ignored).
    #[serde(default)]
    pub keywords: Option<Vec<String>>,
    /// Inbound SMS from these senders (exact, or a prefix ending in `*`; any case).
    #[serde(default)]
    pub senders: Option<Vec<String>>,
    /// Gets the inbound SMS that no endpoint with `keywords` or `senders` took.
    #[serde(default)]
    pub unmatched: bool,
    /// A minijinja body template, instead of `format`.
    #[serde(default)]
    pub template: Option<String>,
    /// A file holding the template.
    #[serde(default)]
    pub template_file: Option<String>,
    /// The body's media type, e.g. `application/json`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Extra HTTP headers, e.g. `{ Title = "SMS" }`.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
}

/// Headers the delivery sets itself: `headers` may not replace them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

fn enabled_by_default() -> bool {
    true
}

/// A problem with one `[[webhook]]` entry, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[[webhook]] {name:?}: {key}: {message}")]
pub struct WebhookConfigError {
    /// The entry's name (or its position when the name is the problem).
    pub name: String,
    /// The key at fault.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| format!("{text:?}: {error}"))
}

impl WebhookSection {
    /// Checks the entry and returns the endpoint and its subscription; `smtp` is the
    /// `[smtp]` section a `mailto:` endpoint sends through.
    pub fn resolve(
        &self,
        smtp: Option<&Arc<SmtpSettings>>,
    ) -> Result<(EndpointConfig, Subscription), WebhookConfigError> {
        let fail = |key, message: String| self.error(key, message);
        self.check_name()?;
        let (url, transport) = self.checked_url(smtp)?;
        let format = self.checked_format()?;
        let template = self.checked_template()?;
        let headers = self.checked_headers(&transport)?;
        let content_type = self.checked_content_type(&transport)?;
        if matches!(transport, Transport::Mail(_)) && self.secret.is_some() {
            return Err(fail("secret", "e-mail is not signed: remove it".into()));
        }
        let events = self.events.clone().unwrap_or_else(|| vec!["*".into()]);
        if events.is_empty() || events.iter().any(|e| e.trim().is_empty()) {
            return Err(fail(
                "events",
                "list event names or patterns such as \"sms.*\"".into(),
            ));
        }
        let (secrets, format_secret) = self.secrets(format, &fail)?;
        let timeout = match &self.timeout {
            Some(text) => duration(text).map_err(|message| fail("timeout", message))?,
            None => Duration::from_secs(15),
        };
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&timeout) {
            return Err(fail("timeout", "must be between 1s and 60s".into()));
        }
        let endpoint = EndpointConfig {
            name: self.name.clone(),
            url,
            secrets,
            timeout,
            schedule: self.checked_schedule()?,
            enabled: self.enabled,
            format,
            format_secret,
            transport,
            template,
            content_type,
            headers,
            mqtt: None,
        };
        let mut subscription = Subscription {
            endpoint: self.name.clone(),
            events,
            routing: Routing::default(),
        };
        subscription.routing = self.checked_routing(&subscription)?;
        if let Some(template) = &endpoint.template {
            template
                .check_names(&subscription.events, |name| subscription.wants(name))
                .map_err(|message| fail(self.template_key(), message))?;
        }
        Ok((endpoint, subscription))
    }

    /// `keywords`, `senders`, `unmatched`: words without spaces, and only on an endpoint that
    /// gets inbound SMS at all.
    fn checked_routing(&self, subscription: &Subscription) -> Result<Routing, WebhookConfigError> {
        let list = |key: &'static str, list: &Option<Vec<String>>| match list {
            None => Ok(Vec::new()),
            Some(items) if items.is_empty() => Err(self.error(key, "list at least one".into())),
            Some(items) => items
                .iter()
                .map(|item| {
                    let item = item.trim();
                    if item.is_empty() || item.contains(char::is_whitespace) {
                        Err(self.error(key, format!("{item:?}: give one word, no spaces")))
                    } else {
                        Ok(item.to_string())
                    }
                })
                .collect(),
        };
        let routing = Routing {
            keywords: list("keywords", &self.keywords)?,
            senders: list("senders", &self.senders)?,
            unmatched: self.unmatched,
        };
        if routing.unmatched && !(routing.keywords.is_empty() && routing.senders.is_empty()) {
            let message = "an `unmatched` endpoint takes no `keywords` or `senders`".into();
            return Err(self.error("unmatched", message));
        }
        if !routing.takes_all() && !subscription.wants(ROUTED_EVENT) {
            let key = if routing.unmatched {
                "unmatched"
            } else if routing.keywords.is_empty() {
                "senders"
            } else {
                "keywords"
            };
            let message = format!("routes {ROUTED_EVENT}, which `events` leaves out");
            return Err(self.error(key, message));
        }
        Ok(routing)
    }

    /// The key the template came from, for its errors.
    fn template_key(&self) -> &'static str {
        if self.template_file.is_some() && self.template.is_none() {
            "template_file"
        } else {
            "template"
        }
    }

    /// `template` or `template_file` (read now), parsed; never with `format`.
    fn checked_template(&self) -> Result<Option<BodyTemplate>, WebhookConfigError> {
        let (key, source) = match (&self.template, &self.template_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                let message = "set `template` or `template_file`, not both".into();
                return Err(self.error("template_file", message));
            }
            (Some(text), None) => ("template", text.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    self.error("template_file", format!("cannot read {path:?}: {error}"))
                })?;
                ("template_file", text)
            }
        };
        if self.format.is_some() {
            let message = "a template replaces `format`: set one of them".into();
            return Err(self.error(key, message));
        }
        BodyTemplate::parse(&source)
            .map(Some)
            .map_err(|message| self.error(key, message))
    }

    /// `content_type`: an HTTP header value, or for e-mail what lettre parses (checked now,
    /// so a send cannot fail on it).
    fn checked_content_type(
        &self,
        transport: &Transport,
    ) -> Result<Option<String>, WebhookConfigError> {
        let Some(text) = self.content_type.as_deref().map(str::trim) else {
            return Ok(None);
        };
        let refused = |why: String| {
            let message = format!("{text:?} is not a media type such as \"application/json\"");
            self.error("content_type", format!("{message}{why}"))
        };
        if ureq::http::HeaderValue::from_str(text).is_err() || !text.contains('/') {
            return Err(refused(String::new()));
        }
        if matches!(transport, Transport::Mail(_)) {
            mail::content_type(text).map_err(|error| refused(format!(": {error}")))?;
        }
        Ok(Some(text.to_string()))
    }

    /// `headers`: valid names and values, none the delivery sets itself; HTTP only.
    fn checked_headers(
        &self,
        transport: &Transport,
    ) -> Result<Vec<(String, String)>, WebhookConfigError> {
        let Some(headers) = &self.headers else {
            return Ok(Vec::new());
        };
        if matches!(transport, Transport::Mail(_)) {
            let message = "headers are for http:// and https:// endpoints".into();
            return Err(self.error("headers", message));
        }
        let mut checked = Vec::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                let message = format!("{name:?} is set by smsrelay (see `content_type`)");
                return Err(self.error("headers", message));
            }
            if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || ureq::http::HeaderValue::from_str(value).is_err()
            {
                let message = format!("{name:?} = {value:?} is not a valid HTTP header");
                return Err(self.error("headers", message));
            }
            checked.push((name.clone(), value.clone()));
        }
        Ok(checked)
    }

    fn error(&self, key: &'static str, message: String) -> WebhookConfigError {
        WebhookConfigError {
            name: self.name.clone(),
            key,
            message,
        }
    }

    fn check_name(&self) -> Result<(), WebhookConfigError> {
        let valid = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(())
        } else {
            Err(self.error("name", "use 1–64 letters, digits, '-' or '_'".into()))
        }
    }

    fn checked_url(
        &self,
        smtp: Option<&Arc<SmtpSettings>>,
    ) -> Result<(String, Transport), WebhookConfigError> {
        let url = self.url.trim();
        if url.starts_with("mailto:") {
            let to = mail::recipients(url).map_err(|message| self.error("url", message))?;
            let Some(smtp) = smtp else {
                let message = "a mailto: endpoint needs an [smtp] section".into();
                return Err(self.error("url", message));
            };
            let smtp = Arc::clone(smtp);
            return Ok((url.to_string(), Transport::Mail(MailTo { to, smtp })));
        }
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
        match host {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                Ok((url.to_string(), Transport::Http))
            }
            _ => Err(self.error(
                "url",
                format!("{url:?} is not an http://, https:// or mailto: URL"),
            )),
        }
    }

    fn checked_format(&self) -> Result<Format, WebhookConfigError> {
        match self.format.as_deref().map(str::trim) {
            None => Ok(Format::Smsrelay),
            Some(name) => Format::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                self.error(
                    "format",
                    format!("{name:?} is not one of {}", known.join(", ")),
                )
            }),
        }
    }

    fn checked_schedule(&self) -> Result<Vec<Duration>, WebhookConfigError> {
        let schedule = match &self.retry_schedule {
            Some(list) => list
                .iter()
                .map(|text| duration(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| self.error("retry_schedule", message))?,
            None => DEFAULT_SCHEDULE.to_vec(),
        };
        if schedule
            .iter()
            .any(|pause| *pause > Duration::from_secs(7 * 86_400))
        {
            return Err(self.error("retry_schedule", "no pause may exceed 7 days".into()));
        }
        if schedule.is_empty() || schedule.len() > 50 {
            return Err(self.error("retry_schedule", "give 1 to 50 pauses".into()));
        }
        Ok(schedule)
    }
}

impl WebhookSection {
    /// The Standard Webhooks secrets, or (for a format that signs itself) the raw key.
    fn secrets(
        &self,
        format: Format,
        fail: &dyn Fn(&'static str, String) -> WebhookConfigError,
    ) -> Result<(Vec<Secret>, Option<Secret>), WebhookConfigError> {
        if self.secret.is_none() && self.previous_secret.is_some() {
            return Err(fail(
                "previous_secret",
                "set `secret` too: it signs first".into(),
            ));
        }
        if format.signs_itself() {
            if self.previous_secret.is_some() {
                let message = format!("the {} format signs with one key only", format.name());
                return Err(fail("previous_secret", message));
            }
            if self.secret.as_deref().is_some_and(str::is_empty) {
                return Err(fail("secret", "must not be empty".into()));
            }
            return Ok((Vec::new(), self.secret.as_deref().map(Secret::raw)));
        }
        let mut secrets = Vec::new();
        for (key, text) in [
            ("secret", &self.secret),
            ("previous_secret", &self.previous_secret),
        ] {
            if let Some(text) = text {
                secrets.push(Secret::parse(text).map_err(|error| fail(key, error.to_string()))?);
            }
        }
        Ok((secrets, None))
    }
}

/// Checks every entry (names must be unique); `smtp` is `[smtp]`, when there is one.
pub fn resolve_all(
    sections: &[WebhookSection],
    smtp: Option<&SmtpSettings>,
) -> Result<(Vec<EndpointConfig>, Vec<Subscription>), WebhookConfigError> {
    let smtp = smtp.map(|settings| Arc::new(settings.clone()));
    let mut endpoints = Vec::new();
    let mut subscriptions = Vec::new();
    for section in sections {
        if endpoints
            .iter()
            .any(|e: &EndpointConfig| e.name == section.name)
        {
            return Err(WebhookConfigError {
                name: section.name.clone(),
                key: "name",
                message: "used by another [[webhook]]".into(),
            });
        }
        let (endpoint, subscription) = section.resolve(smtp.as_ref())?;
        endpoints.push(endpoint);
        subscriptions.push(subscription);
    }
    Ok((endpoints, subscriptions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        webhook: Vec<WebhookSection>,
    }

    fn parse(text: &str) -> Vec<WebhookSection> {
        toml::from_str::<File>(text).expect("parses").webhook
    }

    #[test]
    fn the_design_example_resolves_with_defaults() {
        let sections = parse(
            r#"
            [[webhook]]
            name = "crm"
            url = "https://example.com/sms-events"
            events = ["sms.*"]
            secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            timeout = "15s"

            [[webhook]]
            name = "audit"
            url = "http://10.0.0.5:8080/hook"
            previous_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
            secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            retry_schedule = ["0s", "1m", "1h"]
            enabled = false
            "#,
        );
        let (endpoints, subscriptions) = resolve_all(&sections, None).expect("valid");
        assert_eq!(endpoints[0].schedule.len(), 10);
        assert_eq!(endpoints[0].timeout, Duration::from_secs(15));
        assert_eq!(endpoints[0].secrets.len(), 1);
        assert!(endpoints[0].enabled);
        assert_eq!(endpoints[1].secrets.len(), 2);
        assert_eq!(
            endpoints[1].schedule,
            [
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(3600)
            ]
        );
        assert!(!endpoints[1].enabled);
        assert_eq!(subscriptions[1].events, ["*"]);
        assert!(subscriptions[0].wants("sms.delivered"));
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (r#"name = "a b""#, "name"),
            (r#"url = "ftp://x""#, "url"),
            (r#"url = "https://""#, "url"),
            (r#"events = []"#, "events"),
            (r#"secret = "whsec_???""#, "secret"),
            (
                r#"previous_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#,
                "previous_secret",
            ),
            (r#"timeout = "forever""#, "timeout"),
            (r#"timeout = "5m""#, "timeout"),
            (r#"retry_schedule = ["5s", "soon"]"#, "retry_schedule"),
            (r#"format = "twilio""#, "format"),
            (r#"url = "mailto:ops@example.com""#, "url"),
            (r#"url = "mailto:ops""#, "url"),
            (r#"keywords = []"#, "keywords"),
            (r#"keywords = ["two words"]"#, "keywords"),
            (r#"senders = [""]"#, "senders"),
            ("unmatched = true\nkeywords = [\"INFO\"]", "unmatched"),
            ("events = [\"sms.sent\"]\nkeywords = [\"INFO\"]", "keywords"),
            (r#"template = "{{ data.text ""#, "template"),
            ("template = \"x\"\nformat = \"lox24\"", "template"),
            (
                "template = \"x\"\ntemplate_file = \"/etc/hostname\"",
                "template_file",
            ),
            (r#"template_file = "/nonexistent/body.j2""#, "template_file"),
            (r#"content_type = "json""#, "content_type"),
            // minijinja finds filters, tests and functions only when rendering: the check
            // renders samples, so a misspelt one is a config error, not a dead letter each time.
            (r#"template = "{{ data.text | tojsn }}""#, "template"),
            (
                "events = [\"sms.failed\"]\ntemplate = \"{% if data.error is strng %}x{% endif %}\"",
                "template",
            ),
            (r#"headers = { Content-Type = "text/plain" }"#, "headers"),
            (r#"headers = { "Bad Name" = "x" }"#, "headers"),
        ];
        for (line, key) in cases {
            let mut section = WebhookSection {
                name: "crm".into(),
                url: "https://example.com/hook".into(),
                events: None,
                secret: None,
                previous_secret: None,
                timeout: None,
                retry_schedule: None,
                enabled: true,
                ..WebhookSection::default()
            };
            let patch: toml::Table = toml::from_str(line).expect("toml");
            for (k, v) in patch {
                match (k.as_str(), v) {
                    ("name", toml::Value::String(s)) => section.name = s,
                    ("url", toml::Value::String(s)) => section.url = s,
                    ("secret", toml::Value::String(s)) => section.secret = Some(s),
                    ("previous_secret", toml::Value::String(s)) => {
                        section.previous_secret = Some(s)
                    }
                    ("timeout", toml::Value::String(s)) => section.timeout = Some(s),
                    ("format", toml::Value::String(s)) => section.format = Some(s),
                    ("template", toml::Value::String(s)) => section.template = Some(s),
                    ("template_file", toml::Value::String(s)) => section.template_file = Some(s),
                    ("content_type", toml::Value::String(s)) => section.content_type = Some(s),
                    ("unmatched", toml::Value::Boolean(b)) => section.unmatched = b,
                    ("keywords", v) => section.keywords = Some(v.try_into().expect("list")),
                    ("senders", v) => section.senders = Some(v.try_into().expect("list")),
                    ("headers", v) => section.headers = Some(v.try_into().expect("table")),
                    ("events", v) => section.events = Some(v.try_into().expect("list")),
                    ("retry_schedule", v) => {
                        section.retry_schedule = Some(v.try_into().expect("list"))
                    }
                    other => panic!("{other:?}"),
                }
            }
            let error = section.resolve(None).expect_err(line);
            assert_eq!(error.key, key, "{line}: {error}");
        }
        let twice = parse(
            r#"
            [[webhook]]
            name = "crm"
            url = "https://a.example/"
            [[webhook]]
            name = "crm"
            url = "https://b.example/"
            "#,
        );
        assert_eq!(
            resolve_all(&twice, None).expect_err("duplicate").key,
            "name"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<File>(
            "[[webhook]]\nname = \"crm\"\nurl = \"https://a.example/\"\nsecrets = []\n",
        )
        .expect_err("unknown key");
        assert!(error.to_string().contains("secrets"), "{error}");
    }

    #[test]
    fn an_e_mail_content_type_is_one_lettre_takes() {
        let smtp = toml::from_str::<mail::SmtpSection>("host = \"m\"\nfrom = \"sms@example.com\"")
            .expect("toml")
            .resolve()
            .expect("valid");
        let smtp = Arc::new(smtp);
        let cases = [
            ("text/html; charset=utf-8", "https://example.com/hook", true),
            ("text/html; charset=utf-8", "mailto:ops@example.com", true),
            ("application/json", "mailto:ops@example.com", true),
            // A header value HTTP takes, but not a MIME type an e-mail can carry.
            ("text/plain; charset", "https://example.com/hook", true),
            ("text/plain; charset", "mailto:ops@example.com", false),
            ("json", "mailto:ops@example.com", false),
        ];
        for (content_type, url, valid) in cases {
            let section = WebhookSection {
                name: "mail".into(),
                url: url.into(),
                enabled: true,
                content_type: Some(content_type.into()),
                ..WebhookSection::default()
            };
            match section.resolve(Some(&smtp)) {
                Ok((endpoint, _)) => {
                    assert!(valid, "{content_type} {url} was taken");
                    assert_eq!(endpoint.content_type.as_deref(), Some(content_type));
                }
                Err(error) => {
                    assert!(!valid, "{content_type} {url}: {error}");
                    assert_eq!(error.key, "content_type", "{error}");
                }
            }
        }
    }
}
