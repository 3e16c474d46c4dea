//! TP-ST, the status in a status report (3GPP TS 23.040 §9.2.3.15).

use std::fmt;

/// What a status means for the message it reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// The transaction completed: delivered (or, for 03–1F, completed with an SC-specific
    /// detail).
    Delivered,
    /// Temporary error, the service centre is still trying: another report will follow.
    Pending,
    /// Permanent error: the service centre has given up.
    PermanentFailure,
    /// Temporary error, but the service centre is no longer trying: final, failed.
    TemporaryFailure,
}

impl StatusClass {
    /// Whether no further report will follow for this message.
    pub fn is_final(self) -> bool {
        self != StatusClass::Pending
    }

    fn prefix(self) -> &'static str {
        match self {
            StatusClass::Delivered => "delivered",
            StatusClass::Pending => "temporary, SC still trying",
            StatusClass::PermanentFailure => "permanent error",
            StatusClass::TemporaryFailure => "temporary error, SC no longer trying",
        }
    }
}

/// The TP-ST octet as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    /// The class of this status. Reserved values (80–FF) count as failures: 23.040 tells the
    /// receiver to treat them as "service rejected".
    pub fn class(self) -> StatusClass {
        match self.0 {
            0x00..=0x1F => StatusClass::Delivered,
            0x20..=0x3F => StatusClass::Pending,
            0x40..=0x5F => StatusClass::PermanentFailure,
            _ => StatusClass::TemporaryFailure,
        }
    }

    /// The specific meaning of this value.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x00 => "received by SME",
            0x01 => "forwarded by the SC to the SME but delivery could not be confirmed",
            0x02 => "replaced by the SC",
            0x03..=0x0F => "reserved value",
            0x10..=0x1F => "SC-specific value",
            0x20 | 0x60 => "congestion",
            0x21 | 0x61 => "SME busy",
            0x22 | 0x62 => "no response from SME",
            0x23 | 0x63 => "service rejected",
            0x24 | 0x44 | 0x64 => "quality of service not available",
            0x25 | 0x65 => "error in SME",
            0x40 => "remote procedure error",
            0x41 => "incompatible destination",
            0x42 => "connection rejected by SME",
            0x43 => "not obtainable",
            0x45 => "no interworking available",
            0x46 => "validity period expired",
            0x47 => "deleted by originating SME",
            0x48 => "deleted by SC administration",
            0x49 => "SM does not exist",
            0x30..=0x3F | 0x50..=0x5F | 0x70..=0x7F => "SC-specific value",
            0x80..=0xFF => "reserved value, treated as service rejected",
            _ => "reserved value",
        }
    }
}

impl fmt::Display for Status {
    /// The class and the meaning: "permanent error: validity period expired".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class().prefix(), self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u8, class: StatusClass, text: &str) {
        assert_eq!(
            (Status(status).class(), Status(status).to_string().as_str()),
            (class, text),
            "{status:#04X}"
        );
    }

    #[test]
    fn each_range_has_its_class_and_meaning() {
        use StatusClass::*;
        check(0x00, Delivered, "delivered: received by SME");
        check(0x02, Delivered, "delivered: replaced by the SC");
        check(0x1F, Delivered, "delivered: SC-specific value");
        check(
            0x22,
            Pending,
            "temporary, SC still trying: no response from SME",
        );
        check(
            0x30,
            Pending,
            "temporary, SC still trying: SC-specific value",
        );
        check(
            0x46,
            PermanentFailure,
            "permanent error: validity period expired",
        );
        check(0x5A, PermanentFailure, "permanent error: SC-specific value");
        check(
            0x62,
            TemporaryFailure,
            "temporary error, SC no longer trying: no response from SME",
        );
        check(
            0x7F,
            TemporaryFailure,
            "temporary error, SC no longer trying: SC-specific value",
        );
        check(
            0xFF,
            TemporaryFailure,
            "temporary error, SC no longer trying: reserved value, treated as service rejected",
        );
    }

    #[test]
    fn only_pending_expects_another_report() {
        for value in 0..=255u8 {
            let class = Status(value).class();
            assert_eq!(
                class.is_final(),
                !(0x20..=0x3F).contains(&value),
                "{value:#04X}"
            );
        }
    }
}
