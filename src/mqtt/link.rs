//! The connection to the broker: one task drives rumqttc's event loop, reconnects with a
//! bounded backoff, and carries out publishes one at a time so that each one is confirmed by
//! its own PUBACK. Incoming commands and (re)connections are handed to the owner as
//! [`Notice`]s.
//!
//! One publish in flight is what lets a delivery be "done only when the broker acknowledged
//! it": rumqttc reports the packet id it gave a publish (`Outgoing::Publish`) and the PUBACK
//! that answers it, and with one in flight the two cannot be confused. rumqttc's own replay of
//! unacknowledged packets after a reconnect is switched off (its pending list is cleared
//! after each connection error): the durable queue above retries, so a replay would only
//! blur which PUBACK answers what.

use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use super::config::{MqttSettings, Security};

/// The first pause before reconnecting; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_secs(1);
/// The longest pause between two connection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Incoming messages waiting for the owner; more are left unacknowledged (the broker sends
/// them again on the next connection).
const NOTICE_CAP: usize = 64;
/// Publishes waiting for their turn.
const REQUEST_CAP: usize = 64;

/// Why a publish was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// There is no connection to the broker now.
    #[error("not connected to the broker")]
    NotConnected,
    /// The connection was lost before the broker acknowledged the message.
    #[error("connection lost before the broker acknowledged: {0}")]
    ConnectionLost(String),
    /// No PUBACK within the publish timeout.
    #[error("no acknowledgement from the broker within {0:?}")]
    Timeout(Duration),
    /// The link is shutting down.
    #[error("the MQTT link is stopping")]
    Stopped,
}

/// What the owner hears from the link.
#[derive(Debug)]
pub enum Notice {
    /// A connection was accepted; `session_present` says the broker kept our subscriptions.
    Connected {
        /// The broker resumed our session.
        session_present: bool,
    },
    /// A message on a subscribed topic; acknowledge it with [`MqttLink::ack`].
    Message(Publish),
}

/// The link's state, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Connected to the broker now.
    pub connected: bool,
    /// Why the last connection ended or failed, until the next success.
    pub last_error: Option<String>,
    /// Connections accepted since start.
    pub connections: u64,
    /// Publishes the broker acknowledged.
    pub published: u64,
    /// Publishes that failed (not connected, lost, timed out).
    pub failed: u64,
    /// Incoming messages left unacknowledged because the owner was behind.
    pub dropped: u64,
}

/// One publish and who waits for its outcome.
struct Request {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    done: oneshot::Sender<Result<(), PublishError>>,
}

/// The publish in flight.
struct InFlight {
    done: oneshot::Sender<Result<(), PublishError>>,
    /// The packet id rumqttc gave it, once sent.
    packet: Option<u16>,
    deadline: Instant,
}

/// The handle the rest of the daemon uses.
#[derive(Clone)]
pub struct MqttLink {
    requests: mpsc::Sender<Request>,
    client: AsyncClient,
    status: watch::Receiver<LinkStatus>,
}

impl MqttLink {
    /// Starts the link's task on the current runtime; the notices go to the returned
    /// receiver. `will` is the retained `offline` message.
    pub fn start(
        settings: &MqttSettings,
        will: (String, Vec<u8>),
    ) -> Result<
        (
            MqttLink,
            mpsc::Receiver<Notice>,
            tokio::task::JoinHandle<()>,
        ),
        String,
    > {
        let options = options(settings, will)?;
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAP);
        let (requests, requests_rx) = mpsc::channel(REQUEST_CAP);
        let (notices, notices_rx) = mpsc::channel(NOTICE_CAP);
        let (status_tx, status) = watch::channel(LinkStatus::default());
        let task = Task {
            client: client.clone(),
            eventloop,
            requests: requests_rx,
            notices,
            status: status_tx,
            in_flight: None,
            publish_timeout: settings.publish_timeout,
            broker: format!("{}:{}", settings.host, settings.port),
        };
        let handle = tokio::spawn(task.run());
        Ok((
            MqttLink {
                requests,
                client,
                status,
            },
            notices_rx,
            handle,
        ))
    }

    /// Publishes at QoS 1 and returns once the broker acknowledged it.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), PublishError> {
        if !self.status.borrow().connected {
            return Err(PublishError::NotConnected);
        }
        let (done, outcome) = oneshot::channel();
        let request = Request {
            topic: topic.into(),
            payload,
            retain,
            done,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| PublishError::Stopped)?;
        outcome.await.unwrap_or(Err(PublishError::Stopped))
    }

    /// Acknowledges an incoming QoS 1 message: the broker forgets it.
    pub async fn ack(&self, message: &Publish) {
        // Only fails when the event loop is gone, and then the broker sends it again.
        let _ = self.client.ack(message).await;
    }

    /// Subscribes at QoS 1 (the broker keeps it in our session).
    pub async fn subscribe(&self, filter: &str) {
        if let Err(error) = self.client.subscribe(filter, QoS::AtLeastOnce).await {
            warn!("mqtt: cannot subscribe to {filter}: {error}");
        }
    }

    /// The link's state now.
    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of the link's state.
    pub fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// Sends DISCONNECT (the broker then does not publish the will; the owner published
    /// `offline` itself before).
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

