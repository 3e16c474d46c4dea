//! Addresses: TP-OA/TP-DA/TP-RA and the SMSC field (3GPP TS 23.040 §9.1.2.5, 24.011 §8.2.5.1).

use std::fmt;

use super::{PduError, gsm7};

/// The longest alphanumeric address: 11 characters in 10 octets.
const MAX_ALPHANUMERIC_SEPTETS: usize = 11;
/// The longest numeric address: 10 octets of BCD.
const MAX_DIGITS: usize = 20;

/// Type of number, bits 6-4 of the type-of-address octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeOfNumber {
    /// 000: as dialled.
    Unknown,
    /// 001: international, shown with a `+`.
    International,
    /// 010
    National,
    /// 011
    NetworkSpecific,
    /// 100
    Subscriber,
    /// 101: GSM 7-bit packed text, such as "DHL".
    Alphanumeric,
    /// 110
    Abbreviated,
    /// 111
    Reserved,
}

impl TypeOfNumber {
    fn from_toa(toa: u8) -> TypeOfNumber {
        match (toa >> 4) & 0x07 {
            0 => TypeOfNumber::Unknown,
            1 => TypeOfNumber::International,
            2 => TypeOfNumber::National,
            3 => TypeOfNumber::NetworkSpecific,
            4 => TypeOfNumber::Subscriber,
            5 => TypeOfNumber::Alphanumeric,
            6 => TypeOfNumber::Abbreviated,
            _ => TypeOfNumber::Reserved,
        }
    }
}

/// An address with its type-of-address octet kept as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The type-of-address octet: `0x91` international, `0x81` unknown, `0xD0` alphanumeric.
    pub toa: u8,
    /// Digits (without `+`; `*`, `#`, `a`, `b`, `c` for the BCD extension nibbles) or, for an
    /// alphanumeric address, its text.
    pub value: String,
}

impl Address {
    /// Parses a number as a user writes it: `+` then digits is international (TOA 0x91), plain
    /// digits are sent as dialled (TOA 0x81). Spaces, dashes and brackets are not accepted: a
    /// gateway should not guess at what was meant.
    pub fn from_number(number: &str) -> Result<Address, PduError> {
        let (toa, digits) = match number.strip_prefix('+') {
            Some(digits) => (0x91, digits),
            None => (0x81, number),
        };
        if digits.is_empty()
            || digits.len() > MAX_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(PduError::BadAddress(number.to_string()));
        }
        Ok(Address {
            toa,
            value: digits.to_string(),
        })
    }

    /// An alphanumeric originator such as "DHL": at most 11 septets of the GSM alphabet.
    pub fn alphanumeric(name: &str) -> Result<Address, PduError> {
        match gsm7::encode(name) {
            Ok(septets) if !septets.is_empty() && septets.len() <= MAX_ALPHANUMERIC_SEPTETS => {
                Ok(Address {
                    toa: 0xD0,
                    value: name.to_string(),
                })
            }
            _ => Err(PduError::BadAddress(name.to_string())),
        }
    }

    /// A number (`+…` or digits) or, failing that, an alphanumeric name.
    pub fn parse(text: &str) -> Result<Address, PduError> {
        Address::from_number(text).or_else(|_| Address::alphanumeric(text))
    }

    /// The type of number from the TOA octet.
    pub fn type_of_number(&self) -> TypeOfNumber {
        TypeOfNumber::from_toa(self.toa)
    }

    /// Whether this is an alphanumeric address.
    pub fn is_alphanumeric(&self) -> bool {
        self.type_of_number() == TypeOfNumber::Alphanumeric
    }

    /// Decodes the value octets of an address: BCD digits, or packed text when alphanumeric.
    /// `semi_octets` is the length field of a TP address (for the SMSC field, twice the octets).
    pub(super) fn from_value(toa: u8, value: &[u8], semi_octets: usize) -> Address {
        let value = if TypeOfNumber::from_toa(toa) == TypeOfNumber::Alphanumeric {
            let count = semi_octets * 4 / 7;
            gsm7::unpack(value, 0, count)
                .map(|septets| gsm7::decode(&septets))
                .unwrap_or_default()
        } else {
            decode_bcd(value, semi_octets)
        };
        Address { toa, value }
    }

    /// The value octets and the count of useful semi-octets (the TP address length field).
    pub(super) fn value_octets(&self) -> Result<(Vec<u8>, usize), PduError> {
        if self.is_alphanumeric() {
            let septets =
                gsm7::encode(&self.value).map_err(|_| PduError::BadAddress(self.value.clone()))?;
            if septets.len() > MAX_ALPHANUMERIC_SEPTETS {
                return Err(PduError::BadAddress(self.value.clone()));
            }
            // 23.040 §9.1.2.5: the length counts the semi-octets actually used.
            let semi_octets = (septets.len() * 7).div_ceil(4);
            let mut octets = Vec::with_capacity(semi_octets.div_ceil(2));
            gsm7::pack_into(&mut octets, &septets, 0);
            return Ok((octets, semi_octets));
        }
        let digits =
            encode_bcd(&self.value).ok_or_else(|| PduError::BadAddress(self.value.clone()))?;
        Ok((digits, self.value.len()))
    }
}

