//! MQTT: events published durably (a delivery is done when the broker sends PUBACK), the
//! gateway's retained `status` and `state`, commands in (`cmd/send`) with their results out
//! (`result/<key>`, never under `cmd/`, which the daemon reads), Home Assistant
//! discovery, and `smsrelay fleet status`. MQTT 3.1.1 through rumqttc, so that every broker
//! (mosquitto, EMQX, NATS's MQTT listener) accepts it.
//!
//! Shape: `link` owns the connection (one task); the coordinator here reacts to its notices
//! (a connection: subscribe, `online`, discovery, state; a message: a command) and publishes
//! the state when it changes, at most once per `state_interval`. Events go out through the
//! webhook workers' durable queue with this link as their transport (`webhook::worker`).
//! The decisions are pure and live beside: `topics`, `state`, `discovery`, `commands`.

pub mod commands;
pub mod config;
pub mod discovery;
pub mod fleet;
pub mod link;
pub mod state;
pub mod topics;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use rumqttc::Publish;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

pub use config::{MqttConfigError, MqttSection, MqttSettings, Security};
pub use link::{LinkStatus, MqttLink, Notice, PublishError};
pub use state::StateDocument;

use crate::gateway::Gateway;
use crate::store::{Store, blocking};
use commands::{Refusal, SendCommand};

/// The payloads of `<prefix>/status`.
const ONLINE: &[u8] = b"online";
/// The will, and what a clean stop publishes.
const OFFLINE: &[u8] = b"offline";
/// How long a clean stop waits to publish `offline`.
const STOP_BUDGET: Duration = Duration::from_secs(2);
/// The commands obeyed under `<prefix>/cmd/`; any other name there is ignored.
const COMMANDS: [&str; 5] = ["send", "ussd", "draft_to", "draft_text", "draft_send"];
/// How many unknown command names are remembered, to log each once.
const IGNORED_NAMES: usize = 64;
/// How many events one build of the state reads at most for the last SMS and balances, and
/// how far the store's copy of them may lag the log.
const LOOK_BACK: u64 = 5_000;
/// Events read at a time when catching up with the log.
const TAIL_BATCH: usize = 500;

/// Where an endpoint's events go when its transport is MQTT: the webhook worker of the
/// [`crate::config::MQTT_ENDPOINT`] queue publishes through this.
#[derive(Clone)]
pub struct MqttTarget {
    link: MqttLink,
    prefix: String,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for MqttTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttTarget")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl MqttTarget {
    /// Whether the broker is connected now (the worker holds its queue while it is not).
    pub fn connected(&self) -> bool {
        self.link.status().connected
    }

    /// Publishes a rendered event to `<prefix>/event/<name>` and waits for the PUBACK. Blocks:
    /// for the webhook worker's thread, never for the runtime's.
    pub fn publish_event(&self, name: &str, body: Vec<u8>) -> Result<(), PublishError> {
        let topic = topics::event(&self.prefix, name);
        self.runtime.block_on(self.link.publish(topic, body, false))
    }
}

/// What the MQTT side needs from the rest of the daemon.
#[derive(Clone)]
pub struct MqttContext {
    /// Queues the messages of `cmd/send`.
    pub gateway: Gateway,
    /// Idempotency records (a command answered once).
    pub store: Store,
    /// `device_name`, the discovery device's name.
    pub device_name: String,
    /// The modems' names, in configuration order.
    pub modems: Vec<String>,
    /// Builds the state document; runs on a blocking thread (it reads the store).
    pub state: Arc<dyn Fn() -> StateDocument + Send + Sync>,
    /// Which events are published in the native envelope (Home Assistant's event entities
    /// read them): `sms.received`, `call.missed`.
    pub native_events: Vec<&'static str>,
    /// Which of `sms.received` and `sim.balance` the MQTT queue publishes: the state document
    /// carries the last of each only then (an SMS's text stays off a broker that is not
    /// meant to see it), and the Last SMS and Balance sensors exist only then.
    pub state_events: Vec<&'static str>,
}