/// rumqttc's options from the settings: a persistent session (commands sent while we are
/// away wait at the broker), manual acknowledgements (a command is acknowledged once it is
/// stored), the will.
fn options(settings: &MqttSettings, will: (String, Vec<u8>)) -> Result<MqttOptions, String> {
    let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    options
        .set_keep_alive(settings.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(REQUEST_CAP as u16)
        .set_max_packet_size(256 * 1024, 256 * 1024)
        .set_last_will(LastWill::new(will.0, will.1, QoS::AtLeastOnce, true));
    if let Some((user, password)) = &settings.credentials {
        options.set_credentials(user, password);
    }
    if let Security::Tls { ca_file } = &settings.security {
        let config = tls_config(ca_file.as_deref())?;
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
    }
    Ok(options)
}

/// rustls with ring, trusting the CA file or the bundled web roots.
pub(super) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("mqtt.ca_file {}: {error}", path.display()))?;
            for certificate in certificates {
                let certificate = certificate
                    .map_err(|error| format!("mqtt.ca_file {}: {error}", path.display()))?;
                roots
                    .add(certificate)
                    .map_err(|error| format!("mqtt.ca_file {}: {error}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "mqtt.ca_file {}: no certificate in it",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// The task that owns the event loop.
struct Task {
    client: AsyncClient,
    eventloop: EventLoop,
    requests: mpsc::Receiver<Request>,
    notices: mpsc::Sender<Notice>,
    status: watch::Sender<LinkStatus>,
    in_flight: Option<InFlight>,
    publish_timeout: Duration,
    broker: String,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = RECONNECT_MIN;
        loop {
            let connected = self.status.borrow().connected;
            let deadline = self.in_flight.as_ref().map(|f| f.deadline);
            tokio::select! {
                event = self.eventloop.poll() => match event {
                    Ok(event) => {
                        if self.on_event(event) {
                            backoff = RECONNECT_MIN;
                        }
                    }
                    Err(error) => {
                        self.on_error(error.to_string());
                        // Bounded: every failed attempt waits, doubling up to 30 s.
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                    }
                },
                request = self.requests.recv(), if self.in_flight.is_none() => match request {
                    Some(request) => self.start_publish(request, connected),
                    None => return,
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.finish(Err(PublishError::Timeout(self.publish_timeout)));
                }
            }
        }
    }

    fn start_publish(&mut self, request: Request, connected: bool) {
        if !connected {
            self.count_failure();
            let _ = request.done.send(Err(PublishError::NotConnected));
            return;
        }
        let sent = self.client.try_publish(
            request.topic,
            QoS::AtLeastOnce,
            request.retain,
            request.payload,
        );
        if let Err(error) = sent {
            self.count_failure();
            let _ = request
                .done
                .send(Err(PublishError::ConnectionLost(error.to_string())));
            return;
        }
        self.in_flight = Some(InFlight {
            done: request.done,
            packet: None,
            deadline: Instant::now() + self.publish_timeout,
        });
    }

    /// Handles one event; true when it proves the connection works.
    fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturnCode::Success {
                    self.on_error(format!("the broker refused the connection: {:?}", ack.code));
                    return false;
                }
                info!("mqtt: connected to {}", self.broker);
                self.status.send_modify(|status| {
                    status.connected = true;
                    status.last_error = None;
                    status.connections += 1;
                });
                self.notify(Notice::Connected {
                    session_present: ack.session_present,
                });
                true
            }
            Event::Outgoing(Outgoing::Publish(packet)) => {
                if let Some(in_flight) = self.in_flight.as_mut() {
                    in_flight.packet.get_or_insert(packet);
                }
                true
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                let ours = self
                    .in_flight
                    .as_ref()
                    .is_some_and(|in_flight| in_flight.packet == Some(ack.pkid));
                if ours {
                    self.finish(Ok(()));
                }
                true
            }
            Event::Incoming(Packet::Publish(message)) => {
                self.notify(Notice::Message(message));
                true
            }
            _ => true,
        }
    }

    fn notify(&mut self, notice: Notice) {
        if self.notices.try_send(notice).is_err() {
            // Unacknowledged: the broker delivers it again after the next reconnect.
            self.status.send_modify(|status| status.dropped += 1);
        }
    }

    fn on_error(&mut self, error: String) {
        let was_connected = self.status.borrow().connected;
        let repeated = self.status.borrow().last_error.as_deref() == Some(error.as_str());
        if was_connected {
            warn!("mqtt: connection to {} lost: {error}", self.broker);
        } else if !repeated {
            warn!("mqtt: cannot connect to {}: {error}; retrying", self.broker);
        }
        // Our durable queue retries what was not acknowledged; rumqttc's replay would only
        // make a later PUBACK ambiguous (see the module doc).
        self.eventloop.pending.clear();
        if self.in_flight.is_some() {
            self.finish(Err(PublishError::ConnectionLost(error.clone())));
        }
        self.status.send_modify(|status| {
            status.connected = false;
            status.last_error = Some(error);
        });
    }

    fn finish(&mut self, outcome: Result<(), PublishError>) {
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        if outcome.is_ok() {
            self.status.send_modify(|status| status.published += 1);
        } else {
            self.count_failure();
        }
        let _ = in_flight.done.send(outcome);
    }

    fn count_failure(&mut self) {
        self.status.send_modify(|status| status.failed += 1);
    }
}
