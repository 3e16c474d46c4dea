//! The durable gateway against the simulated modem (no modem-side delays), printing:
//! - messages/s from enqueue to `sms.sent`;
//! - p50/p99 from `+CMTI` on the wire to a durable `sms.received` event;
//! - disk use and RSS after 100 000 events in the store.
//!
//! Run: `cargo bench --bench gateway`. Throughput and latency are shown with the default (no
//! command gap: our own cost) and with a 100 ms gap (`command_gap = "100ms"`).

use std::time::Duration;

use smsrelay::at::SessionConfig;
use smsrelay::gateway::{Gateway, GatewaySettings, NewMessage};
use smsrelay::mock::{InboundSms, MockConfig, MockModem, ReportBehaviour};
use smsrelay::modem::{InitSettings, Modem, ModemSettings};
use smsrelay::store::{NewEvent, Store, StoreSettings, Subscription};
use tokio::time::{Instant, sleep};

fn subscriptions() -> Vec<Subscription> {
    vec![Subscription {
        endpoint: "crm".into(),
        events: vec!["sms.*".into()],
        ..Subscription::default()
    }]
}

async fn start(gap: Duration, dir: &std::path::Path) -> (MockModem, Gateway, Modem) {
    let modem = MockModem::start(
        MockConfig {
            submit_delay: Duration::ZERO,
            report: ReportBehaviour::None,
            capacity: 255,
            ..MockConfig::default()
        },
        None,
    )
    .expect("the mock starts");
    let mut settings = ModemSettings::new(modem.path());
    settings.init = InitSettings {
        poll_interval: Duration::from_millis(20),
        ..InitSettings::default()
    };
    settings.session = SessionConfig {
        command_gap: gap,
        ..SessionConfig::default()
    };
    let mut driver = Modem::start(settings);
    let events = std::mem::replace(&mut driver.events, tokio::sync::mpsc::channel(1).1);
    let store = Store::open(dir, &StoreSettings::default(), subscriptions()).expect("store");
    let gateway = Gateway::new(store, driver.handle.clone(), GatewaySettings::default());
    gateway.start(events).await.expect("starts");
    // Wait for the start-up sweep and health read.
    while driver.handle.status().storage.is_none() {
        sleep(Duration::from_millis(5)).await;
    }
    (modem, gateway, driver)
}

fn count(store: &Store, name: &str) -> usize {
    store
        .events_after(0, usize::MAX)
        .map(|events| events.iter().filter(|e| e.name == name).count())
        .unwrap_or(0)
}

async fn send_rate(gap: Duration, messages: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_modem, gateway, _driver) = start(gap, dir.path()).await;
    let started = Instant::now();
    for n in 0..messages {
        let request = NewMessage {
            to: "+447700900123".into(),
            text: format!("throughput {n}"),
            ..NewMessage::default()
        };
        gateway.enqueue(request).await.expect("accepted");
    }
    let enqueued = started.elapsed();
    while count(gateway.store(), "sms.sent") < messages {
        sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    println!(
        "enqueue → sms.sent, command gap {gap:?}: {messages} messages in {:.2} s = {:.1}/s \
         (enqueue alone {:.0}/s)",
        took.as_secs_f64(),
        messages as f64 / took.as_secs_f64(),
        messages as f64 / enqueued.as_secs_f64()
    );
}

async fn inbound_latency(gap: Duration, messages: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (modem, gateway, _driver) = start(gap, dir.path()).await;
    let mut latencies = Vec::with_capacity(messages);
    for n in 0..messages {
        let injected = Instant::now();
        modem
            .inject_sms(&InboundSms::new("+447700900555", &format!("latency {n}")))
            .expect("injects");
        while count(gateway.store(), "sms.received") <= n {
            sleep(Duration::from_micros(500)).await;
        }
        latencies.push(injected.elapsed());
        // The next +CMTI goes out once the delete is done.
        while !modem.with_engine(|engine, _| engine.stored("SM").is_empty()) {
            sleep(Duration::from_millis(1)).await;
        }
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "+CMTI → durable sms.received, command gap {gap:?}, {messages} messages: p50 {:.1} ms, p99 {:.1} ms",
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            du(&path)
        } else {
            entry.metadata().map_or(0, |m| m.len())
        };
    }
    total
}

fn hundred_thousand_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), &StoreSettings::default(), subscriptions()).expect("store");
    let before = rss_kib();
    let started = std::time::Instant::now();
    // A realistic event body (an sms.received), 100 per transaction and flush.
    for batch in 0..1000 {
        let events: Vec<NewEvent> = (0..100)
            .map(|n| NewEvent {
                name: "sms.received".into(),
                data: serde_json::json!({
                    "message_id": uuid::Uuid::now_v7().to_string(),
                    "from": "+447700900555",
                    "text": format!("Message {batch}-{n}: see you at the station at 6, don't be late!"),
                    "encoding": "gsm7",
                    "parts": 1,
                    "incomplete": false,
                    "smsc": "+447700900001",
                    "sent_at": "2026-11-24T18:00:00+01:00",
                    "received_at": "2026-11-24T17:00:01Z",
                }),
            })
            .collect();
        store.record_events(&events).expect("written");
    }
    let took = started.elapsed();
    store.flush().expect("flushed");
    println!(
        "100 000 events (+100 000 webhook jobs) in {:.1} s: {:.1} MB on disk (sled says {:.1} MB), \
         RSS {:.1} MB (grew {:.1} MB; cache cap 16 MB)",
        took.as_secs_f64(),
        du(dir.path()) as f64 / 1e6,
        store.size_on_disk().unwrap_or(0) as f64 / 1e6,
        rss_kib() as f64 / 1024.0,
        (rss_kib().saturating_sub(before)) as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // EVENTS_ONLY=1 skips to the store figures.
        if std::env::var("EVENTS_ONLY").is_ok() {
            return;
        }
        send_rate(SessionConfig::default().command_gap, 500).await;
        send_rate(Duration::from_millis(100), 100).await;
        inbound_latency(SessionConfig::default().command_gap, 300).await;
        inbound_latency(Duration::from_millis(100), 100).await;
    });
    hundred_thousand_events();
}
