//! `smsrelay run`: wires the store, the modem driver, the gateway and the webhook dispatcher,
//! tells the service manager how it goes (`service`), and shuts down in order when the
//! shutdown future it is given resolves (SIGTERM or SIGINT in `smsrelay run`):
//! stop taking work, let the AT command in flight finish, flush, exit; each step has a budget
//! (API 1 s, the part in flight 5 s, the driver 3 s, then webhook requests begun before the
//! shutdown 1 s) so the whole stays within 10 s.

use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::modem::{LinkState, Modem};
use crate::store::{Store, StoreError, StoreSettings, blocking};
use crate::webhook::{ClockPolicy, Dispatcher, DispatcherSettings, SystemClock};

/// Tokens shorter than this load, with a warning at start-up.
const WEAK_TOKEN: usize = 16;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The data directory cannot be created.
    #[error("data_dir {path}: {error}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The store cannot be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The API token cannot be read or generated.
    #[error("api token in the data dir: {0}")]
    Token(std::io::Error),
    /// The store stopped writing (a full disk, an I/O error) and the daemon stopped so that
    /// the service manager restarts it: sled keeps such an error until it is reopened.
    #[error("the store cannot write ({0}); stopped so that a restart reopens it")]
    StoreFailed(String),
    /// Signals cannot be watched.
    #[error("signals: {0}")]
    Signals(std::io::Error),
    /// `[mqtt]` cannot be set up (an unreadable CA file).
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// The API address cannot be bound.
    #[error("api.listen {address}: {error}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// The exit code after the store failed (EX_TEMPFAIL): a restart, once space is free, resumes.
pub const EXIT_STORE_FAILED: u8 = 75;

/// How long a failing store is reported (`/healthz` 503, the status) before the daemon stops
/// to be restarted.
const STORE_FAILURE_EXIT_AFTER: Duration = Duration::from_secs(30);

/// How long the shutdown waits, after the modem has stopped, for webhook requests begun
/// before it; they have run during the steps before, whose budgets add up to 9 s.
const WEBHOOK_STOP_BUDGET: Duration = Duration::from_secs(1);

/// How long the shutdown waits, after everything has stopped, for store calls that stopped
/// tasks left running on blocking threads (each a single write, done in milliseconds). With
/// the budgets before it, 11 s: within the unit's `TimeoutStopSec=20s`.
const STORE_RELEASE_BUDGET: Duration = Duration::from_secs(1);

/// Runs until `shutdown` resolves (with what asked for it, for the log).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = &'static str>,
) -> Result<(), DaemonError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| DaemonError::Listen {
            address: config.listen,
            error,
        })?;
    run_on(config, listener, shutdown).await
}

/// As [`run`], serving the API on `listener` instead of `config.listen`.
pub async fn run_on(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = &'static str>,
) -> Result<(), DaemonError> {
    let running = Running::start(&config, listener).await?;
    crate::service::ready();
    let stop = running.watch(shutdown).await;
    let failed = match stop {
        Stop::Asked(by) => {
            info!("{by}: shutting down");
            None
        }
        Stop::StoreFailed(error) => {
            error!(
                "the store has not written for {} s ({error}); stopping so that the service \
                 manager restarts smsrelay (nothing accepted is lost; free disk space)",
                STORE_FAILURE_EXIT_AFTER.as_secs()
            );
            Some(error)
        }
    };
    running.shut_down().await;
    match failed {
        Some(error) => Err(DaemonError::StoreFailed(error)),
        None => Ok(()),
    }
}

