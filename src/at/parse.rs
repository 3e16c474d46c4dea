//! nom parsers, one small function per grammar element, each parsing one whole line.
//!
//! These are *complete* parsers: the framer has already cut the line, so `Incomplete` never
//! arises here. Lenient with spacing, quotes and vendor variants; strict with final results.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, space0};
use nom::combinator::{all_consuming, map, opt, rest};
use nom::multi::separated_list1;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

use super::{
    Banner, CmeError, CmsError, Domain, FinalResult, PinState, Registration, RegistrationStatus,
    Urc, UssdReport,
};

/// A line that did not have the shape its parser expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} line: {line:?}")]
pub struct ParseError {
    /// What was being parsed, e.g. `+CMGS`.
    pub what: &'static str,
    /// The offending line.
    pub line: String,
}

fn error(what: &'static str, line: &str) -> ParseError {
    ParseError {
        what,
        line: line.to_string(),
    }
}

/// One comma-separated parameter of an information line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// `"text"`, without the quotes.
    Quoted(&'a str),
    /// Unquoted text, possibly empty (`+CMGR: 0,,43` has an empty alpha field).
    Bare(&'a str),
}

impl<'a> Field<'a> {
    /// The text, quoted or not.
    pub fn text(self) -> &'a str {
        match self {
            Field::Quoted(text) | Field::Bare(text) => text,
        }
    }

    /// The field as a decimal number.
    pub fn number<T: std::str::FromStr>(self) -> Option<T> {
        match self {
            Field::Bare(text) => text.parse().ok(),
            Field::Quoted(_) => None,
        }
    }

    fn non_empty(self) -> Option<String> {
        let text = self.text();
        (!text.is_empty()).then(|| text.to_string())
    }
}

fn quoted(input: &str) -> IResult<&str, &str> {
    delimited(char('"'), take_while(|c| c != '"'), char('"')).parse(input)
}

fn bare(input: &str) -> IResult<&str, &str> {
    map(take_while(|c| c != ','), str::trim_end).parse(input)
}

fn field(input: &str) -> IResult<&str, Field<'_>> {
    alt((
        map(delimited(space0, quoted, space0), Field::Quoted),
        map(preceded(space0, bare), Field::Bare),
    ))
    .parse(input)
}

fn field_list(input: &str) -> IResult<&str, Vec<Field<'_>>> {
    separated_list1(char(','), field).parse(input)
}

/// The parameters after `prefix` (e.g. `+CPMS:`), split on commas outside quotes.
pub fn fields<'a>(prefix: &'static str, line: &'a str) -> Result<Vec<Field<'a>>, ParseError> {
    all_consuming(preceded((tag(prefix), space0), field_list))
        .parse(line.trim())
        .map(|(_, fields)| fields)
        .map_err(|_| error(prefix, line))
}

