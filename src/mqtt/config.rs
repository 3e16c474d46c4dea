//! The `[mqtt]` section of the config file, checked and turned into what the MQTT link, the
//! publisher of events and the command handler need.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::topics;

/// The `[mqtt]` table as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// The broker's user name, if it asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// The password for `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// A PEM file of the CA certificates to trust for `mqtts://` (default: the bundled web
    /// roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The client id; default `smsrelay-<device_name>`. The broker keeps this client's
    /// session (its unacknowledged commands) under it.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Every topic starts with this; default `smsrelay/<device_name>`.
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// Event names or `sms.*`-style patterns to publish; every event when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// The payload shape of events, as for webhooks (default `smsrelay`, the native envelope).
    #[serde(default)]
    pub format: Option<String>,
    /// The keep-alive interval, e.g. `"30s"`.
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// How long a publish may wait for the broker's PUBACK, e.g. `"10s"`.
    #[serde(default)]
    pub publish_timeout: Option<String>,
    /// The shortest time between two publications of `<prefix>/state`, e.g. `"5s"`.
    #[serde(default)]
    pub state_interval: Option<String>,
    /// Accept `<prefix>/cmd/...` messages (send an SMS). Off by default.
    #[serde(default)]
    pub commands: bool,
    /// Publish Home Assistant discovery messages.
    #[serde(default)]
    pub home_assistant: bool,
    /// Home Assistant's discovery prefix (default `homeassistant`).
    #[serde(default)]
    pub discovery_prefix: Option<String>,
    /// The number Home Assistant's notify entity sends to.
    #[serde(default)]
    pub notify_to: Option<String>,
}

/// Whether the link is encrypted, and whom it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// `mqtt://`: plain TCP.
    Plain,
    /// `mqtts://`: TLS (rustls), trusting this CA file or the bundled web roots.
    Tls {
        /// PEM certificates to trust instead of the web roots.
        ca_file: Option<PathBuf>,
    },
}

/// `[mqtt]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// The broker's host name or address.
    pub host: String,
    /// The broker's port (1883 or 8883 unless given).
    pub port: u16,
    /// Plain or TLS.
    pub security: Security,
    /// User name and password, when the broker asks for them.
    pub credentials: Option<(String, String)>,
    /// The MQTT client id.
    pub client_id: String,
    /// The topic prefix, without a trailing `/`.
    pub prefix: String,
    /// The keep-alive interval.
    pub keep_alive: Duration,
    /// How long a publish waits for its PUBACK before it is tried again.
    pub publish_timeout: Duration,
    /// The shortest time between two state publications.
    pub state_interval: Duration,
    /// `cmd/...` topics are obeyed.
    pub commands: bool,
    /// Home Assistant discovery is published.
    pub home_assistant: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// The notify entity's recipient.
    pub notify_to: Option<String>,
}

/// A problem in `[mqtt]`, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct MqttConfigError {
    /// The key at fault, without the `mqtt.` prefix.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn fail(key: &'static str, message: impl Into<String>) -> MqttConfigError {
    MqttConfigError {
        key,
        message: message.into(),
    }
}

fn duration(
    key: &'static str,
    text: &Option<String>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, MqttConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let parsed = humantime::parse_duration(text.trim()).map_err(|error| {
        fail(
            key,
            format!("{text:?} is not a duration like \"30s\" ({error})"),
        )
    })?;
    if !range.contains(&parsed) {
        return Err(fail(
            key,
            format!(
                "must be between {} and {}",
                humantime::format_duration(*range.start()),
                humantime::format_duration(*range.end())
            ),
        ));
    }
    Ok(parsed)
}

/// Host, port and security from `mqtt://host[:port]` or `mqtts://host[:port]`.
fn broker(url: &str) -> Result<(String, u16, bool), MqttConfigError> {
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|error| fail("url", format!("{url:?} is not a URL ({error})")))?;
    let tls = match uri.scheme_str() {
        Some("mqtt") | Some("tcp") => false,
        Some("mqtts") | Some("ssl") => true,
        _ => {
            return Err(fail(
                "url",
                format!("{url:?}: use mqtt://host:1883 or mqtts://host:8883"),
            ));
        }
    };
    let host = uri
        .host()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
        .filter(|host| !host.is_empty())
        .ok_or_else(|| fail("url", format!("{url:?} names no host")))?;
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err(fail("url", format!("{url:?}: a broker URL has no path")));
    }
    let port = uri.port_u16().unwrap_or(if tls { 8883 } else { 1883 });
    Ok((host.to_string(), port, tls))
}

