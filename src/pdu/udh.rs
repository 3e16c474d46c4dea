//! The user data header (3GPP TS 23.040 §9.2.3.24), concatenation, segmentation of long text
//! and the rules for reassembling it.

use std::collections::BTreeMap;

use super::{Address, Alphabet, Body, PduError, UserData, gsm7};

/// The most parts a concatenated message can have: the count is one octet.
pub const MAX_PARTS: usize = 255;
/// User data holds 140 octets, 160 septets.
pub const MAX_USER_DATA_OCTETS: usize = 140;
/// 140 octets of 7-bit septets.
pub const MAX_USER_DATA_SEPTETS: usize = 160;

/// IEI of concatenation with an 8-bit reference.
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI of concatenation with a 16-bit reference.
pub const IEI_CONCAT_16: u8 = 0x08;

/// One information element, kept whole whether we understand it or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformationElement {
    /// The information element identifier.
    pub iei: u8,
    /// Its data, without IEI and length.
    pub data: Vec<u8>,
}

/// A user data header: its information elements, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Udh {
    /// The elements, unknown ones included.
    pub elements: Vec<InformationElement>,
}

/// The concatenation reference, which also tells the header size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConcatReference {
    /// IEI 0x00: a 6-octet header, 153 GSM characters per part.
    Eight(u8),
    /// IEI 0x08: a 7-octet header, 152 GSM characters per part.
    Sixteen(u16),
}

impl ConcatReference {
    /// The reference number.
    pub fn value(self) -> u16 {
        match self {
            ConcatReference::Eight(value) => u16::from(value),
            ConcatReference::Sixteen(value) => value,
        }
    }

    /// 8 or 16.
    pub fn bits(self) -> u8 {
        match self {
            ConcatReference::Eight(_) => 8,
            ConcatReference::Sixteen(_) => 16,
        }
    }
}

/// Where one part sits in a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// The reference shared by all parts.
    pub reference: ConcatReference,
    /// How many parts the message has.
    pub total: u8,
    /// This part's number, from 1.
    pub sequence: u8,
}

impl Udh {
    /// Parses the header octets that follow the UDHL octet.
    pub fn parse(octets: &[u8]) -> Result<Udh, PduError> {
        let mut elements = Vec::new();
        let mut rest = octets;
        while let [iei, length, tail @ ..] = rest {
            let length = usize::from(*length);
            let data = tail.get(..length).ok_or(PduError::BadHeader(
                "an information element overruns the header",
            ))?;
            elements.push(InformationElement {
                iei: *iei,
                data: data.to_vec(),
            });
            rest = &tail[length..];
        }
        if !rest.is_empty() {
            return Err(PduError::BadHeader("a lone octet at the end of the header"));
        }
        Ok(Udh { elements })
    }

    /// A header holding only a concatenation element.
    pub fn concatenation(concat: Concat) -> Udh {
        let element = match concat.reference {
            ConcatReference::Eight(reference) => InformationElement {
                iei: IEI_CONCAT_8,
                data: vec![reference, concat.total, concat.sequence],
            },
            ConcatReference::Sixteen(reference) => {
                let [high, low] = reference.to_be_bytes();
                InformationElement {
                    iei: IEI_CONCAT_16,
                    data: vec![high, low, concat.total, concat.sequence],
                }
            }
        };
        Udh {
            elements: vec![element],
        }
    }

    /// The concatenation element, if there is a valid one. 23.040 §9.2.3.24.1: an element with
    /// a total or sequence of 0, or a sequence above the total, is ignored, not the message.
    pub fn concat(&self) -> Option<Concat> {
        self.elements.iter().find_map(|element| {
            let concat = match (element.iei, element.data.as_slice()) {
                (IEI_CONCAT_8, &[reference, total, sequence]) => Concat {
                    reference: ConcatReference::Eight(reference),
                    total,
                    sequence,
                },
                (IEI_CONCAT_16, &[high, low, total, sequence]) => Concat {
                    reference: ConcatReference::Sixteen(u16::from_be_bytes([high, low])),
                    total,
                    sequence,
                },
                _ => return None,
            };
            (concat.total > 0 && concat.sequence > 0 && concat.sequence <= concat.total)
                .then_some(concat)
        })
    }

