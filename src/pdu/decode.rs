//! The decoders: one nom function per field of the layouts in 23.040 §9.2.2.
//!
//! All of them are nom *complete* parsers over the whole PDU; a field that runs past the end
//! is [`PduError::Truncated`] naming the field. Lengths are checked before they are trusted, and
//! user data is read by TP-UDL, never by the bytes left, so that the padding some modems append
//! (NULs, `FF`) is ignored.

use nom::bytes::complete::take;
use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};

use super::udh::{MAX_USER_DATA_OCTETS, MAX_USER_DATA_SEPTETS, header_septets};
use super::{
    Address, Alphabet, Body, Dcs, Deliver, Pdu, PduError, Status, StatusReport, Submit, Timestamp,
    Tpdu, Udh, UserData, Validity, gsm7,
};

type Res<'a, T> = IResult<&'a [u8], T, PduError>;

impl ParseError<&[u8]> for PduError {
    fn from_error_kind(_input: &[u8], _kind: ErrorKind) -> PduError {
        PduError::Truncated("PDU")
    }

    fn append(_input: &[u8], _kind: ErrorKind, other: PduError) -> PduError {
        other
    }
}

/// The longest SMSC field value: a TOA and 10 octets of digits (24.011 §8.2.5.1).
const MAX_SMSC_OCTETS: u8 = 11;
/// The longest TP address value in semi-octets (23.040 §9.1.2.5: 10 octets).
const MAX_ADDRESS_SEMI_OCTETS: u8 = 20;

pub(super) fn pdu(bytes: &[u8]) -> Result<Pdu, PduError> {
    let (rest, smsc) = smsc(bytes).map_err(into_error)?;
    Ok(Pdu {
        smsc,
        tpdu: tpdu(rest)?,
    })
}

pub(super) fn tpdu(bytes: &[u8]) -> Result<Tpdu, PduError> {
    let first = *bytes.first().ok_or(PduError::Truncated("first octet"))?;
    let parsed = match first & 0x03 {
        0b00 => deliver(bytes).map(|(rest, deliver)| (rest, Tpdu::Deliver(deliver))),
        0b01 => submit(bytes).map(|(rest, submit)| (rest, Tpdu::Submit(submit))),
        0b10 => status_report(bytes).map(|(rest, report)| (rest, Tpdu::StatusReport(report))),
        _ => return Err(PduError::ReservedMessageType),
    };
    parsed.map(|(_padding, tpdu)| tpdu).map_err(into_error)
}

fn into_error(error: nom::Err<PduError>) -> PduError {
    match error {
        nom::Err::Error(error) | nom::Err::Failure(error) => error,
        nom::Err::Incomplete(_) => PduError::Truncated("PDU"),
    }
}

fn fail<T>(error: PduError) -> Result<T, nom::Err<PduError>> {
    Err(nom::Err::Failure(error))
}

fn octet<'a>(field: &'static str) -> impl Fn(&'a [u8]) -> Res<'a, u8> {
    move |input| octets(1, field)(input).map(|(rest, bytes)| (rest, bytes[0]))
}

fn octets<'a>(count: usize, field: &'static str) -> impl Fn(&'a [u8]) -> Res<'a, &'a [u8]> {
    move |input| {
        take::<_, _, ()>(count)
            .parse(input)
            .map_err(|_| nom::Err::Failure(PduError::Truncated(field)))
    }
}

fn seven<'a>(field: &'static str) -> impl Fn(&'a [u8]) -> Res<'a, [u8; 7]> {
    move |input| {
        let (rest, bytes) = octets(7, field)(input)?;
        let mut array = [0; 7];
        array.copy_from_slice(bytes);
        Ok((rest, array))
    }
}

/// The SMSC field: its length counts octets (TOA included), and `00` means none.
fn smsc(input: &[u8]) -> Res<'_, Option<Address>> {
    let (input, length) = octet("SMSC length")(input)?;
    if length == 0 {
        return Ok((input, None));
    }
    if length > MAX_SMSC_OCTETS {
        return fail(PduError::BadLength {
            field: "SMSC address",
            value: usize::from(length),
        });
    }
    let (input, toa) = octet("SMSC type of address")(input)?;
    let (input, value) = octets(usize::from(length - 1), "SMSC address")(input)?;
    let address = Address::from_value(toa, value, value.len() * 2);
    Ok((input, (!address.value.is_empty()).then_some(address)))
}

