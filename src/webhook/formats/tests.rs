//! The formats' tables: which native event becomes which of the service's statuses, and one
//! golden rendering per payload kind. (The field lists against the services' documents are
//! checked end to end in `tests/receiver_formats.rs`.)

use serde_json::{Value, json};

use super::*;

fn event(name: &str, data: Value) -> Event {
    Event {
        sequence: 9,
        id: "0190a3b4-0000-7000-8000-000000000001".into(),
        name: name.into(),
        api_version: "2026-11-01".into(),
        created_at: 1_764_672_000,
        clock_suspect: false,
        data,
    }
}

fn outbound(name: &str, extra: Value) -> Event {
    let mut data = json!({
        "message_id": "0190a3b4-0000-7000-8000-0000000000aa",
        "message_number": 42,
        "to": "+447700900123",
        "parts": 1,
        "callback_data": "order-7",
        "sent_at": "2025-12-02T10:40:00Z",
    });
    if let (Some(fields), Some(more)) = (data.as_object_mut(), extra.as_object()) {
        fields.extend(more.clone());
    }
    event(name, data)
}

fn received() -> Event {
    event(
        "sms.received",
        json!({
            "message_id": "0190a3b4-0000-7000-8000-0000000000bb",
            "message_number": 43,
            "from": "+447700900456",
            "text": "hello",
            "encoding": "gsm7",
            "sent_at": "2025-12-02T10:39:58+01:00",
            "received_at": "2025-12-02T09:40:01Z",
        }),
    )
}

fn job() -> Job {
    Job {
        event_sequence: 9,
        sequence: 3,
        endpoint: "crm".into(),
        task_id: "0190a3b4-0000-7000-8000-0000000000cc".into(),
        attempts: 0,
        created_at: 0,
        enable_probe: false,
    }
}

fn context() -> Context {
    Context {
        device_id: 7,
        device_name: "shop".into(),
        number: Some("+447700900999".into()),
        endpoint: "crm".into(),
        secret: None,
        attempt: 1,
        attempts_total: 10,
        now: 1_764_672_005,
    }
}

fn body(format: Format, event: &Event) -> Option<Value> {
    let rendered = render(format, event, &job(), &context())?;
    serde_json::from_slice(&rendered.body).ok()
}

/// The native events of one message's life, one line each.
fn lifecycle() -> Vec<(&'static str, Event)> {
    vec![
        ("queued", outbound("sms.queued", json!({}))),
        ("sent", outbound("sms.sent", json!({}))),
        (
            "pending",
            outbound("sms.pending", json!({ "status_code": 32 })),
        ),
        ("delivered", outbound("sms.delivered", json!({}))),
        (
            "refused",
            outbound(
                "sms.failed",
                json!({ "stage": "submit", "error_code": 500, "error": "unknown error" }),
            ),
        ),
        (
            "no network",
            outbound(
                "sms.failed",
                json!({ "stage": "submit", "error_code": 331, "error": "no network service" }),
            ),
        ),
        (
            "undeliverable",
            outbound(
                "sms.failed",
                json!({ "stage": "delivery", "error_code": 65, "error": "incompatible destination" }),
            ),
        ),
        (
            "sc expired",
            outbound(
                "sms.failed",
                json!({ "stage": "delivery", "error_code": 70, "error": "validity period expired" }),
            ),
        ),
        (
            "expired",
            outbound("sms.expired", json!({ "reason": "no status report" })),
        ),
        (
            "interrupted",
            outbound(
                "sms.failed",
                json!({ "stage": "interrupted", "error_code": null, "error": "cut" }),
            ),
        ),
    ]
}

/// Runs every lifecycle event through `format` and compares `pick(body)` (None: no request).
fn check_table(format: Format, pick: fn(&Value) -> Value, expected: &[(&str, Option<Value>)]) {
    let events = lifecycle();
    assert_eq!(events.len(), expected.len(), "one line per event");
    for ((case, event), (name, want)) in events.iter().zip(expected) {
        assert_eq!(case, name, "the table follows lifecycle()");
        let got = body(format, event).map(|body| pick(&body));
        assert_eq!(&got, want, "{} {case}", format.name());
    }
}

#[test]
fn lox24_sends_a_delivery_on_each_change_of_dlr_code() {
    let codes = |body: &Value| {
        json!([
            body["name"],
            body["data"]["dlr_code"],
            body["data"]["status_code"]
        ])
    };
    let line = |dlr: u16, status: u16| Some(json!(["sms.delivery", dlr, status]));
    check_table(
        Format::Lox24,
        codes,
        &[
            ("queued", line(0, 0)),
            ("sent", line(4, 100)),
            ("pending", None),
            ("delivered", line(1, 100)),
            ("refused", line(16, 0)),
            ("no network", line(16, 0)),
            ("undeliverable", line(16, 100)),
            ("sc expired", line(8, 100)),
            ("expired", line(8, 100)),
            ("interrupted", line(16, 0)),
        ],
    );
}

