//! Every vector of `tests/fixtures/pdu/vectors.json` (`docs/at-sms.md` §5, cross-checked with
//! gammu, python-gsmmodem and smspdudecoder): it decodes to its `expected` fields, and it
//! re-encodes byte for byte. The same JSON is what `smsrelay pdu decode` prints.

use serde_json::Value;
use smsrelay::pdu::{self, Pdu, Tpdu};

/// Fields of the vectors that describe other tools, not the PDU.
const OTHER_TOOLS: [&str; 3] = ["tp_udl_unit", "gammu_length", "gammu_status_text"];

fn vectors() -> Vec<Value> {
    let text = include_str!("fixtures/pdu/vectors.json");
    match serde_json::from_str(text) {
        Ok(Value::Array(vectors)) => vectors,
        other => panic!("vectors.json is not an array: {other:?}"),
    }
}

fn field<'a>(vector: &'a Value, name: &str) -> &'a str {
    vector[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector without {name}: {vector}"))
}

/// Decodes a vector the way its `has_smsc` says, as JSON and as bytes re-encoded.
fn decode(vector: &Value) -> (Value, Vec<u8>, Tpdu) {
    let hex = field(vector, "pdu_hex");
    if vector["has_smsc"] == Value::Bool(true) {
        let pdu = Pdu::from_hex(hex).unwrap_or_else(|e| panic!("{}: {e}", vector["id"]));
        let bytes = pdu.encode().expect("re-encodes");
        (pdu::pdu_json(&pdu), bytes, pdu.tpdu)
    } else {
        let tpdu = Tpdu::from_hex(hex).unwrap_or_else(|e| panic!("{}: {e}", vector["id"]));
        let mut json = pdu::tpdu_json(&tpdu);
        json["smsc"] = Value::Null;
        (json, tpdu.encode().expect("re-encodes"), tpdu)
    }
}

#[test]
fn every_vector_decodes_to_its_expected_fields() {
    let vectors = vectors();
    assert!(vectors.len() >= 18, "docs/at-sms.md §5 lists 18 vectors");
    for vector in &vectors {
        let (json, _, _) = decode(vector);
        let Value::Object(expected) = &vector["expected"] else {
            panic!("{}: no expected object", vector["id"]);
        };
        for (name, want) in expected {
            if OTHER_TOOLS.contains(&name.as_str()) {
                continue;
            }
            assert_eq!(&json[name], want, "{}: field {name}", vector["id"]);
        }
    }
}

#[test]
fn every_vector_re_encodes_byte_for_byte() {
    for vector in vectors() {
        let (_, bytes, tpdu) = decode(&vector);
        let original = field(&vector, "pdu_hex").to_uppercase();
        if field(&vector, "id").starts_with("real_") {
            // Captured PDUs may carry junk in their fill bits (the ModemManager part has a 1
            // there); what must survive is every field, so compare decoded forms.
            let again = if vector["has_smsc"] == Value::Bool(true) {
                Pdu::decode(&bytes).map(|pdu| pdu.tpdu)
            } else {
                Tpdu::decode(&bytes)
            };
            assert_eq!(again.as_ref(), Ok(&tpdu), "{}", vector["id"]);
        } else {
            assert_eq!(hex::encode_upper(&bytes), original, "{}", vector["id"]);
        }
        if vector["kind"] == "submit" {
            // The AT+CMGS length counts the TPDU, not the SMSC field.
            let tpdu_octets = tpdu.encode().expect("encodes").len();
            assert_eq!(
                Value::from(tpdu_octets),
                vector["expected"]["cmgs_length"],
                "{}",
                vector["id"]
            );
        }
        assert_eq!(
            Value::from(tpdu.encode().expect("encodes").len()),
            vector["tpdu_octets"].clone(),
            "{}",
            vector["id"]
        );
    }
}

#[test]
fn submit_vectors_come_out_of_the_segmenter_too() {
    // What `submit_parts` builds from the decoded text and flags is the vector itself: the
    // encoder a user calls is the one the vectors check, not just a field-by-field re-encoder.
    for vector in vectors().iter().filter(|v| v["kind"] == "submit") {
        let (_, _, Tpdu::Submit(submit)) = decode(vector) else {
            panic!("{}: not a submit", vector["id"]);
        };
        let pdu = Pdu::from_hex(field(vector, "pdu_hex")).expect("decodes");
        let options = pdu::SubmitOptions {
            smsc: pdu.smsc.clone(),
            status_report: submit.status_report_request,
            validity: submit.validity,
            class: submit.dcs.class(),
            force_ucs2: false,
            reference: submit
                .user_data
                .concat()
                .map_or(pdu::ConcatReference::Eight(0), |concat| concat.reference),
        };
        let text = match vector["id"].as_str() {
            // The two halves of E4/E5 are one message.
            Some("submit_concat_part1" | "submit_concat_part2") => vectors()
                .iter()
                .filter(|v| {
                    v["id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("submit_concat"))
                })
                .map(|v| field(&v["expected"], "text").to_owned())
                .collect::<String>(),
            _ => field(&vector["expected"], "text").to_owned(),
        };
        let outgoing = pdu::submit_parts(&submit.recipient, &text, &options).expect("text encodes");
        let sequence = submit
            .user_data
            .concat()
            .map_or(1, |concat| concat.sequence);
        let part = &outgoing.parts[usize::from(sequence) - 1];
        assert_eq!(part.hex, field(vector, "pdu_hex"), "{}", vector["id"]);
        assert_eq!(
            Value::from(part.cmgs_length),
            vector["expected"]["cmgs_length"],
            "{}",
            vector["id"]
        );
    }
}