impl MqttContext {
    /// The daemon's context: the state document is read from each modem's status and the
    /// store's queues.
    pub fn for_daemon(
        config: &crate::config::Config,
        store: &Store,
        gateway: &Gateway,
    ) -> MqttContext {
        let modems: Vec<(String, crate::modem::ModemHandle)> = gateway
            .modems()
            .iter()
            .map(|slot| (slot.name.clone(), slot.handle.clone()))
            .collect();
        let names: Vec<String> = modems.iter().map(|(name, _)| name.clone()).collect();
        let endpoints: Vec<String> = config
            .webhooks
            .iter()
            .map(|endpoint| endpoint.name.clone())
            .filter(|name| name != crate::config::MQTT_ENDPOINT)
            .collect();
        let mqtt_queue = config
            .subscriptions
            .iter()
            .find(|s| s.endpoint == crate::config::MQTT_ENDPOINT);
        let native = config
            .webhooks
            .iter()
            .find(|endpoint| endpoint.name == crate::config::MQTT_ENDPOINT)
            .is_some_and(|endpoint| endpoint.format == crate::webhook::Format::Smsrelay);
        let native_events = ["sms.received", "call.missed"]
            .into_iter()
            .filter(|name| native && mqtt_queue.is_some_and(|s| s.wants(name)))
            .collect();
        let state_events: Vec<&'static str> = ["sms.received", "sim.balance"]
            .into_iter()
            .filter(|name| mqtt_queue.is_some_and(|s| s.wants(name)))
            .collect();
        let state = {
            let store = store.clone();
            let gateway = gateway.clone();
            let device = config.device.name.clone();
            let wanted = state_events.clone();
            let names = names.clone();
            // What a walk back through the log looks for: the last SMS and the balances of
            // the modems that check one, when they are published here.
            let sought = state::Sought {
                sms: wanted.contains(&"sms.received"),
                balances: gateway
                    .balance_checks()
                    .into_iter()
                    .map(|(index, _)| gateway.modem_name(index).to_string())
                    .filter(|_| wanted.contains(&"sim.balance"))
                    .collect(),
            };
            let latest = std::sync::Mutex::new(None::<Remembered>);
            Arc::new(move || {
                let (last_sms, logged) = match latest.lock() {
                    Ok(mut latest) if !wanted.is_empty() => {
                        let latest = read_latest(&mut latest, &store, &sought);
                        (latest.sms, latest.balances)
                    }
                    _ => (None, Vec::new()),
                };
                // The gateway's own record is the newest (it holds a balance the store
                // failed to record); the log's survives a restart of the daemon.
                let balances = state::balances(&names, &gateway.sim_activity().balances, &logged);
                let last_sms = last_sms.filter(|_| wanted.contains(&"sms.received"));
                let balances = if wanted.contains(&"sim.balance") {
                    balances
                } else {
                    Vec::new()
                };
                StateDocument {
                    device: device.clone(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    modems: modems
                        .iter()
                        .map(|(name, handle)| state::ModemState::new(name, &handle.status()))
                        .collect(),
                    queue: state::QueueState {
                        outbox: store.outbox_len(),
                        mqtt: store.queue_depth(crate::config::MQTT_ENDPOINT) as u64,
                    },
                    webhooks: endpoints
                        .iter()
                        .map(|name| state::WebhookState {
                            name: name.clone(),
                            state: store
                                .endpoint_health(name)
                                .ok()
                                .and_then(|health| serde_json::to_value(health.state).ok())
                                .and_then(|state| state.as_str().map(str::to_string))
                                .unwrap_or_else(|| "unknown".into()),
                            pending: store.queue_depth(name) as u64,
                        })
                        .collect(),
                    last_sms,
                    balance: balances.first().cloned(),
                    balances,
                }
            }) as Arc<dyn Fn() -> StateDocument + Send + Sync>
        };
        MqttContext {
            gateway: gateway.clone(),
            store: store.clone(),
            device_name: config.device.name.clone(),
            modems: names,
            state,
            native_events,
            state_events,
        }
    }
}

/// The `meta` key of the last SMS and balances the state carries ([`state::Latest`]).
const LATEST_KEY: &str = "mqtt_state_latest";

/// [`state::Latest`] and the cursor it was last written to the store with.
struct Remembered {
    latest: state::Latest,
    written: Option<u64>,
}

/// Brings the last SMS and balances up to the newest events and returns them. The first
/// time they come from the store's `meta` (written here whenever they change, and every
/// [`LOOK_BACK`] events besides, so a restart reads few events); with nothing there (the
/// first start with this version) from a walk back through the log to the newest of each,
/// a batch at a time. Then only the events recorded since are read, at most [`LOOK_BACK`]
/// per build. Runs on a blocking thread (it reads the store); a store error keeps what was
/// known.
fn read_latest(
    remembered: &mut Option<Remembered>,
    store: &Store,
    sought: &state::Sought,
) -> state::Latest {
    let kept = match remembered {
        Some(kept) => kept,
        None => match first_look(store, sought) {
            Ok(found) => remembered.insert(found),
            Err(error) => {
                debug!("mqtt: the last SMS and balance not read: {error}");
                return state::Latest::default();
            }
        },
    };
    let latest = &mut kept.latest;
    let mut changed = false;
    // Bounded per build: a burst of events is caught up over the next builds.
    for _ in 0..(LOOK_BACK as usize / TAIL_BATCH) {
        let events = match store.events_after(latest.cursor.unwrap_or(0), TAIL_BATCH) {
            Ok(events) => events,
            Err(error) => {
                debug!("mqtt: the last SMS and balance not read: {error}");
                break;
            }
        };
        for event in &events {
            changed |= latest.observe(event.sequence, &event.name, &event.data);
        }
        if events.len() < TAIL_BATCH {
            break;
        }
    }
    let moved = latest.cursor.unwrap_or(0) >= kept.written.unwrap_or(0) + LOOK_BACK;
    if changed || moved || kept.written.is_none() {
        match serde_json::to_vec(&*latest) {
            Ok(bytes) => match store.set_meta_value(LATEST_KEY, &bytes) {
                Ok(()) => kept.written = latest.cursor.or(Some(0)),
                Err(error) => debug!("mqtt: the last SMS and balance not kept: {error}"),
            },
            Err(error) => debug!("mqtt: the last SMS and balance not kept: {error}"),
        }
    }
    kept.latest.clone()
}

/// What the first build starts from: the kept document, else a walk back through the log
/// until the last SMS and every modem's balance are found (or the log ends).
fn first_look(
    store: &Store,
    sought: &state::Sought,
) -> Result<Remembered, crate::store::StoreError> {
    if let Some(bytes) = store.meta_value(LATEST_KEY)? {
        match serde_json::from_slice::<state::Latest>(&bytes) {
            Ok(latest) => {
                let written = latest.cursor;
                return Ok(Remembered { latest, written });
            }
            Err(error) => warn!(
                "mqtt: the kept last SMS and balance are unreadable ({error}); the event log is read instead"
            ),
        }
    }
    let newest = store.newest_event_sequence()?;
    let mut latest = state::Latest {
        cursor: Some(newest),
        ..state::Latest::default()
    };
    let mut before = newest.saturating_add(1);
    while !latest.complete(sought) {
        let events = store.events_before(before, TAIL_BATCH)?;
        for event in &events {
            latest.observe_older(&event.name, &event.data);
            before = event.sequence;
        }
        if events.len() < TAIL_BATCH {
            break;
        }
    }
    Ok(Remembered {
        latest,
        written: None,
    })
}

/// The running MQTT side.
pub struct Mqtt {
    link: MqttLink,
    prefix: String,
    stop: watch::Sender<bool>,
    coordinator: JoinHandle<()>,
    link_task: JoinHandle<()>,
}

impl Mqtt {
    /// Connects (in the background; an unreachable broker is retried, never fatal) and starts
    /// the coordinator. Fails only on a TLS configuration that cannot work (an unreadable CA
    /// file).
    pub fn start(settings: MqttSettings, context: MqttContext) -> Result<Mqtt, String> {
        let will = (topics::status(&settings.prefix), OFFLINE.to_vec());
        let (link, notices, link_task) = MqttLink::start(&settings, will)?;
        let (stop, stopped) = watch::channel(false);
        let prefix = settings.prefix.clone();
        let coordinator = Coordinator {
            link: link.clone(),
            settings,
            context,
            last_state: None,
            drafts: HashMap::new(),
            ignored: HashSet::new(),
        };
        let coordinator = tokio::spawn(coordinator.run(notices, stopped));
        Ok(Mqtt {
            link,
            prefix,
            stop,
            coordinator,
            link_task,
        })
    }

