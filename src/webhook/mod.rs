//! Webhook delivery (issue 7, being built). So far [`sign`], Standard Webhooks signatures,
//! and [`schedule`], when to try again.

pub mod schedule;
pub mod sign;

pub use sign::{Secret, SecretError, signature_header};
