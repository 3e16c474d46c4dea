//! The modem driver: owns one serial device through an `at::Session`, runs the init sequence,
//! sends PDUs, reads and deletes stored messages, watches health and recovers.
//!
//! [`handle`] is what other layers see ([`ModemHandle`], [`ModemEvent`], [`ModemStatus`]);
//! [`driver`] starts the task and carries out URCs, requests, sweeps and health ticks;
//! `connection` is its life cycle (open with backoff, init, serve, reconnect). The decisions
//! are pure and tested from tables: [`inbox`], the receipt ledger (what to hand up, how to
//! confirm), and [`health`], the health tick's rules. [`command`] types the AT commands the
//! driver sends. Below them: [`init`], the start-up sequence, [`send`], one `AT+CMGS`,
//! [`classify`], what a failed send means for the message, [`storage`], reading, listing and
//! deleting stored messages, and [`pin`], the record that keeps a refused SIM PIN from being
//! entered again.

pub mod calls;
pub mod classify;
pub mod command;
mod connection;
pub mod driver;
pub mod handle;
pub mod health;
pub mod inbox;
pub mod init;
pub mod pin;
pub mod send;
pub mod storage;
pub mod ussd;
pub mod voice;

pub use calls::CallEvent;
pub use classify::{SendFailure, Verdict, classify_cms, classify_send};
pub use driver::{Modem, ModemSettings};
pub use handle::{
    Counters, EVENT_QUEUE_CAP, INBOUND_QUEUE_CAP, INIT_BACKLOG_CAP, Inbound, LinkState, ModemError,
    ModemEvent, ModemHandle, ModemStatus, Origin, Receipt,
};
pub use init::{Identity, InitError, InitSettings, InitStage, Setup, init, init_with_progress};
pub use send::{interpret, send};
pub use storage::{StorageError, StoredMessage, delete, list, read};
pub use voice::{UssdAnswer, UssdFailure};
