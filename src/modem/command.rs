//! Typed AT commands: each command the driver sends names its line, its timeout and how its
//! answer is read, so a call site asks for a `SignalQuality` rather than sending a string and
//! calling a parser on the reply. Pure: building a line and reading a [`Response`] do no I/O.

use std::time::Duration;

use crate::at::parse::{self, SignalQuality, StorageUsage};
use crate::at::{CmsError, Command, FinalResult, Registration, Response};

use super::storage::{Listing, StorageError, StoredMessage, list_answer, stored};

/// A command with a typed answer.
pub trait AtCommand {
    /// What the answer means once read.
    type Answer;
    /// The command line, e.g. `AT+CMGR=3`.
    fn line(&self) -> String;
    /// How long the answer may take; `None` for the session's default.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// Reads the answer.
    fn parse(&self, response: &Response) -> Self::Answer;
    /// The command to hand to the session.
    fn command(&self) -> Command {
        let command = Command::new(self.line());
        match self.timeout() {
            Some(timeout) => command.with_timeout(timeout),
            None => command,
        }
    }
}

/// `AT+CMGR=<index>`: one stored message. An empty slot answered with a bare OK, or with
/// `+CMS ERROR: 321`, is a stale index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMessage {
    /// The index in the selected memory.
    pub index: u32,
}

impl AtCommand for ReadMessage {
    type Answer = Result<StoredMessage, StorageError>;
    fn line(&self) -> String {
        format!("AT+CMGR={}", self.index)
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        self.refusal(&response.result)?;
        let mut lines = response.info.iter();
        let header = lines
            .by_ref()
            .find_map(|line| parse::cmgr(line).ok())
            .ok_or(StorageError::StaleIndex(self.index))?;
        let hex = lines.next().cloned().unwrap_or_default();
        Ok(stored(self.index, header.stat, hex))
    }
}

/// `AT+CMGL=4`: every message in the selected memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMessages;

impl AtCommand for ListMessages {
    type Answer = Result<Listing, StorageError>;
    fn line(&self) -> String {
        "AT+CMGL=4".into()
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        if !response.result.is_ok() {
            return Err(StorageError::Refused {
                command: self.line(),
                result: response.result.clone(),
            });
        }
        Ok(list_answer(&response.info))
    }
}

/// `AT+CMGD=<index>`: deletes one stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteMessage {
    /// The index in the selected memory.
    pub index: u32,
}

impl AtCommand for DeleteMessage {
    type Answer = Result<(), StorageError>;
    fn line(&self) -> String {
        format!("AT+CMGD={}", self.index)
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        ReadMessage { index: self.index }
            .refusal(&response.result)
            .map_err(|error| match error {
                StorageError::Refused { result, .. } => StorageError::Refused {
                    command: self.line(),
                    result,
                },
                other => other,
            })
    }
}

impl ReadMessage {
    /// OK passes; 321 is a stale index; anything else a refusal of this command.
    fn refusal(&self, result: &FinalResult) -> Result<(), StorageError> {
        match result {
            FinalResult::Ok => Ok(()),
            FinalResult::CmsError(CmsError::InvalidMemoryIndex) => {
                Err(StorageError::StaleIndex(self.index))
            }
            result => Err(StorageError::Refused {
                command: self.line(),
                result: result.clone(),
            }),
        }
    }
}

/// `AT+CPMS="<memory>"`: selects mem1, the memory read, listed and deleted from. The answer
/// is the final result when the modem refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectMemory<'a> {
    /// `SM`, `ME`, `SR`…
    pub memory: &'a str,
}

impl AtCommand for SelectMemory<'_> {
    type Answer = Result<(), FinalResult>;
    fn line(&self) -> String {
        format!("AT+CPMS=\"{}\"", self.memory)
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        if response.result.is_ok() {
            Ok(())
        } else {
            Err(response.result.clone())
        }
    }
}

/// `AT+CSQ`: the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSignal;

impl AtCommand for ReadSignal {
    type Answer = Option<SignalQuality>;
    fn line(&self) -> String {
        "AT+CSQ".into()
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        response
            .line("+CSQ:")
            .and_then(|line| parse::csq(line).ok())
    }
}

/// `AT+CREG?` or, for EPS, `AT+CEREG?`: the registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRegistration {
    /// `AT+CEREG?` (LTE) rather than `AT+CREG?`.
    pub eps: bool,
}

impl AtCommand for ReadRegistration {
    type Answer = Option<Registration>;
    fn line(&self) -> String {
        if self.eps { "AT+CEREG?" } else { "AT+CREG?" }.into()
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        response
            .info
            .iter()
            .find_map(|line| parse::registration(line).ok())
    }
}

/// `AT+COPS?`: the operator's name, when registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOperator;

impl AtCommand for ReadOperator {
    type Answer = Option<String>;
    fn line(&self) -> String {
        "AT+COPS?".into()
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        response
            .line("+COPS:")
            .and_then(|line| parse::cops(line).ok())
            .and_then(|operator| operator.name)
    }
}

/// `AT+CPMS?`: usage of mem1, the receive storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStorageUsage;

impl AtCommand for ReadStorageUsage {
    type Answer = Option<StorageUsage>;
    fn line(&self) -> String {
        "AT+CPMS?".into()
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        response
            .line("+CPMS:")
            .and_then(|line| parse::cpms(line).ok())
            .and_then(|usages| usages.into_iter().next())
    }
}

/// `AT+CNMI?`: the indications in force, field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadIndications;

