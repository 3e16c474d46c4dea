//! The `[[webhook]]` entries of the config file, checked and turned into what the dispatcher
//! and the store need.

use std::time::Duration;

use serde::Deserialize;

use super::dispatch::EndpointConfig;
use super::formats::Format;
use super::schedule::DEFAULT_SCHEDULE;
use super::sign::Secret;
use crate::store::Subscription;

/// One `[[webhook]]` table as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
}

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
    /// Checks the entry and returns the endpoint and its subscription.
    pub fn resolve(&self) -> Result<(EndpointConfig, Subscription), WebhookConfigError> {
        let fail = |key, message: String| self.error(key, message);
        self.check_name()?;
        let url = self.checked_url()?;
        let format = self.checked_format()?;
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
            mqtt: None,
        };
        let subscription = Subscription {
            endpoint: self.name.clone(),
            events,
        };
        Ok((endpoint, subscription))
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

    fn checked_url(&self) -> Result<String, WebhookConfigError> {
        let url = self.url.trim();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
        match host {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                Ok(url.to_string())
            }
            _ => Err(self.error("url", format!("{url:?} is not an http:// or https:// URL"))),
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

/// Checks every entry (names must be unique).
pub fn resolve_all(
    sections: &[WebhookSection],
) -> Result<(Vec<EndpointConfig>, Vec<Subscription>), WebhookConfigError> {
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
        let (endpoint, subscription) = section.resolve()?;
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
        let (endpoints, subscriptions) = resolve_all(&sections).expect("valid");
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
                format: None,
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
                    ("events", v) => section.events = Some(v.try_into().expect("list")),
                    ("retry_schedule", v) => {
                        section.retry_schedule = Some(v.try_into().expect("list"))
                    }
                    other => panic!("{other:?}"),
                }
            }
            let error = section.resolve().expect_err(line);
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
        assert_eq!(resolve_all(&twice).expect_err("duplicate").key, "name");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<File>(
            "[[webhook]]\nname = \"crm\"\nurl = \"https://a.example/\"\nsecrets = []\n",
        )
        .expect_err("unknown key");
        assert!(error.to_string().contains("secrets"), "{error}");
    }
}
