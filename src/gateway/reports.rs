//! Which part a status report is for, as pure rules over the candidates the store holds: the
//! TP-MR (one byte, so it wraps at 256), the recipient's last nine digits, the most recent
//! part still waiting for a report, and no part older than `report_max_age`. Also which kept
//! (unmatched) reports to try again once a TP-MR is recorded. What a matched report does to
//! the message is `lifecycle::report`.

use std::time::Duration;

use super::events::rfc3339;
use crate::pdu::{self, StatusReport};
use crate::store::{MessageReference, Reference};

/// The candidates `report` may be for, best first. `waiting` are the parts waiting for a report
/// with its TP-MR, most recent first (as `Store::references` gives them); a part qualifies if
/// it was submitted within `max_age` before `now` (Unix ms) and sent to the report's recipient.
/// The caller takes the first whose message still exists.
pub fn candidates<'a>(
    waiting: &'a [Reference],
    report: &StatusReport,
    now: u64,
    max_age: Duration,
) -> impl Iterator<Item = &'a Reference> {
    let oldest = now.saturating_sub(max_age.as_millis() as u64);
    let recipient = report.recipient.to_string();
    waiting
        .iter()
        .take_while(move |candidate| candidate.submitted_at >= oldest)
        .filter(move |candidate| same_number(&recipient, &candidate.recipient))
}

/// Whether a report's recipient is the number we sent to. SCs may report the number in
/// another format (national for international), so the last nine digits decide.
pub fn same_number(reported: &str, sent: &str) -> bool {
    let digits = |text: &str| -> Vec<u8> { text.bytes().filter(u8::is_ascii_digit).collect() };
    let (a, b) = (digits(reported), digits(sent));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let n = a.len().min(b.len()).min(9);
    a[a.len() - n..] == b[b.len() - n..]
}

/// The discharge time of a report (RFC 3339, with the SC's offset), or `now` (Unix ms) when
/// the SC sent an impossible one.
pub fn discharge_time(report: &StatusReport, now: u64) -> String {
    report
        .discharge_time
        .to_datetime()
        .map(|_| report.discharge_time.to_string())
        .unwrap_or_else(|| rfc3339(now))
}

/// Whether a reference (or a kept report) recorded for modem `recorded` (its name; "" when
/// recorded before several modems) belongs to modem `modem` (`first`: the first in the
/// config, which owns the records from before several modems). TP-MRs are per SIM, so a
/// report matches only the references of the modem it came on.
pub fn of_modem(recorded: &str, modem: &str, first: bool) -> bool {
    recorded == modem || (first && recorded.is_empty())
}

