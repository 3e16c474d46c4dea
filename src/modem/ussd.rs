//! USSD text both ways, pure: the request string of `AT+CUSD=1,<str>,<dcs>` and the text of a
//! `+CUSD:` answer (docs/at-sms.md §8).
//!
//! The `<dcs>` is the cell broadcast data coding scheme (TS 23.038 §5): groups 0000–0011 and
//! 1111 with bit 2 clear are the GSM 7-bit default alphabet, 01xx says the alphabet in bits
//! 3–2 (00 GSM 7-bit, 01 8-bit data, 10 UCS-2), 0001 0000 is GSM 7-bit after a language (two
//! characters and a CR), 0001 0001 is UCS-2 after a language (two GSM 7-bit characters packed
//! into two octets). [`decode_answer`] drops the language from both. What a modem puts in `<str>` for a GSM 7-bit answer depends on the vendor and on
//! `AT+CSCS`: plain text (most), the packed septets as hex (Huawei E-series sticks), or one
//! septet per octet as hex (Huawei and ZTE with some firmware). UCS-2 answers are hex of
//! UTF-16BE. [`decode_answer`] tells these apart; [`encode_request`] writes the request the way
//! the configured [`RequestEncoding`] says, since Huawei sticks refuse plain text there.

use crate::pdu::gsm7;

/// The `<dcs>` for a GSM 7-bit request, language unspecified (TS 23.038 §5, 0000 1111).
pub const DCS_GSM7: u8 = 15;
/// A UCS-2 `<dcs>` (TS 23.038 §5, 0100 1000), as UCS-2 answers usually carry.
pub const DCS_UCS2: u8 = 72;

/// How the request string goes to the modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestEncoding {
    /// The code as text: `AT+CUSD=1,"*100#",15` (27.007 with `AT+CSCS="IRA"` or `"GSM"`).
    #[default]
    Text,
    /// The code as packed GSM 7-bit hex: `AT+CUSD=1,"AA180C3602",15` (Huawei sticks).
    PackedHex,
}

impl RequestEncoding {
    /// The config word for it.
    pub fn name(self) -> &'static str {
        match self {
            RequestEncoding::Text => "text",
            RequestEncoding::PackedHex => "packed_hex",
        }
    }

    /// The encoding a config word names.
    pub fn from_name(name: &str) -> Option<RequestEncoding> {
        match name {
            "text" => Some(RequestEncoding::Text),
            "packed_hex" => Some(RequestEncoding::PackedHex),
            _ => None,
        }
    }
}

/// Why a USSD request or answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UssdError {
    /// The code is empty, too long, or has a character USSD cannot carry in GSM 7-bit.
    #[error("invalid USSD code {0:?}: use digits, *, # and GSM 7-bit characters, at most 160")]
    InvalidCode(String),
    /// The answer is 8-bit data or uses a coding this decoder does not read.
    #[error("USSD answer in an unsupported coding (dcs {dcs}): {text}")]
    Unsupported {
        /// The `<dcs>`.
        dcs: u8,
        /// The raw string.
        text: String,
    },
}

/// The `<str>` and `<dcs>` of `AT+CUSD=1,<str>,<dcs>` for `code`.
pub fn encode_request(code: &str, encoding: RequestEncoding) -> Result<(String, u8), UssdError> {
    let invalid = || UssdError::InvalidCode(code.to_string());
    // A quote or a control character would end or break the AT command line.
    if code.is_empty() || code.chars().count() > 160 || code.chars().any(|c| c == '"' || c < ' ') {
        return Err(invalid());
    }
    let septets = gsm7::encode(code).map_err(|_| invalid())?;
    match encoding {
        RequestEncoding::Text => Ok((code.to_string(), DCS_GSM7)),
        RequestEncoding::PackedHex => {
            let mut packed = gsm7::pack(&septets);
            // 7 spare bits at the end are a CR, not '@' (TS 23.038 §6.1.2.3.1).
            gsm7::pad_with_cr(&mut packed, septets.len() * 7);
            Ok((hex::encode_upper(packed), DCS_GSM7))
        }
    }
}

/// The alphabet a USSD `<dcs>` names (TS 23.038 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UssdAlphabet {
    /// The GSM 7-bit default alphabet.
    Gsm7,
    /// GSM 7-bit preceded by a language: two characters (ISO 639) and a CR (0001 0000).
    Gsm7WithLanguage,
    /// UCS-2 (UTF-16BE here, as modems send it).
    Ucs2,
    /// UCS-2 preceded by a language: two GSM 7-bit characters packed into two octets, the
    /// last two bits 0 (0001 0001).
    Ucs2WithLanguage,
    /// 8-bit data, or a reserved coding.
    Other,
}