impl AtCommand for ReadIndications {
    type Answer = Option<Vec<u8>>;
    fn line(&self) -> String {
        "AT+CNMI?".into()
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        response
            .line("+CNMI:")
            .and_then(|line| parse::cnmi(line).ok())
    }
}

/// `AT+CNMA`: acknowledges a routed message (`+CSMS: 1`). The answer is the final result
/// when it is worth a warning: 340 means no acknowledgement was expected (the ME acked it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckMessage;

impl AtCommand for AckMessage {
    type Answer = Option<FinalResult>;
    fn line(&self) -> String {
        "AT+CNMA".into()
    }
    fn parse(&self, response: &Response) -> Self::Answer {
        match &response.result {
            FinalResult::Ok | FinalResult::CmsError(CmsError::Other(340)) => None,
            other => Some(other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(info: &[&str], result: FinalResult) -> Response {
        Response {
            info: info.iter().map(|line| line.to_string()).collect(),
            result,
        }
    }

    fn ok(info: &[&str]) -> Response {
        response(info, FinalResult::Ok)
    }

    #[test]
    fn lines_are_the_commands_the_reference_names() {
        let check = |command: &dyn Fn() -> String, expected: &str| {
            assert_eq!(command(), expected);
        };
        check(&|| ReadMessage { index: 7 }.line(), "AT+CMGR=7");
        check(&|| ListMessages.line(), "AT+CMGL=4");
        check(&|| DeleteMessage { index: 7 }.line(), "AT+CMGD=7");
        check(&|| SelectMemory { memory: "SR" }.line(), "AT+CPMS=\"SR\"");
        check(&|| ReadSignal.line(), "AT+CSQ");
        check(&|| ReadRegistration { eps: false }.line(), "AT+CREG?");
        check(&|| ReadRegistration { eps: true }.line(), "AT+CEREG?");
        check(&|| ReadOperator.line(), "AT+COPS?");
        check(&|| ReadStorageUsage.line(), "AT+CPMS?");
        check(&|| ReadIndications.line(), "AT+CNMI?");
        check(&|| AckMessage.line(), "AT+CNMA");
    }

    #[test]
    fn a_read_tells_a_message_from_a_stale_index_and_a_refusal() {
        let read = ReadMessage { index: 3 };
        let check = |response: Response, expected: Result<(u8, &str), StorageError>| {
            let answer = read
                .parse(&response)
                .map(|message| (message.stat, message.hex));
            let expected = expected.map(|(stat, hex)| (stat, hex.to_string()));
            assert_eq!(answer, expected, "{response:?}");
        };
        check(ok(&["+CMGR: 1,,3", "00AA"]), Ok((1, "00AA")));
        check(ok(&[]), Err(StorageError::StaleIndex(3)));
        let stale = FinalResult::CmsError(CmsError::InvalidMemoryIndex);
        check(response(&[], stale), Err(StorageError::StaleIndex(3)));
        let refused = StorageError::Refused {
            command: "AT+CMGR=3".into(),
            result: FinalResult::Error,
        };
        check(response(&[], FinalResult::Error), Err(refused));
    }

    #[test]
    fn a_delete_names_itself_when_refused() {
        let delete = DeleteMessage { index: 4 };
        let check = |result: FinalResult, expected: Result<(), StorageError>| {
            assert_eq!(
                delete.parse(&response(&[], result.clone())),
                expected,
                "{result}"
            );
        };
        check(FinalResult::Ok, Ok(()));
        let stale = FinalResult::CmsError(CmsError::InvalidMemoryIndex);
        check(stale, Err(StorageError::StaleIndex(4)));
        let refused = StorageError::Refused {
            command: "AT+CMGD=4".into(),
            result: FinalResult::Error,
        };
        check(FinalResult::Error, Err(refused));
    }

    #[test]
    fn health_answers_are_read_or_absent() {
        assert_eq!(
            ReadSignal.parse(&ok(&["+CSQ: 17,99"])),
            Some(SignalQuality { rssi: 17, ber: 99 })
        );
        assert_eq!(ReadSignal.parse(&ok(&[])), None);
        let registration = ReadRegistration { eps: true }.parse(&ok(&["+CEREG: 0,5"]));
        assert_eq!(
            registration.map(|r| r.status),
            Some(crate::at::RegistrationStatus::Roaming)
        );
        assert_eq!(
            ReadOperator.parse(&ok(&["+COPS: 0,0,\"Operator\""])),
            Some("Operator".into())
        );
        assert_eq!(ReadOperator.parse(&ok(&["+COPS: 0"])), None);
        let usage = ReadStorageUsage.parse(&ok(&["+CPMS: \"SM\",3,30,\"SM\",3,30"]));
        assert_eq!(usage.map(|u| (u.used, u.total)), Some((3, 30)));
        assert_eq!(
            ReadIndications.parse(&ok(&["+CNMI: 2,1,0,2,0"])),
            Some(vec![2, 1, 0, 2, 0])
        );
    }

    #[test]
    fn an_ack_warns_unless_ok_or_not_expected() {
        let check = |result: FinalResult, warn: bool| {
            let answer = AckMessage.parse(&response(&[], result.clone()));
            assert_eq!(answer.is_some(), warn, "{result}");
        };
        check(FinalResult::Ok, false);
        check(FinalResult::CmsError(CmsError::Other(340)), false);
        check(FinalResult::Error, true);
        check(FinalResult::CmsError(CmsError::Other(500)), true);
    }
}