/// Of the kept unmatched reports (key, PDU hex, received Unix ms), those to try again now that
/// a part with TP-MR `reference`, handed to the modem at `since` (Unix ms), is recorded: a fast
/// report can overtake the recording of its `+CMGS`. Only one received after the part went to
/// the modem can be its report (an older one with the same TP-MR belongs to a message before
/// the wrap).
pub fn worth_rematching(
    unmatched: Vec<(Vec<u8>, String, u64)>,
    reference: MessageReference,
    since: u64,
) -> Vec<(Vec<u8>, StatusReport)> {
    unmatched
        .into_iter()
        .filter(|(_, _, at)| *at >= since)
        .filter_map(|(key, hex, _)| match pdu::Pdu::from_hex(&hex).ok()?.tpdu {
            pdu::Tpdu::StatusReport(report) => Some((key, report)),
            _ => None,
        })
        .filter(|(_, report)| report.message_reference == reference.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::{OffsetDateTime, UtcOffset};

    use super::*;
    use crate::pdu::{Address, Pdu, Status, Timestamp, Tpdu};

    #[test]
    fn a_report_matches_only_its_own_modems_references() {
        let cases = [
            // (recorded for, report on, is the first modem, belongs)
            ("modem1", "modem1", true, true),
            ("modem2", "modem1", true, false),
            ("modem1", "modem2", false, false),
            ("modem2", "modem2", false, true),
            // From before several modems: the first modem's only.
            ("", "modem1", true, true),
            ("", "modem2", false, false),
        ];
        for (recorded, modem, first, expected) in cases {
            assert_eq!(
                of_modem(recorded, modem, first),
                expected,
                "{recorded} {modem}"
            );
        }
    }

    const DAY: u64 = 86_400_000;
    const NOW: u64 = 30 * DAY;

    fn report(reference: u8, recipient: &str) -> StatusReport {
        // 2026-11-22 09:00 UTC, as an SC at +01:00 writes it.
        let offset = UtcOffset::from_hms(1, 0, 0).expect("an offset");
        let at = OffsetDateTime::from_unix_timestamp(1_795_338_000).expect("a time");
        let stamp = Timestamp::from_datetime(at.to_offset(offset));
        StatusReport {
            no_more_messages: true,
            loop_prevention: false,
            reports_command: false,
            message_reference: reference,
            recipient: Address::from_number(recipient).expect("a number"),
            timestamp: stamp,
            discharge_time: stamp,
            status: Status(0),
            pid: None,
            dcs: None,
            user_data: None,
        }
    }

    fn waiting(id: &str, part: usize, submitted_at: u64, recipient: &str) -> Reference {
        Reference {
            key: id.as_bytes().to_vec(),
            reference: MessageReference(7),
            submitted_at,
            message_id: id.into(),
            part,
            recipient: recipient.into(),
            modem: String::new(),
        }
    }

    #[test]
    fn a_report_goes_to_the_most_recent_part_to_its_recipient_within_the_age() {
        let week = Duration::from_millis(7 * DAY);
        let check = |case: &str, refs: Vec<Reference>, to: &str, expected: &[&str]| {
            let found: Vec<&str> = candidates(&refs, &report(7, to), NOW, week)
                .map(|candidate| candidate.message_id.as_str())
                .collect();
            assert_eq!(found, expected, "{case}");
        };
        let us = "+447700900123";
        let them = "+447700900999";
        check("none waiting", vec![], us, &[]);
        check("one", vec![waiting("a", 0, NOW, us)], us, &["a"]);
        check(
            "most recent first",
            vec![waiting("b", 0, NOW - 1, us), waiting("a", 0, NOW - 2, us)],
            us,
            &["b", "a"],
        );
        check(
            "another recipient is skipped",
            vec![waiting("b", 0, NOW - 1, them), waiting("a", 0, NOW - 2, us)],
            us,
            &["a"],
        );
        check(
            "national format matches",
            vec![waiting("a", 0, NOW, us)],
            "07700900123",
            &["a"],
        );
        check(
            "exactly the age still matches",
            vec![waiting("a", 0, NOW - 7 * DAY, us)],
            us,
            &["a"],
        );
        check(
            "older than the age (before the wrap) never matches",
            vec![
                waiting("b", 0, NOW, them),
                waiting("a", 1, NOW - 7 * DAY - 1, us),
            ],
            us,
            &[],
        );
    }

    #[test]
    fn reports_match_numbers_in_another_format() {
        let check = |reported: &str, sent: &str, same: bool| {
            assert_eq!(same_number(reported, sent), same, "{reported} {sent}");
        };
        check("447700900123", "+447700900123", true);
        check("07700900123", "+447700900123", true);
        check("+447700900124", "+447700900123", false);
        check("", "+447700900123", false);
        check("+447700900123", "", false);
        check("123", "+447700900123", true);
    }

    #[test]
    fn an_impossible_discharge_time_is_replaced_by_now() {
        let good = report(7, "+447700900123");
        assert_eq!(discharge_time(&good, NOW), "2026-11-22T10:00:00+01:00");
        let bad = StatusReport {
            discharge_time: Timestamp::from_octets([0x99; 7]),
            ..good
        };
        assert_eq!(discharge_time(&bad, 0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn kept_reports_are_retried_only_for_their_tp_mr_and_after_the_send() {
        let hex = |reference: u8| {
            let pdu = Pdu {
                smsc: None,
                tpdu: Tpdu::StatusReport(report(reference, "+447700900123")),
            };
            pdu.to_hex().expect("encodes")
        };
        let kept = |key: u8, hex: String, at: u64| (vec![key], hex, at);
        let check = |case: &str, unmatched: Vec<(Vec<u8>, String, u64)>, expected: &[u8]| {
            let keys: Vec<u8> = worth_rematching(unmatched, MessageReference(7), 1_000)
                .into_iter()
                .map(|(key, _)| key[0])
                .collect();
            assert_eq!(keys, expected, "{case}");
        };
        check("none kept", vec![], &[]);
        check(
            "same TP-MR after the send",
            vec![kept(1, hex(7), 1_000)],
            &[1],
        );
        check("before the send", vec![kept(1, hex(7), 999)], &[]);
        check("another TP-MR", vec![kept(1, hex(8), 2_000)], &[]);
        check("not a PDU", vec![kept(1, "zz".into(), 2_000)], &[]);
        check(
            "several, in order",
            vec![
                kept(1, hex(7), 2_000),
                kept(2, hex(8), 2_000),
                kept(3, hex(7), 3_000),
            ],
            &[1, 3],
        );
    }
}
