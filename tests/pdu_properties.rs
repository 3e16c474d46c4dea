//! Properties of the PDU codec: what goes in comes out, parts respect the size rules, and no
//! byte string panics a decoder.

use proptest::prelude::*;
use smsrelay::pdu::{
    self, Address, Alphabet, Body, ConcatReference, Dcs, Deliver, MessageClass, Pdu, Status,
    StatusReport, SubmitOptions, Timestamp, Tpdu, Udh, UserData, Validity, gsm7,
};

/// Every character of the GSM default alphabet and its extension table.
fn gsm_chars() -> Vec<char> {
    (0u32..0x2100)
        .filter_map(char::from_u32)
        .filter(|&c| gsm7::char_len(c).is_some())
        .collect()
}

fn gsm_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(gsm_chars()), 0..max)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Any Unicode, weighted towards emoji, accented letters and Cyrillic.
fn unicode_text(max: usize) -> impl Strategy<Value = String> {
    let c = prop_oneof![
        any::<char>(),
        prop::char::range('\u{1F600}', '\u{1F64F}'),
        prop::char::range('\u{0400}', '\u{04FF}'),
        prop::char::range('a', 'z'),
        Just('€'),
    ];
    prop::collection::vec(c, 0..max).prop_map(|chars| chars.into_iter().collect())
}

fn number() -> impl Strategy<Value = Address> {
    ("[+]?[0-9]{1,20}").prop_map(|n| Address::from_number(&n).expect("generated numbers are valid"))
}

fn sender() -> impl Strategy<Value = Address> {
    prop_oneof![
        number(),
        prop::collection::vec(prop::sample::select(gsm_chars()), 1..8)
            .prop_filter_map("fits 11 septets", |chars| {
                Address::alphanumeric(&chars.into_iter().collect::<String>()).ok()
            }),
    ]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (
        0u8..100,
        1u8..=12,
        1u8..=28,
        0u8..24,
        0u8..60,
        0u8..60,
        -48i32..=56,
    )
        .prop_map(|(year, month, day, hour, minute, second, quarters)| {
            let offset = time::UtcOffset::from_whole_seconds(quarters * 900).expect("in range");
            let date = time::Date::from_calendar_date(
                2000 + i32::from(year),
                time::Month::try_from(month).expect("1-12"),
                day,
            )
            .expect("valid date");
            let datetime = time::PrimitiveDateTime::new(
                date,
                time::Time::from_hms(hour, minute, second).expect("valid time"),
            )
            .assume_offset(offset);
            Timestamp::from_datetime(datetime)
        })
}

