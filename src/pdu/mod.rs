//! The SMS PDU codec: SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT (3GPP TS 23.040) with the
//! GSM 7-bit and UCS-2 alphabets (TS 23.038), in both directions.
//!
//! Pure: bytes and hex in, typed values out, and back. It knows nothing of AT commands beyond
//! the fact that AT PDU mode prefixes every TPDU with the SMSC field, which [`Pdu`] models and
//! [`Tpdu`] leaves out. Every decoder returns a [`PduError`] for bad input and never panics.
//! The daemon decodes DELIVER and STATUS-REPORT and encodes SUBMIT; the simulated modem does
//! the inverse, so every TPDU goes both ways.

mod address;
mod dcs;
mod decode;
mod encode;
pub mod gsm7;
mod json;
mod status;
mod time;
pub mod udh;

pub use address::{Address, TypeOfNumber};
pub use dcs::{Alphabet, Dcs, MessageClass, MessageWaiting};
pub use json::{pdu as pdu_json, tpdu as tpdu_json};
pub use status::{Status, StatusClass};
pub use time::{Timestamp, Validity};
pub use udh::{Concat, ConcatKey, ConcatReference, InformationElement, Reassembly, Udh};

/// What can go wrong decoding or encoding a PDU. Messages name the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// The hex is not hex: an odd length or a stray character.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// The PDU ends inside a field.
    #[error("the PDU ends inside the {0}")]
    Truncated(&'static str),
    /// A length field holds a value the field cannot have.
    #[error("the {field} length {value} is impossible")]
    BadLength {
        /// The field whose length is wrong.
        field: &'static str,
        /// The length as found.
        value: usize,
    },
    /// TP-MTI 11 is reserved.
    #[error("the message type indicator is the reserved value 3")]
    ReservedMessageType,
    /// The user data header is malformed.
    #[error("bad user data header: {0}")]
    BadHeader(&'static str),
    /// A character that the GSM 7-bit alphabet lacks, in text that must be GSM 7-bit.
    #[error("{0:?} is not in the GSM 7-bit alphabet")]
    NotGsm7(char),
    /// A number or name that cannot be an address.
    #[error("{0:?} is not a valid address")]
    BadAddress(String),
    /// More parts than the concatenation header can number.
    #[error("the text needs {0} parts, more than 255")]
    TooManyParts(usize),
    /// More than one part's worth of user data (140 octets, 160 septets).
    #[error("the user data needs {0} octets, more than 140")]
    UserDataTooLong(usize),
    /// Text with an 8-bit DCS, or bytes with a text DCS.
    #[error("the body does not match the {0} data coding")]
    BodyMismatch(Alphabet),
}

/// A PDU as AT PDU mode carries it: the SMSC field, then the TPDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The service centre, or `None` for the `00` field ("use the one stored in the modem").
    pub smsc: Option<Address>,
    /// The transfer-layer PDU.
    pub tpdu: Tpdu,
}

/// The three TPDUs a gateway meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tpdu {
    /// A message from the network to us.
    Deliver(Deliver),
    /// A message from us to the network.
    Submit(Submit),
    /// The outcome of a submitted message.
    StatusReport(StatusReport),
}

/// SMS-DELIVER (23.040 §9.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// TP-MMS: true when the SC has no more messages waiting for us.
    pub no_more_messages: bool,
    /// TP-LP: loop prevention.
    pub loop_prevention: bool,
    /// TP-SRI: the sender will get a status report.
    pub status_report_indication: bool,
    /// TP-RP: a reply path is set.
    pub reply_path: bool,
    /// TP-OA.
    pub sender: Address,
    /// TP-PID.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-SCTS: when the service centre received the message.
    pub timestamp: Timestamp,
    /// TP-UD.
    pub user_data: UserData,
}