    /// The header as it goes into user data, UDHL octet first.
    pub fn to_octets(&self) -> Vec<u8> {
        let mut octets = vec![0];
        for element in &self.elements {
            octets.push(element.iei);
            // An element holds at most 255 octets; longer data cannot come from a parse and
            // would overflow the header anyway, which the user data encoder refuses.
            octets.push(element.data.len().min(255) as u8);
            octets.extend_from_slice(&element.data);
        }
        octets[0] = (octets.len() - 1).min(255) as u8;
        octets
    }

    /// Octets the header takes in user data, UDHL octet included.
    pub fn len(&self) -> usize {
        1 + self
            .elements
            .iter()
            .map(|element| 2 + element.data.len())
            .sum::<usize>()
    }

    /// Whether the header has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }
}

/// Septets a header of `octets` (UDHL included) takes, fill bits included (23.040 §9.2.3.24).
pub fn header_septets(octets: usize) -> usize {
    (octets * 8).div_ceil(7)
}

/// The alphabet for `text`: GSM 7-bit when every character is in the default alphabet or its
/// extension table, else UCS-2.
pub fn choose_alphabet(text: &str) -> Alphabet {
    if gsm7::is_encodable(text) {
        Alphabet::Gsm7
    } else {
        Alphabet::Ucs2
    }
}

/// Splits `text` into the user data of one or more parts, in order. One part when it fits
/// (160 septets, 70 UTF-16 units); otherwise each part carries a concatenation header with
/// `reference`, and neither an escape pair nor a surrogate pair is ever cut in two.
pub fn split(
    text: &str,
    alphabet: Alphabet,
    reference: ConcatReference,
) -> Result<Vec<UserData>, PduError> {
    let unit_len = |c: char| -> Result<usize, PduError> {
        match alphabet {
            Alphabet::Gsm7 => gsm7::char_len(c).ok_or(PduError::NotGsm7(c)),
            Alphabet::Ucs2 => Ok(c.len_utf16()),
            // 8-bit data is bytes; text is never sent that way.
            Alphabet::EightBit => Err(PduError::BodyMismatch(alphabet)),
        }
    };
    let capacity = |header_octets: usize| match alphabet {
        Alphabet::Gsm7 => MAX_USER_DATA_SEPTETS - header_septets(header_octets),
        _ => (MAX_USER_DATA_OCTETS - header_octets) / 2,
    };

    let mut total_units = 0;
    for c in text.chars() {
        total_units += unit_len(c)?;
    }
    if total_units <= capacity(0) {
        return Ok(vec![UserData {
            header: None,
            body: Body::Text(text.to_string()),
        }]);
    }

    let header_octets = Udh::concatenation(Concat {
        reference,
        total: 1,
        sequence: 1,
    })
    .len();
    let per_part = capacity(header_octets);
    let mut chunks = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (at, c) in text.char_indices() {
        let units = unit_len(c)?;
        if used + units > per_part {
            chunks.push(&text[start..at]);
            (start, used) = (at, 0);
        }
        used += units;
    }
    chunks.push(&text[start..]);
    if chunks.len() > MAX_PARTS {
        return Err(PduError::TooManyParts(chunks.len()));
    }

    let total = chunks.len() as u8;
    Ok(chunks
        .into_iter()
        .zip(1..=total)
        .map(|(chunk, sequence)| UserData {
            header: Some(Udh::concatenation(Concat {
                reference,
                total,
                sequence,
            })),
            body: Body::Text(chunk.to_string()),
        })
        .collect())
}

/// What identifies the parts of one concatenated message: the originator, the reference (with
/// its width: an 8-bit and a 16-bit 42 are different messages) and the total.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConcatKey {
    /// The originator as displayed (`+447700900123`, `DHL`).
    pub originator: String,
    /// The concatenation reference.
    pub reference: ConcatReference,
    /// The part count.
    pub total: u8,
}

impl ConcatKey {
    /// The key for a part from `originator` carrying `concat`.
    pub fn new(originator: &Address, concat: &Concat) -> ConcatKey {
        ConcatKey {
            originator: originator.to_string(),
            reference: concat.reference,
            total: concat.total,
        }
    }
}

/// What [`Reassembly::add`] did with a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new part.
    New,
    /// The part was already there: the first copy is kept.
    Duplicate,
    /// A sequence number of 0 or above the total: ignored.
    OutOfRange,
}

/// The parts of one concatenated message collected so far, in sequence order whatever order
/// they arrive in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembly<T> {
    total: u8,
    parts: BTreeMap<u8, T>,
}