#[test]
fn gatewayapi_sends_a_status_on_each_change() {
    let status = |body: &Value| json!([body["status"], body["code"]]);
    let line = |status: &str, code: Value| Some(json!([status, code]));
    check_table(
        Format::Gatewayapi,
        status,
        &[
            ("queued", line("BUFFERED", Value::Null)),
            ("sent", line("ENROUTE", Value::Null)),
            ("pending", None),
            ("delivered", line("DELIVERED", Value::Null)),
            ("refused", line("REJECTED", json!("1F4"))),
            ("no network", line("REJECTED", json!("14B"))),
            ("undeliverable", line("UNDELIVERABLE", json!("41"))),
            ("sc expired", line("EXPIRED", json!("46"))),
            ("expired", line("EXPIRED", Value::Null)),
            ("interrupted", line("UNKNOWN", Value::Null)),
        ],
    );
}

#[test]
fn smsgateway24_sends_its_status_ids() {
    let status = |body: &Value| body["status_id"].clone();
    check_table(
        Format::Smsgateway24,
        status,
        &[
            ("queued", Some(json!(1))),
            ("sent", Some(json!(6))),
            ("pending", None),
            ("delivered", Some(json!(7))),
            ("refused", Some(json!(9))),
            ("no network", Some(json!(10))),
            ("undeliverable", Some(json!(8))),
            ("sc expired", Some(json!(8))),
            ("expired", Some(json!(8))),
            ("interrupted", Some(json!(9))),
        ],
    );
}

#[test]
fn smsgate_sends_sent_delivered_and_failed_only() {
    let name = |body: &Value| body["event"].clone();
    check_table(
        Format::Smsgate,
        name,
        &[
            ("queued", None),
            ("sent", Some(json!("sms:sent"))),
            ("pending", None),
            ("delivered", Some(json!("sms:delivered"))),
            ("refused", Some(json!("sms:failed"))),
            ("no network", Some(json!("sms:failed"))),
            ("undeliverable", Some(json!("sms:failed"))),
            ("sc expired", Some(json!("sms:failed"))),
            ("expired", Some(json!("sms:failed"))),
            ("interrupted", Some(json!("sms:failed"))),
        ],
    );
}

#[test]
fn the_native_format_sends_every_event() {
    for (case, event) in lifecycle() {
        let body = body(Format::Smsrelay, &event).expect("every event");
        assert_eq!(body["name"], event.name.as_str(), "{case}");
        assert_eq!(body["data"], event.data, "{case}");
    }
}

#[test]
fn events_outside_sms_are_ours_alone() {
    let test = event("webhook.test", json!({}));
    for format in Format::ALL {
        let sent = body(format, &test).is_some();
        assert_eq!(sent, format == Format::Smsrelay, "{}", format.name());
    }
}

#[test]
fn a_dry_run_is_a_lox24_dryrun_delivery() {
    let dry = outbound("sms.delivered", json!({ "dry_run": true }));
    let body = body(Format::Lox24, &dry).expect("rendered");
    assert_eq!(body["name"], "sms.delivery.dryrun");
    assert_eq!(body["data"]["dlr_code"], 1);
}