fn number<T: std::str::FromStr>(
    fields: &[Field<'_>],
    index: usize,
    what: &'static str,
    line: &str,
) -> Result<T, ParseError> {
    fields
        .get(index)
        .and_then(|field| field.number())
        .ok_or_else(|| error(what, line))
}

/// What follows `+CME ERROR`/`+CMS ERROR`: a number, verbose text (`AT+CMEE=2`), or nothing
/// at all when the line was cut short.
fn error_payload(input: &str) -> IResult<&str, Result<u16, String>> {
    let (input, _) = (space0, opt(char(':')), space0).parse(input)?;
    let (input, text) = rest(input)?;
    let text = text.trim();
    Ok((input, text.parse().map_err(|_| text.to_string())))
}

fn cme_error(input: &str) -> IResult<&str, FinalResult> {
    map(preceded(tag("+CME ERROR"), error_payload), |payload| {
        FinalResult::CmeError(payload.map_or_else(CmeError::Text, CmeError::from_code))
    })
    .parse(input)
}

fn cms_error(input: &str) -> IResult<&str, FinalResult> {
    map(preceded(tag("+CMS ERROR"), error_payload), |payload| {
        FinalResult::CmsError(payload.map_or_else(CmsError::Text, CmsError::from_code))
    })
    .parse(input)
}

fn connect(input: &str) -> IResult<&str, FinalResult> {
    let (input, _) = tag("CONNECT")(input)?;
    let (input, rate) = opt(preceded(take_while1(|c| c == ' '), rest)).parse(input)?;
    Ok((input, FinalResult::Connect(rate.map(str::to_string))))
}

fn modem_error(input: &str) -> IResult<&str, FinalResult> {
    let (input, text) = preceded((tag("MODEM ERROR:"), space0), rest).parse(input)?;
    Ok((input, FinalResult::ModemError(text.to_string())))
}

/// The final result code a line carries, if it is one.
pub fn final_result(line: &str) -> Option<FinalResult> {
    let line = line.trim();
    let simple = match line {
        "OK" => Some(FinalResult::Ok),
        "ERROR" => Some(FinalResult::Error),
        "NO CARRIER" => Some(FinalResult::NoCarrier),
        "BUSY" => Some(FinalResult::Busy),
        "NO ANSWER" => Some(FinalResult::NoAnswer),
        "NO DIALTONE" | "NO DIAL TONE" => Some(FinalResult::NoDialtone),
        "COMMAND NOT SUPPORT" => Some(FinalResult::CommandNotSupported),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    all_consuming(alt((cme_error, cms_error, connect, modem_error)))
        .parse(line)
        .ok()
        .map(|(_, result)| result)
}

/// Whether a line is a PDU in hex, as the second line of `+CMT`/`+CDS`/`+CMGR` is.
pub fn is_hex(line: &str) -> bool {
    !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a `+CREG`-family line has the shape of the query answer (`<n>,<stat>[,…]`) rather
/// than the unsolicited form (`<stat>[,<lac>,<ci>[,<AcT>]]`).
///
/// Query answers have 2, 4 or 5 parameters and URCs 1, 3 or 4; with 4 the second parameter
/// decides: a plain one-digit `<stat>` means the query form, a quoted or longer LAC the URC.
pub fn is_registration_answer(fields: &[Field<'_>]) -> bool {
    match fields.len() {
        2 | 5 => true,
        4 => matches!(fields[1], Field::Bare(text) if text.len() == 1),
        _ => false,
    }
}

/// A `+CREG:`/`+CGREG:`/`+CEREG:` line in either form (see [`is_registration_answer`]).
pub fn registration(line: &str) -> Result<Registration, ParseError> {
    let trimmed = line.trim();
    let (prefix, domain) = if trimmed.starts_with("+CREG:") {
        ("+CREG:", Domain::CircuitSwitched)
    } else if trimmed.starts_with("+CGREG:") {
        ("+CGREG:", Domain::Gprs)
    } else {
        ("+CEREG:", Domain::Eps)
    };
    let fields = fields(prefix, trimmed)?;
    let (mode, rest) = if is_registration_answer(&fields) {
        (Some(number(&fields, 0, prefix, line)?), &fields[1..])
    } else {
        (None, &fields[..])
    };
    let status = rest
        .first()
        .and_then(|field| field.number())
        .map(RegistrationStatus::from_code)
        .ok_or_else(|| error(prefix, line))?;
    Ok(Registration {
        domain,
        mode,
        status,
        area: rest.get(1).and_then(|field| field.non_empty()),
        cell: rest.get(2).and_then(|field| field.non_empty()),
        access_technology: rest.get(3).and_then(|field| field.number()),
    })
}

/// `+CMGS: <mr>[,<scts>]`: the TP-MR the modem put in the submitted PDU.
pub fn cmgs(line: &str) -> Result<u8, ParseError> {
    let fields = fields("+CMGS:", line)?;
    number(&fields, 0, "+CMGS", line)
}

/// The header line of a stored message, from `+CMGR:` or `+CMGL:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHeader {
    /// Storage index (`+CMGL` only).
    pub index: Option<u32>,
    /// 0 received unread, 1 received read, 2 stored unsent, 3 stored sent.
    pub stat: u8,
    /// The alpha field, when present and non-empty.
    pub alpha: Option<String>,
    /// TPDU length in octets (SMSC excluded): a sanity check, not a slice bound.
    pub length: u32,
}

/// `+CMGR: <stat>,[<alpha>],<length>`, also without the alpha field (`+CMGR: 0,23`).
pub fn cmgr(line: &str) -> Result<StoredHeader, ParseError> {
    let fields = fields("+CMGR:", line)?;
    let alpha = match fields.len() {
        3.. => fields[1].non_empty(),
        _ => None,
    };
    let length_at = if fields.len() >= 3 { 2 } else { 1 };
    Ok(StoredHeader {
        index: None,
        stat: number(&fields, 0, "+CMGR", line)?,
        alpha,
        length: number(&fields, length_at, "+CMGR", line)?,
    })
}

/// `+CMGL: <index>,<stat>,[<alpha>],<length>`, also without the alpha field (Pantech).
pub fn cmgl(line: &str) -> Result<StoredHeader, ParseError> {
    let fields = fields("+CMGL:", line)?;
    let (alpha, length_at) = if fields.len() >= 4 {
        (fields[2].non_empty(), 3)
    } else {
        (None, 2)
    };
    Ok(StoredHeader {
        index: Some(number(&fields, 0, "+CMGL", line)?),
        stat: number(&fields, 1, "+CMGL", line)?,
        alpha,
        length: number(&fields, length_at, "+CMGL", line)?,
    })
}

/// One message storage's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUsage {
    /// `SM`, `ME`, `MT`, `SR`…; absent in the answer to the set form.
    pub name: Option<String>,
    /// Messages stored.
    pub used: u32,
    /// Capacity.
    pub total: u32,
}

/// `+CPMS: "SM",3,30,…` (query) or `+CPMS: 3,30,…` (set): mem1, mem2, mem3 in order.
pub fn cpms(line: &str) -> Result<Vec<StorageUsage>, ParseError> {
    let fields = fields("+CPMS:", line)?;
    let named = matches!(fields.first(), Some(Field::Quoted(_)));
    let width = if named { 3 } else { 2 };
    if fields.len() % width != 0 {
        return Err(error("+CPMS", line));
    }
    fields
        .chunks(width)
        .map(|chunk| {
            let offset = width - 2;
            Ok(StorageUsage {
                name: named.then(|| chunk[0].text().to_string()),
                used: number(chunk, offset, "+CPMS", line)?,
                total: number(chunk, offset + 1, "+CPMS", line)?,
            })
        })
        .collect()
}

/// Signal quality from `+CSQ: <rssi>,<ber>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalQuality {
    /// 0..=31, or 99 for unknown.
    pub rssi: u8,
    /// Bit error rate class 0..=7, or 99.
    pub ber: u8,
}

impl SignalQuality {
    /// The received signal strength in dBm (−113 + 2·rssi), when known.
    pub fn dbm(self) -> Option<i16> {
        (self.rssi <= 31).then(|| -113 + 2 * i16::from(self.rssi))
    }
}

/// `+CSQ: <rssi>,<ber>`
pub fn csq(line: &str) -> Result<SignalQuality, ParseError> {
    let fields = fields("+CSQ:", line)?;
    Ok(SignalQuality {
        rssi: number(&fields, 0, "+CSQ", line)?,
        ber: number(&fields, 1, "+CSQ", line)?,
    })
}

/// The operator from `+COPS?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// 0 automatic, 1 manual, 2 deregistered…
    pub mode: u8,
    /// The operator name or numeric code, when registered.
    pub name: Option<String>,
    /// Access technology, when given.
    pub access_technology: Option<u8>,
}