/// A TP address: its length counts the useful semi-octets, not octets.
fn address<'a>(field: &'static str) -> impl Fn(&'a [u8]) -> Res<'a, Address> {
    move |input| {
        let (input, semi_octets) = octet(field)(input)?;
        if semi_octets > MAX_ADDRESS_SEMI_OCTETS {
            return fail(PduError::BadLength {
                field,
                value: usize::from(semi_octets),
            });
        }
        let (input, toa) = octet(field)(input)?;
        let (input, value) = octets(usize::from(semi_octets).div_ceil(2), field)(input)?;
        Ok((
            input,
            Address::from_value(toa, value, usize::from(semi_octets)),
        ))
    }
}

fn deliver(input: &[u8]) -> Res<'_, Deliver> {
    let (input, first) = octet("first octet")(input)?;
    let (input, sender) = address("originating address")(input)?;
    let (input, pid) = octet("protocol identifier")(input)?;
    let (input, dcs) = octet("data coding scheme")(input)?;
    let (input, timestamp) = seven("service centre timestamp")(input)?;
    let (input, user_data) = user_data(first & 0x40 != 0, Dcs(dcs))(input)?;
    Ok((
        input,
        Deliver {
            no_more_messages: first & 0x04 != 0,
            loop_prevention: first & 0x08 != 0,
            status_report_indication: first & 0x20 != 0,
            reply_path: first & 0x80 != 0,
            sender,
            pid,
            dcs: Dcs(dcs),
            timestamp: Timestamp::from_octets(timestamp),
            user_data,
        },
    ))
}

fn submit(input: &[u8]) -> Res<'_, Submit> {
    let (input, first) = octet("first octet")(input)?;
    let (input, message_reference) = octet("message reference")(input)?;
    let (input, recipient) = address("destination address")(input)?;
    let (input, pid) = octet("protocol identifier")(input)?;
    let (input, dcs) = octet("data coding scheme")(input)?;
    let (input, validity) = match (first >> 3) & 0x03 {
        0b10 => {
            let (input, code) = octet("validity period")(input)?;
            (input, Some(Validity::Relative(code)))
        }
        0b11 => {
            let (input, stamp) = seven("validity period")(input)?;
            (
                input,
                Some(Validity::Absolute(Timestamp::from_octets(stamp))),
            )
        }
        0b01 => {
            let (input, octets) = seven("validity period")(input)?;
            (input, Some(Validity::Enhanced(octets)))
        }
        _ => (input, None),
    };
    let (input, user_data) = user_data(first & 0x40 != 0, Dcs(dcs))(input)?;
    Ok((
        input,
        Submit {
            reject_duplicates: first & 0x04 != 0,
            status_report_request: first & 0x20 != 0,
            reply_path: first & 0x80 != 0,
            message_reference,
            recipient,
            pid,
            dcs: Dcs(dcs),
            validity,
            user_data,
        },
    ))
}

fn status_report(input: &[u8]) -> Res<'_, StatusReport> {
    let (input, first) = octet("first octet")(input)?;
    let (input, message_reference) = octet("message reference")(input)?;
    let (input, recipient) = address("recipient address")(input)?;
    let (input, timestamp) = seven("service centre timestamp")(input)?;
    let (input, discharge_time) = seven("discharge time")(input)?;
    let (input, status) = octet("status")(input)?;
    let mut report = StatusReport {
        no_more_messages: first & 0x04 != 0,
        loop_prevention: first & 0x08 != 0,
        reports_command: first & 0x20 != 0,
        message_reference,
        recipient,
        timestamp: Timestamp::from_octets(timestamp),
        discharge_time: Timestamp::from_octets(discharge_time),
        status: Status(status),
        pid: None,
        dcs: None,
        user_data: None,
    };
    // The optional part (TP-PI onwards) is often absent or padding. What it adds is a nicety,
    // the status above is what matters, so a broken optional part is dropped, not fatal.
    let input = match optional_parameters(input, first & 0x40 != 0) {
        Ok((rest, (pid, dcs, user_data))) => {
            (report.pid, report.dcs, report.user_data) = (pid, dcs, user_data);
            rest
        }
        Err(_) => input,
    };
    Ok((input, report))
}

type Optional = (Option<u8>, Option<Dcs>, Option<UserData>);

fn optional_parameters(input: &[u8], udhi: bool) -> Res<'_, Optional> {
    let Some((&indicator, input)) = input.split_first() else {
        return Ok((input, (None, None, None)));
    };
    // 23.040 §9.2.3.27: a PI of FF is padding. Bit 7 says another PI octet follows; those
    // carry no fields defined yet, so they are skipped.
    if indicator == 0xFF {
        return Ok((input, (None, None, None)));
    }
    let mut input = input;
    let mut extension = indicator;
    while extension & 0x80 != 0 {
        (input, extension) = octet("parameter indicator")(input)?;
    }
    let (input, pid) = match indicator & 0x01 {
        0 => (input, None),
        _ => octet("protocol identifier")(input).map(|(rest, pid)| (rest, Some(pid)))?,
    };
    let (input, dcs) = match indicator & 0x02 {
        0 => (input, None),
        _ => octet("data coding scheme")(input).map(|(rest, dcs)| (rest, Some(Dcs(dcs))))?,
    };
    let (input, user_data) = match indicator & 0x04 {
        0 => (input, None),
        _ => user_data(udhi, dcs.unwrap_or(Dcs(0)))(input)
            .map(|(rest, user_data)| (rest, Some(user_data)))?,
    };
    Ok((input, (pid, dcs, user_data)))
}