/// Which alphabet `dcs` says; no `<dcs>` reads as GSM 7-bit, as 27.007 defaults it.
pub fn alphabet(dcs: Option<u8>) -> UssdAlphabet {
    let Some(dcs) = dcs else {
        return UssdAlphabet::Gsm7;
    };
    match dcs >> 4 {
        0b0000 | 0b0010 | 0b0011 => UssdAlphabet::Gsm7,
        0b0001 if dcs == 0x10 => UssdAlphabet::Gsm7WithLanguage,
        0b0001 if dcs == 0x11 => UssdAlphabet::Ucs2WithLanguage,
        0b0001 => UssdAlphabet::Gsm7,
        0b0100..=0b0111 | 0b1001 => match (dcs >> 2) & 0b11 {
            0b00 => UssdAlphabet::Gsm7,
            0b10 => UssdAlphabet::Ucs2,
            _ => UssdAlphabet::Other,
        },
        0b1111 if dcs & 0b100 == 0 => UssdAlphabet::Gsm7,
        // Reserved groups read as GSM 7-bit (TS 23.038 §5: "treated as ... default alphabet").
        0b1000 | 0b1010..=0b1110 => UssdAlphabet::Gsm7,
        _ => UssdAlphabet::Other,
    }
}

/// The text of a `+CUSD:` answer's `<str>` with its `<dcs>`.
pub fn decode_answer(text: &str, dcs: Option<u8>) -> Result<String, UssdError> {
    match alphabet(dcs) {
        UssdAlphabet::Ucs2 => Ok(ucs2(text).unwrap_or_else(|| text.to_string())),
        UssdAlphabet::Ucs2WithLanguage => {
            let body = text.get(4..).filter(|_| packed_language(text));
            Ok(ucs2(body.unwrap_or(text)).unwrap_or_else(|| text.to_string()))
        }
        UssdAlphabet::Gsm7 => Ok(gsm7_answer(text)),
        UssdAlphabet::Gsm7WithLanguage => Ok(without_language(gsm7_answer(text))),
        UssdAlphabet::Other => Err(UssdError::Unsupported {
            dcs: dcs.unwrap_or_default(),
            text: text.to_string(),
        }),
    }
}

/// Whether hex `text` starts with a language as UCS-2 answers carry it: two octets (four hex
/// digits, not two UCS-2 characters) that unpack to two GSM 7-bit letters. A modem that
/// dropped the language itself leaves a UCS-2 character there, which does not read so.
fn packed_language(text: &str) -> bool {
    let Some(octets) = text.get(..4).and_then(|head| hex::decode(head).ok()) else {
        return false;
    };
    gsm7::unpack(&octets, 0, 2).is_some_and(|septets| {
        septets.len() == 2
            && gsm7::decode(&septets)
                .chars()
                .all(|c| c.is_ascii_alphabetic())
    })
}

/// A GSM 7-bit text without its leading language: two letters and a CR (TS 23.038 §5). Kept
/// whole when it does not start that way (a modem that dropped the language itself).
fn without_language(text: String) -> String {
    let mut chars = text.chars();
    let language = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.next() == Some('\r');
    if language { chars.collect() } else { text }
}

