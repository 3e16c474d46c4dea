//! Submitting one prepared PDU with `AT+CMGS`.

use crate::at::{Command, Response, SessionError, SessionHandle, parse};

use super::classify::{SendFailure, Verdict, classify_send};

/// Sends one part (`cmgs_length` TPDU octets, `hex` with the SMSC field first) and returns the
/// TP-MR the modem assigned, or a classified failure.
pub async fn send(
    handle: &SessionHandle,
    cmgs_length: usize,
    hex: &str,
) -> Result<u8, SendFailure> {
    interpret(&handle.execute(Command::send_pdu(cmgs_length, hex)).await)
}

/// What the outcome of an `AT+CMGS` means: the TP-MR, or a classified failure.
pub fn interpret(outcome: &Result<Response, SessionError>) -> Result<u8, SendFailure> {
    let response = match outcome {
        Ok(response) => response,
        Err(error) => return Err(classify_send(Err(error))),
    };
    if !response.result.is_ok() {
        return Err(classify_send(Ok(&response.result)));
    }
    match response.line("+CMGS:").map(parse::cmgs) {
        Some(Ok(reference)) => Ok(reference),
        // OK without a reference: the message went out, but it cannot be matched to a
        // status report. Reporting it as unknown keeps it from being sent twice.
        _ => Err(SendFailure {
            verdict: Verdict::Unknown,
            code: None,
            text: format!("OK without a +CMGS reference: {:?}", response.info),
        }),
    }
}
