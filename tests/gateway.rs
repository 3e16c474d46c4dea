//! The durable gateway end to end: the simulated modem on a real PTY, our driver, the gateway
//! and a sled store in a temp dir. Events are read back from the store, field by field.

use std::time::Duration;

use serde_json::{Value, json};
use smsrelay::at::SessionConfig;
use smsrelay::gateway::{EnqueueError, Gateway, GatewaySettings, NewMessage};
use smsrelay::mock::{InboundSms, MockConfig, MockModem, ReportBehaviour};
use smsrelay::modem::{InitSettings, Modem, ModemSettings};
use smsrelay::pdu::{Address, Pdu, Status, StatusReport, Timestamp, Tpdu};
use smsrelay::store::{
    Effects, Event, MessageReference, MessageState, PartState, Store, StoreSettings, Subscription,
};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::{Instant, sleep};

const WAIT: Duration = Duration::from_secs(15);
const TO: &str = "+447700900123";

struct Harness {
    modem: MockModem,
    gateway: Gateway,
    _driver: Modem,
    dir: TempDir,
}

fn fast() -> MockConfig {
    MockConfig {
        submit_delay: Duration::from_millis(10),
        report_delay: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

fn settings() -> GatewaySettings {
    GatewaySettings {
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        incomplete_timeout: Duration::from_secs(60),
        ..GatewaySettings::default()
    }
}

fn open_store(dir: &TempDir) -> Store {
    let subscriptions = vec![Subscription {
        endpoint: "crm".into(),
        events: vec!["sms.*".into()],
        ..Subscription::default()
    }];
    Store::open(dir.path(), &StoreSettings::default(), subscriptions).expect("store opens")
}

async fn start(modem: MockModem, dir: TempDir, settings: GatewaySettings) -> Harness {
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
    let gateway = Gateway::new(open_store(&dir), driver.handle.clone(), settings);
    gateway.start(events).await.expect("gateway starts");
    Harness {
        modem,
        gateway,
        _driver: driver,
        dir,
    }
}

async fn harness(config: MockConfig, settings: GatewaySettings) -> Harness {
    let modem = MockModem::start(config, None).expect("mock starts");
    start(modem, tempfile::tempdir().expect("temp dir"), settings).await
}

fn events(store: &Store) -> Vec<Event> {
    store.events_after(0, 10_000).expect("events read")
}

/// Waits for `count` events called `name` matching `filter`.
async fn wait_events(
    store: &Store,
    name: &str,
    count: usize,
    filter: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found: Vec<Event> = events(store)
            .into_iter()
            .filter(|event| event.name == name && filter(event))
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} × {name} within {WAIT:?}; events: {:#?}",
            events(store)
        );
        sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(name: &str, store: &Store, message_id: &str) -> Event {
    let id = message_id.to_string();
    wait_events(store, name, 1, move |event| {
        event.data["message_id"] == id.as_str()
    })
    .await
    .remove(0)
}

fn is_rfc3339(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| OffsetDateTime::parse(text, &Rfc3339).is_ok())
}

fn send(text: &str) -> NewMessage {
    NewMessage {
        to: TO.into(),
        text: text.into(),
        callback_data: Some("order-42".into()),
        ..NewMessage::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_sent_then_delivered_with_events_field_by_field() {
    let h = harness(fast(), settings()).await;
    let accepted = h
        .gateway
        .enqueue(send("Hello from smsrelay"))
        .await
        .expect("accepted");
    assert_eq!((accepted.parts, accepted.encoding.as_str()), (1, "gsm7"));
    let store = h.gateway.store();
    // On disk before the answer: a second handle on the same tree sees it.
    assert_eq!(
        store.message(&accepted.id).expect("reads").map(|m| m.to),
        Some(TO.to_string())
    );

    let sent = wait_for("sms.sent", store, &accepted.id).await;
    let reference = h.modem.submitted()[0].reference;
    assert_eq!(sent.api_version, "2026-11-22");
    assert!(uuid::Uuid::parse_str(&sent.id).is_ok());
    let data = &sent.data;
    assert_eq!(data["message_id"], accepted.id.as_str());
    assert_eq!(data["to"], TO);
    assert_eq!(data["parts"], 1);
    assert_eq!(data["encoding"], "gsm7");
    assert_eq!(data["message_references"], json!([reference]));
    assert!(is_rfc3339(&data["sent_at"]), "{data}");
    assert_eq!(data["callback_data"], "order-42");

    let delivered = wait_for("sms.delivered", store, &accepted.id).await;
    let data = &delivered.data;
    assert_eq!(data["message_id"], accepted.id.as_str());
    assert_eq!(data["to"], TO);
    assert_eq!(data["parts"], 1);
    assert_eq!(data["status"], "delivered");
    assert_eq!(data["status_code"], 0);
    assert_eq!(data["status_text"], "received by SME");
    assert!(is_rfc3339(&data["delivered_at"]), "{data}");
    assert_eq!(data["callback_data"], "order-42");
    assert!(delivered.sequence > sent.sequence);

    let message = store.message(&accepted.id).expect("reads").expect("exists");
    assert_eq!(message.state, MessageState::Delivered);
    assert!(store.outbox().expect("reads").is_empty());
    // One webhook job per SMS event for the one endpoint, subscribed to `sms.*` (the modem's
    // own events, modem.connected here, get none).
    let jobs = store.jobs(100).expect("jobs");
    let sms_events = events(store)
        .iter()
        .filter(|event| event.name.starts_with("sms."))
        .count();
    assert_eq!(jobs.len(), sms_events);
    assert!(jobs.iter().all(|(_, job)| job.endpoint == "crm"));
    let mut sequences: Vec<u64> = jobs.iter().map(|(_, job)| job.sequence).collect();
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (1..=jobs.len() as u64).collect::<Vec<_>>(),
        "dense per endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_message_is_delivered_once_every_part_is() {
    let h = harness(fast(), settings()).await;
    let text = "Three parts of GSM text, each one filled to the brim. ".repeat(8);
    let accepted = h.gateway.enqueue(send(&text)).await.expect("accepted");
    assert_eq!(accepted.parts, 3);
    let store = h.gateway.store();
    let sent = wait_for("sms.sent", store, &accepted.id).await;
    assert_eq!(sent.data["parts"], 3);
    assert_eq!(
        sent.data["message_references"].as_array().map(Vec::len),
        Some(3)
    );
    wait_for("sms.delivered", store, &accepted.id).await;
    let joined: String = h
        .modem
        .submitted()
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(joined, text);
    let message = store.message(&accepted.id).expect("reads").expect("exists");
    assert!(
        message
            .parts
            .iter()
            .all(|part| matches!(part.state, PartState::Delivered { .. }))
    );
    // Exactly one of each.
    assert_eq!(
        events(store)
            .iter()
            .filter(|e| e.name == "sms.delivered")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_submit_error_fails_the_message_at_once() {
    let h = harness(fast(), settings()).await;
    h.modem
        .with_engine(|engine, _| engine.fail_next_sends(1, 21));
    let accepted = h.gateway.enqueue(send("rejected")).await.expect("accepted");
    let failed = wait_for("sms.failed", h.gateway.store(), &accepted.id).await;
    let data = &failed.data;
    assert_eq!(data["message_id"], accepted.id.as_str());
    assert_eq!(data["to"], TO);
    assert_eq!(data["stage"], "submit");
    assert_eq!(data["error_code"], 21);
    assert!(
        data["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{data}"
    );
    assert_eq!(data["callback_data"], "order-42");
    assert!(h.modem.submitted().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_submit_error_is_retried_then_delivered() {
    let h = harness(fast(), settings()).await;
    h.modem
        .with_engine(|engine, _| engine.fail_next_sends(2, 500));
    let accepted = h
        .gateway
        .enqueue(send("try again"))
        .await
        .expect("accepted");
    let store = h.gateway.store();
    wait_for("sms.delivered", store, &accepted.id).await;
    let message = store.message(&accepted.id).expect("reads").expect("exists");
    assert_eq!(message.attempts, 2);
    assert_eq!(h.modem.submitted().len(), 1, "sent once");
    assert!(!events(store).iter().any(|e| e.name == "sms.failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_report_keeps_the_message_pending_until_delivered() {
    let h = harness(
        MockConfig {
            report: ReportBehaviour::TemporaryThenDelivered,
            ..fast()
        },
        settings(),
    )
    .await;
    let accepted = h
        .gateway
        .enqueue(send("slow phone"))
        .await
        .expect("accepted");
    let store = h.gateway.store();
    let delivered = wait_for("sms.delivered", store, &accepted.id).await;
    assert_eq!(delivered.data["status_code"], 0);
    assert!(!events(store).iter().any(|e| e.name == "sms.failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_report_fails_the_message() {
    let h = harness(
        MockConfig {
            report: ReportBehaviour::PermanentFailure,
            ..fast()
        },
        settings(),
    )
    .await;
    let accepted = h.gateway.enqueue(send("expires")).await.expect("accepted");
    let failed = wait_for("sms.failed", h.gateway.store(), &accepted.id).await;
    assert_eq!(failed.data["stage"], "delivery");
    assert_eq!(failed.data["error_code"], 0x46);
    assert_eq!(failed.data["error"], "validity period expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmatched_report_is_kept_and_counted() {
    let h = harness(fast(), settings()).await;
    let urc = routed_report(200, "+447700900999");
    // Let the driver finish its start-up so the URC is not taken for an answer.
    wait_ready(&h).await;
    h.modem
        .with_engine(|engine, _| engine.inject_urc(smsrelay::mock::UrcPoint::Now, &urc));
    let store = h.gateway.store();
    let deadline = Instant::now() + WAIT;
    while store.unmatched().expect("reads").is_empty() {
        assert!(Instant::now() < deadline, "the report was not kept");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.gateway
            .counters()
            .unmatched_reports
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(!events(store).iter().any(|e| e.name.starts_with("sms.")));
}

/// A `+CDS` URC (a routed status report, delivered) for `reference` to `recipient`.
fn routed_report(reference: u8, recipient: &str) -> String {
    let stamp = Timestamp::from_datetime(OffsetDateTime::now_utc());
    let report = Pdu {
        smsc: None,
        tpdu: Tpdu::StatusReport(StatusReport {
            no_more_messages: true,
            loop_prevention: false,
            reports_command: false,
            message_reference: reference,
            recipient: Address::from_number(recipient).expect("valid"),
            timestamp: stamp,
            discharge_time: stamp,
            status: Status(0),
            pid: None,
            dcs: None,
            user_data: None,
        }),
    };
    let bytes = report.encode().expect("encodes");
    format!("+CDS: {}\r\n{}", bytes.len() - 1, hex::encode_upper(&bytes))
}

async fn wait_ready(h: &Harness) {
    let deadline = Instant::now() + WAIT;
    while h._driver.handle.status().storage.is_none() {
        assert!(Instant::now() < deadline, "the modem is not ready");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_single_is_received_and_deleted_from_the_modem() {
    let h = harness(fast(), settings()).await;
    wait_ready(&h).await;
    h.modem
        .inject_sms(&InboundSms::new("+447700900555", "Ping"))
        .expect("injects");
    let store = h.gateway.store();
    let received = wait_events(store, "sms.received", 1, |_| true)
        .await
        .remove(0);
    let data = &received.data;
    assert!(uuid::Uuid::parse_str(data["message_id"].as_str().unwrap_or("")).is_ok());
    assert_eq!(data["from"], "+447700900555");
    assert_eq!(data["text"], "Ping");
    assert_eq!(data["encoding"], "gsm7");
    assert_eq!(data["parts"], 1);
    assert_eq!(data["incomplete"], false);
    assert!(data.get("missing_parts").is_none());
    assert_eq!(data["smsc"], "+447700900001");
    // No `[modem] number`: the number the SIM reports with AT+CNUM.
    assert_eq!(data["to"], "+447700900999", "{data}");
    assert!(is_rfc3339(&data["sent_at"]), "{data}");
    assert!(is_rfc3339(&data["received_at"]), "{data}");
    let deadline = Instant::now() + WAIT;
    while !h
        .modem
        .with_engine(|engine, _| engine.stored("SM").is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "not deleted after the event was stored"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_out_of_order_with_a_duplicate_is_received_once() {
    let h = harness(fast(), settings()).await;
    wait_ready(&h).await;
    let text = "GSM with € and [brackets], long enough for several parts. ".repeat(6);
    let sms = InboundSms {
        reference: 77,
        ..InboundSms::new("+447700900555", &text)
    };
    let pdus = sms.pdus(Some("+447700900001")).expect("encodes");
    let total = pdus.len();
    assert!(total >= 3, "{total} parts");
    // Backwards, with the middle part twice.
    let mut order: Vec<usize> = (0..total).rev().collect();
    order.insert(1, total / 2);
    for index in order {
        let pdu = pdus[index].clone();
        h.modem
            .with_engine(move |engine, now| engine.deliver_pdu(pdu, now));
    }
    let store = h.gateway.store();
    let received = wait_events(store, "sms.received", 1, |_| true).await;
    assert_eq!(received[0].data["text"], text.as_str());
    assert_eq!(received[0].data["parts"], total);
    assert_eq!(received[0].data["incomplete"], false);
    let deadline = Instant::now() + WAIT;
    while !h
        .modem
        .with_engine(|engine, _| engine.stored("SM").is_empty())
    {
        assert!(Instant::now() < deadline, "parts not deleted");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        events(store)
            .iter()
            .filter(|e| e.name == "sms.received")
            .count(),
        1
    );
    assert!(
        h.gateway
            .counters()
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_message_is_emitted_after_the_timeout() {
    let h = harness(
        fast(),
        GatewaySettings {
            // Long enough for both parts to be read on a busy machine, short for a test.
            incomplete_timeout: Duration::from_secs(3),
            ..settings()
        },
    )
    .await;
    wait_ready(&h).await;
    let text = "x".repeat(400);
    let pdus = InboundSms::new("+447700900555", &text)
        .pdus(None)
        .expect("encodes");
    assert_eq!(pdus.len(), 3);
    for index in [0, 2] {
        let pdu = pdus[index].clone();
        h.modem
            .with_engine(move |engine, now| engine.deliver_pdu(pdu, now));
    }
    let received = wait_events(h.gateway.store(), "sms.received", 1, |_| true).await;
    let data = &received[0].data;
    assert_eq!(data["incomplete"], true);
    assert_eq!(data["missing_parts"], json!([2]));
    assert_eq!(data["parts"], 3);
    assert_eq!(data["text"], "x".repeat(153 + 94).as_str());
    // Stamped with the arrival of its parts, not with the timeout that gave up on it.
    let received_at = data["received_at"]
        .as_str()
        .and_then(|at| humantime::parse_rfc3339(at).ok())
        .expect("an RFC 3339 received_at");
    let emitted_at = std::time::UNIX_EPOCH + Duration::from_secs(received[0].created_at);
    assert!(
        emitted_at
            .duration_since(received_at)
            .is_ok_and(|waited| waited >= Duration::from_secs(2)),
        "received_at {received_at:?} is the emission time {emitted_at:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucs2_and_emoji_survive_both_ways() {
    let h = harness(fast(), settings()).await;
    wait_ready(&h).await;
    let text = "Grüße aus Köln 👋🏽 — 你好";
    let accepted = h.gateway.enqueue(send(text)).await.expect("accepted");
    assert_eq!(accepted.encoding, "ucs2");
    let store = h.gateway.store();
    let sent = wait_for("sms.sent", store, &accepted.id).await;
    assert_eq!(sent.data["encoding"], "ucs2");
    assert_eq!(h.modem.submitted()[0].text, text);

    h.modem
        .inject_sms(&InboundSms::new("+447700900555", "Réponse 🎉"))
        .expect("injects");
    let received = wait_events(store, "sms.received", 1, |_| true).await;
    assert_eq!(received[0].data["text"], "Réponse 🎉");
    assert_eq!(received[0].data["encoding"], "ucs2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_nothing_is_stored() {
    let h = harness(fast(), settings()).await;
    let cases = [
        (
            NewMessage {
                to: "".into(),
                ..send("x")
            },
            "to",
        ),
        (
            NewMessage {
                to: "+44 77x".into(),
                ..send("x")
            },
            "to",
        ),
        (send(""), "text"),
        (send(&"y".repeat(160 * 11)), "text"),
        (
            NewMessage {
                callback_data: Some("z".repeat(1025)),
                ..send("x")
            },
            "callback_data",
        ),
    ];
    for (request, field) in cases {
        match h.gateway.enqueue(request).await {
            Err(EnqueueError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(
        h.gateway
            .store()
            .messages(None, 10)
            .expect("reads")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_cut_by_a_crash_fails_as_interrupted_and_is_never_resent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = {
        // A previous run: the message was marked Submitting and then the process died.
        let store = open_store(&dir);
        let modem = MockModem::start(fast(), None).expect("mock starts");
        let driver = Modem::start(ModemSettings::new(modem.path()));
        let gateway = Gateway::new(store.clone(), driver.handle.clone(), settings());
        let accepted = gateway.enqueue(send("maybe sent")).await.expect("accepted");
        driver.handle.shutdown().await;
        store
            .update_message(&accepted.id, |message| {
                message.state = MessageState::Sending;
                message.parts[0].state = PartState::Submitting { since: 1 };
                Effects::default()
            })
            .expect("marks");
        accepted.id
    };
    let modem = MockModem::start(fast(), None).expect("mock starts");
    let h = start(modem, dir, settings()).await;
    let store = h.gateway.store();
    let failed = wait_for("sms.failed", store, &id).await;
    assert_eq!(failed.data["stage"], "interrupted");
    // Out of the outbox, so the sender can never pick it again.
    assert!(store.outbox().expect("reads").is_empty());
    // The sender takes the outbox oldest first: once a later message is sent, it has been
    // past this one, and the modem's log shows the later message alone went out.
    wait_ready(&h).await;
    let later = h.gateway.enqueue(send("later")).await.expect("accepted");
    wait_for("sms.sent", store, &later.id).await;
    assert_eq!(h.modem.submitted().len(), 1);
    let message = store.message(&id).expect("reads").expect("exists");
    assert_eq!(message.state, MessageState::Failed);
    assert!(matches!(
        message.parts[0].state,
        PartState::Submitting { since: 1 }
    ));
    assert!(h.dir.path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_resume_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = {
        let store = open_store(&dir);
        let modem = MockModem::start(fast(), None).expect("mock starts");
        let driver = Modem::start(ModemSettings::new(modem.path()));
        let gateway = Gateway::new(store, driver.handle.clone(), settings());
        // Never started: the message stays queued.
        let accepted = gateway.enqueue(send("later")).await.expect("accepted");
        driver.handle.shutdown().await;
        accepted.id
    };
    let modem = MockModem::start(fast(), None).expect("mock starts");
    let h = start(modem, dir, settings()).await;
    wait_for("sms.delivered", h.gateway.store(), &id).await;
    assert_eq!(h.modem.submitted().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_concatenation_reference_does_not_mix_two_messages() {
    let h = harness(fast(), settings()).await;
    wait_ready(&h).await;
    let first = format!("first {}", "a".repeat(200));
    let second = format!("second {}", "b".repeat(200));
    let pdus = |text: &str| {
        InboundSms {
            reference: 9,
            ..InboundSms::new("+447700900555", text)
        }
        .pdus(None)
        .expect("encodes")
    };
    let (a, b) = (pdus(&first), pdus(&second));
    // Part 1 of the first, then the second message whole: its part 1 clashes.
    for pdu in [a[0].clone(), b[0].clone(), b[1].clone()] {
        h.modem
            .with_engine(move |engine, now| engine.deliver_pdu(pdu, now));
    }
    let store = h.gateway.store();
    let received = wait_events(store, "sms.received", 2, |_| true).await;
    assert_eq!(received[0].data["incomplete"], true);
    assert_eq!(received[0].data["missing_parts"], json!([2]));
    assert!(
        received[0].data["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("first"))
    );
    assert_eq!(received[1].data["text"], second.as_str());
    assert_eq!(received[1].data["incomplete"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_message_failed_by_an_early_report_sends_no_more_parts() {
    // Each part's report (a failure) comes before the next part's +CMGS.
    let h = harness(
        MockConfig {
            submit_delay: Duration::from_millis(300),
            report_delay: Duration::ZERO,
            report: ReportBehaviour::PermanentFailure,
            ..fast()
        },
        settings(),
    )
    .await;
    let text = "Three parts of GSM text, each one filled to the brim. ".repeat(8);
    let accepted = h.gateway.enqueue(send(&text)).await.expect("accepted");
    assert_eq!(accepted.parts, 3);
    let store = h.gateway.store();
    wait_for("sms.failed", store, &accepted.id).await;
    // The part in flight when the report came is still answered; wait for that answer.
    let deadline = Instant::now() + WAIT;
    loop {
        let message = store.message(&accepted.id).expect("reads").expect("exists");
        let settled = !message
            .parts
            .iter()
            .any(|part| matches!(part.state, PartState::Submitting { .. }));
        if settled {
            assert_eq!(message.state, MessageState::Failed);
            break;
        }
        assert!(Instant::now() < deadline, "a part stays in flight");
        sleep(Duration::from_millis(20)).await;
    }
    let names: Vec<String> = events(store)
        .iter()
        .filter(|e| e.data["message_id"] == accepted.id.as_str())
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, ["sms.queued", "sms.failed"]);
    assert!(
        h.modem.submitted().len() < 3,
        "parts went out after the failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_unmatched_report_is_not_applied_to_a_new_message_with_its_reference() {
    let h = harness(
        MockConfig {
            report: ReportBehaviour::None,
            ..fast()
        },
        settings(),
    )
    .await;
    // A report for TP-MR 0 to our recipient that nothing matches (its part's +CMGS was lost).
    let urc = routed_report(0, TO);
    wait_ready(&h).await;
    h.modem
        .with_engine(|engine, _| engine.inject_urc(smsrelay::mock::UrcPoint::Now, &urc));
    let store = h.gateway.store();
    let deadline = Instant::now() + WAIT;
    while store.unmatched().expect("reads").is_empty() {
        assert!(Instant::now() < deadline, "the report was not kept");
        sleep(Duration::from_millis(20)).await;
    }
    // A new message to the same number gets TP-MR 0 (the modem's counter starts there).
    let accepted = h.gateway.enqueue(send("new")).await.expect("accepted");
    wait_for("sms.sent", store, &accepted.id).await;
    assert_eq!(h.modem.submitted()[0].reference, 0);
    let message = store.message(&accepted.id).expect("reads").expect("exists");
    assert_eq!(message.state, MessageState::Sent, "{:?}", events(store));
    assert_eq!(store.unmatched().expect("reads").len(), 1);
}

/// Issue #14: a message whose requested status report never comes ends `expired` once its
/// validity period plus the margin is over; a late report then changes nothing and is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_report_never_comes_expires_after_validity_plus_margin() {
    let h = harness(
        MockConfig {
            report: ReportBehaviour::None,
            ..fast()
        },
        GatewaySettings {
            report_timeout_margin: Duration::from_secs(60),
            ..settings()
        },
    )
    .await;
    let request = NewMessage {
        validity: Some(Duration::from_secs(300)),
        ..send("no report will come")
    };
    let accepted = h.gateway.enqueue(request).await.expect("accepted");
    let store = h.gateway.store();
    let sent = wait_for("sms.sent", store, &accepted.id).await;
    let message = store.message(&accepted.id).expect("reads").expect("stored");
    let sent_at = message.sent_at.expect("sent");
    assert_eq!(message.validity_ms, Some(300_000));
    // Time is passed in: the sweep decides at "now" = the last moment before the deadline,
    // then at the deadline.
    let due = sent_at + 300_000 + 60_000;
    assert_eq!(h.gateway.expire_overdue(due - 1).await.expect("sweeps"), 0);
    let state = |store: &Store| store.message(&accepted.id).expect("reads").expect("stored");
    assert_eq!(state(store).state, MessageState::Sent);
    assert_eq!(h.gateway.expire_overdue(due).await.expect("sweeps"), 1);
    let message = state(store);
    assert_eq!(message.state, MessageState::Expired);
    assert_eq!(
        message
            .last_error
            .as_ref()
            .map(|error| error.stage.as_str()),
        Some("expired")
    );
    let expired: Vec<Event> = events(store)
        .into_iter()
        .filter(|event| event.name == "sms.expired")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:#?}");
    let data = &expired[0].data;
    assert_eq!(data["message_id"], accepted.id.as_str());
    assert_eq!(data["to"], TO);
    assert_eq!(data["parts"], 1);
    assert_eq!(
        data["sent_at"],
        smsrelay::gateway::rfc3339(sent_at).as_str()
    );
    assert_eq!(data["expired_at"], smsrelay::gateway::rfc3339(due).as_str());
    assert!(
        is_rfc3339(&data["sent_at"]) && is_rfc3339(&data["expired_at"]),
        "{data}"
    );
    assert_eq!(
        data["reason"],
        "no status report within the validity period (5m) plus 1m"
    );
    assert_eq!(data["callback_data"], "order-42");
    // Settled once: a later sweep finds nothing more to do.
    assert_eq!(
        h.gateway
            .expire_overdue(due + 3_600_000)
            .await
            .expect("sweeps"),
        0
    );
    // Its reference is gone, so a late report cannot match it (or be taken for another
    // message's): it is kept as unmatched and the state stays final.
    let reference = sent.data["message_references"][0]
        .as_u64()
        .and_then(|reference| u8::try_from(reference).ok())
        .expect("a TP-MR");
    assert!(
        store
            .references(MessageReference(reference))
            .expect("reads")
            .iter()
            .all(|found| found.message_id != accepted.id)
    );
    let urc = routed_report(reference, TO);
    h.modem
        .with_engine(|engine, _| engine.inject_urc(smsrelay::mock::UrcPoint::Now, &urc));
    let deadline = Instant::now() + WAIT;
    while store.unmatched().expect("reads").is_empty() {
        assert!(Instant::now() < deadline, "the late report was not kept");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state(store).state, MessageState::Expired);
    assert!(!events(store).iter().any(|e| e.name == "sms.delivered"));
}

/// Issue #14: without a status report requested a message is final at `sent`; the expiry
/// sweep never touches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_a_report_requested_never_expires() {
    let h = harness(
        MockConfig {
            report: ReportBehaviour::None,
            ..fast()
        },
        GatewaySettings {
            status_reports: false,
            ..settings()
        },
    )
    .await;
    let accepted = h
        .gateway
        .enqueue(send("no report asked"))
        .await
        .expect("accepted");
    let store = h.gateway.store();
    wait_for("sms.sent", store, &accepted.id).await;
    let message = store.message(&accepted.id).expect("reads").expect("stored");
    assert!(!message.status_report);
    let far_later = message.sent_at.expect("sent") + 400 * 86_400_000;
    assert_eq!(
        h.gateway.expire_overdue(far_later).await.expect("sweeps"),
        0
    );
    let message = store.message(&accepted.id).expect("reads").expect("stored");
    assert_eq!(message.state, MessageState::Sent);
    assert!(!events(store).iter().any(|e| e.name == "sms.expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_receiving_number_wins_over_the_sims() {
    let h = harness(
        fast(),
        GatewaySettings {
            receiving_number: Some("+15550001111".into()),
            ..settings()
        },
    )
    .await;
    wait_ready(&h).await;
    h.modem
        .inject_sms(&InboundSms::new("+447700900555", "To whom?"))
        .expect("injects");
    let received = wait_events(h.gateway.store(), "sms.received", 1, |_| true)
        .await
        .remove(0);
    assert_eq!(received.data["to"], "+15550001111", "{}", received.data);
}
