//! smsrelay: a USB GSM modem as a reliable SMS gateway.
//!
//! See `ARCHITECTURE.md` for the map. Layers so far: [`at`], the AT command engine, and
//! [`pdu`], the SMS PDU codec.
#![deny(missing_docs)]

pub mod api;
pub mod at;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod gateway;
pub mod mock;
pub mod modem;
pub mod mqtt;
pub mod pdu;
pub mod service;
pub mod store;
pub mod webhook;
