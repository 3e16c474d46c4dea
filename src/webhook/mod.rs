//! Webhook delivery (issue 7, being built). So far [`sign`]: Standard Webhooks signatures.

pub mod sign;

pub use sign::{Secret, SecretError, signature_header};
