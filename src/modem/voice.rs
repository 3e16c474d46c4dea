//! The driver's shell for incoming calls and USSD: it feeds `RING`/`+CLIP`/`NO CARRIER` to the
//! pure [`CallTracker`] and carries out what it says (events up, `AT+CHUP` with `ATH` as the
//! fallback), and it sends `AT+CUSD` requests, whose answer comes later as a `+CUSD:` URC
//! that goes back to the waiting [`super::ModemHandle::ussd`] call.

use std::time::Duration;

use log::{debug, info, warn};
use tokio::sync::oneshot;

use crate::at::{Command, UssdReport};

use super::calls::CallEffects;
use super::connection::Link;
use super::driver::{Driver, Step};
use super::handle::ModemEvent;
use super::ussd::{self, UssdError};

/// A USSD answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UssdAnswer {
    /// The text, decoded.
    pub text: String,
    /// The network waits for an answer (`+CUSD: 1`, a menu): reply with
    /// [`super::ModemHandle::ussd`], end it with [`super::ModemHandle::ussd_cancel`].
    pub session_open: bool,
    /// `<m>` as the modem gave it.
    pub status: u8,
}

/// Why a USSD request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UssdFailure {
    /// The code cannot be sent.
    #[error(transparent)]
    Invalid(#[from] UssdError),
    /// The modem is not ready (connecting, waiting, failed).
    #[error("the modem is not ready ({0})")]
    NotReady(String),
    /// The modem refused `AT+CUSD`.
    #[error("the modem refused the USSD request: {0}")]
    Refused(String),
    /// The network answered with a status that carries no text.
    #[error("the network ended the USSD session ({0})")]
    Ended(&'static str),
    /// Another request is waiting for its answer (one USSD session at a time).
    #[error("another USSD request is waiting for its answer; try again when it is done")]
    Busy,
    /// No answer came in time.
    #[error(
        "no USSD answer within {} s (the network or the modem dropped it); the session was cancelled",
        .0.as_secs()
    )]
    Timeout(Duration),
    /// The driver stopped, or the connection was lost, before the answer came.
    #[error("the modem driver stopped or lost the modem before the USSD answer came")]
    Stopped,
}

impl UssdFailure {
    /// The error code the HTTP API and MQTT `cmd/ussd` results give it.
    pub fn code(&self) -> &'static str {
        match self {
            UssdFailure::Invalid(_) => "invalid_code",
            UssdFailure::NotReady(_) | UssdFailure::Stopped => "modem_not_ready",
            UssdFailure::Busy => "ussd_busy",
            UssdFailure::Refused(_) => "ussd_refused",
            UssdFailure::Ended(_) => "ussd_ended",
            UssdFailure::Timeout(_) => "ussd_timeout",
        }
    }
}

/// The meaning of a `+CUSD` `<m>` that ends a session without an answer (TS 27.007 §7.15).
fn ended(status: u8) -> &'static str {
    match status {
        2 => "terminated by the network",
        3 => "another local client responded",
        4 => "operation not supported",
        5 => "network timeout",
        _ => "unknown status",
    }
}

/// The answer a `+CUSD:` line gives the waiting request.
pub fn answer_of(report: &UssdReport) -> Result<UssdAnswer, UssdFailure> {
    match (&report.text, report.status) {
        (Some(text), 0..=2) => Ok(UssdAnswer {
            text: ussd::decode_answer(text, report.dcs)?,
            session_open: report.status == 1,
            status: report.status,
        }),
        (_, status) => Err(UssdFailure::Ended(ended(status))),
    }
}

impl Driver {
    /// `AT+CLIP=1` and `AT+CRC=1` after an init; refusals are fine (`RING` still comes).
    pub(super) async fn enable_caller_id(&mut self, link: &mut Link) -> Step {
        for command in ["AT+CLIP=1", "AT+CRC=1"] {
            let response = self.execute(link, Command::new(command)).await?;
            if !response.result.is_ok() {
                debug!(
                    "{}: {command} answered {}",
                    self.settings.name, response.result
                );
            }
        }
        Ok(())
    }

