//! The modem and its SIM as events: `modem.connected`/`disconnected`, `modem.registered`/
//! `registration_lost`, `modem.signal_low`/`signal_ok`, `modem.storage_full`/`storage_ok` and
//! `modem.sim_error`, from the driver's status snapshots.
//!
//! [`Debouncer`] is the pure core (time passed in): a change becomes an event only once it has
//! lasted [`ModemEventSettings::debounce`]; a flap back within it produces no pair of events
//! and is counted instead. What was last published is stored with the events in the store's
//! `meta` tree ([`Published`]), so a restarted daemon does not announce the same state again.
//! On the very first start a good state is adopted silently, except `modem.connected`, which
//! is said at once; a bad one waits the debounce like any change. Registration, signal and
//! storage are only read from a ready modem (otherwise they are the last connection's).
//! [`run`] is the shell: it wakes on a status change or when a change falls due.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{debug, error, info};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::modem::{LinkState, ModemStatus};
use crate::store::{NewEvent, Store, blocking};

/// How modem events are judged.
#[derive(Debug, Clone)]
pub struct ModemEventSettings {
    /// The modem's name in the events.
    pub modem: String,
    /// Its SIM slot number in the events.
    pub sim: u32,
    /// A change must last this long to become an event.
    pub debounce: Duration,
    /// The signal is low below this (dBm).
    pub signal_low_dbm: i16,
    /// … and ok again at `signal_low_dbm + signal_hysteresis_db` or above.
    pub signal_hysteresis_db: i16,
}

impl Default for ModemEventSettings {
    fn default() -> ModemEventSettings {
        ModemEventSettings {
            modem: "modem1".into(),
            sim: 0,
            debounce: Duration::from_secs(60),
            signal_low_dbm: -100,
            signal_hysteresis_db: 6,
        }
    }
}

/// The state last published as events (kept in `meta`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Connected and ready.
    pub connected: Option<bool>,
    /// Registered with a network.
    pub registered: Option<bool>,
    /// The signal is low.
    pub signal_low: Option<bool>,
    /// The receive storage is full.
    pub storage_full: Option<bool>,
    /// The SIM error said last (`Some("")` never: an empty reason is "no error").
    pub sim_error: Option<String>,
}

/// What one status snapshot says, in the terms of the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Ready (`Some(true)`), or lost after having been something (`Some(false)` with the
    /// reason); `None` while the driver is still opening for the first time.
    pub connected: Option<bool>,
    /// Why not connected.
    pub reason: String,
    /// Registered, when ready and known.
    pub registered: Option<bool>,
    /// The signal in dBm, when ready and known.
    pub signal_dbm: Option<i16>,
    /// Receive storage (used, total), when ready and known.
    pub storage: Option<(u32, u32)>,
    /// The SIM stops the driver (wrong PIN, PUK, no SIM): the reason; `Some("")` when ready.
    pub sim_error: Option<String>,
    /// The data `modem.connected` carries (identity, operator, signal).
    pub details: Value,
    /// The health check has read everything (`AT+CPMS?` comes last but one).
    pub complete: bool,
    /// Connections lost since the driver started: a loss and return between two snapshots
    /// (the status channel keeps only the newest) still shows here.
    pub reconnects: u64,
}