/// SMS-SUBMIT (23.040 §9.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// TP-RD: the SC should reject a duplicate of a message it still holds.
    pub reject_duplicates: bool,
    /// TP-SRR: ask for a status report.
    pub status_report_request: bool,
    /// TP-RP: request a reply path.
    pub reply_path: bool,
    /// TP-MR. 0 in what we write: the modem assigns the real one and returns it in `+CMGS`.
    pub message_reference: u8,
    /// TP-DA.
    pub recipient: Address,
    /// TP-PID.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-VP and, through its variant, TP-VPF; `None` leaves it to the SC.
    pub validity: Option<Validity>,
    /// TP-UD.
    pub user_data: UserData,
}

/// SMS-STATUS-REPORT (23.040 §9.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// TP-MMS.
    pub no_more_messages: bool,
    /// TP-LP.
    pub loop_prevention: bool,
    /// TP-SRQ: true when this reports on an SMS-COMMAND rather than an SMS-SUBMIT.
    pub reports_command: bool,
    /// TP-MR of the SUBMIT this reports on.
    pub message_reference: u8,
    /// TP-RA: the recipient of that SUBMIT.
    pub recipient: Address,
    /// TP-SCTS: when the SC received the SUBMIT.
    pub timestamp: Timestamp,
    /// TP-DT: when it was delivered, or the last attempt.
    pub discharge_time: Timestamp,
    /// TP-ST.
    pub status: Status,
    /// TP-PID, when the optional part carries one.
    pub pid: Option<u8>,
    /// TP-DCS, when the optional part carries one.
    pub dcs: Option<Dcs>,
    /// TP-UD, when the optional part carries one.
    pub user_data: Option<UserData>,
}

/// User data: an optional header and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    /// The user data header, present exactly when TP-UDHI is set.
    pub header: Option<Udh>,
    /// The text or bytes after the header.
    pub body: Body,
}

/// The body of user data: text for the GSM and UCS-2 alphabets, bytes for 8-bit data (and for
/// compressed text, which nobody decodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Decoded text.
    Text(String),
    /// Raw bytes.
    Data(Vec<u8>),
}

impl UserData {
    /// The text, when the body is text.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Text(text) => Some(text),
            Body::Data(_) => None,
        }
    }

    /// The concatenation element of the header, if any.
    pub fn concat(&self) -> Option<Concat> {
        self.header.as_ref().and_then(Udh::concat)
    }
}

impl Pdu {
    /// Decodes hex as an AT command shows it (`+CMGR`, `+CMT`, `+CDS`): SMSC field first. A
    /// stray `,0` after the hex, which some modems append (docs/at-sms.md §3.2), is ignored.
    pub fn from_hex(hex: &str) -> Result<Pdu, PduError> {
        Pdu::decode(&decode_hex(strip_modem_suffix(hex))?)
    }

    /// Decodes bytes that start with the SMSC field.
    pub fn decode(bytes: &[u8]) -> Result<Pdu, PduError> {
        decode::pdu(bytes)
    }

    /// The bytes, SMSC field first.
    pub fn encode(&self) -> Result<Vec<u8>, PduError> {
        let mut bytes = encode::smsc(self.smsc.as_ref())?;
        bytes.extend(self.tpdu.encode()?);
        Ok(bytes)
    }

    /// The hex to write after the `> ` prompt.
    pub fn to_hex(&self) -> Result<String, PduError> {
        self.encode().map(hex::encode_upper)
    }
}

impl Tpdu {
    /// Decodes hex that holds a TPDU alone, without the SMSC field.
    pub fn from_hex(hex: &str) -> Result<Tpdu, PduError> {
        Tpdu::decode(&decode_hex(strip_modem_suffix(hex))?)
    }

    /// Decodes bytes that hold a TPDU alone.
    pub fn decode(bytes: &[u8]) -> Result<Tpdu, PduError> {
        decode::tpdu(bytes)
    }

    /// The bytes of the TPDU; their count is the `AT+CMGS=<length>`.
    pub fn encode(&self) -> Result<Vec<u8>, PduError> {
        match self {
            Tpdu::Deliver(deliver) => encode::deliver(deliver),
            Tpdu::Submit(submit) => encode::submit(submit),
            Tpdu::StatusReport(report) => encode::status_report(report),
        }
    }