    /// Carries out what the call tracker decided.
    pub(super) async fn apply_call(&mut self, link: &mut Link, effects: CallEffects) -> Step {
        for event in effects.events {
            info!("{}: call {event:?}", self.settings.name);
            self.emit(ModemEvent::Call(event));
        }
        if effects.hang_up {
            let mut hung_up = false;
            for command in ["AT+CHUP", "ATH"] {
                let response = self.execute(link, Command::new(command)).await?;
                if response.result.is_ok() {
                    hung_up = true;
                    break;
                }
                debug!(
                    "{}: {command} answered {}",
                    self.settings.name, response.result
                );
            }
            if !hung_up {
                warn!(
                    "{}: cannot hang up the incoming call (AT+CHUP and ATH refused)",
                    self.settings.name
                );
            }
            let effects = self.calls.on_hung_up();
            for event in effects.events {
                info!("{}: call {event:?}", self.settings.name);
                self.emit(ModemEvent::Call(event));
            }
        }
        Ok(())
    }

    /// Sends `AT+CUSD=1,…`; the answer goes to `reply` when its `+CUSD:` comes.
    pub(super) async fn ussd(
        &mut self,
        link: &mut Link,
        code: String,
        reply: oneshot::Sender<Result<UssdAnswer, UssdFailure>>,
    ) -> Step {
        if self
            .pending_ussd
            .as_ref()
            .is_some_and(|waiting| !waiting.is_closed())
        {
            let _ = reply.send(Err(UssdFailure::Busy));
            return Ok(());
        }
        let (text, dcs) = match ussd::encode_request(&code, self.settings.ussd_request) {
            Ok(request) => request,
            Err(error) => {
                let _ = reply.send(Err(error.into()));
                return Ok(());
            }
        };
        let command = Command::new(format!("AT+CUSD=1,\"{text}\",{dcs}"));
        let response = self.execute(link, command).await?;
        if response.result.is_ok() {
            self.pending_ussd = Some(reply);
        } else {
            let _ = reply.send(Err(UssdFailure::Refused(response.result.to_string())));
        }
        Ok(())
    }

    /// `AT+CUSD=2`: ends the session (a menu, or a request that timed out).
    pub(super) async fn ussd_cancel(&mut self, link: &mut Link) -> Step {
        self.pending_ussd = None;
        let response = self.execute(link, Command::new("AT+CUSD=2")).await?;
        if !response.result.is_ok() {
            debug!(
                "{}: AT+CUSD=2 answered {}",
                self.settings.name, response.result
            );
        }
        Ok(())
    }

    /// A `+CUSD:` line: the answer of the waiting request, or a network-initiated message.
    pub(super) fn on_ussd(&mut self, report: &UssdReport) {
        let answer = answer_of(report);
        match self.pending_ussd.take() {
            Some(reply) => {
                let _ = reply.send(answer);
            }
            None => info!(
                "{}: USSD with no request waiting: {answer:?}",
                self.settings.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cusd_statuses() {
        let report = |status, text: Option<&str>| UssdReport {
            status,
            text: text.map(str::to_string),
            dcs: Some(15),
        };
        let answer = |text: &str, open, status| {
            Ok(UssdAnswer {
                text: text.into(),
                session_open: open,
                status,
            })
        };
        assert_eq!(answer_of(&report(0, Some("Hi"))), answer("Hi", false, 0));
        assert_eq!(answer_of(&report(1, Some("1. A"))), answer("1. A", true, 1));
        assert_eq!(answer_of(&report(2, Some("Bye"))), answer("Bye", false, 2));
        assert_eq!(
            answer_of(&report(2, None)),
            Err(UssdFailure::Ended("terminated by the network"))
        );
        assert_eq!(
            answer_of(&report(4, None)),
            Err(UssdFailure::Ended("operation not supported"))
        );
    }
}
