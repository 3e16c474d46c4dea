//! `daemon::run_on` in process, stopped by the future it is given instead of a signal: how
//! the demo runs it, and how tests can.

use std::time::Duration;

use smsrelay::config::Config;
use smsrelay::mock::{MockConfig, MockModem};
use smsrelay::store::{Store, StoreSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_stops_in_order_when_its_shutdown_future_resolves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let _modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock");
    let config = Config::parse(&format!(
        "data_dir = \"{}\"\nwebhook_clock_check = false\n[modem]\ndevice = \"{}\"\n[api]\ntoken = \"an-in-process-test-token\"\n",
        dir.path().join("data").display(),
        link.display()
    ))
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
        "the test"
    };
    let daemon = tokio::spawn(smsrelay::daemon::run_on(config, listener, shutdown));
    // Up once the API answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the API did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).expect("the daemon listens");
    let outcome = tokio::time::timeout(Duration::from_secs(15), daemon)
        .await
        .expect("stopped within the shutdown budget")
        .expect("the task did not panic");
    assert!(outcome.is_ok(), "{outcome:?}");
    // The store was closed cleanly: it opens again at once, here, in the same process.
    let reopened = tokio::task::spawn_blocking(move || {
        Store::open(
            &dir.path().join("data/db"),
            &StoreSettings::default(),
            Vec::new(),
        )
        .map(|_| ())
    })
    .await
    .expect("joined");
    assert!(reopened.is_ok(), "{reopened:?}");
}