/// Reads a status snapshot. Not being ready is a loss once the driver waits or failed; a
/// first open or an init in progress say nothing by themselves (the debouncer counts them
/// as a loss after the modem was ready); ready counts once the modem's health was read.
pub fn observe(status: &ModemStatus) -> Observation {
    let ready = status.state == LinkState::Ready;
    // Ready counts once the health check has read the modem, so `modem.connected` carries
    // its signal and operator (CPMS always answers a modem that passed the init).
    let health_read =
        status.signal.is_some() || status.storage.is_some() || status.operator.is_some();
    let (connected, reason, sim_error) = match &status.state {
        LinkState::Ready if !health_read => (None, String::new(), Some(String::new())),
        LinkState::Ready => (Some(true), String::new(), Some(String::new())),
        // The driver's "reconnecting" says less than the error that caused it.
        LinkState::Waiting(reason) => (
            Some(false),
            match &status.last_error {
                Some(error) if reason == "reconnecting" => error.clone(),
                _ => reason.clone(),
            },
            None,
        ),
        LinkState::Failed(reason) => (Some(false), reason.clone(), Some(reason.clone())),
        LinkState::Stopped => (None, "stopped".into(), None),
        LinkState::Opening(_) | LinkState::Initialising(_) => {
            (None, status.last_error.clone().unwrap_or_default(), None)
        }
    };
    let identity = status.identity.as_ref();
    let signal = status.signal.and_then(|signal| signal.dbm());
    Observation {
        connected,
        reason,
        registered: status
            .registration
            .filter(|_| ready)
            .map(|registration| registration.is_registered()),
        signal_dbm: signal.filter(|_| ready),
        storage: status
            .storage
            .as_ref()
            .filter(|_| ready)
            .map(|usage| (usage.used, usage.total)),
        sim_error,
        details: json!({
            "device": status.device,
            "manufacturer": identity.map(|identity| &identity.manufacturer),
            "model": identity.map(|identity| &identity.model),
            "revision": identity.map(|identity| &identity.revision),
            "imei": identity.map(|identity| &identity.imei),
            "imsi": identity.and_then(|identity| identity.imsi.as_ref()),
            "iccid": identity.and_then(|identity| identity.iccid.as_ref()),
            "number": identity.and_then(|identity| identity.number.as_ref()),
            "operator": status.operator,
            "signal_dbm": signal,
        }),
        complete: status.storage.is_some(),
        reconnects: status.counters.reconnects,
    }
}

/// How long the very first `modem.connected` waits for a complete health read before it goes
/// with what is known.
pub const FIRST_HELLO_GRACE: Duration = Duration::from_secs(5);

/// Whether the signal is low now, with hysteresis: once low it stays low until it is
/// `hysteresis` above the threshold.
pub fn signal_low(was_low: Option<bool>, dbm: i16, threshold: i16, hysteresis: i16) -> bool {
    if was_low == Some(true) {
        dbm < threshold.saturating_add(hysteresis)
    } else {
        dbm < threshold
    }
}

/// One condition: the value published, and a different one waiting out the debounce.
#[derive(Debug, Clone, Default)]
struct Watch<T> {
    candidate: Option<(T, Instant)>,
}

impl<T: Clone + PartialEq> Watch<T> {
    /// A new reading. Returns true when it ends a flap (a change that did not last).
    fn observe(&mut self, published: &Option<T>, value: T, now: Instant) -> bool {
        if published.as_ref() == Some(&value) {
            return self.candidate.take().is_some();
        }
        match &self.candidate {
            Some((waiting, _)) if *waiting == value => {}
            _ => self.candidate = Some((value, now)),
        }
        false
    }

    /// The change that has lasted `window` by `now`.
    fn due(&mut self, now: Instant, window: Duration) -> Option<T> {
        match &self.candidate {
            Some((_, since)) if now.saturating_duration_since(*since) >= window => {
                self.candidate.take().map(|(value, _)| value)
            }
            _ => None,
        }
    }

    fn deadline(&self, window: Duration) -> Option<Instant> {
        self.candidate.as_ref().map(|(_, since)| *since + window)
    }
}

/// The pure core: observations in, events out.
#[derive(Debug, Clone)]
pub struct Debouncer {
    settings: ModemEventSettings,
    published: Published,
    connected: Watch<bool>,
    registered: Watch<bool>,
    signal: Watch<bool>,
    storage: Watch<bool>,
    sim: Watch<String>,
    /// The signal's current side of the threshold (for the hysteresis).
    signal_side: Option<bool>,
    /// The reason of the loss waiting out the debounce.
    reason: String,
    /// The latest `modem.connected` data, and whether it is complete.
    details: Value,
    details_complete: bool,
    /// The latest figures, for the events' data.
    signal_dbm: Option<i16>,
    storage_usage: Option<(u32, u32)>,
    /// Changes that did not last (flaps) since start.
    suppressed: u64,
    /// The reconnect count of the last observation.
    reconnects: Option<u64>,
    /// The modem was ready in this run: opening or initialising again is a loss.
    seen_ready: bool,
}

