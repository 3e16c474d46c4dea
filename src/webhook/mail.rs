//! E-mail endpoints (`url = "mailto:a@example.com,b@example.com"`), and the only code that
//! touches lettre: the `[smtp]` settings checked at start, the subject line (pure), and the
//! blocking SMTP sends of one attempt read into an [`AttemptOutcome`]. A 5xx reply is
//! permanent (a dead letter at once); a 4xx, a timeout or a broken connection is retried on
//! the endpoint's schedule like an HTTP failure. Every message says `Auto-Submitted:
//! auto-generated` (RFC 3834), so vacation responders and the like do not answer it.
//!
//! Several recipients: one SMTP transaction for all of them. lettre gives up the whole
//! transaction at the first refused `RCPT TO` (the server then took it for nobody) and does
//! not say at which command a reply came, only its code and words. So:
//! - a 4xx, a timeout or a broken connection fails the whole delivery, retried on the
//!   schedule (nobody has it, so a retry duplicates nothing);
//! - a 5xx naming exactly one recipient (`<a@b.c>: user unknown`) drops that one and sends
//!   again to the rest, in one transaction: only one transaction can succeed, so a stop
//!   between them sends nobody a second copy;
//! - a 5xx naming nobody that refuses a mailbox (5.1.x but the sender's 5.1.7/5.1.8, or
//!   550/551/553 without an enhanced code) makes each recipient tried alone. A 4xx or no
//!   reply before anyone took it stops the tries and the whole delivery is retried; after,
//!   the recipient is named as not delivered and not retried (the queue keeps no state per
//!   recipient, and a retry would send the others a second copy), as are those left when the
//!   daemon stops;
//! - any other 5xx (the sender, the message) is final for everyone.
//!
//! The delivery succeeds when someone took it; those who did not are logged (one warning)
//! and named in the attempt's detail. When nobody took it, it is final only when every
//! recipient was refused for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes, Message};
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::{Address, Transport};
use log::warn;
use serde::Deserialize;

use super::policy::{AttemptError, AttemptOutcome};
use crate::store::Event;

/// `[smtp]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// The server's host name or address.
    pub host: Option<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `starttls` (the default), `tls` (implicit TLS) or `none`.
    pub security: Option<String>,
    /// Log in with this user (with `password`).
    pub username: Option<String>,
    /// The user's password.
    pub password: Option<String>,
    /// The sender, `smsrelay@example.com` or `SMS gateway <smsrelay@example.com>`.
    pub from: Option<String>,
    /// A PEM file of certificates to trust besides the bundled roots (a private CA, or a
    /// server's self-signed certificate).
    pub ca_file: Option<String>,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain, then `STARTTLS` (required: no fallback to plain text).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS (a relay on localhost).
    None,
}

impl Security {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }
}

