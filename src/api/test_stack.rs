//! For in-process tests of the router (the API's and the console's): the whole app over a
//! store in a temp dir, a modem driver that keeps failing to open a device that does not
//! exist, and a dispatcher with one endpoint that is never reached (nothing is written for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;

use super::{AppState, Readiness, router};
use crate::gateway::{Gateway, GatewaySettings};
use crate::modem::{Modem, ModemSettings};
use crate::store::{Store, StoreSettings};
use crate::webhook::{Dispatcher, DispatcherSettings, EndpointConfig, SystemClock};

/// The router and what it runs on; the temp dir and the driver live as long as it.
pub(crate) struct TestStack {
    /// The router with every route.
    pub(crate) app: Router,
    /// Its store, to check what was written.
    pub(crate) store: Store,
    _modem: Modem,
    _dir: tempfile::TempDir,
}

impl TestStack {
    /// The stack with `token` as the API token.
    pub(crate) fn start(token: &str) -> TestStack {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(
            &dir.path().join("db"),
            &StoreSettings::default(),
            Vec::new(),
        )
        .expect("store opens");
        let modem = Modem::start(ModemSettings::new(dir.path().join("no-such-modem")));
        let gateway = Gateway::new(
            store.clone(),
            modem.handle.clone(),
            GatewaySettings::default(),
        );
        let endpoint = EndpointConfig::new("crm", "http://127.0.0.1:9/never");
        let dispatcher = Dispatcher::start(
            store.clone(),
            vec![endpoint],
            DispatcherSettings::default(),
            Arc::new(SystemClock),
        );
        let state = AppState {
            gateway,
            modem: modem.handle.clone(),
            dispatcher: Arc::new(dispatcher),
            token: token.into(),
            started: Instant::now(),
            readiness: Arc::new(Readiness::default()),
            ready_grace: Duration::from_secs(60),
            mqtt: None,
        };
        TestStack {
            app: router(Arc::new(state)),
            store,
            _modem: modem,
            _dir: dir,
        }
    }
}