/// The parts of a running daemon, in the order they stop.
struct Running {
    store: Store,
    /// Every modem's driver, in config order.
    modems: Vec<Modem>,
    gateway: Gateway,
    /// The gateway's sender, receiver and maintenance tasks, in that order.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    dispatcher: Arc<Dispatcher>,
    /// The MQTT link, when `[mqtt]` is configured.
    mqtt: Option<crate::mqtt::Mqtt>,
    server: tokio::task::JoinHandle<()>,
    stop_api: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Opens the store and starts the driver, the gateway, the webhooks and the API.
    async fn start(config: &Config, listener: TcpListener) -> Result<Running, DaemonError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| DaemonError::DataDir {
            path: config.data_dir.display().to_string(),
            error,
        })?;
        let store = {
            let path = config.data_dir.join("db");
            let subscriptions = config.subscriptions.clone();
            blocking(move || Store::open(&path, &StoreSettings::default(), subscriptions)).await?
        };
        if config
            .token
            .as_ref()
            .is_some_and(|token| token.len() < WEAK_TOKEN)
        {
            warn!(
                "api.token is shorter than {WEAK_TOKEN} characters: anyone who can reach the \
                 API could guess it; leave it out to have a strong one generated"
            );
        }
        let token = crate::api::token(config.token.as_deref(), &config.data_dir)
            .map_err(DaemonError::Token)?;
        let bound = listener.local_addr().unwrap_or(config.listen);

        // One driver task per modem, each owning its port and recovering on its own.
        let mut modems = Vec::new();
        let mut events = Vec::new();
        let mut slots = Vec::new();
        for modem_config in &config.modems {
            let mut modem = Modem::start(config.modem_settings_for(modem_config));
            events.push(std::mem::replace(
                &mut modem.events,
                tokio::sync::mpsc::channel(1).1,
            ));
            slots.push(Config::modem_slot(modem_config, modem.handle.clone()));
            modems.push(modem);
        }
        let gateway = Gateway::with_modems(store.clone(), slots, config.gateway.clone());
        let tasks = gateway.start_all(events).await?;
        let first = &modems[0];
        let settings = DispatcherSettings {
            clock: ClockPolicy {
                check: config.webhook_clock_check,
                wait: config.webhook_clock_wait,
                ..ClockPolicy::default()
            },
            device: config.device.clone(),
            ..DispatcherSettings::default()
        };
        let mut webhooks = config.webhooks.clone();
        let mqtt = match &config.mqtt {
            Some(settings) => {
                let context = crate::mqtt::MqttContext::for_daemon(config, &store, &gateway);
                let mqtt = crate::mqtt::Mqtt::start(settings.clone(), context)
                    .map_err(DaemonError::Mqtt)?;
                let target = mqtt.target(tokio::runtime::Handle::current());
                for endpoint in &mut webhooks {
                    if endpoint.name == crate::config::MQTT_ENDPOINT {
                        endpoint.mqtt = Some(target.clone());
                    }
                }
                Some(mqtt)
            }
            None => None,
        };
        let dispatcher = Arc::new(Dispatcher::start(
            store.clone(),
            webhooks,
            settings,
            Arc::new(SystemClock),
        ));
        let api_state = Arc::new(crate::api::AppState {
            gateway: gateway.clone(),
            modem: first.handle.clone(),
            dispatcher: Arc::clone(&dispatcher),
            token,
            started: std::time::Instant::now(),
            readiness: follow_readiness(&modems),
            ready_grace: config.ready_grace,
            mqtt: mqtt.as_ref().map(|mqtt| mqtt.link()),
        });
        let (stop_api, server) = serve_api(listener, api_state);
        info!(
            "smsrelay {} running: API on http://{}, modem {}, {} webhook(s), data in {}",
            env!("CARGO_PKG_VERSION"),
            bound,
            config
                .modems
                .iter()
                .map(|modem| format!("{} on {}", modem.name, modem.device))
                .collect::<Vec<_>>()
                .join(", "),
            config.webhooks.len(),
            config.data_dir.display()
        );
        Ok(Running {
            store,
            modems,
            gateway,
            tasks,
            dispatcher,
            mqtt,
            server,
            stop_api,
        })
    }

    /// Runs the daemon's own timers until `shutdown` resolves or the store has failed too
    /// long: every second the clock is judged (events recorded while it is wrong are marked
    /// even when no webhook thread looks), every 5 s the store is flushed (sled keeps a write
    /// error and returns it from every flush: this finds a full disk while nothing else
    /// writes; it is also sled's only background flush, for the bookkeeping writes that do
    /// not flush themselves), every minute the newest trusted time is stored; systemd gets a status line and
    /// a watchdog ping at its period.
    async fn watch(&self, shutdown: impl std::future::Future<Output = &'static str>) -> Stop {
        tokio::pin!(shutdown);
        let mut status_tick = tokio::time::interval(
            crate::service::watchdog_period().unwrap_or(Duration::from_secs(30)),
        );
        let mut second = tokio::time::interval(Duration::from_secs(1));
        let mut seconds = 0u64;
        loop {
            tokio::select! {
                asked = &mut shutdown => return Stop::Asked(asked),
                _ = second.tick() => {
                    seconds += 1;
                    if let Some(stop) = self.every_second(seconds).await {
                        return stop;
                    }
                }
                _ = status_tick.tick() => self.tell_the_service_manager().await,
            }
        }
    }

    async fn every_second(&self, seconds: u64) -> Option<Stop> {
        self.dispatcher.check_clock();
        if seconds % 5 == 0 {
            let probed = self.store.clone();
            let _ = blocking(move || probed.flush()).await;
        }
        if let Some(failure) = self.store.failure() {
            let failing_for = crate::store::now_ms().saturating_sub(failure.since_ms);
            if failing_for >= STORE_FAILURE_EXIT_AFTER.as_millis() as u64 {
                return Some(Stop::StoreFailed(failure.error));
            }
        }
        if seconds % 60 == 1 {
            let dispatcher = Arc::clone(&self.dispatcher);
            if let Err(error) = blocking(move || dispatcher.record_clock_floor()).await {
                warn!("cannot record the newest trusted time: {error}");
            }
        }
        None
    }

    async fn tell_the_service_manager(&self) {
        let counted = self.store.clone();
        let queued = blocking(move || Ok(counted.outbox_len()))
            .await
            .unwrap_or(0);
        let several = self.gateway.modems().len() > 1;
        let modems: Vec<String> = self
            .gateway
            .modems()
            .iter()
            .map(|slot| {
                let status = slot.handle.status();
                let state = crate::api::link_state_name(&status.state);
                let name = if several {
                    format!("modem {}", slot.name)
                } else {
                    "modem".to_string()
                };
                match &status.last_error {
                    Some(error) if status.state != LinkState::Ready => {
                        format!("{name} {state} ({error})")
                    }
                    _ => format!("{name} {state}"),
                }
            })
            .collect();
        let line = format!("{}; {queued} message(s) queued", modems.join(", "));
        // A store that cannot write is not a healthy daemon: let the watchdog see it.
        crate::service::status(&line, self.store.failure().is_none());
    }

    /// Stops in order, each step within its budget (see the module doc).
    async fn shut_down(self) {
        crate::service::stopping();
        // Webhook requests in flight finish while the steps below run; no new ones start.
        self.dispatcher.begin_stop();
        if let Some(mqtt) = self.mqtt {
            // `offline` now, not after the broker notices: Home Assistant shows it at once.
            mqtt.stop().await;
        }
        // No new requests; the ones in flight get a moment to finish.
        let _ = self.stop_api.send(());
        if tokio::time::timeout(crate::api::SHUTDOWN_GRACE, self.server)
            .await
            .is_err()
        {
            warn!(
                "api requests still running after {:?}",
                crate::api::SHUTDOWN_GRACE
            );
        }
        // Stop submitting first: the part in flight gets its answer recorded (if it comes
        // within the budget systemd gives us; if not, the next start reports it interrupted).
        self.gateway.stop_sending();
        let mut tasks = self.tasks.into_iter();
        if let Some(sender) = tasks.next() {
            let abort = sender.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), sender)
                .await
                .is_err()
            {
                warn!("a send is still in flight after 5 s; stopping anyway");
                abort.abort();
            }
        }
        for task in tasks {
            task.abort();
            // Awaited so their store handles are dropped before the final flush: a caller
            // that runs the daemon in process can open the store again once this returns.
            let _ = task.await;
        }
        // The drivers stop side by side, within one budget.
        let mut stops = tokio::task::JoinSet::new();
        for modem in &self.modems {
            let handle = modem.handle.clone();
            stops.spawn(async move { handle.shutdown().await });
        }
        let all_stopped = async { while stops.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(3), all_stopped)
            .await
            .is_err()
        {
            warn!("a modem did not stop within 3 s");
        }
        drop(self.gateway);
        let (dispatcher, store) = (self.dispatcher, self.store);
        let flushed = tokio::task::spawn_blocking(move || {
            if !dispatcher.stop_within(WEBHOOK_STOP_BUDGET) {
                warn!(
                    "a webhook thread did not stop within {WEBHOOK_STOP_BUDGET:?}; a request \
                     it had in flight is sent again at the next start"
                );
            }
            drop(dispatcher);
            wait_for_last_store_handle(&store);
            store.flush()
        })
        .await;
        match flushed {
            Ok(Ok(())) => info!("stopped cleanly"),
            Ok(Err(error)) => error!("final flush failed: {error}"),
            Err(error) => error!("shutdown task failed: {error}"),
        }
    }
}

