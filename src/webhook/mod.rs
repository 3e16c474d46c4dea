//! Webhook delivery, the only user of ureq: [`dispatch`] starts one thread per endpoint
//! (`worker`: the loop), each attempt goes out through `http` and is settled by
//! [`policy`] (retry, circuit, disable, dead letter; pure), [`clock`] says when the wall
//! clock is good enough to deliver, [`sign`] makes Standard Webhooks signatures,
//! [`schedule`] says when to try again, [`formats`] renders a delivery in the endpoint's
//! `format` (ours, LOX24, GatewayAPI, SMSGateway24, SMSGate) or [`template`] through a
//! template, [`mail`] sends it as an e-mail for a `mailto:` endpoint (the only user of
//! lettre), and [`config`] checks the `[[webhook]]` entries of the config file.

pub mod clock;
pub mod config;
pub mod dispatch;
pub mod formats;
mod http;
pub mod mail;
pub mod policy;
pub mod schedule;
pub mod sign;
pub mod template;
mod worker;

pub use clock::{
    Clock, ClockGuard, ClockPolicy, ClockVerdict, ManualClock, SYNC_OVERRIDE, SystemClock,
};
pub use config::{WebhookConfigError, WebhookSection, resolve_all};
pub use dispatch::{Dispatcher, DispatcherSettings, EndpointConfig, EndpointStatus, Transport};
pub use formats::{Device, Format};
pub use sign::{Secret, SecretError, signature_header};
