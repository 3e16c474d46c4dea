//! The encoders: the inverse of `decode`, field by field (23.040 §9.2.2).

use super::udh::{MAX_USER_DATA_OCTETS, MAX_USER_DATA_SEPTETS, header_septets};
use super::{
    Address, Alphabet, Body, Deliver, PduError, StatusReport, Submit, UserData, Validity, gsm7,
};

/// The SMSC field: `00`, or a length in octets, the TOA and BCD digits.
pub(super) fn smsc(smsc: Option<&Address>) -> Result<Vec<u8>, PduError> {
    let Some(address) = smsc else {
        return Ok(vec![0]);
    };
    if address.is_alphanumeric() {
        return Err(PduError::BadAddress(address.value.clone()));
    }
    let (value, _) = address.value_octets()?;
    let mut field = vec![(value.len() + 1) as u8, address.toa];
    field.extend(value);
    Ok(field)
}

pub(super) fn submit_first_octet(submit: &Submit) -> u8 {
    0b01 | flag(submit.reject_duplicates, 0x04)
        | submit.validity.as_ref().map_or(0, Validity::format_bits)
        | flag(submit.status_report_request, 0x20)
        | flag(submit.user_data.header.is_some(), 0x40)
        | flag(submit.reply_path, 0x80)
}

pub(super) fn deliver_first_octet(deliver: &Deliver) -> u8 {
    flag(deliver.no_more_messages, 0x04)
        | flag(deliver.loop_prevention, 0x08)
        | flag(deliver.status_report_indication, 0x20)
        | flag(deliver.user_data.header.is_some(), 0x40)
        | flag(deliver.reply_path, 0x80)
}

pub(super) fn status_report_first_octet(report: &StatusReport) -> u8 {
    0b10 | flag(report.no_more_messages, 0x04)
        | flag(report.loop_prevention, 0x08)
        | flag(report.reports_command, 0x20)
        | flag(
            report
                .user_data
                .as_ref()
                .is_some_and(|user_data| user_data.header.is_some()),
            0x40,
        )
}

pub(super) fn submit(submit: &Submit) -> Result<Vec<u8>, PduError> {
    let mut out = vec![submit_first_octet(submit), submit.message_reference];
    address(&mut out, &submit.recipient)?;
    out.extend([submit.pid, submit.dcs.0]);
    match &submit.validity {
        Some(Validity::Relative(code)) => out.push(*code),
        Some(Validity::Absolute(stamp)) => out.extend(stamp.octets()),
        Some(Validity::Enhanced(octets)) => out.extend(octets),
        None => {}
    }
    user_data(
        &mut out,
        &submit.user_data,
        submit.dcs.alphabet(),
        submit.dcs.is_compressed(),
    )?;
    Ok(out)
}

pub(super) fn deliver(deliver: &Deliver) -> Result<Vec<u8>, PduError> {
    let mut out = vec![deliver_first_octet(deliver)];
    address(&mut out, &deliver.sender)?;
    out.extend([deliver.pid, deliver.dcs.0]);
    out.extend(deliver.timestamp.octets());
    user_data(
        &mut out,
        &deliver.user_data,
        deliver.dcs.alphabet(),
        deliver.dcs.is_compressed(),
    )?;
    Ok(out)
}

pub(super) fn status_report(report: &StatusReport) -> Result<Vec<u8>, PduError> {
    let mut out = vec![status_report_first_octet(report), report.message_reference];
    address(&mut out, &report.recipient)?;
    out.extend(report.timestamp.octets());
    out.extend(report.discharge_time.octets());
    out.push(report.status.0);
    let indicator = flag(report.pid.is_some(), 0x01)
        | flag(report.dcs.is_some(), 0x02)
        | flag(report.user_data.is_some(), 0x04);
    if indicator != 0 {
        out.push(indicator);
        out.extend(report.pid);
        out.extend(report.dcs.map(|dcs| dcs.0));
        if let Some(data) = &report.user_data {
            let dcs = report.dcs.unwrap_or_default();
            user_data(&mut out, data, dcs.alphabet(), dcs.is_compressed())?;
        }
    }
    Ok(out)
}

fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

fn address(out: &mut Vec<u8>, address: &Address) -> Result<(), PduError> {
    let (value, semi_octets) = address.value_octets()?;
    out.extend([semi_octets as u8, address.toa]);
    out.extend(value);
    Ok(())
}

/// TP-UDL and TP-UD. For GSM 7-bit the text starts at the septet boundary after the header.
fn user_data(
    out: &mut Vec<u8>,
    data: &UserData,
    alphabet: Alphabet,
    compressed: bool,
) -> Result<(), PduError> {
    let header = data
        .header
        .as_ref()
        .map(|udh| udh.to_octets())
        .unwrap_or_default();
    if header.len() > MAX_USER_DATA_OCTETS {
        return Err(PduError::UserDataTooLong(header.len()));
    }
    match (&data.body, alphabet) {
        (Body::Text(text), Alphabet::Gsm7) if !compressed => {
            let septets = gsm7::encode(text).map_err(PduError::NotGsm7)?;
            let skip = if header.is_empty() {
                0
            } else {
                header_septets(header.len())
            };
            let length = skip + septets.len();
            if length > MAX_USER_DATA_SEPTETS {
                return Err(PduError::UserDataTooLong((length * 7).div_ceil(8)));
            }
            out.push(length as u8);
            let start = out.len();
            out.extend(&header);
            gsm7::pack_into(out, &septets, skip * 7 - header.len() * 8);
            gsm7::pad_with_cr(&mut out[start..], length * 7);
        }
        (Body::Text(text), Alphabet::Ucs2) if !compressed => {
            let length = header.len() + text.encode_utf16().count() * 2;
            if length > MAX_USER_DATA_OCTETS {
                return Err(PduError::UserDataTooLong(length));
            }
            out.push(length as u8);
            out.extend(&header);
            out.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        }
        (Body::Data(bytes), _) if compressed || alphabet == Alphabet::EightBit => {
            let length = header.len() + bytes.len();
            if length > MAX_USER_DATA_OCTETS {
                return Err(PduError::UserDataTooLong(length));
            }
            out.push(length as u8);
            out.extend(&header);
            out.extend(bytes);
        }
        _ => return Err(PduError::BodyMismatch(alphabet)),
    }
    Ok(())
}

/// TP-UDL for `data` under `alphabet`: septets for GSM 7-bit, octets otherwise. `None` when the
/// body cannot be coded that way.
pub(super) fn user_data_length(
    data: &UserData,
    alphabet: Alphabet,
    compressed: bool,
) -> Option<usize> {
    let mut out = Vec::new();
    user_data(&mut out, data, alphabet, compressed).ok()?;
    out.first().map(|&length| usize::from(length))
}