impl MqttSection {
    /// Checks the section; `device_name` gives the default client id and topic prefix.
    pub fn resolve(&self, device_name: &str) -> Result<MqttSettings, MqttConfigError> {
        let (host, port, tls) = broker(&self.url)?;
        let security = if tls {
            Security::Tls {
                ca_file: self.ca_file.as_ref().map(|file| PathBuf::from(file.trim())),
            }
        } else {
            if self.ca_file.is_some() {
                return Err(fail("ca_file", "only used with an mqtts:// url"));
            }
            Security::Plain
        };
        let credentials = match (&self.username, &self.password) {
            (Some(user), password) => Some((user.clone(), password.clone().unwrap_or_default())),
            (None, Some(_)) => return Err(fail("password", "set username too")),
            (None, None) => None,
        };
        let device = topics::segment(device_name);
        let client_id = match &self.client_id {
            Some(id) if id.trim().is_empty() || id.len() > 64 => {
                return Err(fail("client_id", "1 to 64 characters"));
            }
            Some(id) => id.trim().to_string(),
            None => format!("smsrelay-{device}"),
        };
        let prefix = match &self.topic_prefix {
            Some(prefix) => topics::check_prefix(prefix).map_err(|e| fail("topic_prefix", e))?,
            None => format!("smsrelay/{device}"),
        };
        let discovery_prefix = match &self.discovery_prefix {
            Some(prefix) => {
                topics::check_prefix(prefix).map_err(|e| fail("discovery_prefix", e))?
            }
            None => "homeassistant".to_string(),
        };
        let phone_like = |to: &String| {
            let to = to.trim();
            !to.is_empty()
                && to
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-()".contains(c))
        };
        if self.notify_to.as_ref().is_some_and(|to| !phone_like(to)) {
            return Err(fail("notify_to", "a phone number, e.g. \"+491701234567\""));
        }
        if self.notify_to.is_some() && !self.home_assistant {
            return Err(fail("notify_to", "only used with home_assistant = true"));
        }
        if self.notify_to.is_some() && !self.commands {
            return Err(fail(
                "notify_to",
                "Home Assistant sends through commands: set commands = true too",
            ));
        }
        Ok(MqttSettings {
            host,
            port,
            security,
            credentials,
            client_id,
            prefix,
            keep_alive: duration(
                "keep_alive",
                &self.keep_alive,
                Duration::from_secs(30),
                Duration::from_secs(5)..=Duration::from_secs(3600),
            )?,
            publish_timeout: duration(
                "publish_timeout",
                &self.publish_timeout,
                Duration::from_secs(10),
                Duration::from_secs(1)..=Duration::from_secs(300),
            )?,
            state_interval: duration(
                "state_interval",
                &self.state_interval,
                Duration::from_secs(5),
                Duration::from_millis(100)..=Duration::from_secs(3600),
            )?,
            commands: self.commands,
            home_assistant: self.home_assistant,
            discovery_prefix,
            notify_to: self
                .notify_to
                .as_ref()
                .map(|to| to.trim().to_string())
                .filter(|to| !to.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: &str) -> MqttSection {
        MqttSection {
            url: url.into(),
            ..MqttSection::default()
        }
    }

    #[test]
    fn broker_urls() {
        struct Case {
            url: &'static str,
            expect: Result<(&'static str, u16, bool), &'static str>,
        }
        let cases = [
            Case {
                url: "mqtt://localhost",
                expect: Ok(("localhost", 1883, false)),
            },
            Case {
                url: "mqtt://10.0.0.2:1884",
                expect: Ok(("10.0.0.2", 1884, false)),
            },
            Case {
                url: "mqtts://broker.example.com",
                expect: Ok(("broker.example.com", 8883, true)),
            },
            Case {
                url: "mqtt://[::1]:1883",
                expect: Ok(("::1", 1883, false)),
            },
            Case {
                url: "http://broker",
                expect: Err("use mqtt://"),
            },
            Case {
                url: "broker:1883",
                expect: Err("use mqtt://"),
            },
            Case {
                url: "mqtt://broker/topic",
                expect: Err("no path"),
            },
            Case {
                url: "",
                expect: Err("not a URL"),
            },
        ];
        for case in cases {
            let got = broker(case.url);
            match (case.expect, got) {
                (Ok((host, port, tls)), Ok(got)) => {
                    assert_eq!(got, (host.to_string(), port, tls), "{}", case.url)
                }
                (Err(text), Err(error)) => {
                    assert!(error.message.contains(text), "{}: {error}", case.url)
                }
                (expect, got) => panic!("{}: expected {expect:?}, got {got:?}", case.url),
            }
        }
    }

    #[test]
    fn defaults_follow_the_device_name() {
        let settings = section("mqtt://127.0.0.1:1883")
            .resolve("Pi in the shed")
            .expect("valid");
        assert_eq!(settings.client_id, "smsrelay-pi_in_the_shed");
        assert_eq!(settings.prefix, "smsrelay/pi_in_the_shed");
        assert_eq!(settings.discovery_prefix, "homeassistant");
        assert_eq!(settings.keep_alive, Duration::from_secs(30));
        assert!(!settings.commands);
        assert_eq!(settings.security, Security::Plain);
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let mut notify = section("mqtt://h");
        notify.notify_to = Some("+4917".into());
        assert_eq!(notify.resolve("gw").unwrap_err().key, "notify_to");
        let mut ca = section("mqtt://h");
        ca.ca_file = Some("/etc/ca.pem".into());
        assert_eq!(ca.resolve("gw").unwrap_err().key, "ca_file");
        let mut prefix = section("mqtt://h");
        prefix.topic_prefix = Some("a/+/b".into());
        assert_eq!(prefix.resolve("gw").unwrap_err().key, "topic_prefix");
        let mut password = section("mqtt://h");
        password.password = Some("x".into());
        assert_eq!(password.resolve("gw").unwrap_err().key, "password");
        let mut keep = section("mqtt://h");
        keep.keep_alive = Some("1s".into());
        assert_eq!(keep.resolve("gw").unwrap_err().key, "keep_alive");
    }
}
