//! The modem driver against the simulated modem on a PTY, with no modem-side delays:
//! - latency from `+CMTI` on the wire to the decoded message at the handle (median, p99);
//! - sends per second with zero submit delay;
//! - CPU time the driver's thread uses while idle (default 60 s; `IDLE_SECS` overrides).
//!
//! Each is measured with the default (no command gap: the driver's own cost) and with a 100 ms
//! gap (a modem configured with `command_gap = "100ms"`). Run: `cargo bench --bench modem_driver`.

use std::time::Duration;

use smsrelay::at::SessionConfig;
use smsrelay::mock::{InboundSms, MockConfig, MockModem, ReportBehaviour};
use smsrelay::modem::{InitSettings, Modem, ModemEvent, ModemSettings};
use smsrelay::pdu::{self, Address, SubmitOptions};
use tokio::time::{Instant, timeout};

const MESSAGES: usize = 1000;
const SENDS: usize = 1000;

fn mock() -> MockModem {
    MockModem::start(
        MockConfig {
            submit_delay: Duration::ZERO,
            report: ReportBehaviour::None,
            capacity: 255,
            ..MockConfig::default()
        },
        None,
    )
    .expect("the mock starts")
}

fn settings(modem: &MockModem, gap: Duration) -> ModemSettings {
    let mut settings = ModemSettings::new(modem.path());
    settings.init = InitSettings {
        poll_interval: Duration::from_millis(50),
        ..InitSettings::default()
    };
    settings.session = SessionConfig {
        command_gap: gap,
        ..SessionConfig::default()
    };
    settings
}

async fn start(modem: &MockModem, gap: Duration) -> Modem {
    let mut driver = Modem::start(settings(modem, gap));
    loop {
        match timeout(Duration::from_secs(30), driver.events.recv()).await {
            Ok(Some(ModemEvent::Connected(_))) => break,
            Ok(Some(_)) => {}
            other => panic!("the driver did not connect: {other:?}"),
        }
    }
    // Let the start-up sweep and health read finish, so they do not count.
    driver.handle.sweep().await.expect("sweeps");
    driver
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn inbound_latency(gap: Duration, count: usize) {
    let modem = mock();
    let mut driver = start(&modem, gap).await;
    let sms = InboundSms::new("+447700900555", "latency probe");
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let injected = Instant::now();
        modem.inject_sms(&sms).expect("injects");
        let inbound = loop {
            match timeout(Duration::from_secs(10), driver.events.recv()).await {
                Ok(Some(ModemEvent::Inbound(inbound))) => break inbound,
                Ok(Some(_)) => {}
                other => panic!("no inbound message: {other:?}"),
            }
        };
        latencies.push(injected.elapsed());
        inbound.pdu.as_ref().expect("decodes");
        driver
            .handle
            .confirm(inbound.receipt)
            .await
            .expect("queued");
        // The next +CMTI goes on the wire once the delete is done and the modem is idle.
        while !modem.with_engine(|engine, _| engine.stored("SM").is_empty()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    latencies.sort();
    println!(
        "inbound +CMTI → decoded at the handle, {count} messages, command gap {gap:?}: \
         median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );
    driver.handle.shutdown().await;
}

async fn send_rate(gap: Duration, count: usize) {
    let modem = mock();
    let driver = start(&modem, gap).await;
    let recipient = Address::from_number("+447700900123").expect("valid");
    let part = pdu::submit_parts(&recipient, "throughput", &SubmitOptions::default())
        .expect("encodes")
        .parts
        .remove(0);
    let started = Instant::now();
    for _ in 0..count {
        driver
            .handle
            .send(part.cmgs_length, &part.hex)
            .await
            .expect("sent");
    }
    let took = started.elapsed();
    println!(
        "sends, zero submit delay, command gap {gap:?}: {count} in {:.2} s = {:.0}/s",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
    driver.handle.shutdown().await;
}

/// CPU time of the calling thread, from the kernel's scheduler statistics (ns).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}

async fn idle_cpu(seconds: u64) {
    let modem = mock();
    // Default settings: health every 60 s, sweep every 5 min.
    let driver = start(&modem, SessionConfig::default().command_gap).await;
    let before = thread_cpu();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = thread_cpu().saturating_sub(before);
    println!(
        "idle: the driver's thread used {:.2} ms of CPU over {seconds} s ({:.4} %)",
        ms(used),
        used.as_secs_f64() * 100.0 / seconds as f64
    );
    driver.handle.shutdown().await;
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing we need.
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let idle_seconds = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    // One thread: the driver, its session and this bench share it, so the CPU figure is
    // the driver's (the mock runs on its own thread).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        inbound_latency(SessionConfig::default().command_gap, MESSAGES).await;
        inbound_latency(Duration::from_millis(100), 200).await;
        send_rate(SessionConfig::default().command_gap, SENDS).await;
        send_rate(Duration::from_millis(100), 100).await;
        idle_cpu(idle_seconds).await;
    });
}