/// `[smtp]`, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// The server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The protection.
    pub security: Security,
    /// User and password, when the server wants a login.
    pub credentials: Option<(String, String)>,
    /// The `From:` of every e-mail.
    pub from: Mailbox,
    /// `ca_file`, as configured.
    pub ca_file: Option<String>,
    /// Its certificates (read when the config was checked).
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for SmtpSettings {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.credentials.as_ref().map(|(user, _)| user))
            .field("from", &self.from)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl SmtpSection {
    /// Checks the section; errors name the key.
    pub fn resolve(&self) -> Result<SmtpSettings, (&'static str, String)> {
        let host = match self.host.as_deref().map(str::trim) {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => host,
            _ => return Err(("host", "set the SMTP server's host name".into())),
        };
        let security = match self.security.as_deref().map(str::trim) {
            None | Some("starttls") => Security::Starttls,
            Some("tls") => Security::Tls,
            Some("none") => Security::None,
            Some(other) => {
                let message = format!("{other:?} is not one of starttls, tls, none");
                return Err(("security", message));
            }
        };
        let port = match self.port {
            Some(0) => return Err(("port", "must be 1–65535".into())),
            Some(port) => port,
            None => match security {
                Security::Starttls => 587,
                Security::Tls => 465,
                Security::None => 25,
            },
        };
        let credentials = match (&self.username, &self.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(("password", "set it with `username`".into())),
            (None, Some(_)) => return Err(("username", "set it with `password`".into())),
        };
        let from = match self.from.as_deref() {
            Some(from) => from
                .trim()
                .parse::<Mailbox>()
                .map_err(|error| ("from", format!("{from:?} is not an address: {error}")))?,
            None => return Err(("from", "set the sender address".into())),
        };
        let ca_pem = match &self.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|error| ("ca_file", format!("cannot read {path:?}: {error}")))?;
                Certificate::from_pem(&pem)
                    .map_err(|error| ("ca_file", format!("{path:?}: {error}")))?;
                Some(pem)
            }
            None => None,
        };
        let settings = SmtpSettings {
            host: host.to_string(),
            port,
            security,
            credentials,
            from,
            ca_file: self.ca_file.clone(),
            ca_pem,
        };
        settings
            .transport(Duration::from_secs(15))
            .map_err(|message| ("ca_file", message))?;
        Ok(settings)
    }
}

impl SmtpSettings {
    /// A blocking SMTP client for these settings; each send opens its own connection and
    /// every command waits at most `timeout`.
    pub fn transport(&self, timeout: Duration) -> Result<SmtpTransport, String> {
        let tls = match self.security {
            Security::None => Tls::None,
            Security::Starttls => Tls::Required(self.tls_parameters()?),
            Security::Tls => Tls::Wrapper(self.tls_parameters()?),
        };
        let mut builder = SmtpTransport::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }

    fn tls_parameters(&self) -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca_pem {
            let certificate = Certificate::from_pem(pem).map_err(|error| error.to_string())?;
            builder = builder.add_root_certificate(certificate);
        }
        builder
            .build_rustls()
            .map_err(|error| format!("TLS set-up: {error}"))
    }
}