    /// The link, for status and metrics.
    pub fn link(&self) -> MqttLink {
        self.link.clone()
    }

    /// The event queue's transport; `runtime` is the one this link runs on.
    pub fn target(&self, runtime: tokio::runtime::Handle) -> MqttTarget {
        MqttTarget {
            link: self.link.clone(),
            prefix: self.prefix.clone(),
            runtime,
        }
    }

    /// The topic prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Publishes `offline` (bounded), disconnects, and ends the tasks.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let offline = self
            .link
            .publish(topics::status(&self.prefix), OFFLINE.to_vec(), true);
        if let Ok(Err(error)) = tokio::time::timeout(STOP_BUDGET, offline).await {
            info!("mqtt: could not publish offline on stop ({error}); the will says it");
        }
        self.link.disconnect().await;
        let _ = tokio::time::timeout(STOP_BUDGET, self.coordinator).await;
        self.link_task.abort();
    }
}

/// Reacts to the link's notices and keeps the state current.
struct Coordinator {
    link: MqttLink,
    settings: MqttSettings,
    context: MqttContext,
    /// The last state published on this connection, and when.
    last_state: Option<(StateDocument, Instant)>,
    /// The draft number and text Home Assistant's text entities set.
    drafts: HashMap<String, String>,
    /// Names under `cmd/` that are no command, logged once each.
    ignored: HashSet<String>,
}