/// `+COPS: <mode>[,<format>,<oper>[,<AcT>]]`
pub fn cops(line: &str) -> Result<Operator, ParseError> {
    let fields = fields("+COPS:", line)?;
    Ok(Operator {
        mode: number(&fields, 0, "+COPS", line)?,
        name: fields.get(2).and_then(|field| field.non_empty()),
        access_technology: fields.get(3).and_then(|field| field.number()),
    })
}

/// `+CPIN: READY`, also quoted (`"READY"`) or without the space (smstools has seen both).
pub fn cpin(line: &str) -> Result<PinState, ParseError> {
    let trimmed = line.trim();
    let value = trimmed
        .strip_prefix("+CPIN:")
        .ok_or_else(|| error("+CPIN", line))?;
    let value = value.trim().trim_matches('"').trim();
    Ok(match value {
        "READY" => PinState::Ready,
        "SIM PIN" => PinState::SimPin,
        "SIM PUK" => PinState::SimPuk,
        "PH-SIM PIN" => PinState::PhoneSimPin,
        "SIM PIN2" => PinState::SimPin2,
        "SIM PUK2" => PinState::SimPuk2,
        "" => return Err(error("+CPIN", line)),
        other => PinState::Other(other.to_string()),
    })
}

/// `+CSCA: "<number>",<type>`: the SMSC, `None` when the modem has none configured.
pub fn csca(line: &str) -> Result<Option<String>, ParseError> {
    let fields = fields("+CSCA:", line)?;
    Ok(fields.first().and_then(|field| field.non_empty()))
}

/// `+CNUM: [<alpha>],<number>,<type>[,<speed>,<service>]` (3GPP TS 27.007 §7.1): the SIM's own
/// number, with `+` when the type says international (145); `None` when the entry is empty.
pub fn cnum(line: &str) -> Result<Option<String>, ParseError> {
    let fields = fields("+CNUM:", line)?;
    let Some(number) = fields.get(1).and_then(|field| field.non_empty()) else {
        return Ok(None);
    };
    let international = fields.get(2).and_then(|field| field.number::<u8>()) == Some(145);
    if international && !number.starts_with('+') {
        return Ok(Some(format!("+{number}")));
    }
    Ok(Some(number))
}

/// `+CNMI: <mode>,<mt>,<bm>,<ds>,<bfr>`: the indication settings in force.
pub fn cnmi(line: &str) -> Result<Vec<u8>, ParseError> {
    let fields = fields("+CNMI:", line)?;
    (0..fields.len())
        .map(|index| number(&fields, index, "+CNMI", line))
        .collect()
}

/// `+CSMS: <service>,<mt>,<mo>,<bm>` (query) or `+CSMS: <mt>,<mo>,<bm>` (set): the message
/// service, `None` in the set answer.
pub fn csms(line: &str) -> Result<Option<u8>, ParseError> {
    let fields = fields("+CSMS:", line)?;
    match fields.len() {
        4 => Ok(Some(number(&fields, 0, "+CSMS", line)?)),
        3 => Ok(None),
        _ => Err(error("+CSMS", line)),
    }
}

