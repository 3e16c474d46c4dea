//! TP-SCTS, TP-DT and TP-VP: timestamps with their quarter-hour offset, and validity periods
//! (3GPP TS 23.040 §9.2.3.11, §9.2.3.12).

use std::fmt;
use std::time::Duration;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A 7-octet service-centre timestamp, kept as received. Service centres do send impossible
/// stamps, so decoding never fails: [`Timestamp::to_datetime`] says whether it is a real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    raw: [u8; 7],
}

impl Timestamp {
    /// Wraps the 7 octets as they appear in a PDU.
    pub fn from_octets(raw: [u8; 7]) -> Timestamp {
        Timestamp { raw }
    }

    /// The octets as they appear in a PDU.
    pub fn octets(&self) -> [u8; 7] {
        self.raw
    }

    /// A timestamp for a date-time. The offset is rounded down to whole quarter hours, the only
    /// unit the field has, and years outside 2000–2099 are clamped into that range.
    pub fn from_datetime(datetime: OffsetDateTime) -> Timestamp {
        // The field holds whole quarter hours up to ±19:45: express the same instant in the
        // nearest such offset towards UTC, so that the moment stays right.
        let quarters = (datetime.offset().whole_minutes() / 15).clamp(-79, 79);
        let datetime = match UtcOffset::from_whole_seconds(i32::from(quarters) * 900) {
            Ok(offset) => datetime.to_offset(offset),
            Err(_) => datetime,
        };
        let magnitude = quarters.unsigned_abs() as u8;
        let year = datetime.year().clamp(2000, 2099) - 2000;
        let mut raw = [
            bcd(year as u8),
            bcd(u8::from(datetime.month())),
            bcd(datetime.day()),
            bcd(datetime.hour()),
            bcd(datetime.minute()),
            bcd(datetime.second()),
            bcd(magnitude),
        ];
        if quarters < 0 {
            raw[6] |= 0x08;
        }
        Timestamp { raw }
    }

    /// The offset from UTC in minutes, signed.
    pub fn offset_minutes(&self) -> i32 {
        let tz = self.raw[6];
        // After the nibble swap, bit 3 of the tens digit is the sign: mask 0x08 of the raw octet.
        let quarters = i32::from(tz & 0x07) * 10 + i32::from(tz >> 4);
        if tz & 0x08 != 0 {
            -quarters * 15
        } else {
            quarters * 15
        }
    }

    /// The date-time with its offset, or `None` when the octets are not a real one.
    pub fn to_datetime(&self) -> Option<OffsetDateTime> {
        let [year, month, day, hour, minute, second] =
            [0, 1, 2, 3, 4, 5].map(|i| digits(self.raw[i]));
        let date =
            Date::from_calendar_date(2000 + i32::from(year?), Month::try_from(month?).ok()?, day?)
                .ok()?;
        let time = Time::from_hms(hour?, minute?, second?).ok()?;
        let offset = UtcOffset::from_whole_seconds(self.offset_minutes() * 60).ok()?;
        Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with a numeric offset (`2024-07-04T09:15:00-05:00`), or the raw octets in hex
    /// when they are not a real date-time.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(datetime) => {
                let offset = self.offset_minutes();
                let sign = if offset < 0 { '-' } else { '+' };
                write!(
                    f,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                    datetime.year(),
                    u8::from(datetime.month()),
                    datetime.day(),
                    datetime.hour(),
                    datetime.minute(),
                    datetime.second(),
                    offset.abs() / 60,
                    offset.abs() % 60,
                )
            }
            None => write!(f, "invalid:{}", hex::encode_upper(self.raw)),
        }
    }
}

/// A swapped-nibble BCD octet as a number: `0x42` is 24. `None` for a nibble above 9.
fn digits(octet: u8) -> Option<u8> {
    let (tens, units) = (octet & 0x0F, octet >> 4);
    (tens <= 9 && units <= 9).then_some(tens * 10 + units)
}

fn bcd(value: u8) -> u8 {
    (value / 10) | ((value % 10) << 4)
}

/// TP-VP, how long the service centre keeps trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// VPF 10: one octet, a coarse scale from 5 minutes to 63 weeks.
    Relative(u8),
    /// VPF 11: an absolute expiry time.
    Absolute(Timestamp),
    /// VPF 01: the enhanced format (23.040 §9.2.3.12.3), kept as received.
    Enhanced([u8; 7]),
}

impl Validity {
    /// The shortest relative validity that covers `duration` (63 weeks at most).
    pub fn relative(duration: Duration) -> Validity {
        let minutes = duration.as_secs().div_ceil(60);
        let code = match minutes {
            0..=720 => minutes.div_ceil(5).saturating_sub(1),
            721..=1440 => 143 + (minutes - 720).div_ceil(30),
            1441..=43_200 => 166 + minutes.div_ceil(1440),
            _ => (192 + minutes.div_ceil(10_080)).min(255),
        };
        Validity::Relative(code as u8)
    }

