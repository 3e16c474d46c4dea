//! Every key layout of the store's trees, built and read back in one place, so the orderings
//! the scans rely on are written down once. Numbers are big-endian so that sled's byte order
//! is their numeric order. (The webhook trees' per-endpoint keys are in `webhooks.rs`.)

use super::model::MessageReference;

/// The `meta` key of the layout version.
pub(super) const SCHEMA_VERSION: &[u8] = b"schema_version";
/// The `meta` key of the last event sequence number.
pub(super) const EVENT_SEQUENCE: &[u8] = b"event_sequence";
/// The `meta` key of the newest time known to be right (Unix ms): the clock rule's floor.
pub(super) const CLOCK_FLOOR: &[u8] = b"clock_floor";
/// The `meta` key of the last message number given (outbound and inbound share it).
pub(super) const MESSAGE_NUMBER: &[u8] = b"message_number";

/// A big-endian `u64` value (counters, times); `None` when it is not 8 bytes.
pub(super) fn read_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The `meta` key of an endpoint's delivery counter (the webhook body's `sequence`).
pub(super) fn endpoint_sequence_key(endpoint: &str) -> Vec<u8> {
    format!("endpoint_sequence/{endpoint}").into_bytes()
}

/// `events` keys: the sequence number, so the log reads oldest first.
pub(super) fn event_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// `outbox` keys (and `unmatched_reports` keys): an id from sled's generator, so the queue
/// reads oldest first.
pub(super) fn queue_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// `jobs` keys: the endpoint name, a 0 byte, the due time and the event sequence, so each
/// endpoint scans its own queue earliest due first (`due_of` reads the time back).
pub fn job_key(endpoint: &str, due_ms: u64, event_sequence: u64) -> Vec<u8> {
    let mut key = endpoint.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(&event_sequence.to_be_bytes());
    key
}

