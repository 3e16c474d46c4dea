//! `/metrics` in the Prometheus text format (0.0.4): one table of daemon-wide metrics, one of
//! per-modem metrics (label `modem`, the `[[modem]]` name) and one of per-endpoint gauges,
//! rendered from a `Sample` taken once per request.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared, webhook_status, with_store};
use crate::modem::{Counters, LinkState};
use crate::webhook::{ClockVerdict, EndpointStatus};

/// What the metrics are read from, taken once per request.
#[derive(Debug, Clone)]
struct Sample {
    uptime_seconds: u64,
    modems: Vec<ModemSample>,
    unmatched_reports: u64,
    undecodable: u64,
    calls: u64,
    missed_calls: u64,
    ussd_requests: u64,
    ussd_failures: u64,
    modem_flaps_suppressed: u64,
    balance: Option<f64>,
    store_ok: bool,
    clock: ClockVerdict,
    outbox: usize,
}

/// One modem's part of a sample.
#[derive(Debug, Clone)]
struct ModemSample {
    name: String,
    ready: bool,
    signal_dbm: Option<i16>,
    counters: Counters,
}

/// One daemon-wide metric: its name, `# HELP`, `# TYPE`, and how to read it from a sample.
struct Metric {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&Sample) -> String,
}

/// Every daemon-wide metric, in the order they are written.
const METRICS: &[Metric] = &[
    Metric {
        name: "smsrelay_up",
        help: "1 while the daemon runs.",
        kind: "gauge",
        value: |_| "1".into(),
    },
    Metric {
        name: "smsrelay_uptime_seconds",
        help: "Seconds since start.",
        kind: "gauge",
        value: |sample| sample.uptime_seconds.to_string(),
    },
    Metric {
        name: "smsrelay_unmatched_reports_total",
        help: "Status reports that matched no message.",
        kind: "counter",
        value: |sample| sample.unmatched_reports.to_string(),
    },
    Metric {
        name: "smsrelay_undecodable_total",
        help: "Inbound PDUs that did not decode, recorded as sms.undecodable.",
        kind: "counter",
        value: |sample| sample.undecodable.to_string(),
    },
    Metric {
        name: "smsrelay_calls_total",
        help: "Incoming calls (call.ringing).",
        kind: "counter",
        value: |sample| sample.calls.to_string(),
    },
    Metric {
        name: "smsrelay_missed_calls_total",
        help: "Calls that stopped ringing unanswered or were rejected (call.missed).",
        kind: "counter",
        value: |sample| sample.missed_calls.to_string(),
    },
    Metric {
        name: "smsrelay_ussd_requests_total",
        help: "USSD requests sent (API and balance checks).",
        kind: "counter",
        value: |sample| sample.ussd_requests.to_string(),
    },
    Metric {
        name: "smsrelay_ussd_failures_total",
        help: "USSD requests without a usable answer (refused, timed out, ended).",
        kind: "counter",
        value: |sample| sample.ussd_failures.to_string(),
    },
    Metric {
        name: "smsrelay_modem_flaps_suppressed_total",
        help: "Modem state changes shorter than the debounce, published as no event.",
        kind: "counter",
        value: |sample| sample.modem_flaps_suppressed.to_string(),
    },
    Metric {
        name: "smsrelay_sim_balance",
        help: "The amount in the last balance answer (NaN before the first).",
        kind: "gauge",
        value: |sample| {
            sample
                .balance
                .map_or_else(|| "NaN".into(), |amount| amount.to_string())
        },
    },
    Metric {
        name: "smsrelay_store_ok",
        help: "1 while the database writes; 0 after a write failed (a full disk).",
        kind: "gauge",
        value: |sample| u8::from(sample.store_ok).to_string(),
    },
    Metric {
        name: "smsrelay_clock_unsynchronised",
        help: "1 when webhooks go out with a clock NTP has not synchronised.",
        kind: "gauge",
        value: |sample| u8::from(sample.clock == ClockVerdict::Unsynchronised).to_string(),
    },
    Metric {
        name: "smsrelay_webhooks_held_for_clock",
        help: "1 while webhooks wait for a plausible or synchronised clock.",
        kind: "gauge",
        value: |sample| u8::from(sample.clock.holds()).to_string(),
    },
    Metric {
        name: "smsrelay_outbox_depth",
        help: "Messages waiting to be sent.",
        kind: "gauge",
        value: |sample| sample.outbox.to_string(),
    },
];

/// One metric with a sample per modem (label `modem`).
struct ModemMetric {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&ModemSample) -> String,
}