impl Debouncer {
    /// A debouncer that starts from what was published before.
    pub fn new(settings: ModemEventSettings, published: Published) -> Debouncer {
        Debouncer {
            signal_side: published.signal_low,
            settings,
            published,
            connected: Watch::default(),
            registered: Watch::default(),
            signal: Watch::default(),
            storage: Watch::default(),
            sim: Watch::default(),
            reason: String::new(),
            details: Value::Null,
            details_complete: false,
            signal_dbm: None,
            storage_usage: None,
            suppressed: 0,
            reconnects: None,
            seen_ready: false,
        }
    }

    /// What is published now.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// Changes that did not last, since start.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// The connection's window: the debounce, except for the very first `modem.connected`,
    /// which goes as soon as the modem's details are read (or after a short grace).
    fn connected_window(&self) -> Duration {
        let first_hello = self.published.connected.is_none()
            && matches!(self.connected.candidate, Some((true, _)));
        match (first_hello, self.details_complete) {
            (false, _) => self.settings.debounce,
            (true, true) => Duration::ZERO,
            (true, false) => self.settings.debounce.min(FIRST_HELLO_GRACE),
        }
    }

    /// When [`Debouncer::step`] next has something to do without a new observation.
    pub fn deadline(&self) -> Option<Instant> {
        let window = self.settings.debounce;
        [
            self.connected.deadline(self.connected_window()),
            self.registered.deadline(window),
            self.signal.deadline(window),
            self.storage.deadline(window),
            self.sim.deadline(window),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes an observation (or none, when only time passed) and returns the events due.
    pub fn step(&mut self, observation: Option<&Observation>, now: Instant) -> Vec<NewEvent> {
        if let Some(observation) = observation {
            self.take(observation, now);
        }
        self.due(now)
    }

    fn take(&mut self, observation: &Observation, now: Instant) {
        let mut flaps = 0;
        let lost_unseen = self
            .reconnects
            .is_some_and(|before| observation.reconnects > before)
            && observation.connected == Some(true)
            && self.published.connected == Some(true)
            && self.connected.candidate.is_none();
        self.reconnects = Some(observation.reconnects);
        if lost_unseen {
            // The loss came and went between two snapshots: a flap all the same.
            flaps += 1;
        }
        let connected = match observation.connected {
            None if self.seen_ready => Some(false),
            other => other,
        };
        self.seen_ready |= connected == Some(true);
        if let Some(connected) = connected {
            if connected {
                self.details = observation.details.clone();
                self.details_complete = observation.complete;
            } else if self.connected.candidate.is_none() {
                self.reason = observation.reason.clone();
            }
            flaps += usize::from(
                self.connected
                    .observe(&self.published.connected, connected, now),
            );
        }
        if let Some(registered) = observation.registered {
            adopt_good(&mut self.published.registered, registered, true);
            flaps += usize::from(self.registered.observe(
                &self.published.registered,
                registered,
                now,
            ));
        }
        if let Some(dbm) = observation.signal_dbm {
            let low = signal_low(
                self.signal_side,
                dbm,
                self.settings.signal_low_dbm,
                self.settings.signal_hysteresis_db,
            );
            self.signal_side = Some(low);
            self.signal_dbm = Some(dbm);
            adopt_good(&mut self.published.signal_low, low, false);
            flaps += usize::from(self.signal.observe(&self.published.signal_low, low, now));
        }
        if let Some((used, total)) = observation.storage {
            let full = total > 0 && used >= total;
            self.storage_usage = Some((used, total));
            adopt_good(&mut self.published.storage_full, full, false);
            flaps += usize::from(
                self.storage
                    .observe(&self.published.storage_full, full, now),
            );
        }
        if let Some(error) = &observation.sim_error {
            if self.published.sim_error.is_none() && error.is_empty() {
                self.published.sim_error = Some(String::new());
            }
            flaps += usize::from(
                self.sim
                    .observe(&self.published.sim_error, error.clone(), now),
            );
        }
        self.suppressed += flaps as u64;
    }

    fn due(&mut self, now: Instant) -> Vec<NewEvent> {
        let modem = self.settings.modem.clone();
        let mut events = Vec::new();
        let window = self.settings.debounce;
        let connected_window = self.connected_window();
        if let Some(connected) = self.connected.due(now, connected_window) {
            self.published.connected = Some(connected);
            events.push(if connected {
                let mut data = self.details.clone();
                if let Some(fields) = data.as_object_mut() {
                    fields.insert("modem".into(), json!(modem));
                }
                event("modem.connected", data)
            } else {
                event(
                    "modem.disconnected",
                    json!({"modem": modem, "reason": self.reason}),
                )
            });
        }
        if let Some(error) = self.sim.due(now, window) {
            if !error.is_empty() {
                events.push(event(
                    "modem.sim_error",
                    json!({"modem": modem, "reason": error}),
                ));
            }
            self.published.sim_error = Some(error);
        }
        if let Some(registered) = self.registered.due(now, window) {
            self.published.registered = Some(registered);
            let name = if registered {
                "modem.registered"
            } else {
                "modem.registration_lost"
            };
            events.push(event(name, json!({"modem": modem})));
        }
        if let Some(low) = self.signal.due(now, window) {
            self.published.signal_low = Some(low);
            let name = if low {
                "modem.signal_low"
            } else {
                "modem.signal_ok"
            };
            events.push(event(
                name,
                json!({
                    "modem": modem,
                    "signal_dbm": self.signal_dbm,
                    "threshold_dbm": self.settings.signal_low_dbm,
                }),
            ));
        }
        if let Some(full) = self.storage.due(now, window) {
            self.published.storage_full = Some(full);
            let name = if full {
                "modem.storage_full"
            } else {
                "modem.storage_ok"
            };
            let (used, total) = self.storage_usage.unwrap_or_default();
            events.push(event(
                name,
                json!({"modem": modem, "used": used, "total": total}),
            ));
        }
        // Every event says which modem and which SIM slot, as SMS events do (receivers
        // mapping `sim` to a channel need it on all of them).
        for event in &mut events {
            if !event.data.is_object() {
                event.data = json!({});
            }
            if let Some(fields) = event.data.as_object_mut() {
                fields.insert("modem".into(), json!(modem));
                fields.insert("sim".into(), json!(self.settings.sim));
            }
        }
        events
    }
}

/// On the first start, a good value is taken as the published state without an event.
fn adopt_good(published: &mut Option<bool>, value: bool, good: bool) {
    if published.is_none() && value == good {
        *published = Some(value);
    }
}

fn event(name: &str, data: Value) -> NewEvent {
    NewEvent {
        name: name.into(),
        data,
    }
}

/// The `meta` key of a modem's published state.
pub fn meta_key(modem: &str) -> String {
    format!("modem_events/{modem}")
}

/// Runs the debouncer on the driver's status until the status channel closes. Flaps are
/// counted in `suppressed`.
pub async fn run(
    store: Store,
    mut status: watch::Receiver<ModemStatus>,
    settings: ModemEventSettings,
    suppressed: Arc<AtomicU64>,
) {
    let key = meta_key(&settings.modem);
    // The debouncer takes the settings; the log lines keep the name.
    let name = settings.modem.clone();
    let loaded = {
        let store = store.clone();
        let key = key.clone();
        blocking(move || store.meta_value(&key)).await
    };
    let published = match loaded {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            error!("{name} events: the stored state does not read ({error}); starting afresh");
            Published::default()
        }),
        Ok(None) => Published::default(),
        Err(error) => {
            error!("{name} events: cannot read the stored state: {error}");
            Published::default()
        }
    };
    debug!("{name} events: published before: {published:?}");
    let mut debouncer = Debouncer::new(settings, published);
    let mut observation = Some(observe(&status.borrow_and_update()));
    // The counter is shared by every modem's debouncer: each adds its own new flaps.
    let mut counted = 0;
    loop {
        let events = debouncer.step(observation.as_ref(), std::time::Instant::now());
        let flaps = debouncer.suppressed();
        suppressed.fetch_add(flaps.saturating_sub(counted), Ordering::Relaxed);
        counted = flaps;
        if !events.is_empty() {
            for event in &events {
                info!("{name} events: {} {}", event.name, event.data);
            }
            let value = serde_json::to_vec(debouncer.published()).unwrap_or_default();
            let store = store.clone();
            let key = key.clone();
            let written =
                blocking(move || store.record_events_with_meta(&events, &key, &value)).await;
            if let Err(error) = written {
                if !error.is_storage_failure() {
                    error!("{name} events: cannot store: {error}");
                }
            }
        }
        let deadline = debouncer.deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                observation = Some(observe(&status.borrow_and_update()));
            }
            () = sleep_until_or_forever(deadline) => observation = None,
        }
    }
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ModemEventSettings {
        ModemEventSettings {
            modem: "m".into(),
            sim: 3,
            debounce: Duration::from_secs(60),
            signal_low_dbm: -100,
            signal_hysteresis_db: 6,
        }
    }

    fn ready() -> Observation {
        Observation {
            connected: Some(true),
            reason: String::new(),
            registered: Some(true),
            signal_dbm: Some(-71),
            storage: Some((0, 30)),
            sim_error: Some(String::new()),
            details: json!({}),
            complete: true,
            reconnects: 0,
        }
    }

    fn lost(reason: &str) -> Observation {
        Observation {
            connected: Some(false),
            reason: reason.into(),
            registered: None,
            signal_dbm: None,
            storage: None,
            sim_error: None,
            details: json!({}),
            complete: false,
            reconnects: 0,
        }
    }

    /// Feeds (seconds, observation or a bare tick) and returns the names of the events with
    /// the second they came at.
    fn run(
        published: Published,
        inputs: Vec<(u64, Option<Observation>)>,
    ) -> (Vec<(u64, String)>, Debouncer) {
        let start = Instant::now();
        let mut debouncer = Debouncer::new(settings(), published);
        let mut events = Vec::new();
        for (at, observation) in inputs {
            let now = start + Duration::from_secs(at);
            for event in debouncer.step(observation.as_ref(), now) {
                events.push((at, event.name));
            }
        }
        (events, debouncer)
    }

    fn names(list: &[(u64, &str)]) -> Vec<(u64, String)> {
        list.iter()
            .map(|(at, name)| (*at, name.to_string()))
            .collect()
    }

    fn connected() -> Published {
        Published {
            connected: Some(true),
            registered: Some(true),
            signal_low: Some(false),
            storage_full: Some(false),
            sim_error: Some(String::new()),
        }
    }

    /// (name, published before, timed inputs, timed events expected)
    type Case = (
        &'static str,
        Published,
        Vec<(u64, Option<Observation>)>,
        Vec<(u64, &'static str)>,
    );

    #[test]
    fn events_come_only_for_changes_that_last() {
        let with_signal = |dbm| Observation {
            signal_dbm: Some(dbm),
            ..ready()
        };
        let with_storage = |used| Observation {
            storage: Some((used, 30)),
            ..ready()
        };
        let unregistered = Observation {
            registered: Some(false),
            ..ready()
        };
        let cases: Vec<Case> = vec![
            (
                "first start: connected at once, the good rest adopted",
                Published::default(),
                vec![(0, Some(ready())), (100, None)],
                vec![(0, "modem.connected")],
            ),
            (
                "first start: before the details are read, a short grace",
                Published::default(),
                vec![
                    (
                        0,
                        Some(Observation {
                            complete: false,
                            ..ready()
                        }),
                    ),
                    (4, None),
                    (5, None),
                ],
                vec![(5, "modem.connected")],
            ),
            (
                "a restart in the same state says nothing",
                connected(),
                vec![(0, Some(ready())), (100, None)],
                vec![],
            ),
            (
                "a 2 s unplug is a flap",
                connected(),
                vec![(0, Some(lost("gone"))), (2, Some(ready())), (100, None)],
                vec![],
            ),
            (
                "a long unplug: disconnected after the window, connected after the next",
                connected(),
                vec![
                    (0, Some(lost("gone"))),
                    (59, None),
                    (60, None),
                    (120, Some(ready())),
                    (179, None),
                    (180, None),
                ],
                vec![(60, "modem.disconnected"), (180, "modem.connected")],
            ),
            (
                "opening and initialising again after being ready is a loss",
                connected(),
                vec![
                    (0, Some(ready())),
                    (
                        1,
                        Some(Observation {
                            connected: None,
                            ..lost("")
                        }),
                    ),
                    (62, None),
                    (70, Some(ready())),
                    (131, None),
                ],
                vec![(62, "modem.disconnected"), (131, "modem.connected")],
            ),
            (
                "registration lost and back",
                connected(),
                vec![
                    (0, Some(unregistered.clone())),
                    (61, None),
                    (70, Some(ready())),
                    (131, None),
                ],
                vec![(61, "modem.registration_lost"), (131, "modem.registered")],
            ),
            (
                "signal: hysteresis holds low at -97, ok at -93",
                connected(),
                vec![
                    (0, Some(with_signal(-105))),
                    (60, Some(with_signal(-97))),
                    (61, None),
                    (200, Some(with_signal(-93))),
                    (260, None),
                ],
                vec![(60, "modem.signal_low"), (260, "modem.signal_ok")],
            ),
            (
                "signal wobbling around the threshold once low says nothing more",
                connected(),
                vec![
                    (0, Some(with_signal(-105))),
                    (60, None),
                    (70, Some(with_signal(-99))),
                    (80, Some(with_signal(-101))),
                    (200, None),
                ],
                vec![(60, "modem.signal_low")],
            ),
            (
                "storage full and emptied",
                connected(),
                vec![
                    (0, Some(with_storage(30))),
                    (60, Some(with_storage(30))),
                    (70, Some(with_storage(2))),
                    (130, None),
                ],
                vec![(60, "modem.storage_full"), (130, "modem.storage_ok")],
            ),
            (
                "a SIM error",
                connected(),
                vec![
                    (
                        0,
                        Some(Observation {
                            sim_error: Some("PIN refused".into()),
                            ..lost("PIN refused")
                        }),
                    ),
                    (60, None),
                ],
                vec![(60, "modem.disconnected"), (60, "modem.sim_error")],
            ),
            (
                "first start without a modem: disconnected after the window",
                Published::default(),
                vec![(0, Some(lost("no device"))), (60, None)],
                vec![(60, "modem.disconnected")],
            ),
        ];
        for (name, published, inputs, expected) in cases {
            let (events, _) = run(published, inputs);
            assert_eq!(events, names(&expected), "{name}");
        }
    }

    #[test]
    fn every_event_names_its_modem_and_sim() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut debouncer = Debouncer::new(settings(), connected());
        let mut events = Vec::new();
        let troubled = Observation {
            registered: Some(false),
            signal_dbm: Some(-110),
            storage: Some((30, 30)),
            ..ready()
        };
        events.extend(debouncer.step(Some(&troubled), at(0)));
        events.extend(debouncer.step(None, at(60)));
        events.extend(debouncer.step(Some(&ready()), at(70)));
        events.extend(debouncer.step(None, at(130)));
        let lost = Observation {
            sim_error: Some("PIN refused".into()),
            ..lost("PIN refused")
        };
        events.extend(debouncer.step(Some(&lost), at(140)));
        events.extend(debouncer.step(None, at(200)));
        events.extend(debouncer.step(Some(&ready()), at(210)));
        events.extend(debouncer.step(None, at(270)));
        let mut names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 9, "every kind of modem event: {names:?}");
        for event in &events {
            assert_eq!(
                (&event.data["modem"], &event.data["sim"]),
                (&json!("m"), &json!(3)),
                "{}: {}",
                event.name,
                event.data
            );
        }
    }

    #[test]
    fn flaps_are_counted_and_the_published_state_is_what_a_restart_needs() {
        let (_, debouncer) = run(
            connected(),
            vec![
                (0, Some(lost("gone"))),
                (2, Some(ready())),
                (3, Some(lost("gone"))),
                (4, Some(ready())),
            ],
        );
        assert_eq!(debouncer.suppressed(), 2);
        assert_eq!(debouncer.published(), &connected());
        let (_, debouncer) = run(
            connected(),
            vec![
                (0, Some(ready())),
                (
                    5,
                    Some(Observation {
                        reconnects: 1,
                        ..ready()
                    }),
                ),
            ],
        );
        assert_eq!(debouncer.suppressed(), 1, "a loss between two snapshots");
        let (_, debouncer) = run(Published::default(), vec![(0, Some(ready()))]);
        assert_eq!(debouncer.published(), &connected());
    }

    #[test]
    fn signal_hysteresis() {
        let cases = [
            (None, -101, true),
            (None, -100, false),
            (Some(false), -101, true),
            (Some(true), -95, true),
            (Some(true), -94, false),
        ];
        for (was, dbm, expected) in cases {
            assert_eq!(signal_low(was, dbm, -100, 6), expected, "{was:?} {dbm}");
        }
    }
}