/// `awaiting_reports` keys: the time the report is due at the latest, then the message id, so
/// the expiry sweep reads only the overdue front of the tree.
pub(super) fn awaiting_key(due: u64, id: &str) -> Vec<u8> {
    let mut key = due.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

/// The first `awaiting_reports` key due after `due_by`: every key due at `due_by` sorts
/// before it, whatever its id.
pub(super) fn awaiting_end(due_by: u64) -> [u8; 8] {
    due_by.saturating_add(1).to_be_bytes()
}

/// The message id of an `awaiting_reports` key.
pub(super) fn awaiting_id(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned()
}

/// `refs` keys: the TP-MR, the submission time, the part index, the message id, then a 0
/// byte and the name of the modem that submitted the part, so one TP-MR's candidates are a
/// prefix scan in submission order and a report matches only its own modem's parts. Keys
/// written before several modems end at the id: their modem reads back as "" (the first).
pub(super) fn reference_key(
    reference: MessageReference,
    at: u64,
    id: &str,
    part: usize,
    modem: &str,
) -> Vec<u8> {
    let mut key = vec![reference.0];
    key.extend_from_slice(&at.to_be_bytes());
    key.extend_from_slice(&(part as u32).to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    if !modem.is_empty() {
        key.push(0);
        key.extend_from_slice(modem.as_bytes());
    }
    key
}

/// A `refs` key read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReferenceKey {
    /// The TP-MR.
    pub reference: MessageReference,
    /// When the part was submitted (Unix ms).
    pub at: u64,
    /// The part index.
    pub part: usize,
    /// The message id.
    pub id: String,
    /// The modem that submitted the part; "" for keys from before several modems.
    pub modem: String,
}

/// Reads a `refs` key; `None` when it is too short to be one.
pub(super) fn parse_reference_key(key: &[u8]) -> Option<ReferenceKey> {
    let reference = MessageReference(*key.first()?);
    let at = read_u64(key.get(1..9)?)?;
    let part = <[u8; 4]>::try_from(key.get(9..13)?).ok()?;
    let rest = key.get(13..)?;
    let (id, modem) = match rest.iter().position(|&b| b == 0) {
        Some(end) => (&rest[..end], rest.get(end + 1..).unwrap_or_default()),
        None => (rest, &[][..]),
    };
    Some(ReferenceKey {
        reference,
        at,
        part: u32::from_be_bytes(part) as usize,
        id: String::from_utf8_lossy(id).into_owned(),
        modem: String::from_utf8_lossy(modem).into_owned(),
    })
}

/// The submission time of a `refs` key, 0 when it has none (so retention removes it).
pub(super) fn reference_time(key: &[u8]) -> u64 {
    key.get(1..9).and_then(read_u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_keys_read_back() {
        let check = |reference: u8, at: u64, id: &str, part: usize, modem: &str| {
            let key = reference_key(MessageReference(reference), at, id, part, modem);
            let expected = ReferenceKey {
                reference: MessageReference(reference),
                at,
                part,
                id: id.to_string(),
                modem: modem.to_string(),
            };
            assert_eq!(parse_reference_key(&key), Some(expected), "{key:?}");
            assert_eq!(reference_time(&key), at);
        };
        check(0, 0, "", 0, "");
        check(7, 1_700_000_000_000, "0190-abc", 3, "");
        check(255, u64::MAX, "m", 9, "modem2");
        check(1, 5, "0190-abc", 0, "austria");
        // A key as written before several modems: the id runs to the end, modem "".
        let mut old = vec![7u8];
        old.extend_from_slice(&9u64.to_be_bytes());
        old.extend_from_slice(&2u32.to_be_bytes());
        old.extend_from_slice(b"0190-old");
        let parsed = parse_reference_key(&old).expect("an old key reads");
        assert_eq!(
            (parsed.id.as_str(), parsed.modem.as_str(), parsed.part),
            ("0190-old", "", 2)
        );
    }

    #[test]
    fn short_reference_keys_are_refused() {
        let check = |key: &[u8], time: u64| {
            assert_eq!(parse_reference_key(key), None, "{key:?}");
            assert_eq!(reference_time(key), time, "{key:?}");
        };
        check(&[], 0);
        check(&[7], 0);
        check(&[7, 0, 0, 0, 0, 0, 0, 0, 9], 9);
        check(&[7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 1], 9);
    }

    #[test]
    fn reference_keys_of_one_tp_mr_sort_by_submission_time() {
        let early = reference_key(MessageReference(7), 1_000, "zzz", 5, "modem2");
        let late = reference_key(MessageReference(7), 2_000, "aaa", 0, "");
        let other = reference_key(MessageReference(8), 0, "aaa", 0, "modem1");
        assert!(early < late && late < other);
    }

    #[test]
    fn awaiting_keys_read_back_and_sort_by_due_time() {
        let check = |due: u64, id: &str| {
            let key = awaiting_key(due, id);
            assert_eq!(awaiting_id(&key), id);
            assert!(key.as_slice() < awaiting_end(due).as_slice(), "{due} {id}");
        };
        check(0, "");
        check(61_000, "0190-m1");
        check(u64::MAX - 1, "x");
        assert!(awaiting_key(1, "zzz") < awaiting_key(2, "aaa"));
        assert_eq!(awaiting_id(&[1, 2]), "");
    }

    #[test]
    fn job_keys_read_back_and_sort_by_endpoint_then_due_time() {
        let check = |endpoint: &str, due: u64, sequence: u64| {
            let key = job_key(endpoint, due, sequence);
            assert_eq!(super::super::due_of(&key), due, "{endpoint} {due}");
            assert!(key.starts_with(endpoint.as_bytes()));
            assert_eq!(key[endpoint.len()..].len(), 17);
        };
        check("crm", 0, 0);
        check("crm", 1_700_000_000_000, 42);
        check("", u64::MAX, u64::MAX);
        assert!(job_key("crm", 1, 9) < job_key("crm", 2, 1));
        assert!(job_key("a", u64::MAX, 0) < job_key("b", 0, 0));
    }

    #[test]
    fn numbers_keep_their_order_as_keys() {
        let check = |low: u64, high: u64| {
            assert!(queue_key(low) < queue_key(high), "{low} {high}");
            assert!(event_key(low) < event_key(high), "{low} {high}");
            assert_eq!(read_u64(&queue_key(high)), Some(high));
        };
        check(0, 1);
        check(255, 256);
        check(1, u64::MAX);
        assert_eq!(read_u64(&[1, 2, 3]), None);
    }

    #[test]
    fn meta_keys_keep_their_stored_names() {
        assert_eq!(endpoint_sequence_key("crm"), b"endpoint_sequence/crm");
        assert_eq!(SCHEMA_VERSION, b"schema_version");
        assert_eq!(EVENT_SEQUENCE, b"event_sequence");
        assert_eq!(CLOCK_FLOOR, b"clock_floor");
    }
}