fn options() -> impl Strategy<Value = SubmitOptions> {
    (
        any::<bool>(),
        prop::option::of(any::<u8>()),
        any::<bool>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(
            |(status_report, validity, flash, reference, wide)| SubmitOptions {
                smsc: None,
                status_report,
                validity: validity.map(Validity::Relative),
                class: flash.then_some(MessageClass::Flash),
                force_ucs2: false,
                reference: if wide {
                    ConcatReference::Sixteen(reference)
                } else {
                    ConcatReference::Eight(reference as u8)
                },
            },
        )
}

/// Encodes, decodes every part from its hex, checks each part, and returns the texts.
fn round_trip(recipient: &Address, text: &str, options: &SubmitOptions) -> (Alphabet, Vec<String>) {
    let outgoing = pdu::submit_parts(recipient, text, options).expect("encodes");
    let total = outgoing.parts.len();
    let mut texts = Vec::new();
    for (index, part) in outgoing.parts.iter().enumerate() {
        let decoded = Pdu::from_hex(&part.hex).expect("our own PDU decodes");
        assert_eq!(decoded, part.pdu);
        assert_eq!(
            part.hex.len() / 2 - 1,
            part.cmgs_length,
            "SMSC field 00 excluded"
        );
        let Tpdu::Submit(submit) = decoded.tpdu else {
            panic!("not a submit")
        };
        assert_eq!(&submit.recipient, recipient);
        assert_eq!(submit.status_report_request, options.status_report);
        assert_eq!(submit.validity, options.validity);
        assert_eq!(submit.dcs.class(), options.class);
        match submit.user_data.concat() {
            Some(concat) => {
                assert!(total > 1);
                assert_eq!(concat.reference, options.reference);
                assert_eq!(
                    (usize::from(concat.sequence), usize::from(concat.total)),
                    (index + 1, total)
                );
            }
            None => assert_eq!(total, 1),
        }
        let Body::Text(part_text) = submit.user_data.body else {
            panic!("text expected")
        };
        texts.push(part_text);
    }
    (outgoing.alphabet, texts)
}

fn units(text: &str, alphabet: Alphabet) -> usize {
    match alphabet {
        Alphabet::Gsm7 => text.chars().filter_map(gsm7::char_len).sum(),
        _ => text.encode_utf16().count(),
    }
}

/// Each part holds at most its capacity, and is full: the next part's first character would
/// not have fitted. 160/70 alone; 153/67 (8-bit ref) or 152/66 (16-bit ref) in a series.
fn check_sizes(texts: &[String], alphabet: Alphabet, reference: ConcatReference) {
    let (single, eight, sixteen) = match alphabet {
        Alphabet::Gsm7 => (160, 153, 152),
        _ => (70, 67, 66),
    };
    let capacity = match (texts.len(), reference) {
        (1, _) => single,
        (_, ConcatReference::Eight(_)) => eight,
        (_, ConcatReference::Sixteen(_)) => sixteen,
    };
    for (index, text) in texts.iter().enumerate() {
        let used = units(text, alphabet);
        assert!(used <= capacity, "part {index} holds {used} > {capacity}");
        if let Some(next) = texts.get(index + 1).and_then(|t| t.chars().next()) {
            assert!(
                used + units(&next.to_string(), alphabet) > capacity,
                "part {index} not full"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn gsm_text_round_trips_in_parts_of_the_right_size(
        text in gsm_text(10 * 153),
        recipient in number(),
        options in options(),
    ) {
        let (alphabet, texts) = round_trip(&recipient, &text, &options);
        prop_assert_eq!(alphabet, Alphabet::Gsm7);
        prop_assert_eq!(texts.concat(), text);
        check_sizes(&texts, alphabet, options.reference);
    }

    #[test]
    fn any_unicode_round_trips_in_parts_of_the_right_size(
        text in unicode_text(10 * 67),
        recipient in number(),
        options in options(),
    ) {
        let (alphabet, texts) = round_trip(&recipient, &text, &options);
        let expected = if gsm7::is_encodable(&text) { Alphabet::Gsm7 } else { Alphabet::Ucs2 };
        prop_assert_eq!(alphabet, expected);
        prop_assert_eq!(texts.concat(), text);
        check_sizes(&texts, alphabet, options.reference);
    }

    #[test]
    fn forced_ucs2_round_trips(text in gsm_text(300), recipient in number()) {
        let options = SubmitOptions { force_ucs2: true, ..SubmitOptions::default() };
        let (alphabet, texts) = round_trip(&recipient, &text, &options);
        prop_assert_eq!(alphabet, Alphabet::Ucs2);
        prop_assert_eq!(texts.concat(), text);
    }

    #[test]
    fn deliver_round_trips(
        sender in sender(),
        timestamp in timestamp(),
        text in prop_oneof![gsm_text(150), unicode_text(60)],
        concat in prop::option::of((any::<u16>(), any::<bool>(), 1u8..=255)),
        flags in any::<[bool; 4]>(),
        smsc in prop::option::of(number()),
    ) {
        let alphabet = if gsm7::is_encodable(&text) { Alphabet::Gsm7 } else { Alphabet::Ucs2 };
        let header = concat.map(|(reference, wide, total)| Udh::concatenation(pdu::Concat {
            reference: if wide { ConcatReference::Sixteen(reference) } else { ConcatReference::Eight(reference as u8) },
            total,
            sequence: total,
        }));
        let deliver = Deliver {
            no_more_messages: flags[0],
            loop_prevention: flags[1],
            status_report_indication: flags[2],
            reply_path: flags[3],
            sender,
            pid: 0,
            dcs: Dcs::new(alphabet, None),
            timestamp,
            user_data: UserData { header, body: Body::Text(text) },
        };
        let pdu = Pdu { smsc, tpdu: Tpdu::Deliver(deliver) };
        // Texts that overflow one part with a header are refused, not truncated.
        match pdu.encode() {
            Ok(bytes) => prop_assert_eq!(Pdu::decode(&bytes), Ok(pdu)),
            Err(error) => prop_assert!(matches!(error, pdu::PduError::UserDataTooLong(_)), "{error}"),
        }
    }

    #[test]
    fn status_report_round_trips(
        reference in any::<u8>(),
        recipient in number(),
        timestamp in timestamp(),
        discharge_time in timestamp(),
        status in any::<u8>(),
        flags in any::<[bool; 3]>(),
    ) {
        let report = StatusReport {
            no_more_messages: flags[0],
            loop_prevention: flags[1],
            reports_command: flags[2],
            message_reference: reference,
            recipient,
            timestamp,
            discharge_time,
            status: Status(status),
            pid: None,
            dcs: None,
            user_data: None,
        };
        let tpdu = Tpdu::StatusReport(report);
        let bytes = tpdu.encode().expect("encodes");
        prop_assert_eq!(Tpdu::decode(&bytes), Ok(tpdu));
    }

    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Pdu::decode(&bytes);
        let _ = Tpdu::decode(&bytes);
        let _ = Udh::parse(&bytes);
        if let Ok(stamp) = <[u8; 7]>::try_from(bytes.get(..7).unwrap_or_default()) {
            let _ = Timestamp::from_octets(stamp).to_string();
        }
        let _ = gsm7::decode(&bytes);
    }

    #[test]
    fn damaged_vectors_never_panic_a_decoder(
        index in 0usize..18,
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("fixtures/pdu/vectors.json")).expect("json");
        let hex = vectors[index]["pdu_hex"].as_str().expect("hex");
        let mut bytes = hex::decode(hex).expect("valid hex");
        for (at, value) in damage {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(pdu) = Pdu::decode(&bytes) {
            // Whatever decodes can be shown.
            let _ = pdu::pdu_json(&pdu);
        }
    }
}