/// The recipients of a `mailto:` URL (comma-separated; at most 50).
pub fn recipients(url: &str) -> Result<Vec<Address>, String> {
    let Some(list) = url.trim().strip_prefix("mailto:") else {
        return Err(format!("{url:?} is not a mailto: URL"));
    };
    let addresses = list
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(|address| {
            address
                .parse::<Address>()
                .map_err(|error| format!("{address:?} is not an e-mail address: {error}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addresses.is_empty() || addresses.len() > 50 {
        return Err("give 1 to 50 addresses after mailto:, separated by commas".into());
    }
    Ok(addresses)
}

/// An e-mail endpoint's recipients and server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTo {
    /// The `To:` addresses.
    pub to: Vec<Address>,
    /// `[smtp]`.
    pub smtp: Arc<SmtpSettings>,
}

/// The most of an SMS text a subject line quotes.
const SUBJECT_WORDS: usize = 8;

/// The subject line: what happened, and to or from whom.
pub fn subject(event: &Event) -> String {
    let data = &event.data;
    let field = |key: &str| data[key].as_str().unwrap_or("").to_string();
    let to = field("to");
    let what = match event.name.as_str() {
        "sms.received" => return received_subject(&field("from"), &field("text")),
        "sms.queued" => "queued",
        "sms.sent" => "sent",
        "sms.pending" => "still pending",
        "sms.delivered" => "delivered",
        "sms.failed" => "failed",
        "sms.expired" => "expired",
        other => return format!("smsrelay: {other}"),
    };
    if to.is_empty() {
        format!("SMS {what}")
    } else {
        format!("SMS to {to} {what}")
    }
}

/// `SMS from +49…: first words…`.
fn received_subject(from: &str, text: &str) -> String {
    let mut words = text.split_whitespace();
    let quoted: Vec<&str> = words.by_ref().take(SUBJECT_WORDS).collect();
    let more = if words.next().is_some() { " …" } else { "" };
    let from = if from.is_empty() {
        "an unknown sender"
    } else {
        from
    };
    format!("SMS from {from}: {}{more}", quoted.join(" "))
}

/// Sends `body` about `event` to `mail.to` through `transport`, in one transaction to every
/// recipient the server has not refused for good (see the module's doc); `stopping` says
/// the daemon is shutting down, which ends one-by-one tries once someone has the e-mail.
pub(super) fn send(
    transport: &SmtpTransport,
    mail: &MailTo,
    endpoint: &str,
    event: &Event,
    body: Vec<u8>,
    content_type: Option<&str>,
    stopping: &AtomicBool,
) -> AttemptOutcome {
    let message = match build(mail, endpoint, event, body, content_type) {
        Ok(message) => message,
        Err(error) => return AttemptOutcome::failed(AttemptError::Template, error),
    };
    let raw = message.formatted();
    let from = message.envelope().from().cloned();
    let mut remaining: Vec<Address> = mail.to.clone();
    // The recipients refused for good so far, each with the server's words.
    let mut refused: Vec<(Address, Answer)> = Vec::new();
    let answers = loop {
        let envelope = match Envelope::new(from.clone(), remaining.clone()) {
            Ok(envelope) => envelope,
            Err(error) => return AttemptOutcome::failed(AttemptError::Protocol, error.to_string()),
        };
        let answer = match transport.send_raw(&envelope, &raw) {
            Ok(response) => Ok(accepted(&response)),
            Err(error) if remaining.len() > 1 && error.is_permanent() => {
                let words = server_words(&error);
                if let Some(index) = named_recipient(&words, &remaining) {
                    // That transaction took it for nobody: drop the one named and send
                    // again, still one transaction, so no one can get it twice.
                    let address = remaining.remove(index);
                    refused.push((address, Err((classify(&error), error.to_string()))));
                    continue;
                }
                if !refuses_a_recipient(&error, &words) {
                    Err((classify(&error), error.to_string()))
                } else {
                    let tried = one_by_one(&remaining, &from, &raw, transport, stopping);
                    break refused.into_iter().chain(tried).collect::<Vec<_>>();
                }
            }
            Err(error) => Err((classify(&error), error.to_string())),
        };
        if refused.is_empty() {
            // One transaction to everyone, as sent: its own outcome.
            return answer.unwrap_or_else(|(error, text)| AttemptOutcome::failed(error, text));
        }
        let mut answers = refused;
        answers.extend(remaining.into_iter().map(|to| (to, answer.clone())));
        break answers;
    };
    let outcome = settle(&answers);
    if outcome.result.is_ok() && !outcome.detail.is_empty() {
        warn!(
            "webhook {endpoint}: the e-mail about {} {} {}",
            event.name, event.id, outcome.detail
        );
    }
    outcome
}

/// The text of the server's reply in an SMTP error (lettre keeps it as the error's source).
fn server_words(error: &lettre::transport::smtp::Error) -> String {
    std::error::Error::source(error)
        .map(|source| source.to_string())
        .unwrap_or_default()
}

/// The one recipient of `to` that the server's reply names (`<a@b.c>: user unknown`), if
/// exactly one is named: lettre stops the transaction at the first refused `RCPT TO` and
/// does not say which it was.
fn named_recipient(words: &str, to: &[Address]) -> Option<usize> {
    let words = words.to_ascii_lowercase();
    let mut named = to
        .iter()
        .enumerate()
        .filter(|(_, address)| names(&words, &address.to_string().to_ascii_lowercase()))
        .map(|(index, _)| index);
    let first = named.next()?;
    named.next().is_none().then_some(first)
}

/// Whether `words` holds `address` as a whole address (not inside a longer one).
fn names(words: &str, address: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || "._%+-!#$&'*/=?^`{|}~@".contains(c);
    words.match_indices(address).any(|(start, _)| {
        let before = words[..start].chars().next_back();
        let after = words[start + address.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

/// Whether a permanent reply that names nobody refuses a recipient (so each is worth trying
/// alone) rather than the sender or the message: an enhanced status 5.1.x other than the
/// sender's 5.1.7 and 5.1.8, or, without one, reply 550, 551 or 553. lettre does not say
/// at which command the reply came, so this reads the codes RFC 5321 and RFC 3463 give a
/// refused mailbox.
fn refuses_a_recipient(error: &lettre::transport::smtp::Error, words: &str) -> bool {
    let enhanced = words.split_whitespace().next().filter(|first| {
        let parts: Vec<&str> = first.split('.').collect();
        parts.len() == 3
            && parts.iter().all(|part| {
                !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit())
            })
    });
    match enhanced {
        Some(code) => code.starts_with("5.1.") && !matches!(code, "5.1.7" | "5.1.8"),
        None => error
            .status()
            .is_some_and(|code| matches!(u16::from(code), 550 | 551 | 553)),
    }
}

/// A recipient's answer when each is tried alone: the attempt's outcome as the server's
/// acceptance, or why not (the error, its words).
type Answer = Result<AttemptOutcome, (AttemptError, String)>;

/// Sends `raw` to each of `to` alone, in order.
fn one_by_one(
    to: &[Address],
    from: &Option<Address>,
    raw: &[u8],
    transport: &SmtpTransport,
    stopping: &AtomicBool,
) -> Vec<(Address, Answer)> {
    tried_one_by_one(
        to,
        |to| {
            let envelope = Envelope::new(from.clone(), vec![to.clone()])
                .map_err(|error| (AttemptError::Protocol, error.to_string()))?;
            transport
                .send_raw(&envelope, raw)
                .map(|response| accepted(&response))
                .map_err(|error| (classify(&error), error.to_string()))
        },
        || stopping.load(Ordering::SeqCst),
    )
}

/// Tries each of `to` with `send`, in order, stopping (the rest marked not tried) at:
/// - a temporary refusal or a failure without an SMTP reply while nobody has the e-mail:
///   the attempt then fails and is retried as a whole, which duplicates nothing;
/// - a failure without an SMTP reply once someone has it: the server is gone or unusable;
/// - the daemon stopping once someone has it: a send cut off by the exit would leave the
///   job due, and its next start would send a second copy to those who have it.
///
/// A temporary refusal once someone has the e-mail is not retried (the queue keeps no state
/// per recipient, and a retry would send a second copy to the others).
fn tried_one_by_one(
    to: &[Address],
    mut send: impl FnMut(&Address) -> Answer,
    stopping: impl Fn() -> bool,
) -> Vec<(Address, Answer)> {
    const NO_COPY: &str = "not retried, to send nobody a second copy";
    let mut answers: Vec<(Address, Answer)> = Vec::new();
    // Why the rest are not tried: the error and the words for each of them.
    let mut stop: Option<(AttemptError, String)> = None;
    let mut delivered = false;
    for address in to {
        if stop.is_none() && delivered && stopping() {
            let text = format!("not tried (the daemon is stopping; {NO_COPY})");
            stop = Some((AttemptError::Io, text));
        }
        if let Some(why) = &stop {
            answers.push((address.clone(), Err(why.clone())));
            continue;
        }
        let answer = match send(address) {
            Ok(outcome) => {
                delivered = true;
                Ok(outcome)
            }
            Err((error, text)) if error.is_permanent() => Err((error, text)),
            Err((error, text)) if delivered => {
                if !matches!(error, AttemptError::MailDeferred(_)) {
                    stop = Some((error.clone(), format!("not tried ({text}; {NO_COPY})")));
                }
                Err((error, format!("{text} (temporary; {NO_COPY})")))
            }
            Err((error, text)) => {
                stop = Some((error.clone(), format!("not tried ({text})")));
                Err((error, text))
            }
        };
        answers.push((address.clone(), answer));
    }
    answers
}

/// One attempt's outcome from each recipient's answer: the first acceptance, with the
/// refused recipients in the detail; when nobody accepted, a failure that is permanent only
/// when every refusal was.
fn settle(answers: &[(Address, Answer)]) -> AttemptOutcome {
    let refused: Vec<String> = answers
        .iter()
        .filter_map(|(address, answer)| {
            answer
                .as_ref()
                .err()
                .map(|(_, text)| format!("{address}: {text}"))
        })
        .collect();
    let detail = format!(
        "not delivered to {} of {} recipients: {}",
        refused.len(),
        answers.len(),
        refused.join("; ")
    );
    if let Some(first) = answers.iter().find_map(|(_, answer)| answer.as_ref().ok()) {
        let mut outcome = first.clone();
        if !refused.is_empty() {
            outcome.detail = detail;
        }
        return outcome;
    }
    let errors = answers
        .iter()
        .filter_map(|(_, answer)| answer.as_ref().err().map(|(error, _)| error));
    let error = errors
        .clone()
        .find(|error| !error.is_permanent())
        .or_else(|| errors.clone().next())
        .cloned()
        .unwrap_or(AttemptError::Protocol);
    AttemptOutcome::failed(error, detail)
}

/// The outcome of a send the server took.
fn accepted(response: &Response) -> AttemptOutcome {
    AttemptOutcome {
        result: Ok(u16::from(response.code())),
        detail: String::new(),
        response: response.message().collect::<Vec<_>>().join("\n"),
        retry_after: None,
    }
}

/// The message: `From:` the settings, `To:` every recipient, a `Message-ID` made from the
/// event and the endpoint (the same on every attempt, so a mail client can drop a repeat),
/// `Auto-Submitted: auto-generated` (RFC 3834: no vacation replies to it, and none from us).
fn build(
    mail: &MailTo,
    endpoint: &str,
    event: &Event,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> Result<Message, String> {
    let to: Mailboxes = mail
        .to
        .iter()
        .map(|address| Mailbox::new(None, address.clone()))
        .collect();
    let domain = mail.smtp.from.email.domain().to_string();
    let content_type = match content_type {
        Some(text) => self::content_type(text).map_err(|error| format!("{text:?}: {error}"))?,
        None => ContentType::TEXT_PLAIN,
    };
    Message::builder()
        .from(mail.smtp.from.clone())
        .mailbox(lettre::message::header::To::from(to))
        .subject(subject(event))
        .message_id(Some(format!("<{}.{endpoint}@{domain}>", event.id)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .header(content_type)
        .body(body)
        .map_err(|error| error.to_string())
}

/// An e-mail's `Content-Type` from an endpoint's `content_type` (the config check calls it
/// too, so a send never meets a value lettre refuses).
pub fn content_type(text: &str) -> Result<ContentType, String> {
    ContentType::parse(text.trim()).map_err(|error| error.to_string())
}

/// Why a send failed: the server's 5xx is permanent, a 4xx is retried.
fn classify(error: &lettre::transport::smtp::Error) -> AttemptError {
    match error.status() {
        Some(code) if error.is_permanent() => AttemptError::MailRejected(u16::from(code)),
        Some(code) => AttemptError::MailDeferred(u16::from(code)),
        None if error.is_timeout() => AttemptError::Timeout,
        None if error.is_tls() || tls_failure(error) => AttemptError::Tls,
        None => AttemptError::Connect,
    }
}

/// Whether rustls failed somewhere in the error's chain: lettre reports a refused
/// certificate during the handshake as a network error, an `io::Error` holding rustls's.
fn tls_failure(error: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        if current.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(name: &str, data: serde_json::Value) -> Event {
        Event {
            sequence: 1,
            id: "e".into(),
            name: name.into(),
            api_version: "x".into(),
            created_at: 0,
            clock_suspect: false,
            data,
        }
    }

    #[test]
    fn subjects_say_what_happened() {
        let cases = [
            (
                event(
                    "sms.received",
                    json!({"from": "+4917012", "text": "info hours"}),
                ),
                "SMS from +4917012: info hours",
            ),
            (
                event(
                    "sms.received",
                    json!({"from": "DHL", "text": "one two three four five six seven eight nine"}),
                ),
                "SMS from DHL: one two three four five six seven eight …",
            ),
            (
                event("sms.received", json!({"text": ""})),
                "SMS from an unknown sender: ",
            ),
            (
                event("sms.delivered", json!({"to": "+441234"})),
                "SMS to +441234 delivered",
            ),
            (event("sms.failed", json!({})), "SMS failed"),
            (event("webhook.test", json!({})), "smsrelay: webhook.test"),
        ];
        for (event, expected) in cases {
            assert_eq!(subject(&event), expected);
        }
    }

    #[test]
    fn mailto_urls_list_addresses() {
        let list = recipients("mailto:ops@example.com, b@example.org").expect("valid");
        assert_eq!(list.len(), 2);
        for bad in [
            "mailto:",
            "mailto:not-an-address",
            "https://x",
            "mailto:a@b.c,,x",
        ] {
            assert!(recipients(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn smtp_settings_are_checked() {
        let section = |text: &str| toml::from_str::<SmtpSection>(text).expect("toml");
        let good = section("host = \"mail.example.com\"\nfrom = \"SMS <sms@example.com>\"\n")
            .resolve()
            .expect("valid");
        assert_eq!((good.port, good.security), (587, Security::Starttls));
        let with_login =
            section("host = \"m\"\nfrom = \"a@b.c\"\nusername = \"u\"\npassword = \"hunter2\"")
                .resolve()
                .expect("valid");
        assert!(!format!("{with_login:?}").contains("hunter2"));
        let cases = [
            ("from = \"a@b.c\"", "host"),
            ("host = \"m\"", "from"),
            ("host = \"m\"\nfrom = \"nope\"", "from"),
            (
                "host = \"m\"\nfrom = \"a@b.c\"\nsecurity = \"ssl\"",
                "security",
            ),
            (
                "host = \"m\"\nfrom = \"a@b.c\"\nusername = \"u\"",
                "password",
            ),
            (
                "host = \"m\"\nfrom = \"a@b.c\"\nca_file = \"/nonexistent.pem\"",
                "ca_file",
            ),
        ];
        for (text, key) in cases {
            let error = section(text).resolve().expect_err(text);
            assert_eq!(error.0, key, "{text}: {}", error.1);
        }
    }

    #[test]
    fn every_message_is_marked_auto_submitted() {
        let smtp = toml::from_str::<SmtpSection>("host = \"m\"\nfrom = \"sms@example.com\"")
            .expect("toml")
            .resolve()
            .expect("valid");
        let mail = MailTo {
            to: recipients("mailto:ops@example.com").expect("valid"),
            smtp: Arc::new(smtp),
        };
        let event = event("sms.received", json!({"from": "+4917012", "text": "hi"}));
        for content_type in [None, Some("text/html; charset=utf-8")] {
            let message =
                build(&mail, "mail", &event, b"hi".to_vec(), content_type).expect("builds");
            let text = String::from_utf8(message.formatted()).expect("utf-8");
            assert!(
                text.contains("\r\nAuto-Submitted: auto-generated\r\n"),
                "{text}"
            );
        }
    }

    /// What one recipient answers in the one-by-one tests.
    fn answer(code: u16) -> Answer {
        match code {
            250 => Ok(AttemptOutcome {
                result: Ok(250),
                detail: String::new(),
                response: "2.0.0 accepted".into(),
                retry_after: None,
            }),
            0 => Err((AttemptError::Timeout, "timed out".into())),
            400..=499 => Err((
                AttemptError::MailDeferred(code),
                format!("transient error ({code})"),
            )),
            _ => Err((
                AttemptError::MailRejected(code),
                format!("permanent error ({code})"),
            )),
        }
    }

    #[test]
    fn recipients_tried_one_by_one_never_lose_one_to_a_temporary_refusal_before_delivery() {
        // (each recipient's answer, 0 = timeout; how many are asked; whether the daemon is
        // stopping; the outcome; the detail)
        type Case<'a> = (&'a [u16], usize, bool, Result<u16, AttemptError>, &'a str);
        let cases: [Case; 10] = [
            (
                &[250, 550, 250],
                3,
                false,
                Ok(250),
                "not delivered to 1 of 3 recipients: r1@example.com: permanent error (550)",
            ),
            (&[250, 250], 2, false, Ok(250), ""),
            (
                &[550, 554],
                2,
                false,
                Err(AttemptError::MailRejected(550)),
                "not delivered to 2 of 2 recipients: r0@example.com: permanent error (550); r1@example.com: permanent error (554)",
            ),
            // Nobody has it yet: a temporary refusal stops the tries, and the whole delivery
            // is retried later (which duplicates nothing).
            (
                &[550, 451, 250],
                2,
                false,
                Err(AttemptError::MailDeferred(451)),
                "r2@example.com: not tried (transient error (451))",
            ),
            (
                &[451, 250],
                1,
                false,
                Err(AttemptError::MailDeferred(451)),
                "r1@example.com: not tried (transient error (451))",
            ),
            // Someone has it: the temporarily refused one is named, not retried.
            (
                &[250, 451, 250],
                3,
                false,
                Ok(250),
                "r1@example.com: transient error (451) (temporary; not retried, to send nobody a second copy)",
            ),
            // No SMTP reply: the rest are not asked.
            (
                &[250, 0, 250],
                2,
                false,
                Ok(250),
                "r2@example.com: not tried (timed out; not retried",
            ),
            (
                &[0, 250],
                1,
                false,
                Err(AttemptError::Timeout),
                "not delivered to 2 of 2 recipients",
            ),
            // Stopping: once someone has it, nobody else is asked (an exit mid-send would
            // leave the job due and send the first a second copy at the next start).
            (
                &[550, 250, 250],
                2,
                true,
                Ok(250),
                "r2@example.com: not tried (the daemon is stopping",
            ),
            (&[250], 1, true, Ok(250), ""),
        ];
        for (codes, asked, stopping, result, detail) in cases {
            let to: Vec<Address> = (0..codes.len())
                .map(|i| format!("r{i}@example.com").parse().expect("address"))
                .collect();
            let mut calls = 0;
            let answers = tried_one_by_one(
                &to,
                |address| {
                    calls += 1;
                    let index = to.iter().position(|a| a == address).expect("listed");
                    answer(codes[index])
                },
                || stopping,
            );
            let outcome = settle(&answers);
            assert_eq!(calls, asked, "{codes:?}");
            assert_eq!(outcome.result, result, "{codes:?}");
            assert!(
                outcome.detail.contains(detail),
                "{codes:?}: {}",
                outcome.detail
            );
            if detail.is_empty() {
                assert_eq!(outcome.detail, "", "{codes:?}");
            }
        }
    }

    #[test]
    fn a_reply_names_a_recipient_only_as_a_whole_address() {
        let to: Vec<Address> = ["bob@example.com", "ann@example.com"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        let cases = [
            (
                "5.1.1 <ann@example.com>: Recipient address rejected",
                Some(1),
            ),
            ("5.1.1 <Bob@Example.COM>... User unknown", Some(0)),
            (
                "5.1.1 The email account that you tried to reach does not exist",
                None,
            ),
            ("5.1.1 <jbob@example.com>: user unknown", None),
            ("bob@example.com and ann@example.com refused", None),
        ];
        for (words, expected) in cases {
            assert_eq!(named_recipient(words, &to), expected, "{words}");
        }
    }
}