    /// The period as a duration, when it is one (absolute validity is a point in time).
    pub fn duration(&self) -> Option<Duration> {
        match *self {
            Validity::Relative(code) => Some(relative_duration(code)),
            Validity::Absolute(_) => None,
            Validity::Enhanced(octets) => match octets[0] & 0x07 {
                1 => Some(relative_duration(octets[1])),
                2 => Some(Duration::from_secs(u64::from(octets[1]))),
                3 => {
                    let [h, m, s] = [octets[1], octets[2], octets[3]].map(digits);
                    let seconds = u64::from(h?) * 3600 + u64::from(m?) * 60 + u64::from(s?);
                    Some(Duration::from_secs(seconds))
                }
                _ => None,
            },
        }
    }

    /// The TP-VPF bits (4-3) of the first octet for this format.
    pub(super) fn format_bits(&self) -> u8 {
        match self {
            Validity::Relative(_) => 0b10 << 3,
            Validity::Absolute(_) => 0b11 << 3,
            Validity::Enhanced(_) => 0b01 << 3,
        }
    }

    /// The name used in JSON: `relative`, `absolute`, `enhanced`.
    pub fn format_name(&self) -> &'static str {
        match self {
            Validity::Relative(_) => "relative",
            Validity::Absolute(_) => "absolute",
            Validity::Enhanced(_) => "enhanced",
        }
    }
}

fn relative_duration(code: u8) -> Duration {
    let code = u64::from(code);
    let minutes = match code {
        0..=143 => (code + 1) * 5,
        144..=167 => 720 + (code - 143) * 30,
        168..=196 => (code - 166) * 1440,
        _ => (code - 192) * 10_080,
    };
    Duration::from_secs(minutes * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_timestamp(hex: &str, rfc3339: &str) {
        let octets: [u8; 7] = hex::decode(hex).expect("hex").try_into().expect("7 octets");
        let stamp = Timestamp::from_octets(octets);
        assert_eq!(stamp.to_string(), rfc3339, "{hex}");
        if let Some(datetime) = stamp.to_datetime() {
            assert_eq!(
                Timestamp::from_datetime(datetime),
                stamp,
                "{hex} round trip"
            );
        }
    }

    #[test]
    fn timestamps_keep_their_signed_quarter_hour_offset() {
        check_timestamp("42305141035440", "2024-03-15T14:30:45+01:00");
        check_timestamp("4270409051000A", "2024-07-04T09:15:00-05:00");
        check_timestamp("21405291651569", "2012-04-25T19:56:51-04:00");
        check_timestamp("42211332959500", "2024-12-31T23:59:59+00:00");
        // +05:45 (Nepal) is 23 quarters.
        check_timestamp("42305141035432", "2024-03-15T14:30:45+05:45");
    }

    #[test]
    fn offsets_that_are_not_quarter_hours_keep_the_instant() {
        let date = Date::from_calendar_date(2024, Month::March, 15).expect("valid");
        let offset = UtcOffset::from_whole_seconds(-7 * 60).expect("valid");
        let odd = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(offset);
        let stamp = Timestamp::from_datetime(odd);
        assert_eq!(stamp.to_datetime(), Some(odd));
        assert_eq!(stamp.offset_minutes(), 0);
    }

    #[test]
    fn impossible_timestamps_decode_but_say_so() {
        // Month 13, then February 30th, then a non-decimal nibble.
        for hex in ["42315141035440", "42200341035440", "4A305141035440"] {
            let octets: [u8; 7] = hex::decode(hex).unwrap().try_into().unwrap();
            let stamp = Timestamp::from_octets(octets);
            assert_eq!(stamp.to_datetime(), None, "{hex}");
            assert_eq!(stamp.to_string(), format!("invalid:{hex}"));
        }
    }

    #[test]
    fn relative_validity_follows_the_table() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        for (code, expected) in [
            (0x00, 5),
            (0x8F, 720),
            (0x90, 750),
            (0xA7, 1440),
            (0xA8, 2 * 1440),
            (0xAA, 4 * 1440),
            (0xC4, 30 * 1440),
            (0xC5, 5 * 10_080),
            (0xFF, 63 * 10_080),
        ] {
            assert_eq!(relative_duration(code), minutes(expected), "{code:#04X}");
            assert_eq!(
                Validity::relative(minutes(expected)),
                Validity::Relative(code)
            );
        }
        // Durations between steps round up, so a message is never dropped early.
        assert_eq!(Validity::relative(minutes(6)), Validity::Relative(1));
        assert_eq!(Validity::relative(minutes(1441)), Validity::Relative(0xA8));
        assert_eq!(Validity::relative(Duration::ZERO), Validity::Relative(0));
        assert_eq!(
            Validity::relative(minutes(10_000_000)),
            Validity::Relative(0xFF)
        );
    }

    #[test]
    fn enhanced_validity_formats() {
        let enhanced = |octets: [u8; 7]| Validity::Enhanced(octets).duration();
        assert_eq!(
            enhanced([1, 0xA7, 0, 0, 0, 0, 0]),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            enhanced([2, 90, 0, 0, 0, 0, 0]),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            enhanced([3, 0x10, 0x00, 0x54, 0, 0, 0]),
            Some(Duration::from_secs(3645))
        );
        assert_eq!(enhanced([0, 0, 0, 0, 0, 0, 0]), None);
    }
}
