//! Webhook delivery, the only user of ureq: [`dispatch`] runs one thread per endpoint,
//! [`sign`] makes Standard Webhooks signatures, [`schedule`] says when to try again, and
//! [`config`] checks the `[[webhook]]` entries of the config file.

pub mod config;
pub mod dispatch;
pub mod schedule;
pub mod sign;

pub use config::{WebhookConfigError, WebhookSection, resolve_all};
pub use dispatch::{
    Clock, Dispatcher, DispatcherSettings, EndpointConfig, EndpointStatus, ManualClock, SystemClock,
};
pub use sign::{Secret, SecretError, signature_header};
