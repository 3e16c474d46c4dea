//! The time shapes of the formats, from the native events' RFC 3339 strings and Unix times.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Unix seconds of an RFC 3339 time; `None` when it does not parse.
pub(super) fn unix(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (SMSGateway24's datetimes).
pub(super) fn datetime(unix: i64) -> String {
    let (date, clock) = parts(unix);
    format!("{date} {clock}")
}

/// ISO 8601 with milliseconds and an explicit offset, `+00:00` (SMSGate's times).
pub(super) fn iso8601(unix: i64) -> String {
    let (date, clock) = parts(unix);
    format!("{date}T{clock}.000+00:00")
}

/// `YYYY-MM-DD` and `HH:MM:SS` in UTC.
fn parts(unix: i64) -> (String, String) {
    let time = OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(UtcOffset::UTC);
    let date = format!(
        "{:04}-{:02}-{:02}",
        time.year(),
        u8::from(time.month()),
        time.day()
    );
    let clock = format!(
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    (date, clock)
}