/// The per-modem metrics, written after the daemon-wide ones.
const PER_MODEM: &[ModemMetric] = &[
    ModemMetric {
        name: "smsrelay_modem_ready",
        help: "1 when the modem is ready, per modem.",
        kind: "gauge",
        value: |modem| u8::from(modem.ready).to_string(),
    },
    ModemMetric {
        name: "smsrelay_modem_signal_dbm",
        help: "Received signal strength.",
        kind: "gauge",
        value: |modem| modem.signal_dbm.map_or("NaN".into(), |dbm| dbm.to_string()),
    },
    ModemMetric {
        name: "smsrelay_parts_sent_total",
        help: "Parts accepted by the network.",
        kind: "counter",
        value: |modem| modem.counters.sent.to_string(),
    },
    ModemMetric {
        name: "smsrelay_send_failures_total",
        help: "Sends that failed.",
        kind: "counter",
        value: |modem| modem.counters.send_failures.to_string(),
    },
    ModemMetric {
        name: "smsrelay_inbound_total",
        help: "Inbound PDUs handed up.",
        kind: "counter",
        value: |modem| modem.counters.received.to_string(),
    },
    ModemMetric {
        name: "smsrelay_modem_timeouts_total",
        help: "AT commands without an answer.",
        kind: "counter",
        value: |modem| modem.counters.timeouts.to_string(),
    },
    ModemMetric {
        name: "smsrelay_modem_reconnects_total",
        help: "Port reopenings.",
        kind: "counter",
        value: |modem| modem.counters.reconnects.to_string(),
    },
    ModemMetric {
        name: "smsrelay_modem_dropped_total",
        help: "Modem events and URCs dropped by a full queue (never an inbound message).",
        kind: "counter",
        value: |modem| modem.counters.dropped.to_string(),
    },
];

/// One gauge with a sample per webhook endpoint.
struct EndpointGauge {
    name: &'static str,
    help: &'static str,
    value: fn(&EndpointStatus) -> usize,
}

/// The per-endpoint gauges, written after the daemon-wide metrics.
const PER_ENDPOINT: &[EndpointGauge] = &[
    EndpointGauge {
        name: "smsrelay_webhook_queue_depth",
        help: "Deliveries waiting, per endpoint.",
        value: |webhook| webhook.queue_depth,
    },
    EndpointGauge {
        name: "smsrelay_webhook_dead_letters",
        help: "Deliveries out of attempts, waiting to be replayed.",
        value: |webhook| webhook.dead_letters,
    },
];

/// `GET /metrics`.
pub async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let outbox = with_store(&state, |store| Ok(store.outbox_len())).await?;
    let webhooks = webhook_status(&state).await?;
    let modems = state
        .gateway
        .modems()
        .iter()
        .map(|slot| {
            let status = slot.handle.status();
            ModemSample {
                name: slot.name.clone(),
                ready: status.state == LinkState::Ready,
                signal_dbm: status.signal.and_then(|signal| signal.dbm()),
                counters: status.counters,
            }
        })
        .collect();
    let gateway = state.gateway.counters();
    let sample = Sample {
        uptime_seconds: state.started.elapsed().as_secs(),
        modems,
        unmatched_reports: gateway.unmatched_reports.load(Ordering::Relaxed),
        undecodable: gateway.undecodable.load(Ordering::Relaxed),
        calls: gateway.calls.load(Ordering::Relaxed),
        missed_calls: gateway.missed_calls.load(Ordering::Relaxed),
        ussd_requests: gateway.ussd_requests.load(Ordering::Relaxed),
        ussd_failures: gateway.ussd_failures.load(Ordering::Relaxed),
        modem_flaps_suppressed: state.gateway.modem_flaps_suppressed(),
        balance: state
            .gateway
            .sim_activity()
            .last_balance
            .and_then(|balance| balance["amount"].as_f64()),
        store_ok: state.gateway.store().failure().is_none(),
        clock: state.dispatcher.clock_status(),
        outbox,
    };
    let mut text = render(&sample, &webhooks);
    if let Some(link) = &state.mqtt {
        text.push_str(&render_mqtt(&link.status()));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// The exposition: each family's HELP and TYPE, then its samples (one per endpoint for the
/// per-endpoint gauges).
fn render(sample: &Sample, webhooks: &[EndpointStatus]) -> String {
    let mut text = String::new();
    for metric in METRICS {
        let Metric {
            name,
            help,
            kind,
            value,
        } = metric;
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
            value(sample)
        ));
    }
    for metric in PER_MODEM {
        let ModemMetric {
            name,
            help,
            kind,
            value,
        } = metric;
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for modem in &sample.modems {
            text.push_str(&format!(
                "{name}{{modem=\"{}\"}} {}\n",
                modem.name,
                value(modem)
            ));
        }
    }
    for EndpointGauge { name, help, value } in PER_ENDPOINT {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for webhook in webhooks {
            text.push_str(&format!(
                "{name}{{endpoint=\"{}\"}} {}\n",
                webhook.name,
                value(webhook)
            ));
        }
    }
    text
}