impl<T> Reassembly<T> {
    /// An empty collection for a message of `total` parts.
    pub fn new(total: u8) -> Reassembly<T> {
        Reassembly {
            total,
            parts: BTreeMap::new(),
        }
    }

    /// Adds part `sequence`.
    pub fn add(&mut self, sequence: u8, part: T) -> Added {
        if sequence == 0 || sequence > self.total {
            return Added::OutOfRange;
        }
        if self.parts.contains_key(&sequence) {
            return Added::Duplicate;
        }
        self.parts.insert(sequence, part);
        Added::New
    }

    /// Whether every part is here.
    pub fn is_complete(&self) -> bool {
        self.parts.len() == usize::from(self.total)
    }

    /// The sequence numbers still missing, ascending.
    pub fn missing(&self) -> Vec<u8> {
        (1..=self.total)
            .filter(|sequence| !self.parts.contains_key(sequence))
            .collect()
    }

    /// The parts present, in sequence order.
    pub fn parts(&self) -> impl Iterator<Item = (u8, &T)> {
        self.parts.iter().map(|(&sequence, part)| (sequence, part))
    }
}

impl<T: AsRef<str>> Reassembly<T> {
    /// The text of the parts present, in order (gaps simply left out).
    pub fn text(&self) -> String {
        self.parts.values().map(AsRef::as_ref).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(parts: &[UserData]) -> Vec<&str> {
        parts
            .iter()
            .map(|part| match &part.body {
                Body::Text(text) => text.as_str(),
                Body::Data(_) => panic!("text expected"),
            })
            .collect()
    }

    fn check_split(text: &str, alphabet: Alphabet, reference: ConcatReference, sizes: &[usize]) {
        let parts = split(text, alphabet, reference).expect("splits");
        let got: Vec<usize> = texts(&parts).iter().map(|t| t.chars().count()).collect();
        assert_eq!(got, sizes);
        assert_eq!(texts(&parts).concat(), text);
    }

    #[test]
    fn capacities_follow_the_reference_table() {
        let eight = ConcatReference::Eight(1);
        let sixteen = ConcatReference::Sixteen(1);
        check_split(&"a".repeat(160), Alphabet::Gsm7, eight, &[160]);
        check_split(&"a".repeat(161), Alphabet::Gsm7, eight, &[153, 8]);
        check_split(&"a".repeat(306), Alphabet::Gsm7, eight, &[153, 153]);
        check_split(&"a".repeat(161), Alphabet::Gsm7, sixteen, &[152, 9]);
        check_split(&"ж".repeat(70), Alphabet::Ucs2, eight, &[70]);
        check_split(&"ж".repeat(71), Alphabet::Ucs2, eight, &[67, 4]);
        check_split(&"ж".repeat(71), Alphabet::Ucs2, sixteen, &[66, 5]);
    }

    #[test]
    fn an_escape_pair_never_straddles_two_parts() {
        // 152 plain characters, then '€' (2 septets) would end at septet 154 > 153.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        check_split(&text, Alphabet::Gsm7, ConcatReference::Eight(1), &[152, 11]);
        // 80 escapes take exactly 160 septets: one part.
        check_split(
            &"€".repeat(80),
            Alphabet::Gsm7,
            ConcatReference::Eight(1),
            &[80],
        );
    }

    #[test]
    fn a_surrogate_pair_never_straddles_two_parts() {
        let text = format!("{}😀{}", "a".repeat(66), "b".repeat(10));
        check_split(&text, Alphabet::Ucs2, ConcatReference::Eight(1), &[66, 11]);
        check_split(
            &"😀".repeat(35),
            Alphabet::Ucs2,
            ConcatReference::Eight(1),
            &[35],
        );
    }

    #[test]
    fn parts_carry_their_concatenation_header() {
        let parts = split(
            &"x".repeat(400),
            Alphabet::Gsm7,
            ConcatReference::Eight(0x2A),
        )
        .expect("splits");
        let headers: Vec<Vec<u8>> = parts
            .iter()
            .map(|part| part.header.as_ref().expect("header").to_octets())
            .collect();
        assert_eq!(
            headers,
            [
                [5, 0, 3, 0x2A, 3, 1],
                [5, 0, 3, 0x2A, 3, 2],
                [5, 0, 3, 0x2A, 3, 3]
            ]
        );
        let part = split(
            &"x".repeat(200),
            Alphabet::Gsm7,
            ConcatReference::Sixteen(0xBEEF),
        )
        .expect("splits");
        assert_eq!(
            part[1].header.as_ref().expect("header").to_octets(),
            [6, 8, 4, 0xBE, 0xEF, 2, 2]
        );
    }

    #[test]
    fn at_most_255_parts() {
        let reference = ConcatReference::Eight(1);
        assert_eq!(
            split(&"a".repeat(153 * 255), Alphabet::Gsm7, reference).map(|p| p.len()),
            Ok(255)
        );
        assert_eq!(
            split(&"a".repeat(153 * 255 + 1), Alphabet::Gsm7, reference),
            Err(PduError::TooManyParts(256))
        );
        assert_eq!(
            split("naïve", Alphabet::Gsm7, reference),
            Err(PduError::NotGsm7('ï'))
        );
    }

    #[test]
    fn alphabet_choice() {
        assert_eq!(
            choose_alphabet("Total: 12€ [ok] {a|b} ~^\\"),
            Alphabet::Gsm7
        );
        assert_eq!(choose_alphabet("Grüße 😀"), Alphabet::Ucs2);
        assert_eq!(choose_alphabet("back`tick"), Alphabet::Ucs2);
    }

    #[test]
    fn headers_keep_unknown_elements_and_ignore_bad_concatenation() {
        // Application ports (05), then 8-bit concatenation, then an unknown element 0x70.
        let octets = [
            0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x07, 0x02, 0x01, 0x70, 0x00,
        ];
        let udh = Udh::parse(&octets).expect("valid");
        assert_eq!(udh.elements.len(), 3);
        assert_eq!(
            udh.elements[2],
            InformationElement {
                iei: 0x70,
                data: vec![]
            }
        );
        assert_eq!(
            udh.concat(),
            Some(Concat {
                reference: ConcatReference::Eight(7),
                total: 2,
                sequence: 1
            })
        );
        assert_eq!(udh.to_octets()[1..], octets);
        assert_eq!(udh.len(), octets.len() + 1);

        for bad in [
            [0x00, 0x03, 0x07, 0x02, 0x00],
            [0x00, 0x03, 0x07, 0x02, 0x03],
            [0x00, 0x03, 0x07, 0x00, 0x00],
        ] {
            assert_eq!(
                Udh::parse(&bad).expect("well formed").concat(),
                None,
                "{bad:02X?}"
            );
        }
        assert!(Udh::parse(&[0x00, 0x03, 0x07]).is_err());
        assert!(Udh::parse(&[0x00, 0x00, 0x07]).is_err());
    }

    #[test]
    fn parts_group_by_originator_reference_width_and_total() {
        let sender = Address::parse("+447700900123").expect("valid");
        let part = |reference, total| {
            ConcatKey::new(
                &sender,
                &Concat {
                    reference,
                    total,
                    sequence: 1,
                },
            )
        };
        let key = part(ConcatReference::Eight(42), 2);
        assert_eq!(key, part(ConcatReference::Eight(42), 2));
        assert_ne!(key, part(ConcatReference::Sixteen(42), 2));
        assert_ne!(key, part(ConcatReference::Eight(42), 3));
        let other = ConcatKey::new(
            &Address::parse("DHL").expect("valid"),
            &Concat {
                reference: ConcatReference::Eight(42),
                total: 2,
                sequence: 1,
            },
        );
        assert_ne!(key, other);
    }

    #[test]
    fn reassembly_orders_parts_and_tolerates_duplicates() {
        let mut message = Reassembly::new(3);
        assert_eq!(message.add(3, "c"), Added::New);
        assert_eq!(message.add(1, "a"), Added::New);
        assert_eq!(message.add(1, "A"), Added::Duplicate);
        assert_eq!(message.add(4, "d"), Added::OutOfRange);
        assert_eq!(message.add(0, "z"), Added::OutOfRange);
        assert!(!message.is_complete());
        assert_eq!(message.missing(), [2]);
        assert_eq!(message.text(), "ac");
        assert_eq!(message.add(2, "b"), Added::New);
        assert!(message.is_complete());
        assert_eq!(message.text(), "abc");
        assert_eq!(
            message
                .parts()
                .map(|(sequence, _)| sequence)
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }
}
