//! Webhook delivery, the only user of ureq: [`dispatch`] runs one thread per endpoint,
//! [`sign`] makes Standard Webhooks signatures, [`schedule`] says when to try again.

pub mod dispatch;
pub mod schedule;
pub mod sign;

pub use dispatch::{
    Clock, Dispatcher, DispatcherSettings, EndpointConfig, EndpointStatus, ManualClock, SystemClock,
};
pub use sign::{Secret, SecretError, signature_header};