/// Waits (at most [`STORE_RELEASE_BUDGET`]) until `store` is the last handle on the database.
/// An aborted task's store call already handed to a blocking thread runs to its end with a
/// handle of its own; the database closes, and its lock is released, only when the last
/// handle goes, and a caller that runs the daemon in process (the demo, tests) opens it again
/// once [`run_on`] returns.
fn wait_for_last_store_handle(store: &Store) {
    let deadline = std::time::Instant::now() + STORE_RELEASE_BUDGET;
    while store.open_handles() > 1 {
        if std::time::Instant::now() >= deadline {
            warn!(
                "{} store handle(s) still open {STORE_RELEASE_BUDGET:?} after the tasks \
                 stopped; the database closes when they finish",
                store.open_handles() - 1
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Keeps `/readyz`'s view of the modems current from the drivers' status: ready while any
/// modem is.
fn follow_readiness(modems: &[Modem]) -> Arc<crate::api::Readiness> {
    let readiness = Arc::new(crate::api::Readiness::default());
    let (changed, mut any_changed) = tokio::sync::mpsc::channel::<()>(1);
    for modem in modems {
        let mut watch = modem.handle.watch_status();
        let changed = changed.clone();
        tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                // Full means a look is already due: it will see this change too.
                let _ = changed.try_send(());
            }
        });
    }
    let handles: Vec<_> = modems.iter().map(|modem| modem.handle.clone()).collect();
    let followed = Arc::clone(&readiness);
    tokio::spawn(async move {
        loop {
            let ready = handles
                .iter()
                .any(|handle| handle.status().state == LinkState::Ready);
            followed.observe(ready);
            if any_changed.recv().await.is_none() {
                return;
            }
        }
    });
    readiness
}

/// Serves the API on `listener` until the returned sender is used (or dropped).
fn serve_api(
    listener: TcpListener,
    state: Arc<crate::api::AppState>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let app = crate::api::router(state);
        let shutdown = async move {
            let _ = api_stopped.await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            error!("api: {error}");
        }
    });
    (stop_api, server)
}

/// Why the main loop ended.
enum Stop {
    /// The shutdown future resolved (SIGTERM, SIGINT, the demo's Ctrl-C).
    Asked(&'static str),
    /// The store failed for longer than [`STORE_FAILURE_EXIT_AFTER`].
    StoreFailed(String),
}
