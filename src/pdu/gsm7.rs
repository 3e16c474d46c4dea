//! The GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1) and septet packing (§6.1.2.1).
//!
//! Text becomes septets (one per basic character, two per extension character: `ESC` then the
//! code), and septets become octets packed LSB-first. Headers and fill bits are the caller's
//! business (`udh`), but packing starts at any septet offset so that they can be left in place.

/// The escape septet: the next septet is read from the extension table.
pub const ESCAPE: u8 = 0x1B;

/// The basic table, indexed by septet. 0x1B (escape) is shown as a space (23.038 §6.2.1.1: a
/// receiver without a further extension table displays a space for `ESC ESC`).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: the septet after `ESC`, and the character it stands for.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septets for ASCII characters, built once from [`BASIC`] and [`EXTENSION`]: 0 means "not in
/// the alphabet" (`@` is the only ASCII character at septet 0 and is special-cased).
const ASCII_TO_SEPTETS: [u16; 128] = ascii_table();

const fn ascii_table() -> [u16; 128] {
    // Each entry is `septet + 1` for a basic character, `(code + 1) << 8 | ESC + 1` for an
    // extension character, so that 0 can mean "absent".
    let mut table = [0u16; 128];
    let mut septet = 0;
    while septet < 128 {
        let c = BASIC[septet] as u32;
        if c < 128 && septet != ESCAPE as usize {
            table[c as usize] = septet as u16 + 1;
        }
        septet += 1;
    }
    let mut i = 0;
    while i < EXTENSION.len() {
        let (code, c) = EXTENSION[i];
        let c = c as u32;
        if c < 128 {
            table[c as usize] = ((code as u16 + 1) << 8) | (ESCAPE as u16 + 1);
        }
        i += 1;
    }
    table
}

/// The septets for one character: one for the basic table, two (`ESC`, code) for the extension
/// table, none when the character is not in the GSM alphabet.
pub fn char_septets(c: char) -> Option<([u8; 2], usize)> {
    if (c as u32) < 128 {
        let entry = ASCII_TO_SEPTETS[c as usize];
        return match entry {
            0 => None,
            e if e >> 8 == 0 => Some(([(e - 1) as u8, 0], 1)),
            e => Some(([ESCAPE, ((e >> 8) - 1) as u8], 2)),
        };
    }
    // Septet 0x1B (escape) shows as an ASCII space, so this finds only real characters.
    if let Some(septet) = BASIC.iter().position(|&b| b == c) {
        return Some(([septet as u8, 0], 1));
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(code, _)| ([ESCAPE, code], 2))
}

/// How many septets `c` takes, or `None` when it is not in the GSM alphabet.
pub fn char_len(c: char) -> Option<usize> {
    char_septets(c).map(|(_, len)| len)
}

/// Whether every character of `text` is in the default alphabet or its extension table.
pub fn is_encodable(text: &str) -> bool {
    text.chars().all(|c| char_septets(c).is_some())
}

/// The septets for `text`, or the first character that the GSM alphabet lacks.
pub fn encode(text: &str) -> Result<Vec<u8>, char> {
    let mut septets = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (pair, len) = char_septets(c).ok_or(c)?;
        septets.extend_from_slice(&pair[..len]);
    }
    Ok(septets)
}

/// The text for `septets`. Never fails: an unknown code after `ESC` reads as the basic-table
/// character for that code, and a trailing `ESC` as a space (23.038 §6.2.1.1).
pub fn decode(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(septet) = iter.next() {
        if septet != ESCAPE {
            text.push(BASIC[septet as usize]);
            continue;
        }
        match iter.next() {
            Some(code) => match EXTENSION.iter().find(|&&(e, _)| e == code) {
                Some(&(_, c)) => text.push(c),
                None => text.push(BASIC[code as usize]),
            },
            None => text.push(' '),
        }
    }
    text
}

/// Appends `septets` packed LSB-first to `out`, the first one starting `fill_bits` bits into the
/// first new octet (the fill bits after a user data header, 23.040 §9.2.3.24).
pub fn pack_into(out: &mut Vec<u8>, septets: &[u8], fill_bits: usize) {
    let start = out.len();
    let total_bits = fill_bits + septets.len() * 7;
    out.resize(start + total_bits.div_ceil(8), 0);
    let packed = &mut out[start..];
    let mut bit = fill_bits;
    for &septet in septets {
        let septet = u16::from(septet & 0x7F) << (bit % 8);
        let byte = bit / 8;
        packed[byte] |= septet as u8;
        if let Some(next) = packed.get_mut(byte + 1) {
            *next |= (septet >> 8) as u8;
        }
        bit += 7;
    }
}