impl fmt::Display for Address {
    /// International numbers with `+`, others as they came.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.type_of_number() == TypeOfNumber::International && !self.value.is_empty() {
            f.write_str("+")?;
        }
        f.write_str(&self.value)
    }
}

/// Reads swapped-nibble BCD: `44 77 00 09 10 32` is "447700900123". `F` is filler; other
/// nibbles above 9 are the BCD extension characters, kept rather than refused (a ZTE status
/// report is known to carry garbage digits).
fn decode_bcd(octets: &[u8], semi_octets: usize) -> String {
    let mut digits = String::with_capacity(semi_octets);
    for nibble in octets
        .iter()
        .flat_map(|octet| [octet & 0x0F, octet >> 4])
        .take(semi_octets)
    {
        match nibble {
            0..=9 => digits.push(char::from(b'0' + nibble)),
            0x0A => digits.push('*'),
            0x0B => digits.push('#'),
            0x0C => digits.push('a'),
            0x0D => digits.push('b'),
            0x0E => digits.push('c'),
            _ => {}
        }
    }
    digits
}

fn encode_bcd(digits: &str) -> Option<Vec<u8>> {
    let nibbles = digits
        .chars()
        .map(|c| match c {
            '0'..='9' => Some(c as u8 - b'0'),
            '*' => Some(0x0A),
            '#' => Some(0x0B),
            'a' => Some(0x0C),
            'b' => Some(0x0D),
            'c' => Some(0x0E),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()?;
    if nibbles.len() > MAX_DIGITS {
        return None;
    }
    Some(
        nibbles
            .chunks(2)
            .map(|pair| pair[0] | (pair.get(1).copied().unwrap_or(0x0F) << 4))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_value(address: &Address, length: usize, hex: &str) {
        let (octets, semi_octets) = address.value_octets().expect("encodable");
        assert_eq!(
            (semi_octets, hex::encode_upper(&octets).as_str()),
            (length, hex)
        );
        assert_eq!(
            &Address::from_value(address.toa, &octets, semi_octets),
            address
        );
    }

    #[test]
    fn numbers_encode_as_the_reference_shows() {
        check_value(
            &Address::from_number("+447700900123").unwrap(),
            12,
            "447700091032",
        );
        check_value(
            &Address::from_number("07700900123").unwrap(),
            11,
            "7007900021F3",
        );
    }

    #[test]
    fn alphanumeric_names_count_used_semi_octets() {
        check_value(
            &Address::alphanumeric("InfoSMS").unwrap(),
            13,
            "49B7F93D6D4E01",
        );
        check_value(
            &Address::alphanumeric("Megafon").unwrap(),
            13,
            "CDF2396C7EBB01",
        );
        let dhl = Address::alphanumeric("DHL").unwrap();
        assert_eq!(dhl.value_octets().unwrap().1, 6);
        check_value(&dhl, 6, "442413");
        let eleven = Address::alphanumeric("InternetSMS").unwrap();
        assert_eq!(eleven.value_octets().unwrap().1, 0x14);
    }

    #[test]
    fn bad_numbers_are_refused() {
        for bad in ["", "+", "+44 7700", "0800-FLOWERS", "123456789012345678901"] {
            assert!(Address::from_number(bad).is_err(), "{bad:?}");
        }
        assert!(Address::alphanumeric("TwelveChars!").is_err());
        assert!(Address::alphanumeric("Çava😀").is_err());
    }

    #[test]
    fn display_adds_plus_only_for_international() {
        assert_eq!(Address::parse("+4477").unwrap().to_string(), "+4477");
        assert_eq!(Address::parse("0770").unwrap().to_string(), "0770");
        assert_eq!(Address::parse("DHL").unwrap().to_string(), "DHL");
    }

    #[test]
    fn garbage_nibbles_decode_tolerantly() {
        assert_eq!(decode_bcd(&[0x21, 0xBA, 0xDC], 6), "12*#ab");
        assert_eq!(decode_bcd(&[0x21, 0xF3], 4), "123");
    }
}
