//! The CLI's side of the HTTP API: `smsrelay send`, `status`, `messages`, `events`,
//! `webhook test`, `token`. The address and token come from the same config file the daemon
//! reads.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::Config;

/// Why a CLI call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The config could not be read.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// No token yet.
    #[error("no API token: set [api] token, or start the daemon once to generate one in {0}")]
    NoToken(String),
    /// The daemon did not answer.
    #[error("cannot reach the daemon at {url}: {error} (is `smsrelay run` running?)")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        error: String,
    },
    /// The daemon answered with an error.
    #[error("{status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error text (code, message, field).
        message: String,
    },
}

/// Where a message followed by `send --wait` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Delivered (every part reported).
    Delivered,
    /// Sent, and no status report was requested: nothing more will be known.
    SentWithoutReport,
    /// Failed for good.
    Failed,
    /// No status report within the validity period plus the margin: the outcome is unknown.
    Expired,
}

/// Whether a message (the JSON of `GET /v1/messages/{id}`) is where following it ends, and
/// how. A daemon too old to say `status_report` is taken to have asked for one.
pub fn wait_end(message: &Value) -> Option<WaitEnd> {
    match message["state"].as_str()? {
        "delivered" => Some(WaitEnd::Delivered),
        "failed" => Some(WaitEnd::Failed),
        "expired" => Some(WaitEnd::Expired),
        "sent" if message["status_report"] == Value::Bool(false) => {
            Some(WaitEnd::SentWithoutReport)
        }
        _ => None,
    }
}

/// A client for the local daemon.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// Reads the token the daemon uses, without creating one.
pub fn read_token(config: &Config) -> Result<String, ClientError> {
    if let Some(token) = &config.token {
        return Ok(token.clone());
    }
    let path = config.data_dir.join("api-token");
    std::fs::read_to_string(&path)
        .ok()
        .map(|token| token.trim().to_string())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ClientError::NoToken(path.display().to_string()))
}

impl Client {
    /// A client for the daemon the config file describes.
    pub fn from_config(config: &Config) -> Result<Client, ClientError> {
        let mut address = config.listen;
        // A daemon listening on every address is reached on loopback.
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(Client {
            base: format!("http://{address}"),
            token: read_token(config)?,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                // A USSD request waits for the network up to [ussd] timeout.
                .timeout_global(Some(
                    Duration::from_secs(15)
                        .max(config.gateway.ussd_timeout + Duration::from_secs(5)),
                ))
                .proxy(None)
                .build()
                .into(),
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let authorization = format!("Bearer {}", self.token);
        let result = match (method, body) {
            ("POST", body) => {
                let mut request = self
                    .agent
                    .post(&url)
                    .header("authorization", &authorization)
                    .header("content-type", "application/json");
                for (name, value) in extra {
                    request = request.header(*name, value);
                }
                let bytes = serde_json::to_vec(body.unwrap_or(&json!({}))).unwrap_or_default();
                request.send(&bytes[..])
            }
            _ => self
                .agent
                .get(&url)
                .header("authorization", &authorization)
                .call(),
        };
        let mut response = result.map_err(|error| ClientError::Unreachable {
            url: url.clone(),
            error: error.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let error = &value["error"];
            let mut message = format!(
                "{} ({})",
                error["message"].as_str().unwrap_or(&text),
                error["code"].as_str().unwrap_or("error")
            );
            if let Some(field) = error["field"].as_str() {
                message.push_str(&format!(", field {field}"));
            }
            return Err(ClientError::Api { status, message });
        }
        Ok(value)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call("GET", path, None, &[])
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call("POST", path, Some(body), &[])
    }

    /// Sends an SMS; with `wait`, follows it to where [`wait_end`] says it ends (or until
    /// `wait` has passed), printing each step, and returns the message as last read.
    pub fn send(
        &self,
        request: &Value,
        idempotency_key: Option<&str>,
        wait: Option<Duration>,
        mut print: impl FnMut(&str),
    ) -> Result<Value, ClientError> {
        let extra: Vec<(&str, String)> = idempotency_key
            .map(|key| vec![("idempotency-key", key.to_string())])
            .unwrap_or_default();
        let accepted = self.call("POST", "/v1/messages", Some(request), &extra)?;
        let id = accepted["id"].as_str().unwrap_or_default().to_string();
        print(&format!(
            "accepted {id} ({} part(s), {})",
            accepted["parts"],
            accepted["encoding"].as_str().unwrap_or("?")
        ));
        let Some(limit) = wait else {
            return Ok(accepted);
        };
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        loop {
            let message = self.get(&format!("/v1/messages/{id}"))?;
            let state = message["state"].as_str().unwrap_or("?").to_string();
            if state != last {
                let detail = match state.as_str() {
                    "failed" | "expired" => {
                        format!(": {}", message["last_error"]["text"].as_str().unwrap_or(""))
                    }
                    "delivered" => {
                        format!(" at {}", message["delivered_at"].as_str().unwrap_or("?"))
                    }
                    _ => String::new(),
                };
                print(&format!("{state}{detail}"));
                last = state.clone();
            }
            if wait_end(&message).is_some() {
                return Ok(message);
            }
            if Instant::now() >= deadline {
                print(&format!(
                    "still {state} after {}; stopped waiting",
                    humantime::format_duration(limit)
                ));
                return Ok(message);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{WaitEnd, wait_end};

    #[test]
    fn following_a_message_ends_at_a_final_state_or_at_sent_without_a_report() {
        let cases = [
            (json!({ "state": "queued", "status_report": true }), None),
            (json!({ "state": "sent", "status_report": true }), None),
            // A daemon that does not say: a report is assumed, so keep following.
            (json!({ "state": "sent" }), None),
            (
                json!({ "state": "sent", "status_report": false }),
                Some(WaitEnd::SentWithoutReport),
            ),
            (json!({ "state": "delivered" }), Some(WaitEnd::Delivered)),
            (json!({ "state": "failed" }), Some(WaitEnd::Failed)),
            (json!({ "state": "expired" }), Some(WaitEnd::Expired)),
            (json!({}), None),
        ];
        for (message, end) in cases {
            assert_eq!(wait_end(&message), end, "{message}");
        }
    }
}
