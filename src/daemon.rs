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
            "api.token is shorter than {WEAK_TOKEN} characters: anyone who can reach the API \
             could guess it; leave it out to have a strong one generated"
        );
    }
    let token =
        crate::api::token(config.token.as_deref(), &config.data_dir).map_err(DaemonError::Token)?;
    let bound = listener.local_addr().unwrap_or(config.listen);
    tokio::pin!(shutdown);

    let mut modem = Modem::start(config.modem_settings());
    let events = std::mem::replace(&mut modem.events, tokio::sync::mpsc::channel(1).1);
    let gateway = Gateway::new(store.clone(), modem.handle.clone(), config.gateway.clone());
    let tasks = gateway.start(events).await?;
    let dispatcher = {
        let store = store.clone();
        let endpoints = config.webhooks.clone();
        let settings = DispatcherSettings {
            clock: ClockPolicy {
                check: config.webhook_clock_check,
                wait: config.webhook_clock_wait,
                ..ClockPolicy::default()
            },
            ..DispatcherSettings::default()
        };
        Arc::new(Dispatcher::start(
            store,
            endpoints,
            settings,
            Arc::new(SystemClock),
        ))
    };
    let readiness = Arc::new(crate::api::Readiness::default());
    tokio::spawn({
        let readiness = Arc::clone(&readiness);
        let mut watch = modem.handle.watch_status();
        async move {
            loop {
                readiness.observe(watch.borrow_and_update().state == LinkState::Ready);
                if watch.changed().await.is_err() {
                    return;
                }
            }
        }
    });
    let api_state = Arc::new(crate::api::AppState {
        gateway: gateway.clone(),
        modem: modem.handle.clone(),
        dispatcher: Arc::clone(&dispatcher),
        token,
        started: std::time::Instant::now(),
        readiness: Arc::clone(&readiness),
        ready_grace: config.ready_grace,
    });
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let app = crate::api::router(api_state);
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
    info!(
        "smsrelay {} running: API on http://{}, modem {}, {} webhook(s), data in {}",
        env!("CARGO_PKG_VERSION"),
        bound,
        config.modem.device,
        config.webhooks.len(),
        config.data_dir.display()
    );
    crate::service::ready();

    let mut tick =
        tokio::time::interval(crate::service::watchdog_period().unwrap_or(Duration::from_secs(30)));
    // Every second: events recorded while the clock is wrong are marked even when no webhook
    // thread is looking; every minute the newest trusted time is stored.
    let mut clock_tick = tokio::time::interval(Duration::from_secs(1));
    let mut clock_ticks = 0u64;
    let reason = loop {
        tokio::select! {
            asked = &mut shutdown => break Stop::Asked(asked),
            _ = clock_tick.tick() => {
                dispatcher.check_clock();
                clock_ticks += 1;
                if clock_ticks % 5 == 0 {
                    // sled keeps a write error and returns it from every flush: this finds a
                    // failed store even while nothing else writes.
                    let probed = store.clone();
                    let _ = blocking(move || probed.flush()).await;
                }
                if let Some(failure) = store.failure() {
                    let failing_for = crate::store::now_ms().saturating_sub(failure.since_ms);
                    if failing_for >= STORE_FAILURE_EXIT_AFTER.as_millis() as u64 {
                        break Stop::StoreFailed(failure.error);
                    }
                }
                if clock_ticks % 60 == 1 {
                    let dispatcher = Arc::clone(&dispatcher);
                    if let Err(error) = blocking(move || dispatcher.record_clock_floor()).await {
                        warn!("cannot record the newest trusted time: {error}");
                    }
                }
            }
            _ = tick.tick() => {
                let status = modem.handle.status();
                let counted = store.clone();
                let queued = blocking(move || Ok(counted.outbox_len())).await.unwrap_or(0);
                let state = match &status.state {
                    LinkState::Ready => "modem ready".to_string(),
                    other => format!("modem {other:?}"),
                };
                let line = format!("{state}; {queued} message(s) queued");
                // A store that cannot write is not a healthy daemon: let the watchdog see it.
                crate::service::status(&line, store.failure().is_none());
            }
        }
    };
    let failed = match reason {
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
    crate::service::stopping();
    // Webhook requests in flight finish while the steps below run; no new ones start.
    dispatcher.begin_stop();
    // No new requests; the ones in flight get a moment to finish.
    let _ = stop_api.send(());
    if tokio::time::timeout(crate::api::SHUTDOWN_GRACE, server)
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
    gateway.stop_sending();
    let mut tasks = tasks.into_iter();
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
        // Awaited so their store handles are dropped before the final flush: a caller that
        // runs the daemon in process can open the store again once this returns.
        let _ = task.await;
    }
    if tokio::time::timeout(Duration::from_secs(3), modem.handle.shutdown())
        .await
        .is_err()
    {
        warn!("the modem did not stop within 3 s");
    }
    let flushed = tokio::task::spawn_blocking(move || {
        if !dispatcher.stop_within(WEBHOOK_STOP_BUDGET) {
            warn!(
                "a webhook thread did not stop within {WEBHOOK_STOP_BUDGET:?}; a request it \
                 had in flight is sent again at the next start"
            );
        }
        store.flush()
    })
    .await;
    match flushed {
        Ok(Ok(())) => info!("stopped cleanly"),
        Ok(Err(error)) => error!("final flush failed: {error}"),
        Err(error) => error!("shutdown task failed: {error}"),
    }
    match failed {
        Some(error) => Err(DaemonError::StoreFailed(error)),
        None => Ok(()),
    }
}

/// Why the main loop ended.
enum Stop {
    /// The shutdown future resolved (SIGTERM, SIGINT, the demo's Ctrl-C).
    Asked(&'static str),
    /// The store failed for longer than [`STORE_FAILURE_EXIT_AFTER`].
    StoreFailed(String),
}
