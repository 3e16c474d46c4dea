//! Our Standard Webhooks signatures against the verified vectors, and verified by the
//! `standardwebhooks` crate, an implementation we did not write.

use serde_json::Value;
use smsrelay::webhook::{Secret, signature_header};

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/vectors.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn secret(fixture: &Value, name: &str) -> Secret {
    Secret::parse(fixture["secrets"][name].as_str().expect("secret")).expect("valid secret")
}

#[test]
fn every_vector_is_reproduced_byte_for_byte() {
    let fixture = fixture();
    for vector in fixture["vectors"].as_array().expect("vectors") {
        let secrets: Vec<Secret> = vector["secrets"]
            .as_array()
            .expect("names")
            .iter()
            .map(|name| secret(&fixture, name.as_str().expect("name")))
            .collect();
        let header = signature_header(
            &secrets,
            vector["id"].as_str().expect("id"),
            vector["timestamp"].as_i64().expect("timestamp"),
            vector["body"].as_str().expect("body").as_bytes(),
        );
        assert_eq!(header, vector["signature"], "vector {}", vector["name"]);
    }
}

#[test]
fn a_re_serialised_body_does_not_verify() {
    let fixture = fixture();
    let negative = &fixture["negative"];
    let a = secret(&fixture, "A");
    let (id, ts) = (
        negative["id"].as_str().expect("id"),
        negative["timestamp"].as_i64().expect("ts"),
    );
    let body = negative["body"].as_str().expect("body").as_bytes();
    assert_eq!(a.sign(id, ts, body), negative["own_signature"]);
    assert!(!a.verify(
        id,
        ts,
        body,
        negative["signature_of_A"].as_str().expect("sig")
    ));
}

#[test]
fn the_standardwebhooks_crate_verifies_our_signatures_with_either_secret() {
    let fixture = fixture();
    let (old, new) = (secret(&fixture, "B"), secret(&fixture, "A"));
    let id = "0193a7e2-5c1b-7d2e-9a41-6f3c2b8d1e07";
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = r#"{"id":"0193a7e2-5c1b-7d2e-9a41-6f3c2b8d1e07","name":"sms.received","data":{"text":"Grüße 👋"}}"#.as_bytes();
    let header = signature_header(&[new, old], id, now, body);
    let mut headers = http::HeaderMap::new();
    headers.insert("webhook-id", id.parse().expect("header"));
    headers.insert(
        "webhook-timestamp",
        now.to_string().parse().expect("header"),
    );
    headers.insert("webhook-signature", header.parse().expect("header"));
    for name in ["A", "B"] {
        let verifier =
            standardwebhooks::Webhook::new(fixture["secrets"][name].as_str().expect("secret"))
                .expect("their parser takes our secret");
        verifier
            .verify(body, &headers)
            .unwrap_or_else(|error| panic!("secret {name}: {error:?}"));
    }
    // And a tampered body fails theirs too.
    let verifier = standardwebhooks::Webhook::new(fixture["secrets"]["A"].as_str().expect("s"))
        .expect("parses");
    assert!(verifier.verify(b"{}", &headers).is_err());
}