impl Coordinator {
    async fn run(mut self, mut notices: mpsc::Receiver<Notice>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.state_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Some(Notice::Connected { .. }) => self.on_connected().await,
                    Some(Notice::Message(message)) => self.on_message(message).await,
                    None => return,
                },
                _ = tick.tick() => self.publish_state(false).await,
                _ = stop.changed() => return,
            }
        }
    }

    /// A new connection: subscriptions (always: a broker may have lost our session), then
    /// `online`, discovery and the state.
    async fn on_connected(&mut self) {
        let prefix = self.settings.prefix.clone();
        if self.settings.commands {
            self.link.subscribe(&topics::commands(&prefix)).await;
            // Our own retained drafts: the number and text survive a restart.
            self.link.subscribe(&format!("{prefix}/draft/+")).await;
        }
        if self.settings.home_assistant {
            let birth = topics::home_assistant_status(&self.settings.discovery_prefix);
            self.link.subscribe(&birth).await;
        }
        self.publish(topics::status(&prefix), ONLINE.to_vec(), true)
            .await;
        self.publish_discovery().await;
        self.publish_state(true).await;
    }

    async fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) -> bool {
        match self.link.publish(topic.clone(), payload, retain).await {
            Ok(()) => true,
            Err(error) => {
                warn!("mqtt: {topic} not published: {error}");
                false
            }
        }
    }

    async fn publish_discovery(&self) {
        if !self.settings.home_assistant {
            return;
        }
        let gateway = discovery::Gateway {
            prefix: &self.settings.prefix,
            name: &self.context.device_name,
            id: discovery::device_id(&self.settings.prefix),
            version: env!("CARGO_PKG_VERSION"),
            modems: self.context.modems.clone(),
            received_events: self.context.native_events.contains(&"sms.received"),
            last_sms: self.context.state_events.contains(&"sms.received"),
            balance: self.context.state_events.contains(&"sim.balance"),
            call_events: self.context.native_events.contains(&"call.missed"),
            commands: self.settings.commands,
            notify_to: self.settings.notify_to.as_deref(),
        };
        let (topic, payload) = discovery::message(&gateway, &self.settings.discovery_prefix);
        let payload = serde_json::to_vec(&payload).unwrap_or_default();
        self.publish(topic, payload, true).await;
    }

    /// Publishes the state when it changed (or `force`), at most once per interval.
    async fn publish_state(&mut self, force: bool) {
        if !self.link.status().connected {
            return;
        }
        let build = self.context.state.clone();
        let Ok(document) = tokio::task::spawn_blocking(move || build()).await else {
            return;
        };
        let last = self.last_state.as_ref();
        let since = last.map(|(_, at)| at.elapsed());
        let due = state::due(
            last.map(|(doc, _)| doc),
            &document,
            since,
            self.settings.state_interval,
        );
        if !force && !due {
            return;
        }
        let topic = topics::state(&self.settings.prefix);
        if self.publish(topic, document.to_payload(), true).await {
            self.last_state = Some((document, Instant::now()));
        }
    }

    async fn on_message(&mut self, message: Publish) {
        let prefix = self.settings.prefix.clone();
        let topic = message.topic.clone();
        let birth = topics::home_assistant_status(&self.settings.discovery_prefix);
        if self.settings.home_assistant && topic == birth {
            if message.payload.as_ref() == ONLINE {
                info!("mqtt: Home Assistant is online; discovery published again");
                self.publish_discovery().await;
                self.publish_state(true).await;
            }
        } else if let Some(draft) = topic.strip_prefix(&format!("{prefix}/draft/")) {
            // Our own retained draft, read back after a restart.
            if draft == "draft_to" || draft == "draft_text" {
                let value = String::from_utf8_lossy(&message.payload).into_owned();
                self.drafts.entry(draft.to_string()).or_insert(value);
            }
        } else if let Some(kind) = topics::command_of(&prefix, &topic) {
            let kind = kind.to_string();
            if !self.on_command(&kind, &message.payload).await {
                // Not acknowledged: the broker delivers it again on the next connection.
                return;
            }
        }
        self.link.ack(&message).await;
    }

    /// Carries out a command; false when it must be delivered again (its result could not
    /// be published).
    async fn on_command(&mut self, kind: &str, payload: &[u8]) -> bool {
        if !COMMANDS.contains(&kind) {
            // Not answered: an answer to a name nobody sends on purpose could only feed a loop
            // (another client echoing under cmd/, or our own results if a broker or bridge
            // ever mapped them there). Acknowledged, so the broker does not send it again.
            if self.ignored.len() < IGNORED_NAMES && self.ignored.insert(kind.to_string()) {
                debug!(
                    "mqtt: cmd/{kind} is not a command ({}); ignored",
                    COMMANDS.join(", ")
                );
            }
            return true;
        }
        if !self.settings.commands {
            let refusal = refused("commands_disabled", "set [mqtt] commands = true");
            let refusal = if kind == "ussd" {
                refusal.for_ussd()
            } else {
                refusal
            };
            return self.answer_refusal(&refusal).await;
        }
        match kind {
            "send" => match commands::parse_send(payload, OffsetDateTime::now_utc()) {
                Ok(command) => self.send(command).await,
                Err(refusal) => self.answer_refusal(&refusal).await,
            },
            "draft_to" | "draft_text" => {
                let value = String::from_utf8_lossy(payload).trim().to_string();
                let topic = format!("{}/draft/{kind}", self.settings.prefix);
                self.drafts.insert(kind.to_string(), value.clone());
                self.publish(topic, value.into_bytes(), true).await
            }
            "ussd" => match commands::parse_ussd(payload) {
                Ok(command) => self.ussd(command).await,
                Err(refusal) => self.answer_refusal(&refusal).await,
            },
            "draft_send" => match self.draft_command() {
                Ok(command) => self.send(command).await,
                Err(refusal) => self.answer_refusal(&refusal).await,
            },
            // COMMANDS lists the arms above.
            _ => true,
        }
    }

    /// The Send button: the drafted number and text. Presses of the same draft within a
    /// minute are one SMS (a double press, or Home Assistant repeating the QoS 1 message).
    fn draft_command(&self) -> Result<SendCommand, Refusal> {
        let to = self.drafts.get("draft_to").cloned().unwrap_or_default();
        let text = self.drafts.get("draft_text").cloned().unwrap_or_default();
        let minute = OffsetDateTime::now_utc().unix_timestamp() / 60;
        let digest = Sha256::digest(format!("{to}\n{text}\n{minute}").as_bytes());
        let key = format!("ha-draft-{}", hex::encode(&digest[..8]));
        let payload = serde_json::json!({ "to": to, "text": text, "idempotency_key": key });
        commands::parse_send(payload.to_string().as_bytes(), OffsetDateTime::now_utc())
    }

    /// Queues the message once per key and publishes its result once.
    async fn send(&mut self, command: SendCommand) -> bool {
        let store = self.context.store.clone();
        let namespaced = command.message.idempotency_key.clone().unwrap_or_default();
        let record = blocking(move || store.idempotency_record(&namespaced)).await;
        if let Ok(Some(record)) = &record {
            if record["published"] == serde_json::Value::Bool(true) {
                // A repeat (Home Assistant's or the broker's): one SMS, one result.
                info!(
                    "mqtt: cmd/send {:?} repeated; already answered",
                    command.key
                );
                return true;
            }
        }
        let document = match self.context.gateway.enqueue(command.message.clone()).await {
            Ok(accepted) => commands::accepted_document(&command.key, &accepted),
            Err(error) => commands::enqueue_refusal(&command.key, &error).document(),
        };
        let topic = topics::result(&self.settings.prefix, Some(&command.key));
        let payload = serde_json::to_vec(&document).unwrap_or_default();
        if !self.publish(topic, payload, false).await {
            return false;
        }
        let store = self.context.store.clone();
        let namespaced = command.message.idempotency_key.unwrap_or_default();
        if let Err(error) = blocking(move || store.mark_idempotency_published(&namespaced)).await {
            warn!("mqtt: cmd/send {:?}: {error}", command.key);
        }
        true
    }

    /// Sends a USSD code (or cancels the session) on a task of its own: the answer can take
    /// the whole `[ussd] timeout`, and commands and the state must not wait for it. The
    /// command is acknowledged at once; the answer goes to `result/<request_id>`.
    async fn ussd(&self, command: commands::UssdCommand) -> bool {
        let Some(index) = self.context.gateway.modem_index(command.modem.as_deref()) else {
            let refusal = Refusal {
                key: Some(command.request_id.clone()),
                code: "unknown_modem",
                message: format!("no modem named {:?}", command.modem.unwrap_or_default()),
                field: Some("modem"),
                key_name: "request_id",
            };
            return self.answer_refusal(&refusal).await;
        };
        let modem = self.context.gateway.modem_name(index).to_string();
        // A USSD can buy a bundle: a command the broker delivers again (we were stopped
        // before acknowledging it) must not run twice.
        let store = self.context.store.clone();
        let key = format!("mqtt-ussd:{}", command.request_id);
        match blocking(move || store.claim_once(&key)).await {
            Ok(true) => {}
            Ok(false) => {
                info!(
                    "mqtt: cmd/ussd {:?} repeated; not run again",
                    command.request_id
                );
                return true;
            }
            Err(error) => {
                warn!("mqtt: cmd/ussd {:?}: {error}", command.request_id);
                return false;
            }
        }
        let (gateway, link) = (self.context.gateway.clone(), self.link.clone());
        let topic = topics::result(&self.settings.prefix, Some(&command.request_id));
        tokio::spawn(async move {
            let outcome = match &command.code {
                Some(code) => gateway.ussd(index, code).await.map(Some),
                None => gateway.ussd_cancel(index).await.map(|()| None),
            };
            let document = commands::ussd_document(&command.request_id, &modem, &outcome);
            let payload = serde_json::to_vec(&document).unwrap_or_default();
            if let Err(error) = link.publish(topic.clone(), payload, false).await {
                warn!("mqtt: {topic} not published: {error}");
            }
        });
        true
    }

    async fn answer_refusal(&self, refusal: &Refusal) -> bool {
        warn!(
            "mqtt: command refused ({}): {}",
            refusal.code, refusal.message
        );
        let topic = topics::result(&self.settings.prefix, refusal.key.as_deref());
        let payload = serde_json::to_vec(&refusal.document()).unwrap_or_default();
        self.publish(topic, payload, false).await
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        key: None,
        code,
        message: message.into(),
        field: None,
        key_name: "idempotency_key",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewEvent, StoreSettings};

    fn event(name: &str, data: serde_json::Value) -> NewEvent {
        NewEvent {
            name: name.into(),
            data,
        }
    }

    /// Records `count` events that are neither an SMS received nor a balance (a busy outbox).
    fn busy(store: &Store, count: usize) {
        let sent: Vec<NewEvent> = (0..count)
            .map(|n| {
                event(
                    "sms.sent",
                    serde_json::json!({ "message_id": n.to_string() }),
                )
            })
            .collect();
        for batch in sent.chunks(1_000) {
            store.record_events(batch).expect("recorded");
        }
    }

    fn balance(modem: &str, text: &str) -> NewEvent {
        event(
            "sim.balance",
            serde_json::json!({"modem": modem, "sim": 1, "text": text, "amount": 5,
                "checked_at": "2026-12-02T12:00:00Z", "low_balance": false}),
        )
    }

    /// A restart on a log where the last SMS and balances are far behind the newest events
    /// (more than one build reads) still finds them: from the walk back the first time, from
    /// the store's copy after that.
    #[test]
    fn the_last_sms_and_balances_survive_a_restart_behind_a_busy_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreSettings::default(), vec![]).expect("opens");
        let sought = state::Sought {
            sms: true,
            balances: vec!["main".into(), "spare".into()],
        };
        store
            .record_events(&[
                balance("main", "Balance 5.00 EUR"),
                event(
                    "sms.received",
                    serde_json::json!({"from": "+491", "text": "old", "modem": "main"}),
                ),
                balance("spare", "Balance 9.00 USD"),
            ])
            .expect("recorded");
        busy(&store, LOOK_BACK as usize + 1_000);

        // The first start with this version: nothing kept yet, the log is walked back.
        let mut first = None;
        let latest = read_latest(&mut first, &store, &sought);
        assert_eq!(latest.sms.map(|sms| sms.text).as_deref(), Some("old"));
        assert_eq!(latest.balances.len(), 2, "{:?}", latest.balances);

        // A newer SMS, then a busy outbox; then a restart.
        store
            .record_events(&[event(
                "sms.received",
                serde_json::json!({"from": "+492", "text": "new", "modem": "main"}),
            )])
            .expect("recorded");
        read_latest(&mut first, &store, &sought);
        assert!(store.meta_value(LATEST_KEY).expect("read").is_some());
        busy(&store, LOOK_BACK as usize + 1_000);
        let mut restarted = None;
        let latest = read_latest(&mut restarted, &store, &sought);
        assert_eq!(latest.sms.map(|sms| sms.text).as_deref(), Some("new"));
        let currencies: Vec<Option<String>> = state::balances(
            &["main".to_string(), "spare".to_string()],
            &[],
            &latest.balances,
        )
        .into_iter()
        .map(|balance| balance.currency)
        .collect();
        assert_eq!(
            currencies,
            [Some("EUR".to_string()), Some("USD".to_string())]
        );
    }
}