/// UTF-16BE from hex, when it is hex of whole code units; lone surrogates become U+FFFD.
fn ucs2(text: &str) -> Option<String> {
    if text.is_empty() || text.len() % 4 != 0 {
        return None;
    }
    let octets = hex::decode(text).ok()?;
    let units: Vec<u16> = octets
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// A GSM 7-bit answer in any of its three forms. Hex is taken as hex only when it is at least
/// four digits, even, and not a plain decimal number (an answer "1234" is text); then one
/// septet per octet when every octet is below 0x80 and reads as text, else packed septets.
fn gsm7_answer(text: &str) -> String {
    let looks_hex = text.len() >= 4
        && text.len() % 2 == 0
        && text.bytes().all(|b| b.is_ascii_hexdigit())
        && !text.bytes().all(|b| b.is_ascii_digit());
    let Some(octets) = looks_hex.then(|| hex::decode(text).ok()).flatten() else {
        return text.to_string();
    };
    if octets.iter().all(|&octet| octet < 0x80) && reads_as_text(&octets) {
        return gsm7::decode(&octets);
    }
    let count = octets.len() * 8 / 7;
    let Some(mut septets) = gsm7::unpack(&octets, 0, count) else {
        return text.to_string();
    };
    // With 7 spare bits the last septet is padding: a CR by the rules, a zero ('@') from some
    // networks.
    if octets.len() % 7 == 0 && matches!(septets.last(), Some(0x0D | 0x00)) {
        septets.pop();
    }
    gsm7::decode(&septets)
}

/// Whether unpacked septets look like a message: letters, digits, spaces and punctuation
/// (not the Greek capitals and control codes packed octets produce when read one by one).
fn reads_as_text(septets: &[u8]) -> bool {
    let printable = septets
        .iter()
        .filter(|&&septet| septet == 0x0A || septet == 0x0D || (0x20..0x7F).contains(&septet))
        .count();
    printable * 10 >= septets.len() * 9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_as_text_or_packed_hex() {
        let check = |code: &str, encoding, expected: Result<(&str, u8), UssdError>| {
            let expected = expected.map(|(text, dcs)| (text.to_string(), dcs));
            assert_eq!(encode_request(code, encoding), expected, "{code:?}");
        };
        check("*100#", RequestEncoding::Text, Ok(("*100#", 15)));
        // "*100#" packed: the value Huawei sticks are known to take.
        check("*100#", RequestEncoding::PackedHex, Ok(("AA180C3602", 15)));
        // 7 characters leave 7 spare bits, filled with CR.
        check(
            "*123*1#",
            RequestEncoding::PackedHex,
            Ok(("AA986CA68A8D1A", 15)),
        );
        let invalid = |code: &str| Err(UssdError::InvalidCode(code.into()));
        check("", RequestEncoding::Text, invalid(""));
        check("*1\"#", RequestEncoding::Text, invalid("*1\"#"));
        check("*1\r#", RequestEncoding::Text, invalid("*1\r#"));
        check("*1€#", RequestEncoding::Text, Ok(("*1€#", 15)));
        check("*1ж#", RequestEncoding::Text, invalid("*1ж#"));
    }

    #[test]
    fn answers_in_every_vendor_form() {
        let check = |text: &str, dcs: Option<u8>, expected: &str| {
            assert_eq!(
                decode_answer(text, dcs).as_deref(),
                Ok(expected),
                "{text:?} {dcs:?}"
            );
        };
        // Plain text, with or without a dcs; numbers stay numbers.
        check("Balance: 12.50 EUR", Some(15), "Balance: 12.50 EUR");
        check("Balance: 12.50 EUR", None, "Balance: 12.50 EUR");
        check("1234", Some(15), "1234");
        check("", Some(15), "");
        // Huawei: packed septets as hex ("Balance 5" packed).
        let packed = {
            let septets = gsm7::encode("Balance 5").unwrap_or_default();
            hex::encode_upper(gsm7::pack(&septets))
        };
        check(&packed, Some(15), "Balance 5");
        // 7 characters packed with the CR padding, and with a zero pad.
        check("AA986CA68A8D1A", Some(15), "*123*1#");
        check("AA986CA68A8D00", Some(15), "*123*1#");
        // One septet per octet as hex ("Bal 5$" has '$' at 0x02 in GSM 7-bit).
        check("42616C616E6365203502206F6B", Some(15), "Balance 5$ ok");
        check("42616C616E63653A2031302E3030", Some(0x0F), "Balance: 10.00");
        // UCS-2 hex, in both common dcs values, and after a language.
        check("00420061006C0020043F", Some(72), "Bal п");
        check("0042", Some(0x48), "B");
        // UCS-2 after a language: "en" packed into two octets (0x65 0x37), then the text.
        check("6537004200610020", Some(0x11), "Ba ");
        check("65370042", Some(0x11), "B");
        // Without the language a modem may have dropped: kept whole.
        check("00420061", Some(0x11), "Ba");
        // GSM 7-bit after a language and a CR, as text and as packed septets.
        check("en\rBalance: 5.00", Some(0x10), "Balance: 5.00");
        let packed = {
            let septets = gsm7::encode("de\rGuthaben 3,20 EUR").unwrap_or_default();
            hex::encode_upper(gsm7::pack(&septets))
        };
        check(&packed, Some(0x10), "Guthaben 3,20 EUR");
        // Without the language a modem may have dropped: kept whole.
        check("Balance: 5.00", Some(0x10), "Balance: 5.00");
        // UCS-2 that is not hex is kept as sent (a modem that decoded it already).
        check("Привет", Some(72), "Привет");
        assert!(decode_answer("00FF", Some(0x44)).is_err());
    }

    #[test]
    fn dcs_groups() {
        use UssdAlphabet::*;
        let cases = [
            (None, Gsm7),
            (Some(0x00), Gsm7),
            (Some(0x0F), Gsm7),
            (Some(0x10), Gsm7WithLanguage),
            (Some(0x12), Gsm7),
            (Some(0x11), Ucs2WithLanguage),
            (Some(0x20), Gsm7),
            (Some(0x40), Gsm7),
            (Some(0x44), Other),
            (Some(0x48), Ucs2),
            (Some(0x58), Ucs2),
            (Some(0x98), Ucs2),
            (Some(0xF0), Gsm7),
            (Some(0xF4), Other),
        ];
        for (dcs, expected) in cases {
            assert_eq!(alphabet(dcs), expected, "{dcs:?}");
        }
    }
}
