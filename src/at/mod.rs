//! The AT layer: bytes in, typed frames out, one command in flight.
//!
//! Owns AT syntax only (3GPP TS 27.007 / 27.005 framing, final result codes, information lines,
//! unsolicited result codes and the `> ` prompt); it knows nothing of SMS semantics beyond that.
//! [`frame`], [`parse`] and [`digest`] are pure: no I/O, no tokio. [`session`] drives them over
//! any `AsyncRead + AsyncWrite`, a serial port in production and `tokio::io::duplex` in tests.

pub mod codes;
pub mod digest;
pub mod frame;
pub mod parse;
pub mod session;

pub use codes::{CmeError, CmsError};
pub use digest::{Digester, Item, Pending};
pub use frame::{Frame, Framer, MAX_LINE};
pub use session::{Command, Response, Session, SessionConfig, SessionError, SessionHandle};

/// The line that ends a command (ITU-T V.250 result codes, 27.007 `+CME ERROR`, 27.005
/// §3.2.5 `+CMS ERROR`, plus vendor finals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    /// `OK`
    Ok,
    /// `ERROR` (a bare error, as with `AT+CMEE=0`)
    Error,
    /// `+CME ERROR: <n>` or its verbose text
    CmeError(CmeError),
    /// `+CMS ERROR: <n>` or its verbose text
    CmsError(CmsError),
    /// `NO CARRIER`
    NoCarrier,
    /// `BUSY`
    Busy,
    /// `NO ANSWER`
    NoAnswer,
    /// `NO DIALTONE`
    NoDialtone,
    /// `CONNECT[ <rate>]`: the port entered data mode
    Connect(Option<String>),
    /// Huawei's `COMMAND NOT SUPPORT`
    CommandNotSupported,
    /// Motorola's `MODEM ERROR: <n>`
    ModemError(String),
}

impl FinalResult {
    /// Whether the command succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, FinalResult::Ok | FinalResult::Connect(_))
    }
}

impl std::fmt::Display for FinalResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FinalResult::Ok => f.write_str("OK"),
            FinalResult::Error => f.write_str("ERROR"),
            FinalResult::CmeError(error) => write!(f, "+CME ERROR: {error}"),
            FinalResult::CmsError(error) => write!(f, "+CMS ERROR: {error}"),
            FinalResult::NoCarrier => f.write_str("NO CARRIER"),
            FinalResult::Busy => f.write_str("BUSY"),
            FinalResult::NoAnswer => f.write_str("NO ANSWER"),
            FinalResult::NoDialtone => f.write_str("NO DIALTONE"),
            FinalResult::Connect(None) => f.write_str("CONNECT"),
            FinalResult::Connect(Some(rate)) => write!(f, "CONNECT {rate}"),
            FinalResult::CommandNotSupported => f.write_str("COMMAND NOT SUPPORT"),
            FinalResult::ModemError(text) => write!(f, "MODEM ERROR: {text}"),
        }
    }
}

/// Which registration a `+CREG`/`+CGREG`/`+CEREG` line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// `+CREG`: circuit switched (GSM/UMTS)
    CircuitSwitched,
    /// `+CGREG`: GPRS
    Gprs,
    /// `+CEREG`: EPS (LTE)
    Eps,
}

/// Network registration status (TS 27.007 §7.2 `<stat>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationStatus {
    /// 0: not registered, not searching
    NotRegistered,
    /// 1: registered, home network
    Home,
    /// 2: not registered, searching
    Searching,
    /// 3: registration denied
    Denied,
    /// 4: unknown
    Unknown,
    /// 5: registered, roaming
    Roaming,
    /// 6: registered for SMS only, home
    SmsOnlyHome,
    /// 7: registered for SMS only, roaming
    SmsOnlyRoaming,
    /// 8: emergency services only
    EmergencyOnly,
    /// Any other value, kept.
    Other(u8),
}