/// `+CPINR: <code>,<retries>,<default_retries>` (3GPP TS 27.007 §8.65; some modems quote the
/// code): the SIM PIN attempts left, or `None` when the line is about another code (PUK, PIN2).
pub fn cpinr(line: &str) -> Result<Option<u8>, ParseError> {
    let fields = fields("+CPINR:", line)?;
    let code = fields.first().ok_or_else(|| error("+CPINR", line))?;
    if !code.text().trim().eq_ignore_ascii_case("SIM PIN") {
        return Ok(None);
    }
    Ok(Some(number(&fields, 1, "+CPINR", line)?))
}

/// Huawei `^CPIN: <code>,[<times>],<puk_times>,<pin_times>,<puk2_times>,<pin2_times>`: the
/// SIM PIN attempts left (`<pin_times>`; `<times>` is about whatever code is asked for now).
pub fn huawei_cpin(line: &str) -> Result<u8, ParseError> {
    let fields = fields("^CPIN:", line)?;
    number(&fields, 3, "^CPIN", line)
}

/// Quectel `+QPINC: "SC",<pin_times>,<puk_times>` (one line per facility, `"SC"` is the SIM
/// PIN, `"P2"` PIN2): the SIM PIN attempts left, `None` for another facility.
pub fn qpinc(line: &str) -> Result<Option<u8>, ParseError> {
    let fields = fields("+QPINC:", line)?;
    let facility = fields.first().ok_or_else(|| error("+QPINC", line))?;
    if !facility.text().trim().eq_ignore_ascii_case("SC") {
        return Ok(None);
    }
    Ok(Some(number(&fields, 1, "+QPINC", line)?))
}

/// SIMCom `+SPIC: <pin1>,<puk1>,<pin2>,<puk2>` (SIM800 firmwares differ in the order of the
/// others, and some give `<pin1>` alone; PIN1 is always first): the SIM PIN attempts left.
pub fn spic(line: &str) -> Result<u8, ParseError> {
    let fields = fields("+SPIC:", line)?;
    number(&fields, 0, "+SPIC", line)
}

/// `+CMTI`/`+CDSI`: `"<mem>",<index>`
fn storage_index(prefix: &'static str, line: &str) -> Result<(String, u32), ParseError> {
    let fields = fields(prefix, line)?;
    let storage = fields
        .first()
        .map(|field| field.text().to_string())
        .ok_or_else(|| error(prefix, line))?;
    Ok((storage, number(&fields, 1, prefix, line)?))
}

/// The length of a `+CMT: [<alpha>],<length>` / `+CDS: <length>` header: its last parameter.
fn pdu_length(prefix: &'static str, line: &str) -> Result<u32, ParseError> {
    let fields = fields(prefix, line)?;
    number(&fields, fields.len() - 1, prefix, line)
}

/// Turns a URC line (and, for two-line URCs, its PDU line) into a [`Urc`].
///
/// Never fails: what does not parse becomes [`Urc::Malformed`] with the raw text.
pub fn urc(line: &str, pdu_line: Option<&str>) -> Urc {
    let line = line.trim();
    let malformed = || {
        Urc::Malformed(match pdu_line {
            Some(pdu) => format!("{line} / {pdu}"),
            None => line.to_string(),
        })
    };
    let pdu = || pdu_line.filter(|pdu| is_hex(pdu)).map(str::to_string);
    let parsed = if line.starts_with("+CMTI:") {
        storage_index("+CMTI:", line)
            .ok()
            .map(|(storage, index)| Urc::MessageStored { storage, index })
    } else if line.starts_with("+CDSI:") {
        storage_index("+CDSI:", line)
            .ok()
            .map(|(storage, index)| Urc::StatusReportStored { storage, index })
    } else if line.starts_with("+CMT:") {
        pdu_length("+CMT:", line)
            .ok()
            .zip(pdu())
            .map(|(length, pdu)| Urc::Message { length, pdu })
    } else if line.starts_with("+CDS:") {
        pdu_length("+CDS:", line)
            .ok()
            .zip(pdu())
            .map(|(length, pdu)| Urc::StatusReport { length, pdu })
    } else if line.starts_with("+CBM:") {
        pdu().map(|pdu| Urc::CellBroadcast { pdu })
    } else if line.starts_with("+CREG:")
        || line.starts_with("+CGREG:")
        || line.starts_with("+CEREG:")
    {
        registration(line).ok().map(Urc::Registration)
    } else if line.starts_with("+CPIN:") {
        cpin(line).ok().map(Urc::SimState)
    } else if line == "RING" || line.starts_with("+CRING:") {
        Some(Urc::Ring)
    } else if line == "NO CARRIER" {
        Some(Urc::CallEnded)
    } else if line.starts_with("+CLIP:") {
        Some(Urc::CallerId(line.to_string()))
    } else if line.starts_with("+CUSD:") {
        cusd(line).ok().map(Urc::Ussd)
    } else {
        Some(banner(line).map_or_else(|| Urc::Noise(line.to_string()), Urc::Boot))
    };
    parsed.unwrap_or_else(malformed)
}