/// TP-UDL and TP-UD: septets for GSM 7-bit (header and fill included), octets otherwise.
fn user_data<'a>(udhi: bool, dcs: Dcs) -> impl Fn(&'a [u8]) -> Res<'a, UserData> {
    move |input| {
        let (input, length) = octet("user data length")(input)?;
        let length = usize::from(length);
        let septets = dcs.alphabet() == Alphabet::Gsm7 && !dcs.is_compressed();
        let (limit, octet_count) = if septets {
            (MAX_USER_DATA_SEPTETS, (length * 7).div_ceil(8))
        } else {
            (MAX_USER_DATA_OCTETS, length)
        };
        if length > limit {
            return fail(PduError::BadLength {
                field: "user data",
                value: length,
            });
        }
        let (input, data) = octets(octet_count, "user data")(input)?;

        let (header, header_octets) = match (udhi, data.split_first()) {
            (true, Some((&header_length, rest))) => {
                let header_length = usize::from(header_length);
                let Some(header) = rest.get(..header_length) else {
                    return fail(PduError::BadHeader(
                        "the header is longer than the user data",
                    ));
                };
                (
                    Some(Udh::parse(header).map_err(nom::Err::Failure)?),
                    header_length + 1,
                )
            }
            (true, None) => {
                return fail(PduError::BadHeader(
                    "TP-UDHI is set but there is no user data",
                ));
            }
            (false, _) => (None, 0),
        };

        let body = if septets {
            let skip = header_septets(header_octets);
            let Some(count) = length.checked_sub(skip) else {
                return fail(PduError::BadLength {
                    field: "user data",
                    value: length,
                });
            };
            match gsm7::unpack(data, skip * 7, count) {
                Some(septets) => Body::Text(gsm7::decode(&septets)),
                None => return fail(PduError::Truncated("user data")),
            }
        } else {
            let payload = &data[header_octets..];
            match dcs.alphabet() {
                Alphabet::Ucs2 if !dcs.is_compressed() => Body::Text(ucs2(payload)),
                _ => Body::Data(payload.to_vec()),
            }
        };
        Ok((input, UserData { header, body }))
    }
}

/// UTF-16BE, so that surrogate pairs make emoji; a lone surrogate becomes U+FFFD and an odd
/// trailing octet is dropped, as 23.038 leaves no meaning for either.
fn ucs2(octets: &[u8]) -> String {
    let units: Vec<u16> = octets
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::super::{Pdu, Tpdu};

    const E12: &str = "079144770009001006070C91447700091032423051411320404230514113504000";

    fn report(hex: &str) -> super::StatusReport {
        match Pdu::from_hex(hex).map(|pdu| pdu.tpdu) {
            Ok(Tpdu::StatusReport(report)) => report,
            other => panic!("{hex}: {other:?}"),
        }
    }

    #[test]
    fn status_report_optional_part() {
        // PI 01: a PID follows.
        assert_eq!(report(&format!("{E12}0141")).pid, Some(0x41));
        // PI FF is padding, and so is a missing part.
        assert_eq!(report(&format!("{E12}FF")).pid, None);
        assert_eq!(report(E12).pid, None);
        // PI 83 with an extension octet 00: PID and DCS come after both PI octets.
        let extended = report(&format!("{E12}83004108"));
        assert_eq!(
            (extended.pid, extended.dcs.map(|d| d.0)),
            (Some(0x41), Some(0x08))
        );
        // A broken optional part does not cost the status.
        assert_eq!(report(&format!("{E12}0408")).status.0, 0);
    }

    #[test]
    fn padding_and_junk_after_the_user_data_are_ignored() {
        let e6 = "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713";
        let clean = Pdu::from_hex(e6).expect("decodes");
        for noisy in [
            format!("{e6},0"),
            format!("{e6}FFFF"),
            format!("{e6}0000"),
            format!(" {e6}\r\n"),
        ] {
            assert_eq!(Pdu::from_hex(&noisy).as_ref(), Ok(&clean), "{noisy}");
        }
    }
}
