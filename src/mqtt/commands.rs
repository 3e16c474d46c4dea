//! `<prefix>/cmd/send`: the payload checked into a [`NewMessage`], the expiry rule, and the
//! result document. Pure: the handler in `mod.rs` does the I/O.

use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::topics;
use crate::gateway::{Accepted, EnqueueError, NewMessage};

/// The prefix of MQTT idempotency keys in the store, so that an API client's key and an MQTT
/// command's never collide.
pub const KEY_NAMESPACE: &str = "mqtt:";

/// The payload of `cmd/send` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendPayload {
    to: String,
    text: String,
    idempotency_key: String,
    #[serde(default)]
    expires_at: Option<Value>,
    #[serde(default)]
    callback_data: Option<String>,
    #[serde(default)]
    validity: Option<String>,
    #[serde(default)]
    flash: bool,
    #[serde(default)]
    status_report: Option<bool>,
    #[serde(default)]
    modem: Option<String>,
    #[serde(default)]
    sim: Option<u32>,
}

/// A checked `cmd/send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCommand {
    /// The key the client gave (without [`KEY_NAMESPACE`]).
    pub key: String,
    /// The message, its idempotency key namespaced.
    pub message: NewMessage,
    /// The modem asked for, by name.
    pub modem: Option<String>,
}

/// Why a command was refused: the same codes as the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The idempotency key, when the payload had one.
    pub key: Option<String>,
    /// `invalid_json`, `invalid_request`, `invalid_field`, `expired`,
    /// `idempotency_key_reused`, `commands_disabled`, `store_failure`.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// The field at fault.
    pub field: Option<&'static str>,
    /// The name the key is echoed under: `idempotency_key` (`cmd/send`) or `request_id`
    /// (`cmd/ussd`), as in the command's other results.
    pub key_name: &'static str,
}

impl Refusal {
    fn new(key: Option<String>, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            key,
            code,
            message: message.into(),
            field: None,
            key_name: "idempotency_key",
        }
    }

    /// The same refusal, answering a `cmd/ussd`: its key is the `request_id`.
    pub fn for_ussd(mut self) -> Refusal {
        self.key_name = "request_id";
        self
    }

    fn field(mut self, field: &'static str) -> Refusal {
        self.field = Some(field);
        self
    }

    /// The result document of a refused command.
    pub fn document(&self) -> Value {
        let mut document = json!({
            "status": "refused",
            "error": { "code": self.code, "message": self.message, "field": self.field },
        });
        document[self.key_name] = json!(self.key);
        document
    }
}

/// The result document of an accepted command: the API's 202 body, with the key.
pub fn accepted_document(key: &str, accepted: &Accepted) -> Value {
    json!({
        "idempotency_key": key,
        "status": "queued",
        "id": accepted.id,
        "parts": accepted.parts,
        "encoding": accepted.encoding,
    })
}

/// The refusal for what the gateway refused.
pub fn enqueue_refusal(key: &str, error: &EnqueueError) -> Refusal {
    let key = Some(key.to_string());
    match error {
        EnqueueError::Invalid { field, message } => {
            Refusal::new(key, "invalid_field", message.clone()).field(field)
        }
        EnqueueError::KeyReused => Refusal::new(
            key,
            "idempotency_key_reused",
            "this idempotency_key was used in the last 24 h for a different message",
        )
        .field("idempotency_key"),
        EnqueueError::Store(error) => Refusal::new(key, "store_failure", error.to_string()),
    }
}

/// The key of a payload that is JSON with a string `idempotency_key`, for the result topic
/// of a payload that fails later checks.
fn key_of(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    Some(value.get("idempotency_key")?.as_str()?.to_string())
}

/// The refusal of a key that cannot name its result topic. The key is echoed in the document
/// (published on the bare `result` topic) so the client can still tell which command it was.
fn key_refusal(key: String, field: &'static str) -> Refusal {
    let message = format!(
        "1 to {} bytes, one MQTT topic level (no '/', '+' or '#'): it names the result topic",
        topics::MAX_KEY
    );
    let key = (!key.is_empty()).then_some(key);
    Refusal::new(key, "invalid_field", message).field(field)
}