/// `+CUSD: <m>[,"<str>"[,<dcs>]]`. The string is taken up to the last quote, since answers
/// may hold commas and even quotes; an unquoted string (some firmware) is read up to the last
/// comma when a number follows it.
pub fn cusd(line: &str) -> Result<UssdReport, ParseError> {
    let body = line
        .trim()
        .strip_prefix("+CUSD:")
        .ok_or_else(|| error("+CUSD", line))?
        .trim_start();
    let (status, rest) = match body.find(',') {
        Some(comma) => (&body[..comma], Some(&body[comma + 1..])),
        None => (body, None),
    };
    let status: u8 = status.trim().parse().map_err(|_| error("+CUSD", line))?;
    let Some(rest) = rest.map(str::trim) else {
        return Ok(UssdReport {
            status,
            text: None,
            dcs: None,
        });
    };
    let (text, tail) = match (rest.strip_prefix('"'), rest.rfind('"')) {
        (Some(_), Some(close)) if close > 0 => (&rest[1..close], &rest[close + 1..]),
        (Some(_), _) => return Err(error("+CUSD", line)),
        (None, _) => match rest.rfind(',') {
            Some(comma) if rest[comma + 1..].trim().parse::<u8>().is_ok() => {
                (&rest[..comma], &rest[comma..])
            }
            _ => (rest, ""),
        },
    };
    let tail = tail.trim();
    let dcs = match tail.strip_prefix(',') {
        Some(dcs) if !dcs.trim().is_empty() => {
            Some(dcs.trim().parse().map_err(|_| error("+CUSD", line))?)
        }
        Some(_) => None,
        None if tail.is_empty() => None,
        None => return Err(error("+CUSD", line)),
    };
    Ok(UssdReport {
        status,
        text: Some(text.to_string()),
        dcs,
    })
}

/// The caller of a `+CLIP: "<number>",<type>[,...]` line: `None` when the number is withheld
/// or unknown (an empty number; the CLI validity field says why, TS 27.007 §7.6). A national
/// number (type 129) stays as sent; an international one (145) gets its `+`.
pub fn clip(line: &str) -> Result<Option<String>, ParseError> {
    let fields = fields("+CLIP:", line)?;
    let number = fields
        .first()
        .map(|field| field.text().trim())
        .ok_or_else(|| error("+CLIP", line))?;
    if number.is_empty() {
        return Ok(None);
    }
    let international = fields.get(1).and_then(|field| field.number::<u8>()) == Some(145);
    Ok(Some(if international && !number.starts_with('+') {
        format!("+{number}")
    } else {
        number.to_string()
    }))
}