impl RegistrationStatus {
    /// Maps `<stat>` to its variant.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::NotRegistered,
            1 => Self::Home,
            2 => Self::Searching,
            3 => Self::Denied,
            4 => Self::Unknown,
            5 => Self::Roaming,
            6 => Self::SmsOnlyHome,
            7 => Self::SmsOnlyRoaming,
            8 => Self::EmergencyOnly,
            other => Self::Other(other),
        }
    }

    /// Whether SMS can be sent and received.
    pub fn is_registered(self) -> bool {
        matches!(
            self,
            Self::Home | Self::Roaming | Self::SmsOnlyHome | Self::SmsOnlyRoaming
        )
    }
}

/// A registration report, from the query answer or the unsolicited form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Which registration this is.
    pub domain: Domain,
    /// The `<n>` URC mode, present only in the query answer.
    pub mode: Option<u8>,
    /// Registration status.
    pub status: RegistrationStatus,
    /// Location (or tracking) area code as hex text, quoted or not on the wire.
    pub area: Option<String>,
    /// Cell id as hex text.
    pub cell: Option<String>,
    /// Access technology (0 GSM, 2 UTRAN, 7 E-UTRAN…).
    pub access_technology: Option<u8>,
}

/// SIM state from `+CPIN:` (TS 27.007 §8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinState {
    /// `READY`: no password needed
    Ready,
    /// `SIM PIN`
    SimPin,
    /// `SIM PUK`
    SimPuk,
    /// `PH-SIM PIN`
    PhoneSimPin,
    /// `SIM PIN2`
    SimPin2,
    /// `SIM PUK2`
    SimPuk2,
    /// Anything else (`NOT INSERTED`, `NOT READY`, vendor codes), kept as sent.
    Other(String),
}

/// A boot banner: seen mid-session, it means the module rebooted and needs a full init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Banner {
    /// `RDY` (SIMCom, Quectel)
    Rdy,
    /// `Call Ready` (SIM800)
    CallReady,
    /// `SMS Ready` (SIM800)
    SmsReady,
    /// `PB DONE` (SIM7x00)
    PbDone,
    /// `SMS DONE` (SIM7x00)
    SmsDone,
    /// `+CFUN: <n>` unasked
    Cfun,
}

/// An unsolicited result code, or noise that looked like one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: "<mem>",<index>`: an SMS-DELIVER was stored.
    MessageStored {
        /// Storage name, e.g. `SM`.
        storage: String,
        /// Index in that storage.
        index: u32,
    },
    /// `+CDSI: "<mem>",<index>`: an SMS-STATUS-REPORT was stored.
    StatusReportStored {
        /// Storage name, often `SR`.
        storage: String,
        /// Index in that storage.
        index: u32,
    },
    /// `+CMT: [<alpha>],<length>` plus the PDU line: an SMS-DELIVER routed directly.
    Message {
        /// TPDU length in octets (the SMSC field excluded).
        length: u32,
        /// The PDU hex, SMSC field first.
        pdu: String,
    },
    /// `+CDS: <length>` plus the PDU line: an SMS-STATUS-REPORT routed directly.
    StatusReport {
        /// TPDU length in octets.
        length: u32,
        /// The PDU hex, SMSC field first.
        pdu: String,
    },
    /// `+CBM: <length>` plus the PDU line: a cell broadcast.
    CellBroadcast {
        /// The PDU hex.
        pdu: String,
    },
    /// Unsolicited `+CREG`/`+CGREG`/`+CEREG`.
    Registration(Registration),
    /// `RING` or `+CRING:`: an incoming call rings (once per ring).
    Ring,
    /// `+CLIP:` caller id; the raw line is kept ([`parse::clip`] reads the number).
    CallerId(String),
    /// `NO CARRIER` with no command pending: the call ended (the caller hung up).
    CallEnded,
    /// `+CUSD:`: a USSD answer or the network ending a session (TS 27.007 §7.15).
    Ussd(UssdReport),
    /// `+CPIN:` unasked: the SIM changed state (often after a reboot).
    SimState(PinState),
    /// A boot banner.
    Boot(Banner),
    /// Vendor noise (`^RSSI`, `^HCSQ`, `+QIND`…): recognised and passed on for logging.
    Noise(String),
    /// A two-line URC whose PDU line was missing or not hex, or a known prefix that did not
    /// parse: the raw text is kept for the log.
    Malformed(String),
}

