//! Issue #17: receivers written for LOX24, GatewayAPI, SMSGateway24 or SMSGate work
//! unchanged. One stack per case (simulated modem, driver, gateway, store, dispatcher) with
//! one real HTTP receiver per format; every request is checked against the field lists in
//! `tests/fixtures/receivers/` (copied from each service's documentation), and the statuses
//! one message produces are the sequence the service documents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use smsrelay::at::SessionConfig;
use smsrelay::gateway::{Gateway, GatewaySettings, NewMessage};
use smsrelay::mock::{InboundSms, MockConfig, MockModem, ReportBehaviour};
use smsrelay::modem::{InitSettings, Modem, ModemSettings};
use smsrelay::store::{MessageState, Store, StoreSettings, Subscription};
use smsrelay::webhook::{
    ClockPolicy, Device, Dispatcher, DispatcherSettings, EndpointConfig, Format, Secret,
    SystemClock,
};
use tempfile::TempDir;

use crate::support::receiver::{Received, Receiver, ok};

const WAIT: Duration = Duration::from_secs(20);
const TO: &str = "+447700900123";
const OUR_NUMBER: &str = "+447700900999";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GATEWAYAPI_KEY: &str = "gatewayapi-shared-secret";
const SMSGATE_KEY: &str = "smsgate-signing-key";

/// The field lists of `format`'s payload kind `kind`, from the fixture.
fn spec(format: Format, kind: &str) -> Value {
    let text = match format {
        Format::Lox24 => include_str!("fixtures/receivers/lox24.json"),
        Format::Gatewayapi => include_str!("fixtures/receivers/gatewayapi.json"),
        Format::Smsgateway24 => include_str!("fixtures/receivers/smsgateway24.json"),
        Format::Smsgate => include_str!("fixtures/receivers/smsgate.json"),
        Format::Smsrelay => return Value::Null,
    };
    let fixture: Value = serde_json::from_str(text).expect("the fixture is JSON");
    fixture["payloads"][kind].clone()
}

/// Whether `value` has the JSON type `kind` (`a|b`: either; `datetime`: SMSGateway24's
/// `YYYY-MM-DD HH:MM:SS`; `iso8601`: a time with an explicit offset).
fn has_type(value: &Value, kind: &str) -> bool {
    kind.split('|').any(|kind| match kind {
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        "datetime" => value.as_str().is_some_and(|text| {
            text.len() == 19
                && time::PrimitiveDateTime::parse(
                    text,
                    &time::format_description::parse(
                        "[year]-[month]-[day] [hour]:[minute]:[second]",
                    )
                    .expect("a format"),
                )
                .is_ok()
        }),
        "iso8601" => value.as_str().is_some_and(|text| {
            text.ends_with("+00:00")
                && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .is_ok()
        }),
        other => panic!("unknown type {other}"),
    })
}

/// `payload` has every field the document lists, each of its type, and no other.
fn conforms(format: Format, kind: &str, payload: &Value) {
    let spec = spec(format, kind);
    let fields = spec["fields"].as_object().expect("fields listed");
    let optional = spec["optional"].as_object().cloned().unwrap_or_default();
    let object = payload.as_object().expect("an object");
    for (name, kind) in fields {
        let value = object.get(name).unwrap_or_else(|| {
            panic!(
                "{} {kind_}: no {name} in {payload}",
                format.name(),
                kind_ = kind
            )
        });
        let kind = kind.as_str().expect("a type");
        assert!(
            has_type(value, kind),
            "{}: {name} = {value} is not {kind}",
            format.name()
        );
    }
    for (name, value) in object {
        let kind = fields
            .get(name)
            .or(optional.get(name))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: {name} is not in the document", format.name()));
        assert!(
            has_type(value, kind),
            "{}: {name} = {value} is not {kind}",
            format.name()
        );
    }
}

/// The whole stack, with one receiver per format.
struct Stack {
    modem: MockModem,
    gateway: Gateway,
    receivers: Vec<(Format, Receiver)>,
    _dispatcher: Dispatcher,
    _driver: Modem,
    _dir: TempDir,
}

fn endpoint(format: Format, receiver: &Receiver) -> EndpointConfig {
    let (secrets, format_secret) = match format {
        Format::Gatewayapi => (Vec::new(), Some(Secret::raw(GATEWAYAPI_KEY))),
        Format::Smsgate => (Vec::new(), Some(Secret::raw(SMSGATE_KEY))),
        _ => (vec![Secret::parse(WHSEC).expect("valid")], None),
    };
    EndpointConfig {
        secrets,
        format,
        format_secret,
        timeout: Duration::from_secs(5),
        ..EndpointConfig::new(format.name(), &receiver.url)
    }
}