/// `expires_at` as RFC 3339 or Unix seconds.
fn expiry(value: &Value) -> Result<OffsetDateTime, String> {
    match value {
        Value::String(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|error| format!("{text:?} is not an RFC 3339 time ({error})")),
        Value::Number(number) => number
            .as_i64()
            .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
            .ok_or_else(|| format!("{number} is not a Unix time in seconds")),
        other => Err(format!(
            "{other} is neither an RFC 3339 time nor Unix seconds"
        )),
    }
}

/// Checks a `cmd/send` payload received at `now`.
pub fn parse_send(payload: &[u8], now: OffsetDateTime) -> Result<SendCommand, Refusal> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let parsed: Result<SendPayload, _> = serde_path_to_error::deserialize(&mut deserializer);
    let refuse = |error: serde_json::Error| {
        let code = if error.is_syntax() || error.is_eof() {
            "invalid_json"
        } else {
            "invalid_request"
        };
        Refusal::new(key_of(payload), code, error.to_string())
    };
    let request = parsed.map_err(|error| refuse(error.into_inner()))?;
    // Trailing characters after the object make the payload invalid JSON.
    deserializer.end().map_err(refuse)?;
    let key = request.idempotency_key.trim().to_string();
    if !topics::is_key_level(&key) {
        return Err(key_refusal(key, "idempotency_key"));
    }
    let with_key = |code, message: String| Refusal::new(Some(key.clone()), code, message);
    if let Some(value) = &request.expires_at {
        let expires =
            expiry(value).map_err(|e| with_key("invalid_field", e).field("expires_at"))?;
        if expires <= now {
            let late = (now - expires).whole_seconds();
            return Err(with_key(
                "expired",
                format!("the command expired {late} s before it arrived; not sent"),
            )
            .field("expires_at"));
        }
    }
    let validity =
        match &request.validity {
            Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
                with_key("invalid_field", format!("{text:?}: {e}")).field("validity")
            })?),
            None => None,
        };
    Ok(SendCommand {
        message: NewMessage {
            to: request.to,
            text: request.text,
            callback_data: request.callback_data,
            validity,
            flash: request.flash,
            idempotency_key: Some(format!("{KEY_NAMESPACE}{key}")),
            dry_run: false,
            status_report: request.status_report,
            modem: request.modem.clone(),
            sim: request.sim,
        },
        key,
        modem: request.modem,
    })
}

/// The payload of `cmd/ussd`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UssdPayload {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    cancel: bool,
    request_id: String,
    #[serde(default)]
    modem: Option<String>,
}

/// A checked `cmd/ussd`: a code (or the answer to a menu), or the end of a menu session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UssdCommand {
    /// Names the result topic (`result/<request_id>`).
    pub request_id: String,
    /// The code to send; none to cancel the session.
    pub code: Option<String>,
    /// The modem asked for, by name.
    pub modem: Option<String>,
}

/// Checks a `cmd/ussd` payload: `{"code": "*100#", "request_id": "…"}` or
/// `{"cancel": true, "request_id": "…"}`.
pub fn parse_ussd(payload: &[u8]) -> Result<UssdCommand, Refusal> {
    check_ussd(payload).map_err(Refusal::for_ussd)
}

fn check_ussd(payload: &[u8]) -> Result<UssdCommand, Refusal> {
    let request: UssdPayload = serde_json::from_slice(payload).map_err(|error| {
        let code = if error.is_syntax() || error.is_eof() {
            "invalid_json"
        } else {
            "invalid_request"
        };
        Refusal::new(None, code, error.to_string())
    })?;
    let id = request.request_id.trim().to_string();
    if !topics::is_key_level(&id) {
        return Err(key_refusal(id, "request_id"));
    }
    let code = request.code.map(|code| code.trim().to_string());
    match (&code, request.cancel) {
        (Some(_), true) => Err(Refusal::new(
            Some(id),
            "invalid_request",
            "either a code or cancel, not both",
        )),
        (None, false) => {
            Err(
                Refusal::new(Some(id), "invalid_field", "a USSD code, e.g. \"*100#\"")
                    .field("code"),
            )
        }
        _ => Ok(UssdCommand {
            request_id: id,
            code,
            modem: request.modem,
        }),
    }
}