/// Packs `septets` into octets with no fill bits.
pub fn pack(septets: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((septets.len() * 7).div_ceil(8));
    pack_into(&mut out, septets, 0);
    out
}

/// Fills 7 spare bits at the end of packed user data with CR, given the bits used in its last
/// octets (23.038 §6.1.2.1.1): a receiver that counts octets instead of septets then sees an
/// invisible CR rather than a stray '@'. Addresses keep their spare bits zero.
pub fn pad_with_cr(packed: &mut [u8], used_bits: usize) {
    if used_bits % 8 == 1 {
        if let Some(last) = packed.last_mut() {
            *last |= 0x0D << 1;
        }
    }
}

/// Reads `count` septets from `octets`, starting `skip_bits` bits in. Returns `None` when the
/// octets end first.
pub fn unpack(octets: &[u8], skip_bits: usize, count: usize) -> Option<Vec<u8>> {
    let needed = count.checked_mul(7)?.checked_add(skip_bits)?;
    if octets.len().checked_mul(8)? < needed {
        return None;
    }
    let mut septets = Vec::with_capacity(count);
    let mut bit = skip_bits;
    for _ in 0..count {
        let byte = bit / 8;
        let low = u16::from(octets[byte]);
        let high = u16::from(octets.get(byte + 1).copied().unwrap_or(0));
        septets.push((((high << 8 | low) >> (bit % 8)) & 0x7F) as u8);
        bit += 7;
    }
    Some(septets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_pack(text: &str, hex: &str) {
        let septets = encode(text).expect("encodable");
        let packed = pack(&septets);
        assert_eq!(hex::encode_upper(&packed), hex, "packing {text:?}");
        let back = unpack(&packed, 0, septets.len()).expect("enough octets");
        assert_eq!(decode(&back), text);
    }

    #[test]
    fn packs_as_the_reference_shows() {
        check_pack("Hello", "C8329BFD06");
        check_pack("Hello from the Pi", "C8329BFD0699E5EF36888E2E83A069");
        check_pack("", "");
    }

    #[test]
    fn seven_spare_bits_carry_cr() {
        // 7 septets fill 49 bits: 7 bits of the 7th octet are spare and hold CR (0x0D << 1).
        let mut packed = pack(&encode("1234567").expect("digits"));
        pad_with_cr(&mut packed, 49);
        assert_eq!(packed[6], 0x1A);
        assert_eq!(
            decode(&unpack(&packed, 0, 8).expect("8 septets")),
            "1234567\r"
        );
        // 6 septets leave 6 spare bits: nothing to pad.
        let mut packed = pack(&encode("123456").expect("digits"));
        let before = packed.clone();
        pad_with_cr(&mut packed, 42);
        assert_eq!(packed, before);
    }

    #[test]
    fn every_basic_and_extension_character_round_trips() {
        for septet in 0..128u8 {
            if septet == ESCAPE {
                continue;
            }
            let c = BASIC[septet as usize];
            assert_eq!(char_septets(c), Some(([septet, 0], 1)), "{c:?}");
        }
        for &(code, c) in &EXTENSION {
            assert_eq!(char_septets(c), Some(([ESCAPE, code], 2)), "{c:?}");
            assert_eq!(decode(&[ESCAPE, code]), c.to_string());
        }
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused() {
        for c in ['`', 'á', 'ç', '😀', 'Ж', '\t'] {
            assert_eq!(char_septets(c), None, "{c:?}");
        }
        assert_eq!(encode("ok`"), Err('`'));
    }

    #[test]
    fn odd_escapes_decode_as_the_spec_says() {
        // Unknown extension code: the basic character for that code.
        assert_eq!(decode(&[ESCAPE, 0x41]), "A");
        // A trailing escape with nothing after it.
        assert_eq!(decode(&[0x41, ESCAPE]), "A ");
        // 0x5F is '§', not a backtick (python-gsmmodem gets this wrong).
        assert_eq!(decode(&[0x5F]), "§");
    }

    #[test]
    fn unpack_refuses_to_read_past_the_end() {
        assert_eq!(unpack(&[0xC8, 0x32], 0, 3), None);
        assert_eq!(unpack(&[0xC8, 0x32], 0, 2), Some(vec![0x48, 0x65]));
        assert_eq!(unpack(&[1, 2, 3], 0, usize::MAX), None);
        assert_eq!(unpack(&[1, 2, 3], usize::MAX, 1), None);
    }
}
