//! For in-process tests of the router (the API's and the console's): the whole app over a
//! store in a temp dir, a modem driver that keeps failing to open a device that does not
//! exist, and a dispatcher with one endpoint that is never reached (nothing is written for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;

use super::{AppState, Readiness, router};
use crate::gateway::{Gateway, GatewaySettings, ModemSlot};
use crate::modem::{Modem, ModemSettings};
use crate::store::{Store, StoreSettings};
use crate::webhook::{Dispatcher, DispatcherSettings, EndpointConfig, SystemClock};

/// The router and what it runs on; the temp dir and the driver live as long as it.
pub(crate) struct TestStack {
    /// The router with every route.
    pub(crate) app: Router,
    /// Its store, to check what was written.
    pub(crate) store: Store,
    _modems: Vec<Modem>,
    _dir: tempfile::TempDir,
}

/// A modem of a test stack: name, SIM slot, own number, whether it may send.
pub(crate) type TestModem<'a> = (&'a str, u32, Option<&'a str>, bool);

impl TestStack {
    /// The stack with `token` as the API token and one modem (`modem1`, SIM 0).
    pub(crate) fn start(token: &str) -> TestStack {
        TestStack::with_modems(token, &[("modem1", 0, None, true)])
    }

    /// The stack with `token` as the API token and these modems, in config order; each
    /// driver keeps failing to open its own missing device.
    pub(crate) fn with_modems(token: &str, modems: &[TestModem<'_>]) -> TestStack {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(
            &dir.path().join("db"),
            &StoreSettings::default(),
            Vec::new(),
        )
        .expect("store opens");
        let mut drivers = Vec::new();
        let mut slots = Vec::new();
        for &(name, sim, number, send) in modems {
            let mut settings = ModemSettings::new(dir.path().join(format!("no-such-{name}")));
            settings.name = name.into();
            let driver = Modem::start(settings);
            slots.push(ModemSlot {
                name: name.into(),
                sim,
                number: number.map(str::to_string),
                send,
                ..ModemSlot::single(driver.handle.clone(), None)
            });
            drivers.push(driver);
        }
        let first = drivers.first().expect("a test stack needs a modem");
        let modem = first.handle.clone();
        let gateway = Gateway::with_modems(store.clone(), slots, GatewaySettings::default());
        let endpoint = EndpointConfig::new("crm", "http://127.0.0.1:9/never");
        let dispatcher = Dispatcher::start(
            store.clone(),
            vec![endpoint],
            DispatcherSettings::default(),
            Arc::new(SystemClock),
        );
        let state = AppState {
            gateway,
            modem,
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
            _modems: drivers,
            _dir: dir,
        }
    }
}
