//! Webhook delivery, the only user of ureq: [`dispatch`] runs one thread per endpoint,
//! [`clock`] says when the wall clock is good enough to deliver,
//! [`sign`] makes Standard Webhooks signatures, [`schedule`] says when to try again, and
//! [`config`] checks the `[[webhook]]` entries of the config file.

pub mod clock;
pub mod config;
pub mod dispatch;
pub mod schedule;
pub mod sign;

pub use clock::{
    Clock, ClockGuard, ClockPolicy, ClockVerdict, ManualClock, SYNC_OVERRIDE, SystemClock,
};
pub use config::{WebhookConfigError, WebhookSection, resolve_all};
pub use dispatch::{Dispatcher, DispatcherSettings, EndpointConfig, EndpointStatus};
pub use sign::{Secret, SecretError, signature_header};
