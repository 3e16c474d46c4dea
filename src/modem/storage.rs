//! Reading, listing and deleting stored messages (`AT+CMGR`, `AT+CMGL=4`, `AT+CMGD`).
//!
//! A read never deletes: the owner deletes an index only after it has stored the message
//! durably, so a crash between the two leaves the message on the modem to be read again.

use log::warn;

use crate::at::{FinalResult, SessionError, SessionHandle, parse};
use crate::pdu::{Pdu, PduError};

use super::command::{AtCommand, DeleteMessage, ListMessages, ReadMessage};

/// A message read from the modem's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its index in the storage.
    pub index: u32,
    /// 0 received unread, 1 received read, 2 stored unsent, 3 stored sent.
    pub stat: u8,
    /// The PDU as the modem gave it (SMSC field first).
    pub hex: String,
    /// The decoded PDU, or why it does not decode (kept, not dropped: the raw hex is logged
    /// and stored so nothing is lost).
    pub pdu: Result<Pdu, PduError>,
}

/// Why a read, list or delete failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// `+CMS ERROR: 321`: the index is empty or already gone (a stale `+CMTI`). Skip it.
    #[error("index {0} is empty or stale")]
    StaleIndex(u32),
    /// The modem refused the command.
    #[error("{command} failed: {result}")]
    Refused {
        /// The command.
        command: String,
        /// Its final result.
        result: FinalResult,
    },
    /// The session failed.
    #[error("serial session: {0}")]
    Session(#[from] SessionError),
}

/// Reads one index (`AT+CMGR`). An empty slot answered with a bare OK counts as stale too.
/// `name` (the modem's) starts the warning about a PDU that does not decode.
pub async fn read(
    handle: &SessionHandle,
    index: u32,
    name: &str,
) -> Result<StoredMessage, StorageError> {
    let message = run(handle, &ReadMessage { index }).await??;
    warn_undecodable(name, &message);
    Ok(message)
}

/// Lists every stored message (`AT+CMGL=4`): the sweep that finds messages whose URC was lost.
/// `name` (the modem's) starts the warnings about what could not be read.
pub async fn list(handle: &SessionHandle, name: &str) -> Result<Vec<StoredMessage>, StorageError> {
    let listing = run(handle, &ListMessages).await??;
    for line in &listing.unexpected {
        warn!("{name}: unexpected line in the AT+CMGL answer: {line:?}");
    }
    for message in &listing.messages {
        warn_undecodable(name, message);
    }
    Ok(listing.messages)
}

/// Deletes one index (`AT+CMGD=<index>`). Call it only after the message is stored durably.
pub async fn delete(handle: &SessionHandle, index: u32) -> Result<(), StorageError> {
    run(handle, &DeleteMessage { index }).await?
}

/// Sends a typed command and reads its answer.
async fn run<C: AtCommand>(handle: &SessionHandle, command: &C) -> Result<C::Answer, SessionError> {
    let response = handle.execute(command.command()).await?;
    Ok(command.parse(&response))
}

/// Logged here rather than where the answer is parsed, which knows no modem name.
fn warn_undecodable(name: &str, message: &StoredMessage) {
    if let Err(error) = &message.pdu {
        warn!(
            "{name}: index {} holds a PDU that does not decode ({error}): {}",
            message.index, message.hex
        );
    }
}

/// An `AT+CMGL` answer: the messages, and the lines that were neither header nor PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The messages, in the order listed.
    pub messages: Vec<StoredMessage>,
    /// Lines skipped as unreadable, for the log.
    pub unexpected: Vec<String>,
}

/// The messages in an `AT+CMGL` answer, each header with the PDU line after it.
pub(super) fn list_answer(info: &[String]) -> Listing {
    let mut messages = Vec::new();
    let mut unexpected = Vec::new();
    let mut lines = split_glued_headers(info).into_iter().peekable();
    while let Some(line) = lines.next() {
        let Ok(header) = parse::cmgl(line) else {
            unexpected.push(line.to_string());
            continue;
        };
        // The PDU line, unless the modem lost the newline and the next header follows.
        let hex = match lines.peek() {
            Some(next) if !next.starts_with("+CMGL:") => lines.next().unwrap_or_default(),
            _ => "",
        };
        messages.push(stored(
            header.index.unwrap_or_default(),
            header.stat,
            hex.to_string(),
        ));
    }
    Listing {
        messages,
        unexpected,
    }
}

/// Splits lines where a modem lost the newline between a PDU and the next `+CMGL:` header
/// (`<pdu>+CMGL: 2,0,,37`), as gammu does: otherwise that PDU would not decode and the next
/// message would not be listed at all.
fn split_glued_headers(lines: &[String]) -> Vec<&str> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let mut rest = line.as_str();
        while let Some((at, _)) = rest.match_indices("+CMGL:").find(|&(at, _)| at > 0) {
            out.push(&rest[..at]);
            rest = &rest[at..];
        }
        out.push(rest);
    }
    out
}

/// A stored message from its header and PDU line; a PDU that does not decode is kept (and
/// logged by [`read`] or [`list`]).
pub(super) fn stored(index: u32, stat: u8, hex: String) -> StoredMessage {
    let hex = hex.trim().to_string();
    let pdu = Pdu::from_hex(&hex);
    StoredMessage {
        index,
        stat,
        hex,
        pdu,
    }
}

#[cfg(test)]
mod tests {
    use super::split_glued_headers;

    #[test]
    fn glued_headers_are_split_whatever_comes_before_them() {
        let lines = [
            "0011AA+CMGL: 2,0,,37".to_string(),
            "\u{FFFD}0011+CMGL: 3,0,,37".to_string(),
            "+CMGL: 1,0,,23+CMGL: 2,0,,23".to_string(),
            "+CMGL: 4,0,,23".to_string(),
        ];
        assert_eq!(
            split_glued_headers(&lines),
            [
                "0011AA",
                "+CMGL: 2,0,,37",
                "\u{FFFD}0011",
                "+CMGL: 3,0,,37",
                "+CMGL: 1,0,,23",
                "+CMGL: 2,0,,23",
                "+CMGL: 4,0,,23",
            ]
        );
    }
}
