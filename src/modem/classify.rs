//! What a failed `AT+CMGS` means for the message: try again later, or give up (reference
//! §3.10: 27.005 §3.2.5 codes, the RP causes below 128 and the TP-FCS values 128–255).

use std::fmt;

use crate::at::{FinalResult, SessionError};

/// What to do with a message whose send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A passing condition (congestion, no network, SIM busy, a catch-all 500): send again
    /// later, within the retry limit.
    Temporary,
    /// The network or the modem refused this message for good (unassigned number, barred,
    /// a PDU it cannot take): fail it now; retrying cannot help.
    Permanent,
    /// The PDU may have gone out (the answer never came after it was written): resending
    /// risks a duplicate, so the caller decides (by default: fail with an "unknown" stage).
    Unknown,
}

/// A classified send failure, with the code and text for events and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// Try again, give up, or unknown outcome.
    pub verdict: Verdict,
    /// The `+CMS ERROR` code, when there was one.
    pub code: Option<u16>,
    /// What happened, for people.
    pub text: String,
}

impl fmt::Display for SendFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "+CMS ERROR: {code} ({})", self.text),
            None => f.write_str(&self.text),
        }
    }
}

/// The verdict for a `+CMS ERROR` code.
pub fn classify_cms(code: u16) -> Verdict {
    use Verdict::{Permanent, Temporary};
    match code {
        // RP causes (24.011 §8.2.5.4): the recipient or the subscription is the problem.
        1 | 8 | 10 | 21 | 27 | 28 | 29 | 30 | 50 | 69 => Permanent,
        // Network out of order, temporary failure, congestion, resources unavailable.
        38 | 41 | 42 | 47 => Temporary,
        // Invalid message or protocol errors: our PDU is suspect, resending the same fails.
        95..=99 | 111 | 127 => Permanent,
        // Other RP causes are rare; a bounded retry is the safer reading.
        0..=127 => Temporary,
        // TP-FCS (23.040 §9.2.3.22): telematic interworking, PID, DCS, command and TPDU
        // errors, no SC subscription, invalid or barred destination, rejected duplicate,
        // unsupported validity period.
        0x80..=0xB0 | 0xC1 | 0xC3..=0xC7 => Permanent,
        // SC busy or failed, and the MS-side storage and SIM errors: they pass.
        0xB1..=0xFF => Temporary,
        // 304: a wrong length or PDU is our bug, and 305 a wrong mode: the same bytes fail
        // again. 303: the modem cannot do this at all.
        303..=305 => Permanent,
        // ME failure, service reserved, not allowed, SIM state, memory, SMSC, network, and
        // the 500 catch-all: all states that pass or that re-init fixes.
        300..=302 | 310..=332 | 500 => Temporary,
        // 340 (no ack expected) never answers a send; unknown 27.005 codes: retry, bounded.
        // 512 and up are vendor codes (smstools: 512–515 transient, Wavecom 515 busy).
        _ => Temporary,
    }
}

/// Classifies how an `AT+CMGS` ended: its final result, or the session error that cut it.
pub fn classify_send(outcome: Result<&FinalResult, &SessionError>) -> SendFailure {
    match outcome {
        Ok(FinalResult::CmsError(error)) => {
            let code = error.code();
            let verdict = code.map_or(Verdict::Temporary, classify_cms);
            SendFailure {
                verdict,
                code,
                text: error.description().to_string(),
            }
        }
        Ok(other) => SendFailure {
            verdict: Verdict::Temporary,
            code: None,
            text: format!("the modem answered {other}"),
        },
        // The PDU was written but no answer came: it may be on its way.
        Err(SessionError::Timeout {
            pdu_written: true, ..
        }) => SendFailure {
            verdict: Verdict::Unknown,
            code: None,
            text: "no answer after the PDU was written; it may have been sent".into(),
        },
        Err(error) => SendFailure {
            verdict: Verdict::Temporary,
            code: None,
            text: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::CmsError;

    #[test]
    fn codes_follow_the_reference_table() {
        use Verdict::{Permanent, Temporary};
        for (code, verdict) in [
            (1, Permanent),
            (8, Permanent),
            (21, Permanent),
            (38, Temporary),
            (42, Temporary),
            (96, Permanent),
            (0xC0, Temporary),
            (0xC3, Permanent),
            (0xC5, Permanent),
            (0xD0, Temporary),
            (300, Temporary),
            (304, Permanent),
            (314, Temporary),
            (321, Temporary),
            (322, Temporary),
            (330, Temporary),
            (331, Temporary),
            (332, Temporary),
            (500, Temporary),
            (512, Temporary),
            (515, Temporary),
        ] {
            assert_eq!(classify_cms(code), verdict, "+CMS ERROR: {code}");
        }
    }

    #[test]
    fn an_answer_lost_after_the_pdu_is_an_unknown_outcome() {
        let lost = SessionError::Timeout {
            command: "AT+CMGS=29".into(),
            waited: std::time::Duration::from_secs(60),
            pdu_written: true,
        };
        assert_eq!(classify_send(Err(&lost)).verdict, Verdict::Unknown);
        let no_prompt = SessionError::NoPrompt {
            command: "AT+CMGS=29".into(),
        };
        assert_eq!(classify_send(Err(&no_prompt)).verdict, Verdict::Temporary);
        let refused = FinalResult::CmsError(CmsError::from_code(304));
        let failure = classify_send(Ok(&refused));
        assert_eq!(
            (failure.verdict, failure.code),
            (Verdict::Permanent, Some(304))
        );
        assert!(failure.to_string().starts_with("+CMS ERROR: 304 ("));
    }
}