async fn stack(report: ReportBehaviour) -> Stack {
    let config = MockConfig {
        submit_delay: Duration::from_millis(10),
        report_delay: Duration::from_millis(20),
        report,
        ..MockConfig::default()
    };
    let modem = MockModem::start(config, None).expect("mock starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let subscriptions = Format::ALL
        .iter()
        .map(|format| Subscription {
            endpoint: format.name().into(),
            events: vec!["sms.*".into()],
            ..Subscription::default()
        })
        .collect();
    let store = Store::open(dir.path(), &StoreSettings::default(), subscriptions).expect("opens");
    let mut driver_settings = ModemSettings::new(modem.path());
    driver_settings.init = InitSettings {
        poll_interval: Duration::from_millis(50),
        ..InitSettings::default()
    };
    driver_settings.session = SessionConfig {
        command_gap: Duration::from_millis(5),
        settle: Duration::from_millis(100),
        ..SessionConfig::default()
    };
    let mut driver = Modem::start(driver_settings);
    let events = std::mem::replace(&mut driver.events, tokio::sync::mpsc::channel(1).1);
    let settings = GatewaySettings {
        report_timeout_margin: Duration::from_secs(60),
        ..GatewaySettings::default()
    };
    let gateway = Gateway::new(store.clone(), driver.handle.clone(), settings);
    gateway.start(events).await.expect("gateway starts");
    let receivers: Vec<(Format, Receiver)> = Format::ALL
        .iter()
        .map(|f| (*f, Receiver::start(ok)))
        .collect();
    let endpoints = receivers.iter().map(|(f, r)| endpoint(*f, r)).collect();
    let dispatcher_settings = DispatcherSettings {
        clock: ClockPolicy {
            check: false,
            ..ClockPolicy::default()
        },
        poll: Duration::from_millis(20),
        device: Device {
            id: 7,
            name: "shop".into(),
            number: Some(OUR_NUMBER.into()),
        },
        ..DispatcherSettings::default()
    };
    let dispatcher =
        Dispatcher::start(store, endpoints, dispatcher_settings, Arc::new(SystemClock));
    Stack {
        modem,
        gateway,
        receivers,
        _dispatcher: dispatcher,
        _driver: driver,
        _dir: dir,
    }
}

impl Stack {
    /// Once `name` is stored for the message (or any inbound, for `sms.received`) and every
    /// job is settled: what each format's receiver got, in order.
    async fn settled(&self, name: &str) -> Vec<(Format, Vec<Value>, Vec<Received>)> {
        let store = self.gateway.store().clone();
        let deadline = Instant::now() + WAIT;
        loop {
            let events = store.events_after(0, 1000).expect("reads");
            let done = events.iter().any(|event| event.name == name)
                && store.jobs(10).expect("reads").is_empty();
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "no {name} settled: {events:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.receivers
            .iter()
            .map(|(format, receiver)| {
                let got = receiver.got();
                (*format, got.iter().map(Received::json).collect(), got)
            })
            .collect()
    }

    async fn ready(&self) {
        let deadline = Instant::now() + WAIT;
        while self._driver.handle.status().storage.is_none() {
            assert!(Instant::now() < deadline, "the modem is not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn send(text: &str) -> NewMessage {
    NewMessage {
        to: TO.into(),
        text: text.into(),
        callback_data: Some("order-42".into()),
        validity: Some(Duration::from_secs(300)),
        ..NewMessage::default()
    }
}

/// The one field per format that says the status, per request.
fn statuses(format: Format, bodies: &[Value]) -> Vec<Value> {
    bodies
        .iter()
        .map(|body| match format {
            Format::Smsrelay => body["name"].clone(),
            Format::Lox24 => json!([
                body["name"],
                body["data"]["dlr_code"],
                body["data"]["status_code"]
            ]),
            Format::Gatewayapi => body["status"].clone(),
            Format::Smsgateway24 => body["status_id"].clone(),
            Format::Smsgate => body["event"].clone(),
        })
        .collect()
}

/// Every outbound request of `format` against its document, with the message's ids.
fn check_outbound(format: Format, bodies: &[Value], id: &str, number: u64) {
    for body in bodies {
        match format {
            Format::Smsrelay => {
                assert_eq!(body["data"]["message_id"], id);
                assert_eq!(body["data"]["message_number"], number);
            }
            Format::Lox24 => {
                conforms(format, "envelope", body);
                conforms(format, "sms.delivery", &body["data"]);
                assert_eq!(body["api_version"], "2022-05-25");
                assert_eq!(body["data"]["id"], id);
                assert_eq!(body["data"]["key_id"], 7);
                assert_eq!(body["data"]["callback_data"], "order-42");
            }
            Format::Gatewayapi => {
                conforms(format, "status", body);
                assert_eq!(body["id"], number);
                assert_eq!(body["msisdn"], 447_700_900_123_u64);
                assert_eq!(body["userref"], "order-42");
            }
            Format::Smsgateway24 => {
                conforms(format, "status", body);
                assert_eq!(body["sms_id"], number);
                assert_eq!(body["sendto"], TO);
                assert_eq!((&body["sim"], &body["channel_id"]), (&json!(0), &json!(0)));
                assert_eq!(body["device_id"], 7);
            }
            Format::Smsgate => {
                conforms(format, "envelope", body);
                let event = body["event"].as_str().expect("an event name");
                conforms(format, event, &body["payload"]);
                assert_eq!(body["deviceId"], "7");
                assert_eq!(body["webhookId"], "smsgate");
                assert_eq!(body["payload"]["messageId"], id);
                assert_eq!(body["payload"]["recipient"], TO);
            }
        }
    }
}

/// Sends `request` and checks each format's sequence against `expected` (in
/// `Format::ALL` order); returns the requests for further checks.
async fn outbound_case(
    h: &Stack,
    request: NewMessage,
    final_event: &str,
    expire: bool,
    expected: [Vec<Value>; 5],
) -> Vec<(Format, Vec<Value>, Vec<Received>)> {
    let accepted = h.gateway.enqueue(request).await.expect("accepted");
    let store = h.gateway.store();
    if expire {
        // Time is passed in: the sweep runs at the deadline once the message is sent.
        let deadline = Instant::now() + WAIT;
        let sent_at = loop {
            let message = store.message(&accepted.id).expect("reads").expect("stored");
            if let Some(sent_at) = message
                .sent_at
                .filter(|_| message.state == MessageState::Sent)
            {
                break sent_at;
            }
            assert!(Instant::now() < deadline, "not sent");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let due = sent_at + 300_000 + 60_000;
        assert_eq!(h.gateway.expire_overdue(due).await.expect("sweeps"), 1);
    }
    let got = h.settled(final_event).await;
    let message = store.message(&accepted.id).expect("reads").expect("stored");
    let number = message.number.expect("numbered");
    for ((format, bodies, _), expected) in got.iter().zip(expected) {
        assert_eq!(statuses(*format, bodies), expected, "{}", format.name());
        check_outbound(*format, bodies, &accepted.id, number);
    }
    got
}

fn lox(dlr: u16, status: u16) -> Value {
    json!(["sms.delivery", dlr, status])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_in_every_format_with_their_signatures() {
    let h = stack(ReportBehaviour::Delivered).await;
    let got = outbound_case(
        &h,
        send("delivered"),
        "sms.delivered",
        false,
        [
            vec![
                json!("sms.queued"),
                json!("sms.sent"),
                json!("sms.delivered"),
            ],
            vec![lox(0, 0), lox(4, 100), lox(1, 100)],
            vec![json!("BUFFERED"), json!("ENROUTE"), json!("DELIVERED")],
            vec![json!(1), json!(6), json!(7)],
            vec![json!("sms:sent"), json!("sms:delivered")],
        ],
    )
    .await;
    for (format, _, requests) in &got {
        for request in requests {
            let standard = request.header("webhook-signature").is_some();
            assert_eq!(standard, !format.signs_itself(), "{}", format.name());
            match format {
                Format::Gatewayapi => check_gatewayapi_jwt(request),
                Format::Smsgate => check_smsgate_signature(request),
                _ => {}
            }
        }
    }
}

/// As GatewayAPI tells receivers: verify the JWT (HS256, the shared secret) and read the
/// payload from its claims. A forged body, or the body re-serialised, does not verify.
fn check_gatewayapi_jwt(request: &Received) {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let token = request.header("X-Gwapi-Signature").expect("signed");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let key = DecodingKey::from_secret(GATEWAYAPI_KEY.as_bytes());
    let claims = decode::<Value>(token, &key, &validation).expect("the JWT verifies");
    assert_eq!(claims.claims, request.json(), "the claims are the payload");
    let wrong_key = DecodingKey::from_secret(b"not the secret");
    assert!(decode::<Value>(token, &wrong_key, &validation).is_err());
    // A receiver re-encoding a changed payload under the same signature is refused.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = request.json();
    forged["status"] = json!("DELIVERED-FORGED");
    use base64::Engine;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged).expect("encodes"));
    let forged_token = format!("{}.{claims}.{}", parts[0], parts[2]);
    assert!(decode::<Value>(&forged_token, &key, &validation).is_err());
    // The same payload re-serialised (pretty-printed) is a different claims segment.
    let pretty = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec_pretty(&request.json()).expect("encodes"));
    let reserialised = format!("{}.{pretty}.{}", parts[0], parts[2]);
    assert!(decode::<Value>(&reserialised, &key, &validation).is_err());
}

/// As SMSGate tells receivers: HMAC-SHA256 with the signing key over the raw body followed
/// by `X-Timestamp`, compared as lower-case hex; the timestamp within 5 minutes of now.
fn check_smsgate_signature(request: &Received) {
    let timestamp = request.header("X-Timestamp").expect("a timestamp");
    let signature = request.header("X-Signature").expect("a signature");
    let mac = |body: &[u8]| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SMSGATE_KEY.as_bytes()).expect("key");
        mac.update(body);
        mac.update(timestamp.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(mac(&request.body), signature);
    let mut forged = request.body.clone();
    forged.push(b' ');
    assert_ne!(mac(&forged), signature);
    let sent: i64 = timestamp.parse().expect("Unix seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - sent).abs() <= 300, "{sent} vs {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_at_submit_in_every_format() {
    let h = stack(ReportBehaviour::Delivered).await;
    h.ready().await;
    h.modem
        .with_engine(|engine, _| engine.fail_next_sends(1, 21));
    let got = outbound_case(
        &h,
        send("refused"),
        "sms.failed",
        false,
        [
            vec![json!("sms.queued"), json!("sms.failed")],
            vec![lox(0, 0), lox(16, 0)],
            vec![json!("BUFFERED"), json!("REJECTED")],
            vec![json!(1), json!(9)],
            vec![json!("sms:failed")],
        ],
    )
    .await;
    for (format, bodies, _) in &got {
        let last = bodies.last().expect("a request");
        match format {
            Format::Gatewayapi => {
                assert_eq!(last["code"], "15");
                assert!(
                    last["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{last}"
                );
            }
            Format::Smsgate => {
                assert!(
                    last["payload"]["reason"]
                        .as_str()
                        .is_some_and(|r| !r.is_empty())
                );
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_report_never_comes_expires_in_every_format() {
    let h = stack(ReportBehaviour::None).await;
    outbound_case(
        &h,
        send("expires"),
        "sms.expired",
        true,
        [
            vec![json!("sms.queued"), json!("sms.sent"), json!("sms.expired")],
            vec![lox(0, 0), lox(4, 100), lox(8, 100)],
            vec![json!("BUFFERED"), json!("ENROUTE"), json!("EXPIRED")],
            vec![json!(1), json!(6), json!(8)],
            vec![json!("sms:sent"), json!("sms:failed")],
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_sms_in_every_format() {
    let h = stack(ReportBehaviour::Delivered).await;
    h.ready().await;
    h.modem
        .inject_sms(&InboundSms::new("+447700900555", "Ping"))
        .expect("injects");
    let got = h.settled("sms.received").await;
    let events = h.gateway.store().events_after(0, 100).expect("reads");
    let received = events
        .iter()
        .find(|e| e.name == "sms.received")
        .expect("stored");
    let number = received.data["message_number"].as_u64().expect("numbered");
    let id = received.data["message_id"].as_str().expect("an id");
    for (format, bodies, _) in &got {
        assert_eq!(bodies.len(), 1, "{}", format.name());
        let body = &bodies[0];
        match format {
            Format::Smsrelay => assert_eq!(body["name"], "sms.received"),
            Format::Lox24 => {
                conforms(*format, "envelope", body);
                conforms(*format, "sms.incoming", &body["data"]);
                assert_eq!(body["name"], "sms.incoming");
                let data = &body["data"];
                assert_eq!(
                    (&data["id"], &data["from"]),
                    (&json!(id), &json!("+447700900555"))
                );
                assert_eq!(
                    (&data["to"], &data["text"]),
                    (&json!(OUR_NUMBER), &json!("Ping"))
                );
            }
            Format::Gatewayapi => {
                conforms(*format, "mo", body);
                assert_eq!(body["id"], number);
                assert_eq!(body["msisdn"], 447_700_900_555_u64);
                assert_eq!(body["receiver"], 447_700_900_999_u64);
                assert_eq!(body["message"], "Ping");
                assert_eq!(body["webhook_label"], "gatewayapi");
                check_gatewayapi_jwt(&got_request(&got, *format));
            }
            Format::Smsgateway24 => {
                conforms(*format, "incoming", body);
                assert_eq!(body["address"], "+447700900555");
                assert_eq!(body["body"], "Ping");
                assert_eq!(
                    (&body["sms_id"], &body["internal_id"]),
                    (&json!(number), &json!(number))
                );
                assert_eq!(
                    (&body["device_id"], &body["device_name"]),
                    (&json!(7), &json!("shop"))
                );
            }
            Format::Smsgate => {
                conforms(*format, "envelope", body);
                conforms(*format, "sms:received", &body["payload"]);
                let payload = &body["payload"];
                assert_eq!(body["event"], "sms:received");
                assert_eq!(
                    (&payload["sender"], &payload["message"]),
                    (&json!("+447700900555"), &json!("Ping"))
                );
                assert_eq!(payload["recipient"], OUR_NUMBER);
                check_smsgate_signature(&got_request(&got, *format));
            }
        }
    }
}

fn got_request(got: &[(Format, Vec<Value>, Vec<Received>)], format: Format) -> Received {
    got.iter()
        .find(|(f, _, _)| *f == format)
        .and_then(|(_, _, requests)| requests.first().cloned())
        .expect("a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_goes_through_every_state_and_reaches_no_modem() {
    let h = stack(ReportBehaviour::Delivered).await;
    let request = NewMessage {
        dry_run: true,
        ..send("dry run")
    };
    let dry = json!(["sms.delivery.dryrun"]);
    let got = h.gateway.enqueue(request).await.expect("accepted");
    let all = h.settled("sms.delivered").await;
    for (format, bodies, _) in &all {
        match format {
            Format::Smsrelay => {
                let names: Vec<&Value> = bodies.iter().map(|b| &b["name"]).collect();
                assert_eq!(
                    names,
                    [
                        &json!("sms.queued"),
                        &json!("sms.sent"),
                        &json!("sms.delivered")
                    ]
                );
                assert!(
                    bodies.iter().all(|b| b["data"]["dry_run"] == true),
                    "{bodies:#?}"
                );
                assert!(
                    bodies
                        .iter()
                        .all(|b| b["data"]["message_id"] == got.id.as_str())
                );
            }
            Format::Lox24 => {
                let names: Vec<Value> = bodies.iter().map(|b| json!([b["name"]])).collect();
                assert_eq!(names, [dry.clone(), dry.clone(), dry.clone()]);
                let codes: Vec<&Value> = bodies.iter().map(|b| &b["data"]["dlr_code"]).collect();
                assert_eq!(codes, [&json!(0), &json!(4), &json!(1)]);
            }
            _ => {}
        }
    }
    // The message is final (delivered) and was never handed to the modem.
    assert!(h.modem.submitted().is_empty(), "{:?}", h.modem.submitted());
}

/// `docs/openapi.json` describes each format's payloads with every field the services'
/// documents list.
#[test]
fn the_openapi_document_describes_every_documented_field() {
    let document: Value = serde_json::from_str(include_str!("../docs/openapi.json")).expect("JSON");
    let schemas = &document["components"]["schemas"];
    let cases = [
        ("Lox24Notification", Format::Lox24, "envelope"),
        ("Lox24Delivery", Format::Lox24, "sms.delivery"),
        ("Lox24Incoming", Format::Lox24, "sms.incoming"),
        ("GatewayapiStatus", Format::Gatewayapi, "status"),
        ("GatewayapiMo", Format::Gatewayapi, "mo"),
        ("Smsgateway24Status", Format::Smsgateway24, "status"),
        ("Smsgateway24Incoming", Format::Smsgateway24, "incoming"),
        ("SmsgateWebhook", Format::Smsgate, "envelope"),
    ];
    for (schema, format, kind) in cases {
        let documented = schemas[schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} is in openapi.json"));
        let spec = spec(format, kind);
        for field in spec["fields"].as_object().expect("fields").keys() {
            assert!(documented.contains_key(field), "{schema} lacks {field}");
        }
    }
}