/// The fields of a `+CUSD: <m>[,<str>[,<dcs>]]` line, the string still as the modem wrote it
/// (plain text, hex of packed or unpacked GSM 7-bit, or UCS-2 hex; `modem::ussd` decodes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UssdReport {
    /// `<m>`: 0 done, 1 the network waits for an answer, 2 ended by the network, 3 another
    /// client answered, 4 not supported, 5 network timeout.
    pub status: u8,
    /// `<str>` without its quotes, when present.
    pub text: Option<String>,
    /// `<dcs>` (TS 23.038 §5, the cell broadcast coding scheme), when present.
    pub dcs: Option<u8>,
}

/// How a URC is recognised: a prefix, and how many lines it takes.
#[derive(Debug, Clone, Copy)]
pub struct UrcSpec {
    /// The line starts with this (a whole-line match for bare words such as `RING`).
    pub prefix: &'static str,
    /// Whether the prefix must be the whole line.
    pub whole_line: bool,
    /// `true` for `+CMT`, `+CDS`, `+CBM`, whose PDU is the next line.
    pub two_lines: bool,
    /// Whether the pending command may claim this prefix as its own answer (`+CREG:` during
    /// `AT+CREG?`, `+CPIN:` during `AT+CPIN?`).
    pub also_answer: bool,
}

const fn urc(prefix: &'static str) -> UrcSpec {
    UrcSpec {
        prefix,
        whole_line: false,
        two_lines: false,
        also_answer: false,
    }
}
const fn word(prefix: &'static str) -> UrcSpec {
    UrcSpec {
        prefix,
        whole_line: true,
        two_lines: false,
        also_answer: false,
    }
}
const fn pdu_urc(prefix: &'static str) -> UrcSpec {
    UrcSpec {
        prefix,
        whole_line: false,
        two_lines: true,
        also_answer: false,
    }
}
const fn answer(prefix: &'static str) -> UrcSpec {
    UrcSpec {
        prefix,
        whole_line: false,
        two_lines: false,
        also_answer: true,
    }
}

/// Every URC we recognise (docs/at-sms.md §1.3, §3.7–3.9). Extend it here; nothing else changes.
pub static URC_TABLE: &[UrcSpec] = &[
    urc("+CMTI:"),
    urc("+CDSI:"),
    pdu_urc("+CMT:"),
    pdu_urc("+CDS:"),
    pdu_urc("+CBM:"),
    answer("+CREG:"),
    answer("+CGREG:"),
    answer("+CEREG:"),
    answer("+CPIN:"),
    answer("+CFUN:"),
    word("RING"),
    urc("+CRING:"),
    urc("+CLIP:"),
    urc("+CUSD:"),
    word("RDY"),
    word("Call Ready"),
    word("SMS Ready"),
    word("PB DONE"),
    word("SMS DONE"),
    urc("+QUSIM:"),
    urc("+QIND:"),
    urc("+NITZ:"),
    urc("+CTZV:"),
    urc("^RSSI:"),
    urc("^HCSQ:"),
    urc("^BOOT:"),
    urc("^MODE:"),
    urc("^SRVST:"),
    urc("^SIMST:"),
    urc("^DSFLOWRPT:"),
    urc("^STIN:"),
    urc("^NWTIME:"),
    urc("^CSNR:"),
    urc("^RSSILVL:"),
    urc("^NDISSTAT:"),
    urc("^ORIG:"),
    urc("^CONF:"),
    urc("^CONN:"),
    urc("^CEND:"),
    urc("+ZUSIMR:"),
    urc("+ZPAS:"),
    word("+ZEND"),
    urc("+SPNWNAME:"),
    urc("+PSBEARER:"),
    urc("#STN:"),
    urc("+WIND:"),
    urc("*RADIOPOWER:"),
];

/// The table entry a line matches, if any.
pub fn urc_spec(line: &str) -> Option<&'static UrcSpec> {
    URC_TABLE.iter().find(|spec| {
        if spec.whole_line {
            line == spec.prefix
        } else {
            line.starts_with(spec.prefix)
        }
    })
}