#[test]
fn golden_renderings() {
    let cases = [
        (
            Format::Lox24,
            outbound("sms.delivered", json!({})),
            json!({
                "id": "0190a3b4-0000-7000-8000-000000000001", "api_version": "2022-05-25",
                "name": "sms.delivery", "created_at": 1_764_672_000, "attempt_number": 1,
                "attempts_total": 10,
                "notification_task_id": "0190a3b4-0000-7000-8000-0000000000cc",
                "data": {
                    "id": "0190a3b4-0000-7000-8000-0000000000aa", "key_id": 7, "dlr_code": 1,
                    "status_code": 100, "callback_data": "order-7"
                }
            }),
        ),
        (
            Format::Lox24,
            received(),
            json!({
                "id": "0190a3b4-0000-7000-8000-000000000001", "api_version": "2022-05-25",
                "name": "sms.incoming", "created_at": 1_764_672_000, "attempt_number": 1,
                "attempts_total": 10,
                "notification_task_id": "0190a3b4-0000-7000-8000-0000000000cc",
                "data": {
                    "id": "0190a3b4-0000-7000-8000-0000000000bb", "from": "+447700900456",
                    "to": "+447700900999", "text": "hello"
                }
            }),
        ),
        (
            Format::Gatewayapi,
            outbound("sms.delivered", json!({})),
            json!({
                "id": 42, "msisdn": 447_700_900_123_u64, "time": 1_764_672_000,
                "status": "DELIVERED", "error": null, "code": null, "userref": "order-7",
                "country_code": null, "country_prefix": null, "charge_status": null
            }),
        ),
        (
            Format::Gatewayapi,
            received(),
            json!({
                "id": 43, "msisdn": 447_700_900_456_u64, "receiver": 447_700_900_999_u64,
                "message": "hello", "senttime": 1_764_668_398, "webhook_label": "crm",
                "sender": "+447700900456", "encoding": "UTF8"
            }),
        ),
        (
            Format::Smsgateway24,
            outbound("sms.sent", json!({})),
            json!({
                "sms_id": 42, "status_id": 6, "status_message": "SMS Sent by Phone",
                "sendto": "+447700900123", "senttime": "2025-12-02 10:40:00", "sim": 0,
                "channel_id": 0, "device_id": 7
            }),
        ),
        (
            Format::Smsgateway24,
            received(),
            json!({
                "address": "+447700900456", "date": "2025-12-02 09:40:01",
                "date_sent": "2025-12-02 09:39:58", "body": "hello", "internal_id": 43,
                "sim": 0, "channel_id": 0, "sms_id": 43, "device_id": 7, "device_name": "shop"
            }),
        ),
        (
            Format::Smsgate,
            outbound(
                "sms.failed",
                json!({ "stage": "delivery", "error_code": 65, "error": "incompatible destination" }),
            ),
            json!({
                "deviceId": "7", "event": "sms:failed",
                "id": "0190a3b4-0000-7000-8000-000000000001",
                "payload": {
                    "messageId": "0190a3b4-0000-7000-8000-0000000000aa",
                    "recipient": "+447700900123", "simNumber": null,
                    "failedAt": "2025-12-02T10:40:00.000+00:00",
                    "reason": "incompatible destination"
                },
                "webhookId": "crm"
            }),
        ),
        (
            Format::Smsgate,
            received(),
            json!({
                "deviceId": "7", "event": "sms:received",
                "id": "0190a3b4-0000-7000-8000-000000000001",
                "payload": {
                    "messageId": "0190a3b4-0000-7000-8000-0000000000bb", "message": "hello",
                    "sender": "+447700900456", "recipient": "+447700900999",
                    "simNumber": null, "receivedAt": "2025-12-02T09:40:01.000+00:00"
                },
                "webhookId": "crm"
            }),
        ),
    ];
    for (format, event, expected) in cases {
        assert_eq!(
            body(format, &event),
            Some(expected),
            "{} {}",
            format.name(),
            event.name
        );
    }
}

#[test]
fn the_formats_that_sign_themselves_add_their_headers() {
    let with_key = Context {
        secret: Some(b"secret".to_vec()),
        ..context()
    };
    let delivered = outbound("sms.delivered", json!({}));
    let headers = |format| {
        render(format, &delivered, &job(), &with_key)
            .map(|rendered| rendered.headers)
            .unwrap_or_default()
    };
    let names = |format| -> Vec<String> { headers(format).into_iter().map(|h| h.0).collect() };
    assert_eq!(names(Format::Gatewayapi), ["X-Gwapi-Signature"]);
    assert_eq!(names(Format::Smsgate), ["X-Signature", "X-Timestamp"]);
    assert!(names(Format::Lox24).is_empty());
    assert!(names(Format::Smsgateway24).is_empty());
    // RFC 4231 test case 2 style check of the SMSGate MAC over body + timestamp.
    let signature = smsgate::sign(b"Jefe", b"what do ya want ", "for nothing?");
    assert_eq!(
        signature,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn formats_parse_by_name_only() {
    for format in Format::ALL {
        assert_eq!(Format::parse(format.name()), Some(format));
    }
    assert_eq!(Format::parse("LOX24"), None);
    assert_eq!(Format::parse(""), None);
}

#[test]
fn the_sim_of_the_event_fills_the_formats_sim_fields() {
    let on_second_sim = |mut event: Event| {
        event.data["modem"] = json!("austria");
        event.data["sim"] = json!(1);
        event
    };
    let sent = on_second_sim(outbound("sms.sent", json!({})));
    let inbound = on_second_sim(received());
    for event in [&sent, &inbound] {
        let gateway24 = body(Format::Smsgateway24, event).expect("rendered");
        assert_eq!(
            (&gateway24["sim"], &gateway24["channel_id"]),
            (&json!(1), &json!(1))
        );
        let smsgate = body(Format::Smsgate, event).expect("rendered");
        // SMSGate counts SIMs from 1.
        assert_eq!(smsgate["payload"]["simNumber"], json!(2), "{smsgate}");
    }
    // Events from before several modems carry no sim: slot 0, no SIM number.
    let gateway24 = body(Format::Smsgateway24, &received()).expect("rendered");
    assert_eq!(gateway24["sim"], json!(0));
    let smsgate = body(Format::Smsgate, &received()).expect("rendered");
    assert_eq!(smsgate["payload"]["simNumber"], Value::Null);
}
