//! Shared by the test modules: our AT session on a simulated modem's PTY.

use std::time::Duration;

use smsrelay::at::{Session, SessionConfig, SessionHandle, Urc};
use smsrelay::mock::MockModem;
use tokio::sync::mpsc::Receiver;
use tokio_serial::SerialPortBuilderExt;

/// Opens the mock's device with tokio-serial, as the driver does, and runs a session on it.
/// The mock needs no quiet time between commands, so tests pass a short `command_gap`.
pub fn open_session(modem: &MockModem, command_gap: Duration) -> (SessionHandle, Receiver<Urc>) {
    let port = tokio_serial::new(modem.path().to_string_lossy(), 115_200)
        .open_native_async()
        .expect("the mock's PTY opens");
    let config = SessionConfig {
        command_gap,
        ..SessionConfig::default()
    };
    let (session, handle, urcs) = Session::new(port, config);
    tokio::spawn(session.run());
    (handle, urcs)
}
