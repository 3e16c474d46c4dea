//! TP-DCS, the data coding scheme (3GPP TS 23.038 §4), and the message class.

use std::fmt;

/// How the user data is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// The GSM 7-bit default alphabet, packed in septets.
    Gsm7,
    /// 8-bit data: bytes, not text.
    EightBit,
    /// UCS-2, read as UTF-16BE so that surrogate pairs carry emoji.
    Ucs2,
}

impl Alphabet {
    /// The name used in JSON and events: `gsm7`, `8bit`, `ucs2`.
    pub fn name(self) -> &'static str {
        match self {
            Alphabet::Gsm7 => "gsm7",
            Alphabet::EightBit => "8bit",
            Alphabet::Ucs2 => "ucs2",
        }
    }
}

impl fmt::Display for Alphabet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The message class (23.038 §4): where the receiver puts the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageClass {
    /// Class 0, "flash": shown at once, not necessarily stored.
    Flash,
    /// Class 1: mobile-equipment specific.
    MobileEquipment,
    /// Class 2: SIM specific, forced into SIM storage.
    Sim,
    /// Class 3: terminal-equipment specific.
    TerminalEquipment,
}

impl MessageClass {
    /// The class number, 0 to 3.
    pub fn number(self) -> u8 {
        match self {
            MessageClass::Flash => 0,
            MessageClass::MobileEquipment => 1,
            MessageClass::Sim => 2,
            MessageClass::TerminalEquipment => 3,
        }
    }

    fn from_bits(bits: u8) -> MessageClass {
        match bits & 0x03 {
            0 => MessageClass::Flash,
            1 => MessageClass::MobileEquipment,
            2 => MessageClass::Sim,
            _ => MessageClass::TerminalEquipment,
        }
    }
}

/// A message-waiting indication carried by DCS groups 1100–1110.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageWaiting {
    /// 0 voicemail, 1 fax, 2 e-mail, 3 other.
    pub kind: u8,
    /// Whether the indication is being set (true) or cleared.
    pub active: bool,
    /// Group 1100: the receiver may discard the message text.
    pub discard: bool,
}

/// The TP-DCS octet, kept as received; the accessors interpret its coding groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dcs(pub u8);

impl Dcs {
    /// The general-group DCS for an alphabet and an optional class: `00`, `08`, `04`, `10`, `18`.
    pub fn new(alphabet: Alphabet, class: Option<MessageClass>) -> Dcs {
        let alphabet_bits = match alphabet {
            Alphabet::Gsm7 => 0x00,
            Alphabet::EightBit => 0x04,
            Alphabet::Ucs2 => 0x08,
        };
        let class_bits = class.map_or(0, |class| 0x10 | class.number());
        Dcs(alphabet_bits | class_bits)
    }

    /// The alphabet. Reserved values read as GSM 7-bit, as 23.038 §4 tells receivers to.
    pub fn alphabet(self) -> Alphabet {
        let dcs = self.0;
        match dcs >> 4 {
            // General and automatic-deletion groups: bits 3-2.
            0x0..=0x7 => match (dcs >> 2) & 0x03 {
                0b01 => Alphabet::EightBit,
                0b10 => Alphabet::Ucs2,
                _ => Alphabet::Gsm7,
            },
            0xE => Alphabet::Ucs2,
            0xF if dcs & 0x04 != 0 => Alphabet::EightBit,
            _ => Alphabet::Gsm7,
        }
    }

    /// The message class, when the DCS gives one.
    pub fn class(self) -> Option<MessageClass> {
        let dcs = self.0;
        match dcs >> 4 {
            0x0..=0x7 if dcs & 0x10 != 0 => Some(MessageClass::from_bits(dcs)),
            0xF => Some(MessageClass::from_bits(dcs)),
            _ => None,
        }
    }

    /// Whether the text is compressed (23.042). Nobody sends this in practice; such user data
    /// is kept as bytes rather than decoded into nonsense.
    pub fn is_compressed(self) -> bool {
        // Groups 00xx and 01xx: bit 5.
        self.0 & 0x80 == 0 && self.0 & 0x20 != 0
    }

    /// Whether the message is marked for automatic deletion (groups 01xx).
    pub fn auto_delete(self) -> bool {
        self.0 >> 6 == 0b01
    }

    /// The message-waiting indication of groups 1100–1110.
    pub fn message_waiting(self) -> Option<MessageWaiting> {
        let dcs = self.0;
        match dcs >> 4 {
            0xC..=0xE => Some(MessageWaiting {
                kind: dcs & 0x03,
                active: dcs & 0x08 != 0,
                discard: dcs >> 4 == 0xC,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dcs: u8, alphabet: Alphabet, class: Option<u8>) {
        let got = Dcs(dcs);
        assert_eq!(
            (got.alphabet(), got.class().map(MessageClass::number)),
            (alphabet, class),
            "DCS {dcs:#04X}"
        );
    }

    #[test]
    fn coding_groups_read_as_23_038_says() {
        check(0x00, Alphabet::Gsm7, None);
        check(0x08, Alphabet::Ucs2, None);
        check(0x04, Alphabet::EightBit, None);
        check(0x10, Alphabet::Gsm7, Some(0));
        check(0x18, Alphabet::Ucs2, Some(0));
        check(0x11, Alphabet::Gsm7, Some(1));
        check(0xF1, Alphabet::Gsm7, Some(1));
        check(0xF5, Alphabet::EightBit, Some(1));
        check(0xF2, Alphabet::Gsm7, Some(2));
        // Auto-deletion group: same layout as the general group.
        check(0x48, Alphabet::Ucs2, None);
        // Reserved alphabet 11 and reserved groups 1000–1011: GSM 7-bit.
        check(0x0C, Alphabet::Gsm7, None);
        check(0x80, Alphabet::Gsm7, None);
        check(0xB7, Alphabet::Gsm7, None);
        // Message waiting: GSM 7-bit for 1100/1101, UCS-2 for 1110.
        check(0xC8, Alphabet::Gsm7, None);
        check(0xD0, Alphabet::Gsm7, None);
        check(0xE8, Alphabet::Ucs2, None);
    }

    #[test]
    fn flags_and_indications() {
        assert!(Dcs(0x20).is_compressed());
        assert!(Dcs(0x60).is_compressed());
        assert!(!Dcs(0xE0).is_compressed());
        assert!(Dcs(0x40).auto_delete());
        assert_eq!(
            Dcs(0xC8).message_waiting(),
            Some(MessageWaiting {
                kind: 0,
                active: true,
                discard: true
            })
        );
        assert_eq!(Dcs(0x00).message_waiting(), None);
    }

    #[test]
    fn new_gives_the_common_values() {
        assert_eq!(Dcs::new(Alphabet::Gsm7, None), Dcs(0x00));
        assert_eq!(Dcs::new(Alphabet::Ucs2, None), Dcs(0x08));
        assert_eq!(Dcs::new(Alphabet::EightBit, None), Dcs(0x04));
        assert_eq!(
            Dcs::new(Alphabet::Gsm7, Some(MessageClass::Flash)),
            Dcs(0x10)
        );
        assert_eq!(
            Dcs::new(Alphabet::Ucs2, Some(MessageClass::Flash)),
            Dcs(0x18)
        );
    }
}
