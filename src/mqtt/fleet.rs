//! `smsrelay fleet status`: every gateway on a broker, from their retained `status` and
//! `state` messages under `<base>/+/`. The broker is the fleet's shared view; nothing of
//! ours runs centrally.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::Instant;

use super::config::{MqttSection, MqttSettings};
use super::state::StateDocument;

/// One gateway as its retained messages describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayRow {
    /// The topic level under the base (`smsrelay/<this>/state`).
    pub name: String,
    /// `online`, `offline`, or `unknown` without a status message.
    pub status: String,
    /// The state document, when one was retained and parses.
    pub state: Option<StateDocument>,
}

/// Where to look and how long to listen.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The broker, as `[mqtt] url` takes it.
    pub url: String,
    /// User name and password.
    pub username: Option<String>,
    /// The password for `username`.
    pub password: Option<String>,
    /// A PEM CA file for `mqtts://`.
    pub ca_file: Option<String>,
    /// The first topic level the gateways share (default `smsrelay`).
    pub base: String,
    /// Stop listening this long after the last retained message.
    pub quiet: Duration,
    /// Give up connecting after this long.
    pub timeout: Duration,
}

/// Collects the gateways' retained messages.
pub async fn collect(options: &FleetOptions) -> Result<Vec<GatewayRow>, String> {
    let settings = settings(options)?;
    let mut mqtt = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    mqtt.set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = &settings.credentials {
        mqtt.set_credentials(user, password);
    }
    if let super::Security::Tls { ca_file } = &settings.security {
        let config = super::link::tls_config(ca_file.as_deref())?;
        mqtt.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            std::sync::Arc::new(config),
        )));
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, 16);
    let base = &options.base;
    for filter in [format!("{base}/+/status"), format!("{base}/+/state")] {
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|error| error.to_string())?;
    }
    let mut rows: BTreeMap<String, GatewayRow> = BTreeMap::new();
    let give_up = Instant::now() + options.timeout;
    let mut subscribed = 0;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let deadline = quiet_until.unwrap_or(give_up);
        let event = match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Err(_) if quiet_until.is_some() => break,
            Err(_) => {
                return Err(format!(
                    "no answer from {} within {:?}",
                    options.url, options.timeout
                ));
            }
            Ok(Err(error)) => return Err(format!("{}: {error}", options.url)),
            Ok(Ok(event)) => event,
        };
        match event {
            Event::Incoming(Packet::SubAck(_)) => {
                subscribed += 1;
                if subscribed == 2 {
                    quiet_until = Some(Instant::now() + options.quiet);
                }
            }
            Event::Incoming(Packet::Publish(message)) => {
                record(&mut rows, base, &message.topic, &message.payload);
                if quiet_until.is_some() {
                    quiet_until = Some(Instant::now() + options.quiet);
                }
            }
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    Ok(rows.into_values().collect())
}

fn settings(options: &FleetOptions) -> Result<MqttSettings, String> {
    let section = MqttSection {
        url: options.url.clone(),
        username: options.username.clone(),
        password: options.password.clone(),
        ca_file: options.ca_file.clone(),
        client_id: Some(format!("smsrelay-fleet-{}", std::process::id())),
        ..MqttSection::default()
    };
    section
        .resolve("fleet")
        .map_err(|error| format!("--{}: {}", error.key.replace('_', "-"), error.message))
}

/// Files one retained message under its gateway.
fn record(rows: &mut BTreeMap<String, GatewayRow>, base: &str, topic: &str, payload: &[u8]) {
    let Some(rest) = topic.strip_prefix(base).and_then(|t| t.strip_prefix('/')) else {
        return;
    };
    let Some((name, leaf)) = rest.split_once('/') else {
        return;
    };
    let row = rows.entry(name.to_string()).or_insert_with(|| GatewayRow {
        name: name.to_string(),
        status: "unknown".into(),
        state: None,
    });
    match leaf {
        "status" => row.status = String::from_utf8_lossy(payload).trim().to_string(),
        "state" => row.state = serde_json::from_slice(payload).ok(),
        _ => {}
    }
}

/// The table `fleet status` prints: one line per gateway, its modems summarised.
pub fn table(rows: &[GatewayRow]) -> String {
    let mut lines = vec![[
        "GATEWAY".to_string(),
        "STATUS".into(),
        "MODEMS".into(),
        "OUTBOX".into(),
        "VERSION".into(),
    ]];
    for row in rows {
        let (modems, outbox, version) = match &row.state {
            Some(state) => (
                state
                    .modems
                    .iter()
                    .map(|modem| {
                        let mut text = format!("{} {}", modem.name, modem.state);
                        if let Some(dbm) = modem.signal_dbm {
                            text.push_str(&format!(" {dbm} dBm"));
                        }
                        if let Some(operator) = &modem.operator {
                            text.push_str(&format!(" {operator}"));
                        }
                        text
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                state.queue.outbox.to_string(),
                state.version.clone(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        lines.push([
            row.name.clone(),
            row.status.clone(),
            modems,
            outbox,
            version,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::state::{ModemState, QueueState};

    #[test]
    fn retained_messages_make_rows() {
        let mut rows = BTreeMap::new();
        record(&mut rows, "smsrelay", "smsrelay/shed/status", b"online");
        record(&mut rows, "smsrelay", "smsrelay/barn/status", b"offline");
        record(&mut rows, "smsrelay", "smsrelay/shed/state", b"not json");
        record(&mut rows, "smsrelay", "other/x/status", b"online");
        let rows: Vec<_> = rows.into_values().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].status.as_str()),
            ("barn", "offline")
        );
        assert_eq!(
            (rows[1].name.as_str(), rows[1].status.as_str()),
            ("shed", "online")
        );
        assert!(
            rows[1].state.is_none(),
            "an unreadable state is shown as none"
        );
    }

    #[test]
    fn the_table_lists_each_gateway_with_its_modems() {
        let state = StateDocument {
            device: "shed".into(),
            version: "0.1.0".into(),
            modems: vec![ModemState {
                name: "modem1".into(),
                state: "ready".into(),
                reason: None,
                registration: Some("registered_home".into()),
                operator: Some("Vodafone".into()),
                signal_dbm: Some(-71),
                storage_used: Some(0),
                storage_total: Some(30),
            }],
            queue: QueueState { outbox: 2, mqtt: 0 },
            webhooks: vec![],
            last_sms: None,
            balance: None,
            balances: vec![],
        };
        let rows = [
            GatewayRow {
                name: "shed".into(),
                status: "online".into(),
                state: Some(state),
            },
            GatewayRow {
                name: "barn".into(),
                status: "offline".into(),
                state: None,
            },
        ];
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("GATEWAY"), "{table}");
        assert!(
            lines[1].contains("modem1 ready -71 dBm Vodafone"),
            "{table}"
        );
        assert!(
            lines[1].contains("online") && lines[1].contains("  2  "),
            "{table}"
        );
        assert!(
            lines[2].starts_with("barn") && lines[2].contains("offline"),
            "{table}"
        );
    }
}