    /// The first octet, with the message type and the flags.
    pub fn first_octet(&self) -> u8 {
        match self {
            Tpdu::Deliver(deliver) => encode::deliver_first_octet(deliver),
            Tpdu::Submit(submit) => encode::submit_first_octet(submit),
            Tpdu::StatusReport(report) => encode::status_report_first_octet(report),
        }
    }

    /// `deliver`, `submit` or `status_report`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tpdu::Deliver(_) => "deliver",
            Tpdu::Submit(_) => "submit",
            Tpdu::StatusReport(_) => "status_report",
        }
    }
}

/// How to build the SUBMIT parts of an outgoing text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOptions {
    /// The SMSC to write into each PDU; `None` writes `00` (the modem's `+CSCA`).
    pub smsc: Option<Address>,
    /// Ask for a status report on every part.
    pub status_report: bool,
    /// The validity period; `None` leaves it to the SC.
    pub validity: Option<Validity>,
    /// The message class: `Some(MessageClass::Flash)` for a flash SMS.
    pub class: Option<MessageClass>,
    /// Use UCS-2 even when the text fits the GSM alphabet.
    pub force_ucs2: bool,
    /// The concatenation reference, used only when the text needs more than one part.
    pub reference: ConcatReference,
}

impl Default for SubmitOptions {
    fn default() -> SubmitOptions {
        SubmitOptions {
            smsc: None,
            status_report: false,
            validity: None,
            class: None,
            force_ucs2: false,
            reference: ConcatReference::Eight(0),
        }
    }
}

/// One SUBMIT ready for `AT+CMGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The PDU, decoded form.
    pub pdu: Pdu,
    /// The PDU as hex, SMSC field first: what goes after the prompt.
    pub hex: String,
    /// The TPDU length in octets (SMSC field excluded): the `AT+CMGS=<length>`.
    pub cmgs_length: usize,
}

/// An outgoing text, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// GSM 7-bit or UCS-2.
    pub alphabet: Alphabet,
    /// The parts in order, at least one.
    pub parts: Vec<Part>,
}

/// Encodes `text` for `recipient` as one or more SUBMITs: GSM 7-bit when every character
/// allows it, else UCS-2; concatenated when it does not fit one part.
pub fn submit_parts(
    recipient: &Address,
    text: &str,
    options: &SubmitOptions,
) -> Result<Outgoing, PduError> {
    let alphabet = if options.force_ucs2 {
        Alphabet::Ucs2
    } else {
        udh::choose_alphabet(text)
    };
    let dcs = Dcs::new(alphabet, options.class);
    let smsc_octets = encode::smsc(options.smsc.as_ref())?;
    let parts = udh::split(text, alphabet, options.reference)?
        .into_iter()
        .map(|user_data| {
            let submit = Submit {
                reject_duplicates: false,
                status_report_request: options.status_report,
                reply_path: false,
                message_reference: 0,
                recipient: recipient.clone(),
                pid: 0,
                dcs,
                validity: options.validity,
                user_data,
            };
            let tpdu = encode::submit(&submit)?;
            let mut bytes = smsc_octets.clone();
            bytes.extend_from_slice(&tpdu);
            Ok(Part {
                pdu: Pdu {
                    smsc: options.smsc.clone(),
                    tpdu: Tpdu::Submit(submit),
                },
                hex: hex::encode_upper(bytes),
                cmgs_length: tpdu.len(),
            })
        })
        .collect::<Result<Vec<Part>, PduError>>()?;
    Ok(Outgoing { alphabet, parts })
}

/// The hex before a `,` that some modems append to a PDU line (`…E713,0`).
fn strip_modem_suffix(hex: &str) -> &str {
    hex.split_once(',').map_or(hex, |(pdu, _)| pdu)
}

/// Hex to bytes, upper or lower case; surrounding whitespace is ignored.
pub fn decode_hex(hex: &str) -> Result<Vec<u8>, PduError> {
    hex::decode(hex.trim()).map_err(|error| PduError::Hex(error.to_string()))
}
