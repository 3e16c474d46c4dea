//! smsrelay: a USB GSM modem as a reliable SMS gateway.
//!
//! See `ARCHITECTURE.md` for the map. Layers so far: [`at`], the AT command engine.
#![deny(missing_docs)]

pub mod at;