/// The boot banner a line is, if any.
pub fn banner(line: &str) -> Option<Banner> {
    match line.trim() {
        "RDY" => Some(Banner::Rdy),
        "Call Ready" => Some(Banner::CallReady),
        "SMS Ready" => Some(Banner::SmsReady),
        "PB DONE" => Some(Banner::PbDone),
        "SMS DONE" => Some(Banner::SmsDone),
        other if other.starts_with("+CFUN:") => Some(Banner::Cfun),
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn own_numbers_in_every_form() {
        for (line, expected) in [
            (r#"+CNUM: "","+491701234567",145"#, Some("+491701234567")),
            (
                r#"+CNUM: "Own","491701234567",145,7,4"#,
                Some("+491701234567"),
            ),
            (r#"+CNUM: ,"01701234567",129"#, Some("01701234567")),
            (r#"+CNUM: "Voice","",129"#, None),
        ] {
            assert_eq!(
                super::cnum(line).expect("parses").as_deref(),
                expected,
                "{line}"
            );
        }
        assert!(super::cnum("+CNUM").is_err());
    }
    use super::*;

    fn check<T: std::fmt::Debug + PartialEq>(parse: impl Fn(&str) -> T, input: &str, expected: T) {
        assert_eq!(parse(input), expected, "input {input:?}");
    }

    #[test]
    fn final_results() {
        use FinalResult as F;
        let cases: &[(&str, Option<F>)] = &[
            ("OK", Some(F::Ok)),
            (" OK ", Some(F::Ok)),
            ("ERROR", Some(F::Error)),
            ("+CME ERROR: 14", Some(F::CmeError(CmeError::SimBusy))),
            ("+CME ERROR: 9999", Some(F::CmeError(CmeError::Other(9999)))),
            (
                "+CME ERROR: SIM busy",
                Some(F::CmeError(CmeError::Text("SIM busy".into()))),
            ),
            (
                "+CMS ERROR: 321",
                Some(F::CmsError(CmsError::InvalidMemoryIndex)),
            ),
            ("+CMS ERROR:500", Some(F::CmsError(CmsError::UnknownError))),
            (
                "+CMS ERROR: invalid memory index",
                Some(F::CmsError(CmsError::Text("invalid memory index".into()))),
            ),
            (
                "+CMS ERROR",
                Some(F::CmsError(CmsError::Text(String::new()))),
            ),
            (
                "+CMS ERROR:",
                Some(F::CmsError(CmsError::Text(String::new()))),
            ),
            ("NO CARRIER", Some(F::NoCarrier)),
            ("BUSY", Some(F::Busy)),
            ("NO ANSWER", Some(F::NoAnswer)),
            ("NO DIALTONE", Some(F::NoDialtone)),
            ("CONNECT", Some(F::Connect(None))),
            ("CONNECT 115200", Some(F::Connect(Some("115200".into())))),
            ("COMMAND NOT SUPPORT", Some(F::CommandNotSupported)),
            ("MODEM ERROR: 3", Some(F::ModemError("3".into()))),
            ("+CMGS: 7", None),
            ("OKAY", None),
            ("CONNECTED", None),
            ("", None),
        ];
        for (input, expected) in cases {
            check(final_result, input, expected.clone());
        }
    }

    #[test]
    fn error_codes_keep_numbers_and_text() {
        assert_eq!(CmsError::from_code(304).code(), Some(304));
        assert_eq!(CmsError::from_code(777), CmsError::Other(777));
        assert_eq!(CmsError::from_code(777).code(), Some(777));
        assert_eq!(CmeError::Text("busy".into()).code(), None);
        assert_eq!(
            CmsError::from_code(321).to_string(),
            "321 (invalid memory index)"
        );
    }

    #[test]
    fn information_responses() {
        check(cmgs, "+CMGS: 7", Ok(7));
        check(cmgs, "+CMGS: 255,\"24/03/15,14:30:45+04\"", Ok(255));
        assert!(cmgs("+CMGS: 256").is_err());
        assert!(cmgs("+CMGS:").is_err());
        let header = |index, stat, alpha: Option<&str>, length| StoredHeader {
            index,
            stat,
            alpha: alpha.map(str::to_string),
            length,
        };
        check(cmgr, "+CMGR: 0,,43", Ok(header(None, 0, None, 43)));
        check(cmgr, "+CMGR: 0,23", Ok(header(None, 0, None, 23)));
        check(cmgr, "+CMGR: 1,\"\",25", Ok(header(None, 1, None, 25)));
        check(
            cmgr,
            "+CMGR: 1,\"Bob, Jr\",25",
            Ok(header(None, 1, Some("Bob, Jr"), 25)),
        );
        check(cmgl, "+CMGL: 1,0,,43", Ok(header(Some(1), 0, None, 43)));
        check(cmgl, "+CMGL: 17,3,35", Ok(header(Some(17), 3, None, 35)));
        check(cmgl, "+CMGL: 0,1,\"\",22", Ok(header(Some(0), 1, None, 22)));
        assert!(cmgl("+CMGL: x,0,,43").is_err());
        let usage = |name: Option<&str>, used, total| StorageUsage {
            name: name.map(str::to_string),
            used,
            total,
        };
        check(
            cpms,
            "+CPMS: \"SM\",3,30,\"SM\",3,30,\"SR\",0,10",
            Ok(vec![
                usage(Some("SM"), 3, 30),
                usage(Some("SM"), 3, 30),
                usage(Some("SR"), 0, 10),
            ]),
        );
        check(
            cpms,
            "+CPMS: 3,30,3,30,3,30",
            Ok(vec![usage(None, 3, 30); 3]),
        );
        assert!(cpms("+CPMS: 3,30,3").is_err());
        check(csq, "+CSQ: 21,99", Ok(SignalQuality { rssi: 21, ber: 99 }));
        assert_eq!(SignalQuality { rssi: 21, ber: 99 }.dbm(), Some(-71));
        assert_eq!(SignalQuality { rssi: 99, ber: 99 }.dbm(), None);
        check(
            cops,
            "+COPS: 0,0,\"Vodafone UK\",7",
            Ok(Operator {
                mode: 0,
                name: Some("Vodafone UK".into()),
                access_technology: Some(7),
            }),
        );
        check(
            cops,
            "+COPS: 0",
            Ok(Operator {
                mode: 0,
                name: None,
                access_technology: None,
            }),
        );
        check(cpin, "+CPIN: READY", Ok(PinState::Ready));
        check(cpin, "+CPIN: \"READY\"", Ok(PinState::Ready));
        check(cpin, "+CPIN:READY", Ok(PinState::Ready));
        check(cpin, "+CPIN: SIM PIN", Ok(PinState::SimPin));
        check(cpin, "+CPIN: SIM PUK", Ok(PinState::SimPuk));
        check(
            cpin,
            "+CPIN: NOT INSERTED",
            Ok(PinState::Other("NOT INSERTED".into())),
        );
        check(
            csca,
            "+CSCA: \"+447700900001\",145",
            Ok(Some("+447700900001".into())),
        );
        check(csca, "+CSCA: \"\",129", Ok(None));
        check(cnmi, "+CNMI: 2,1,0,2,0", Ok(vec![2, 1, 0, 2, 0]));
        check(csms, "+CSMS: 0,1,1,1", Ok(Some(0)));
        check(csms, "+CSMS: 1,1,1", Ok(None));
    }

    #[test]
    fn registration_both_forms() {
        let reg = |domain, mode, stat, area: Option<&str>, cell: Option<&str>, act| Registration {
            domain,
            mode,
            status: RegistrationStatus::from_code(stat),
            area: area.map(str::to_string),
            cell: cell.map(str::to_string),
            access_technology: act,
        };
        use Domain::*;
        check(
            registration,
            "+CREG: 0,1",
            Ok(reg(CircuitSwitched, Some(0), 1, None, None, None)),
        );
        check(
            registration,
            "+CREG: 2,1,\"5E25\",\"605F\"",
            Ok(reg(
                CircuitSwitched,
                Some(2),
                1,
                Some("5E25"),
                Some("605F"),
                None,
            )),
        );
        check(
            registration,
            "+CREG: 2,5,\"5E25\",\"605F\",7",
            Ok(reg(
                CircuitSwitched,
                Some(2),
                5,
                Some("5E25"),
                Some("605F"),
                Some(7),
            )),
        );
        check(
            registration,
            "+CREG: 2,1,4CA,81DE445",
            Ok(reg(
                CircuitSwitched,
                Some(2),
                1,
                Some("4CA"),
                Some("81DE445"),
                None,
            )),
        );
        check(
            registration,
            "+CREG: 1",
            Ok(reg(CircuitSwitched, None, 1, None, None, None)),
        );
        check(
            registration,
            "+CREG: 1,\"5E25\",\"605F\"",
            Ok(reg(
                CircuitSwitched,
                None,
                1,
                Some("5E25"),
                Some("605F"),
                None,
            )),
        );
        check(
            registration,
            "+CREG: 1,4CA,81DE445",
            Ok(reg(
                CircuitSwitched,
                None,
                1,
                Some("4CA"),
                Some("81DE445"),
                None,
            )),
        );
        check(
            registration,
            "+CEREG: 1,\"1A2B\",\"01A2B3C4\",7",
            Ok(reg(Eps, None, 1, Some("1A2B"), Some("01A2B3C4"), Some(7))),
        );
        check(
            registration,
            "+CGREG: 0,2",
            Ok(reg(Gprs, Some(0), 2, None, None, None)),
        );
        assert!(registration("+CREG: x").is_err());
        assert!(RegistrationStatus::Roaming.is_registered());
        assert!(!RegistrationStatus::Searching.is_registered());
    }

    #[test]
    fn urcs() {
        let cases: &[(&str, Option<&str>, Urc)] = &[
            (
                "+CMTI: \"SM\",3",
                None,
                Urc::MessageStored {
                    storage: "SM".into(),
                    index: 3,
                },
            ),
            (
                "+CMTI: \"ME\", 0",
                None,
                Urc::MessageStored {
                    storage: "ME".into(),
                    index: 0,
                },
            ),
            (
                "+CDSI: \"SR\",8",
                None,
                Urc::StatusReportStored {
                    storage: "SR".into(),
                    index: 8,
                },
            ),
            (
                "+CMT: ,43",
                Some("0791AB"),
                Urc::Message {
                    length: 43,
                    pdu: "0791AB".into(),
                },
            ),
            (
                "+CMT: \"Alice\",43",
                Some("0791AB"),
                Urc::Message {
                    length: 43,
                    pdu: "0791AB".into(),
                },
            ),
            (
                "+CDS: 25",
                Some("0006"),
                Urc::StatusReport {
                    length: 25,
                    pdu: "0006".into(),
                },
            ),
            (
                "+CMT: ,43",
                Some("OK"),
                Urc::Malformed("+CMT: ,43 / OK".into()),
            ),
            (
                "+CMTI: \"SM\"",
                None,
                Urc::Malformed("+CMTI: \"SM\"".into()),
            ),
            ("RING", None, Urc::Ring),
            ("+CRING: VOICE", None, Urc::Ring),
            ("NO CARRIER", None, Urc::CallEnded),
            (
                "+CUSD: 0,\"Balance: 12.50 EUR, valid\",15",
                None,
                Urc::Ussd(UssdReport {
                    status: 0,
                    text: Some("Balance: 12.50 EUR, valid".into()),
                    dcs: Some(15),
                }),
            ),
            ("+CUSD: nope", None, Urc::Malformed("+CUSD: nope".into())),
            ("+CPIN: READY", None, Urc::SimState(PinState::Ready)),
            ("RDY", None, Urc::Boot(Banner::Rdy)),
            ("SMS Ready", None, Urc::Boot(Banner::SmsReady)),
            ("+CFUN: 1", None, Urc::Boot(Banner::Cfun)),
            ("^RSSI:18", None, Urc::Noise("^RSSI:18".into())),
        ];
        for (line, pdu, expected) in cases {
            assert_eq!(&urc(line, *pdu), expected, "line {line:?}");
        }
    }

    #[test]
    fn ussd_lines_in_every_form() {
        let report = |status, text: Option<&str>, dcs| {
            Ok(UssdReport {
                status,
                text: text.map(str::to_string),
                dcs,
            })
        };
        check(cusd, "+CUSD: 2", report(2, None, None));
        check(cusd, "+CUSD: 4", report(4, None, None));
        check(cusd, "+CUSD: 0,\"Hi\",15", report(0, Some("Hi"), Some(15)));
        check(
            cusd,
            "+CUSD:1,\"1. Yes\",72",
            report(1, Some("1. Yes"), Some(72)),
        );
        check(
            cusd,
            "+CUSD: 0,\"say \"hi\"\",15",
            report(0, Some("say \"hi\""), Some(15)),
        );
        check(cusd, "+CUSD: 0,\"no dcs\"", report(0, Some("no dcs"), None));
        check(cusd, "+CUSD: 0,\"\",15", report(0, Some(""), Some(15)));
        check(
            cusd,
            "+CUSD: 0,C2303B,15",
            report(0, Some("C2303B"), Some(15)),
        );
        check(
            cusd,
            "+CUSD: 0,\"x\",300",
            Err(error("+CUSD", "+CUSD: 0,\"x\",300")),
        );
        check(
            cusd,
            "+CUSD: 0,\"open",
            Err(error("+CUSD", "+CUSD: 0,\"open")),
        );
        check(cusd, "+CUSD: ,\"x\"", Err(error("+CUSD", "+CUSD: ,\"x\"")));
    }

    #[test]
    fn callers_in_every_form() {
        check(
            clip,
            "+CLIP: \"+447700900123\",145",
            Ok(Some("+447700900123".into())),
        );
        check(
            clip,
            "+CLIP: \"447700900123\",145,,,,0",
            Ok(Some("+447700900123".into())),
        );
        check(
            clip,
            "+CLIP: \"07700900123\",129",
            Ok(Some("07700900123".into())),
        );
        check(clip, "+CLIP: \"\",128,,,,1", Ok(None));
        check(clip, "+CLIP: ,128", Ok(None));
    }

    #[test]
    fn pin_attempts_in_every_form() {
        check(cpinr, "+CPINR: SIM PIN,2,3", Ok(Some(2)));
        check(cpinr, "+CPINR: \"SIM PIN\",3,3", Ok(Some(3)));
        check(cpinr, "+CPINR:SIM PIN,0,3", Ok(Some(0)));
        check(cpinr, "+CPINR: SIM PUK,10,10", Ok(None));
        check(cpinr, "+CPINR: SIM PIN2,3,3", Ok(None));
        check(
            cpinr,
            "+CPINR: SIM PIN,,3",
            Err(error("+CPINR", "+CPINR: SIM PIN,,3")),
        );
        check(
            cpinr,
            "+CPIN: SIM PIN",
            Err(error("+CPINR:", "+CPIN: SIM PIN")),
        );
        check(huawei_cpin, "^CPIN: SIM PIN,3,10,3,10,3", Ok(3));
        check(huawei_cpin, "^CPIN: SIM PIN,2,10,2,10,3", Ok(2));
        check(huawei_cpin, "^CPIN: READY,,10,3,10,3", Ok(3));
        check(huawei_cpin, "^CPIN: SIM PUK,10,10,0,10,3", Ok(0));
        check(
            huawei_cpin,
            "^CPIN: SIM PIN,3",
            Err(error("^CPIN", "^CPIN: SIM PIN,3")),
        );
        check(qpinc, "+QPINC: \"SC\",3,10", Ok(Some(3)));
        check(qpinc, "+QPINC: \"SC\",1,10", Ok(Some(1)));
        check(qpinc, "+QPINC: \"P2\",3,10", Ok(None));
        check(
            qpinc,
            "+QPINC: \"SC\"",
            Err(error("+QPINC", "+QPINC: \"SC\"")),
        );
        check(spic, "+SPIC: 3,10,3,10", Ok(3));
        check(spic, "+SPIC: 1", Ok(1));
        check(spic, "+SPIC: ", Err(error("+SPIC", "+SPIC: ")));
        check(
            spic,
            "+SPIC: 300,10,3,10",
            Err(error("+SPIC", "+SPIC: 300,10,3,10")),
        );
    }
}