/// The result document of a `cmd/ussd`: the answer, or the failure with the API's code.
pub fn ussd_document(
    request_id: &str,
    modem: &str,
    outcome: &Result<Option<crate::modem::UssdAnswer>, crate::modem::UssdFailure>,
) -> Value {
    match outcome {
        Ok(Some(answer)) => json!({
            "request_id": request_id,
            "status": "answered",
            "modem": modem,
            "text": answer.text,
            "session_open": answer.session_open,
        }),
        Ok(None) => json!({ "request_id": request_id, "status": "cancelled", "modem": modem }),
        Err(failure) => json!({
            "request_id": request_id,
            "status": "failed",
            "modem": modem,
            "error": { "code": failure.code(), "message": failure.to_string(), "field": null },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-02T12:00:00Z.
    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_796_212_800).expect("valid")
    }

    #[test]
    fn a_command_becomes_a_message_with_a_namespaced_key() {
        let payload = br#"{"to":"+491701234567","text":"Alarm","idempotency_key":"a1",
            "expires_at":"2026-12-02T12:05:00Z","callback_data":"x"}"#;
        let command = parse_send(payload, now()).expect("valid");
        assert_eq!(command.key, "a1");
        assert_eq!(command.message.idempotency_key.as_deref(), Some("mqtt:a1"));
        assert_eq!(command.message.to, "+491701234567");
        assert_eq!(command.message.callback_data.as_deref(), Some("x"));
        assert!(!command.message.dry_run);
    }

    #[test]
    fn refusals() {
        struct Case {
            what: &'static str,
            payload: &'static str,
            code: &'static str,
            field: Option<&'static str>,
            key: Option<&'static str>,
        }
        let cases = [
            Case {
                what: "not JSON",
                payload: "send it",
                code: "invalid_json",
                field: None,
                key: None,
            },
            Case {
                what: "no key",
                payload: r#"{"to":"1","text":"t"}"#,
                code: "invalid_request",
                field: None,
                key: None,
            },
            Case {
                what: "unknown field",
                payload: r#"{"to":"1","text":"t","idempotency_key":"k","x":1}"#,
                code: "invalid_request",
                field: None,
                key: Some("k"),
            },
            Case {
                what: "expired",
                payload: r#"{"to":"1","text":"t","idempotency_key":"k","expires_at":"2026-12-01T12:00:00Z"}"#,
                code: "expired",
                field: Some("expires_at"),
                key: Some("k"),
            },
            Case {
                what: "expired, Unix seconds",
                payload: r#"{"to":"1","text":"t","idempotency_key":"k","expires_at":1700000000}"#,
                code: "expired",
                field: Some("expires_at"),
                key: Some("k"),
            },
            Case {
                what: "bad expiry",
                payload: r#"{"to":"1","text":"t","idempotency_key":"k","expires_at":"tomorrow"}"#,
                code: "invalid_field",
                field: Some("expires_at"),
                key: Some("k"),
            },
            Case {
                what: "empty key",
                payload: r#"{"to":"1","text":"t","idempotency_key":" "}"#,
                code: "invalid_field",
                field: Some("idempotency_key"),
                key: None,
            },
            Case {
                what: "a key with a slash",
                payload: r#"{"to":"1","text":"t","idempotency_key":"order/17"}"#,
                code: "invalid_field",
                field: Some("idempotency_key"),
                key: Some("order/17"),
            },
            Case {
                what: "a key with a wildcard",
                payload: r#"{"to":"1","text":"t","idempotency_key":"a+b#"}"#,
                code: "invalid_field",
                field: Some("idempotency_key"),
                key: Some("a+b#"),
            },
            Case {
                what: "bad validity",
                payload: r#"{"to":"1","text":"t","idempotency_key":"k","validity":"soon"}"#,
                code: "invalid_field",
                field: Some("validity"),
                key: Some("k"),
            },
            Case {
                what: "trailing bytes",
                payload: r#"{"to":"1","text":"t","idempotency_key":"k"} x"#,
                code: "invalid_json",
                field: None,
                key: None,
            },
        ];
        for case in cases {
            let refusal = parse_send(case.payload.as_bytes(), now()).expect_err(case.what);
            assert_eq!(
                refusal.code, case.code,
                "{}: {}",
                case.what, refusal.message
            );
            assert_eq!(refusal.field, case.field, "{}", case.what);
            assert_eq!(refusal.key.as_deref(), case.key, "{}", case.what);
        }
        let long = "k".repeat(topics::MAX_KEY + 1);
        let payload = format!(r#"{{"to":"1","text":"t","idempotency_key":"{long}"}}"#);
        let refusal = parse_send(payload.as_bytes(), now()).expect_err("too long a key");
        assert_eq!(refusal.field, Some("idempotency_key"));
        let longest = format!(
            r#"{{"to":"1","text":"t","idempotency_key":"{}"}}"#,
            &long[1..]
        );
        assert!(
            parse_send(longest.as_bytes(), now()).is_ok(),
            "{} bytes",
            topics::MAX_KEY
        );
    }

    #[test]
    fn ussd_commands() {
        let command = parse_ussd(br#"{"code":" *100# ","request_id":"b1"}"#).expect("valid");
        assert_eq!(command.code.as_deref(), Some("*100#"));
        let cancel = parse_ussd(br#"{"cancel":true,"request_id":"b2"}"#).expect("valid");
        assert_eq!(cancel.code, None);
        let cases: [(&[u8], &str); 6] = [
            (br#"{"request_id":"b3"}"#, "invalid_field"),
            (br##"{"code":"*1#","request_id":"a/b"}"##, "invalid_field"),
            (br##"{"code":"*1#","request_id":"#"}"##, "invalid_field"),
            (
                br#"{"code":"*1#","cancel":true,"request_id":"b4"}"#,
                "invalid_request",
            ),
            (br#"{"code":"*1#"}"#, "invalid_request"),
            (b"*100#", "invalid_json"),
        ];
        for (payload, code) in cases {
            let refusal = parse_ussd(payload).expect_err("refused");
            assert_eq!(refusal.code, code, "{}", String::from_utf8_lossy(payload));
        }
    }

    #[test]
    fn a_refusal_echoes_the_key_under_its_commands_name() {
        let cases: [(&str, Refusal, &str); 3] = [
            (
                "a bad request_id",
                parse_ussd(br#"{"code":"*1#","request_id":"a/b"}"#).expect_err("refused"),
                "request_id",
            ),
            (
                "a USSD without a code",
                parse_ussd(br#"{"request_id":"b3"}"#).expect_err("refused"),
                "request_id",
            ),
            (
                "a bad idempotency_key",
                parse_send(br#"{"to":"1","text":"t","idempotency_key":"a/b"}"#, now())
                    .expect_err("refused"),
                "idempotency_key",
            ),
        ];
        for (what, refusal, name) in cases {
            let document = refusal.document();
            let other = if name == "request_id" {
                "idempotency_key"
            } else {
                "request_id"
            };
            assert!(document[name].is_string(), "{what}: {document}");
            assert!(document.get(other).is_none(), "{what}: {document}");
            assert_eq!(document["status"], "refused", "{what}");
        }
    }

    #[test]
    fn a_future_expiry_is_accepted() {
        let payload = br#"{"to":"1","text":"t","idempotency_key":"k","expires_at":1893456000}"#;
        assert!(parse_send(payload, now()).is_ok());
    }
}
