//! The modem driver: owns one serial device through an `at::Session`, runs the init sequence,
//! sends PDUs, reads and deletes stored messages, watches health and recovers.
//!
//! [`driver`] is the task and its handle; below it [`init`], the start-up sequence, [`send`],
//! one `AT+CMGS`, [`classify`], what a failed send means for the message, [`storage`],
//! reading, listing and deleting stored messages, and [`pin`], the record that keeps a refused
//! SIM PIN from being entered again.

pub mod classify;
pub mod driver;
pub mod init;
pub mod pin;
pub mod send;
pub mod storage;

pub use classify::{SendFailure, Verdict, classify_cms, classify_send};
pub use driver::{
    Counters, EVENT_QUEUE_CAP, INBOUND_QUEUE_CAP, INIT_BACKLOG_CAP, Inbound, LinkState, Modem,
    ModemError, ModemEvent, ModemHandle, ModemSettings, ModemStatus, Origin, Receipt,
};
pub use init::{Identity, InitError, InitSettings, InitStage, Setup, init, init_with_progress};
pub use send::{interpret, send};
pub use storage::{StorageError, StoredMessage, delete, list, read};