/// The MQTT link's metrics (only when `[mqtt]` is configured; its event queue is the
/// `mqtt` endpoint of the per-endpoint gauges).
fn render_mqtt(link: &crate::mqtt::LinkStatus) -> String {
    let families: [(&str, &str, &str, u64); 4] = [
        (
            "smsrelay_mqtt_connected",
            "1 while connected to the MQTT broker.",
            "gauge",
            u64::from(link.connected),
        ),
        (
            "smsrelay_mqtt_published_total",
            "Publishes the broker acknowledged.",
            "counter",
            link.published,
        ),
        (
            "smsrelay_mqtt_publish_failures_total",
            "Publishes not acknowledged (retried).",
            "counter",
            link.failed,
        ),
        (
            "smsrelay_mqtt_connections_total",
            "Connections the broker accepted.",
            "counter",
            link.connections,
        ),
    ];
    families
        .iter()
        .map(|(name, help, kind, value)| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{ModemSample, Sample, render};
    use crate::modem::Counters;
    use crate::store::{EndpointHealth, EndpointState};
    use crate::webhook::{ClockVerdict, EndpointStatus};

    fn sample() -> Sample {
        Sample {
            uptime_seconds: 42,
            modems: vec![
                ModemSample {
                    name: "modem1".into(),
                    ready: true,
                    signal_dbm: Some(-73),
                    counters: Counters {
                        sent: 3,
                        send_failures: 1,
                        received: 5,
                        timeouts: 2,
                        reconnects: 4,
                        dropped: 6,
                        ..Counters::default()
                    },
                },
                ModemSample {
                    name: "austria".into(),
                    ready: false,
                    signal_dbm: None,
                    counters: Counters::default(),
                },
            ],
            unmatched_reports: 7,
            undecodable: 8,
            calls: 10,
            missed_calls: 11,
            ussd_requests: 12,
            ussd_failures: 13,
            modem_flaps_suppressed: 14,
            balance: Some(12.5),
            store_ok: true,
            clock: ClockVerdict::Unsynchronised,
            outbox: 9,
        }
    }

    fn endpoint(name: &str, queue_depth: usize, dead_letters: usize) -> EndpointStatus {
        EndpointStatus {
            name: name.into(),
            health: EndpointHealth {
                state: EndpointState::Active,
                consecutive_failures: 0,
                first_failure_at: None,
                circuit_until: None,
                last_success_at: None,
                last_error: None,
                disabled_reason: None,
            },
            queue_depth,
            dead_letters,
            held_for_clock: false,
        }
    }

    /// The whole exposition, byte for byte: scrapers and dashboards read these names.
    const EXPECTED: &str = "\
# HELP smsrelay_up 1 while the daemon runs.
# TYPE smsrelay_up gauge
smsrelay_up 1
# HELP smsrelay_uptime_seconds Seconds since start.
# TYPE smsrelay_uptime_seconds gauge
smsrelay_uptime_seconds 42
# HELP smsrelay_unmatched_reports_total Status reports that matched no message.
# TYPE smsrelay_unmatched_reports_total counter
smsrelay_unmatched_reports_total 7
# HELP smsrelay_undecodable_total Inbound PDUs that did not decode, recorded as sms.undecodable.
# TYPE smsrelay_undecodable_total counter
smsrelay_undecodable_total 8
# HELP smsrelay_calls_total Incoming calls (call.ringing).
# TYPE smsrelay_calls_total counter
smsrelay_calls_total 10
# HELP smsrelay_missed_calls_total Calls that stopped ringing unanswered or were rejected (call.missed).
# TYPE smsrelay_missed_calls_total counter
smsrelay_missed_calls_total 11
# HELP smsrelay_ussd_requests_total USSD requests sent (API and balance checks).
# TYPE smsrelay_ussd_requests_total counter
smsrelay_ussd_requests_total 12
# HELP smsrelay_ussd_failures_total USSD requests without a usable answer (refused, timed out, ended).
# TYPE smsrelay_ussd_failures_total counter
smsrelay_ussd_failures_total 13
# HELP smsrelay_modem_flaps_suppressed_total Modem state changes shorter than the debounce, published as no event.
# TYPE smsrelay_modem_flaps_suppressed_total counter
smsrelay_modem_flaps_suppressed_total 14
# HELP smsrelay_sim_balance The amount in the last balance answer (NaN before the first).
# TYPE smsrelay_sim_balance gauge
smsrelay_sim_balance 12.5
# HELP smsrelay_store_ok 1 while the database writes; 0 after a write failed (a full disk).
# TYPE smsrelay_store_ok gauge
smsrelay_store_ok 1
# HELP smsrelay_clock_unsynchronised 1 when webhooks go out with a clock NTP has not synchronised.
# TYPE smsrelay_clock_unsynchronised gauge
smsrelay_clock_unsynchronised 1
# HELP smsrelay_webhooks_held_for_clock 1 while webhooks wait for a plausible or synchronised clock.
# TYPE smsrelay_webhooks_held_for_clock gauge
smsrelay_webhooks_held_for_clock 0
# HELP smsrelay_outbox_depth Messages waiting to be sent.
# TYPE smsrelay_outbox_depth gauge
smsrelay_outbox_depth 9
# HELP smsrelay_modem_ready 1 when the modem is ready, per modem.
# TYPE smsrelay_modem_ready gauge
smsrelay_modem_ready{modem=\"modem1\"} 1
smsrelay_modem_ready{modem=\"austria\"} 0
# HELP smsrelay_modem_signal_dbm Received signal strength.
# TYPE smsrelay_modem_signal_dbm gauge
smsrelay_modem_signal_dbm{modem=\"modem1\"} -73
smsrelay_modem_signal_dbm{modem=\"austria\"} NaN
# HELP smsrelay_parts_sent_total Parts accepted by the network.
# TYPE smsrelay_parts_sent_total counter
smsrelay_parts_sent_total{modem=\"modem1\"} 3
smsrelay_parts_sent_total{modem=\"austria\"} 0
# HELP smsrelay_send_failures_total Sends that failed.
# TYPE smsrelay_send_failures_total counter
smsrelay_send_failures_total{modem=\"modem1\"} 1
smsrelay_send_failures_total{modem=\"austria\"} 0
# HELP smsrelay_inbound_total Inbound PDUs handed up.
# TYPE smsrelay_inbound_total counter
smsrelay_inbound_total{modem=\"modem1\"} 5
smsrelay_inbound_total{modem=\"austria\"} 0
# HELP smsrelay_modem_timeouts_total AT commands without an answer.
# TYPE smsrelay_modem_timeouts_total counter
smsrelay_modem_timeouts_total{modem=\"modem1\"} 2
smsrelay_modem_timeouts_total{modem=\"austria\"} 0
# HELP smsrelay_modem_reconnects_total Port reopenings.
# TYPE smsrelay_modem_reconnects_total counter
smsrelay_modem_reconnects_total{modem=\"modem1\"} 4
smsrelay_modem_reconnects_total{modem=\"austria\"} 0
# HELP smsrelay_modem_dropped_total Modem events and URCs dropped by a full queue (never an inbound message).
# TYPE smsrelay_modem_dropped_total counter
smsrelay_modem_dropped_total{modem=\"modem1\"} 6
smsrelay_modem_dropped_total{modem=\"austria\"} 0
# HELP smsrelay_webhook_queue_depth Deliveries waiting, per endpoint.
# TYPE smsrelay_webhook_queue_depth gauge
smsrelay_webhook_queue_depth{endpoint=\"crm\"} 10
smsrelay_webhook_queue_depth{endpoint=\"ops\"} 0
# HELP smsrelay_webhook_dead_letters Deliveries out of attempts, waiting to be replayed.
# TYPE smsrelay_webhook_dead_letters gauge
smsrelay_webhook_dead_letters{endpoint=\"crm\"} 1
smsrelay_webhook_dead_letters{endpoint=\"ops\"} 0
";

    #[test]
    fn the_exposition_keeps_every_name_help_and_type() {
        let webhooks = [endpoint("crm", 10, 1), endpoint("ops", 0, 0)];
        assert_eq!(render(&sample(), &webhooks), EXPECTED);
    }

    #[test]
    fn an_unknown_signal_is_nan_and_a_failing_store_is_0() {
        let failing = Sample {
            store_ok: false,
            ..sample()
        };
        let text = render(&failing, &[]);
        assert!(
            text.contains("\nsmsrelay_modem_signal_dbm{modem=\"austria\"} NaN\n"),
            "{text}"
        );
        assert!(text.contains("\nsmsrelay_store_ok 0\n"), "{text}");
    }
}
