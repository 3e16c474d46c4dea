//! The config file (TOML, the contract in DESIGN.md): parsed, checked, and turned into the
//! settings of each layer. Every key but `modem.device` has a default that works; unknown
//! keys and bad values are errors naming the key and its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::gateway::{BalanceCheck, GatewaySettings, ModemEventSettings, ModemSlot, Routing};
use crate::modem::ussd::RequestEncoding;
use crate::modem::{InitSettings, ModemSettings};
use crate::mqtt::{MqttSection, MqttSettings};
use crate::store::Subscription;
use crate::webhook::mail::{SmtpSection, SmtpSettings};
use crate::webhook::{Device, EndpointConfig, Transport, WebhookSection, resolve_all};

/// A config problem: the key, its line (when known), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{key}: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// The key, dotted (`modem.sweep_interval`).
    pub key: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    data_dir: Option<Spanned<String>>,
    device_id: Option<Spanned<i64>>,
    device_name: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    webhook_clock_check: Option<bool>,
    webhook_clock_wait: Option<Spanned<String>>,
    modem: Option<RawModems>,
    api: Option<RawApi>,
    sms: Option<RawSms>,
    #[serde(default)]
    webhook: Vec<Spanned<WebhookSection>>,
    smtp: Option<Spanned<SmtpSection>>,
    retention: Option<RawRetention>,
    mqtt: Option<Spanned<MqttSection>>,
    modem_events: Option<RawModemEvents>,
    calls: Option<RawCalls>,
    ussd: Option<RawUssd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModemEvents {
    debounce: Option<Spanned<String>>,
    signal_low: Option<Spanned<i64>>,
    signal_hysteresis: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalls {
    reject: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUssd {
    timeout: Option<Spanned<String>>,
    request_encoding: Option<Spanned<String>>,
    balance: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    low_balance: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModem {
    device: Option<Spanned<String>>,
    baud: Option<Spanned<u32>>,
    pin: Option<Spanned<String>>,
    storage: Option<Spanned<String>>,
    command_timeout: Option<Spanned<String>>,
    send_timeout: Option<Spanned<String>>,
    sweep_interval: Option<Spanned<String>>,
    command_gap: Option<Spanned<String>>,
    reset_command: Option<Spanned<String>>,
    cnmi: Option<Spanned<String>>,
    smsc: Option<Spanned<String>>,
    registration_timeout: Option<Spanned<String>>,
    number: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    health_interval: Option<Spanned<String>>,
    sim: Option<Spanned<i64>>,
    send: Option<bool>,
    prefixes: Option<Vec<Spanned<String>>>,
    balance: Option<Spanned<String>>,
    balance_interval: Option<Spanned<String>>,
    low_balance: Option<Spanned<f64>>,
}

/// `[modem]` (one table) or `[[modem]]` (an array of tables).
#[derive(Debug)]
enum RawModems {
    One(Box<RawModem>),
    Many(Vec<RawModem>),
}

impl<'de> Deserialize<'de> for RawModems {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawModems, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = RawModems;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [modem] table or [[modem]] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawModems, A::Error> {
                let one = RawModem::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawModems::One(Box::new(one)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<RawModems, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(RawModems::Many)
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

impl RawModems {
    /// The tables in order, and whether they were written as `[[modem]]`.
    fn tables(&self) -> (Vec<&RawModem>, bool) {
        match self {
            RawModems::One(one) => (vec![one.as_ref()], false),
            RawModems::Many(many) => (many.iter().collect(), true),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    ready_grace: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSms {
    max_parts: Option<Spanned<i64>>,
    status_reports: Option<bool>,
    routing: Option<Spanned<String>>,
    validity: Option<Spanned<String>>,
    resend_interrupted: Option<bool>,
    incomplete_timeout: Option<Spanned<String>>,
    report_timeout_margin: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    events: Option<Spanned<String>>,
    messages: Option<Spanned<String>>,
}

/// The `[modem]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ModemConfig {
    /// The serial device.
    pub device: String,
    /// Baud rate.
    pub baud: u32,
    /// The SIM PIN.
    pub pin: Option<String>,
    /// The message storage.
    pub storage: String,
    /// Ordinary commands' deadline.
    pub command_timeout: Duration,
    /// `AT+CMGS` deadline.
    pub send_timeout: Duration,
    /// The `AT+CMGL` sweep interval.
    pub sweep_interval: Duration,
    /// Quiet time after a final result before the next command (0: none).
    pub command_gap: Duration,
    /// Sent after repeated failed start-ups.
    pub reset_command: Option<String>,
    /// An `AT+CNMI` override.
    pub cnmi: Option<String>,
    /// An SMSC to set when the modem has none.
    pub smsc: Option<String>,
    /// How long to wait for the network at start-up.
    pub registration_timeout: Duration,
    /// How often signal, registration and storage are read.
    pub health_interval: Duration,
    /// `[calls] reject`: hang up incoming calls.
    pub reject_calls: bool,
    /// `[ussd] request_encoding`.
    pub ussd_request: RequestEncoding,
    /// Its name (`name`, default `modem1`, `modem2`… by position), unique.
    pub name: String,
    /// The SIM slot receivers see (`sim`, default its position from 0).
    pub sim: u32,
    /// Its own number, E.164 (`number`).
    pub number: Option<String>,
    /// Whether it may send (`send`, default true; false for a receive-only SIM).
    pub send: bool,
    /// Destination prefixes it prefers (`prefixes`, e.g. `["+43"]`).
    pub prefixes: Vec<String>,
    /// Its scheduled balance check: its own `balance` (with `balance_interval` and
    /// `low_balance`), else for the first modem `[ussd] balance`.
    pub balance: Option<BalanceCheck>,
}

/// The resolved config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database and generated files live.
    pub data_dir: PathBuf,
    /// The log level.
    pub log_level: log::LevelFilter,
    /// The first modem (`[modem]`, or the first `[[modem]]`).
    pub modem: ModemConfig,
    /// Every modem, in the order written (the first is [`Config::modem`]).
    pub modems: Vec<ModemConfig>,
    /// `[api] listen`
    pub listen: SocketAddr,
    /// `[api] token`; generated into the data dir when absent.
    pub token: Option<String>,
    /// `[api] ready_grace`: how long no modem may be ready before `/readyz` says not ready.
    pub ready_grace: Duration,
    /// `[sms]` and retention, as the gateway takes them.
    pub gateway: GatewaySettings,
    /// `[[webhook]]` endpoints.
    pub webhooks: Vec<EndpointConfig>,
    /// What each endpoint subscribed to.
    pub subscriptions: Vec<Subscription>,
    /// `[smtp]`: the server `mailto:` endpoints send through.
    pub smtp: Option<SmtpSettings>,
    /// Hold webhooks while the system clock is implausible (a Pi has no RTC).
    pub webhook_clock_check: bool,
    /// How long after boot an unsynchronised clock holds webhooks, waiting for NTP.
    pub webhook_clock_wait: Duration,
    /// `device_id`, `device_name` and `[modem] number`, as the webhook formats name them.
    pub device: Device,
    /// `[mqtt]`, when present. Its events go out through the endpoint named
    /// [`MQTT_ENDPOINT`] in `webhooks`.
    pub mqtt: Option<MqttSettings>,
}

/// A balance check as `check-config` shows it.
fn describe_balance(check: Option<&BalanceCheck>) -> String {
    check.map_or("(none)".into(), |check| {
        format!(
            "{:?} every \"{}\"{}",
            check.code,
            humantime::format_duration(check.interval),
            check
                .low_below
                .map(|below| format!(", low below {below}"))
                .unwrap_or_default()
        )
    })
}

/// The name of the endpoint (job queue) that publishes events to MQTT; no `[[webhook]]` may
/// take it.
pub const MQTT_ENDPOINT: &str = "mqtt";

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// The line of `key = …` in the table that starts at `offset`, before the next table.
fn key_line_after(text: &str, offset: usize, key: &str) -> Option<usize> {
    let mut position = offset;
    for (index, line) in text.get(offset..)?.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if index > 0 && trimmed.starts_with('[') {
            return None;
        }
        let named = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if named {
            return Some(line_of(text, position));
        }
        position += line.len();
    }
    None
}

struct Checker<'a> {
    text: &'a str,
    /// The config file's directory: relative `template_file` and `ca_file` paths are read
    /// from there (under systemd the working directory is `/`). `None` for text without a
    /// file, whose relative paths are the working directory's.
    base: Option<&'a Path>,
}

impl Checker<'_> {
    /// `path` as configured, relative to the config file's directory when it is relative.
    fn beside_config(&self, path: &str) -> String {
        match self.base {
            Some(base) if Path::new(path.trim()).is_relative() => {
                base.join(path.trim()).display().to_string()
            }
            _ => path.to_string(),
        }
    }
}

impl Checker<'_> {
    fn error<T>(&self, key: &str, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            line: Some(line_of(self.text, spanned.span().start)),
            message: message.into(),
        }
    }

    fn duration(
        &self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let parsed = humantime::parse_duration(value.get_ref().trim()).map_err(|error| {
            self.error(
                key,
                value,
                format!(
                    "{:?} is not a duration like \"500ms\", \"15s\", \"5m\", \"1d\" ({error})",
                    value.get_ref()
                ),
            )
        })?;
        if !range.contains(&parsed) {
            return Err(self.error(
                key,
                value,
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end())
                ),
            ));
        }
        Ok(parsed)
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// The default time between balance checks.
const BALANCE_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// `[ussd]` as read.
struct Ussd {
    timeout: Duration,
    encoding: RequestEncoding,
    /// `balance`: the first modem's check, unless its table has its own.
    balance: Option<BalanceCheck>,
    /// `interval`: also the default of each modem's `balance_interval`.
    interval: Duration,
}

/// The TOML as serde sees it; a type error names its dotted key and line.
fn read_raw(text: &str) -> Result<Raw, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
        // `modem.baud`, without the private field `Spanned` deserializes through.
        let path = error.path().to_string();
        let key = path
            .split('.')
            .filter(|segment| !segment.is_empty() && !segment.starts_with("$__"))
            .collect::<Vec<_>>()
            .join(".");
        let key = if key.is_empty() { "config".into() } else { key };
        let error = error.into_inner();
        ConfigError {
            key,
            line: error.span().map(|span| line_of(text, span.start)),
            message: error.message().to_string(),
        }
    })
}

/// A trimmed string, `None` when absent or empty.
fn text_of(value: &Option<Spanned<String>>) -> Option<String> {
    value
        .as_ref()
        .map(|v| v.get_ref().trim().to_string())
        .filter(|v| !v.is_empty())
}

/// One method per section, each checking every value it reads.
impl Checker<'_> {
    fn log_level(&self, level: &Option<Spanned<String>>) -> Result<log::LevelFilter, ConfigError> {
        match level {
            Some(level) => level.get_ref().parse().map_err(|_| {
                self.error(
                    "log_level",
                    level,
                    "use one of off, error, warn, info, debug, trace",
                )
            }),
            None => Ok(log::LevelFilter::Info),
        }
    }

    /// Every `[modem]`/`[[modem]]` table; names are unique.
    fn modems(&self, raw: Option<&RawModems>) -> Result<Vec<ModemConfig>, ConfigError> {
        let Some(raw) = raw else {
            return Err(ConfigError {
                key: "modem.device".into(),
                line: None,
                message:
                    "is required: the modem's AT port, e.g. /dev/serial/by-id/usb-…-if00-port0"
                        .into(),
            });
        };
        let (tables, many) = raw.tables();
        if tables.is_empty() {
            return Err(ConfigError {
                key: "modem".into(),
                line: None,
                message: "at least one [[modem]] is required".into(),
            });
        }
        let mut modems: Vec<ModemConfig> = Vec::new();
        for (position, table) in tables.into_iter().enumerate() {
            let modem = self.modem(table, position, many)?;
            if modems.iter().any(|earlier| earlier.name == modem.name) {
                let key = format!("modem[{}].name", modem.name);
                return Err(match &table.name {
                    Some(name) => self.error(&key, name, "another modem has this name"),
                    None => ConfigError {
                        key,
                        line: None,
                        message: "another modem has this name".into(),
                    },
                });
            }
            modems.push(modem);
        }
        Ok(modems)
    }

    /// One `[modem]` table, the `position`th (from 0); `many` when written as `[[modem]]`,
    /// whose errors name the modem (`modem[modem2].baud`).
    fn modem(
        &self,
        modem: &RawModem,
        position: usize,
        many: bool,
    ) -> Result<ModemConfig, ConfigError> {
        let name = match &modem.name {
            Some(name) => {
                let value = name.get_ref().trim();
                let fine = !value.is_empty()
                    && value.len() <= 32
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !fine {
                    let key = if many { "modem[].name" } else { "modem.name" };
                    return Err(self.error(
                        key,
                        name,
                        "1 to 32 letters, digits, - and _, e.g. \"austria\"",
                    ));
                }
                value.to_string()
            }
            None => format!("modem{}", position + 1),
        };
        let key = |field: &str| {
            if many {
                format!("modem[{name}].{field}")
            } else {
                format!("modem.{field}")
            }
        };
        let sim = match &modem.sim {
            Some(sim) if (0..=255).contains(sim.get_ref()) => *sim.get_ref() as u32,
            Some(sim) => return Err(self.error(&key("sim"), sim, "must be between 0 and 255")),
            None => position as u32,
        };
        let mut prefixes = Vec::new();
        for prefix in modem.prefixes.iter().flatten() {
            let value = prefix.get_ref().trim();
            let digits = value.strip_prefix('+').unwrap_or(value);
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(self.error(
                    &key("prefixes"),
                    prefix,
                    "each prefix is + and digits (or national digits), e.g. \"+43\"",
                ));
            }
            prefixes.push(value.to_string());
        }
        Ok(ModemConfig {
            device: self.modem_device(&key("device"), &modem.device)?,
            baud: match &modem.baud {
                Some(baud) if (300..=4_000_000).contains(baud.get_ref()) => *baud.get_ref(),
                Some(baud) => {
                    return Err(self.error(&key("baud"), baud, "must be between 300 and 4000000"));
                }
                None => 115_200,
            },
            pin: self.modem_pin(&key("pin"), &modem.pin)?,
            storage: self.modem_storage(&key("storage"), &modem.storage)?,
            command_timeout: self.duration(
                &key("command_timeout"),
                &modem.command_timeout,
                Duration::from_secs(10),
                Duration::from_secs(1)..=Duration::from_secs(300),
            )?,
            send_timeout: self.duration(
                &key("send_timeout"),
                &modem.send_timeout,
                Duration::from_secs(60),
                Duration::from_secs(5)..=Duration::from_secs(600),
            )?,
            sweep_interval: self.duration(
                &key("sweep_interval"),
                &modem.sweep_interval,
                Duration::from_secs(300),
                Duration::from_secs(5)..=DAY,
            )?,
            command_gap: self.duration(
                "modem.command_gap",
                &modem.command_gap,
                crate::at::SessionConfig::default().command_gap,
                Duration::ZERO..=Duration::from_secs(2),
            )?,
            reset_command: text_of(&modem.reset_command),
            cnmi: self.modem_cnmi(&key("cnmi"), &modem.cnmi)?,
            smsc: text_of(&modem.smsc),
            registration_timeout: self.duration(
                &key("registration_timeout"),
                &modem.registration_timeout,
                Duration::from_secs(60),
                Duration::from_secs(5)..=Duration::from_secs(3600),
            )?,
            health_interval: self.duration(
                &key("health_interval"),
                &modem.health_interval,
                Duration::from_secs(60),
                Duration::from_secs(1)..=Duration::from_secs(3600),
            )?,
            // Both from the gateway-wide `[calls]` and `[ussd]`, set by `Config::parse`.
            reject_calls: false,
            ussd_request: RequestEncoding::Text,
            number: self.modem_number(&key("number"), &modem.number)?,
            send: modem.send.unwrap_or(true),
            prefixes,
            sim,
            name,
            // Set by `Checker::modem_balance` once `[ussd]` is read.
            balance: None,
        })
    }

    /// `[modem_events]`: the debounce and the signal threshold.
    fn modem_events(
        &self,
        raw: &RawModemEvents,
        modem: &ModemConfig,
    ) -> Result<ModemEventSettings, ConfigError> {
        let defaults = ModemEventSettings::default();
        let signal_low = match &raw.signal_low {
            Some(dbm) if (-113..=-51).contains(dbm.get_ref()) => *dbm.get_ref() as i16,
            Some(dbm) => {
                return Err(self.error(
                    "modem_events.signal_low",
                    dbm,
                    "a signal level in dBm, -113 to -51",
                ));
            }
            None => defaults.signal_low_dbm,
        };
        let hysteresis = match &raw.signal_hysteresis {
            Some(db) if (0..=30).contains(db.get_ref()) => *db.get_ref() as i16,
            Some(db) => {
                return Err(self.error(
                    "modem_events.signal_hysteresis",
                    db,
                    "dB between 0 and 30",
                ));
            }
            None => defaults.signal_hysteresis_db,
        };
        Ok(ModemEventSettings {
            modem: modem.name.clone(),
            sim: modem.sim,
            debounce: self.duration(
                "modem_events.debounce",
                &raw.debounce,
                defaults.debounce,
                Duration::ZERO..=DAY,
            )?,
            signal_low_dbm: signal_low,
            signal_hysteresis_db: hysteresis,
        })
    }

    /// `[ussd]`: the timeout, the request encoding and the balance check.
    fn ussd(&self, raw: &RawUssd) -> Result<Ussd, ConfigError> {
        let timeout = self.duration(
            "ussd.timeout",
            &raw.timeout,
            Duration::from_secs(30),
            Duration::from_secs(1)..=Duration::from_secs(300),
        )?;
        let encoding = match &raw.request_encoding {
            Some(name) => RequestEncoding::from_name(name.get_ref().trim()).ok_or_else(|| {
                self.error(
                    "ussd.request_encoding",
                    name,
                    "use text, or packed_hex (Huawei sticks)",
                )
            })?,
            None => RequestEncoding::Text,
        };
        let interval = self.balance_interval("ussd.interval", &raw.interval, BALANCE_INTERVAL)?;
        let balance = match &raw.balance {
            Some(code) => Some(BalanceCheck {
                code: self.balance_code("ussd.balance", code, encoding)?,
                interval,
                low_below: raw.low_balance.as_ref().map(|amount| *amount.get_ref()),
            }),
            None => None,
        };
        Ok(Ussd {
            timeout,
            encoding,
            balance,
            interval,
        })
    }

    /// A balance code, checked as a USSD request in `encoding`.
    fn balance_code(
        &self,
        key: &str,
        code: &Spanned<String>,
        encoding: RequestEncoding,
    ) -> Result<String, ConfigError> {
        match crate::modem::ussd::encode_request(code.get_ref(), encoding) {
            Ok(_) => Ok(code.get_ref().clone()),
            Err(error) => Err(self.error(key, code, error.to_string())),
        }
    }

    fn balance_interval(
        &self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        self.duration(key, value, default, Duration::from_secs(1)..=30 * DAY)
    }

    /// A `[modem]`/`[[modem]]` table's own balance check (`balance`, `balance_interval`
    /// defaulting to `[ussd] interval`, `low_balance`); else `[ussd] balance` for the first
    /// modem only, since a code is one operator's and another SIM may be on another network.
    /// `many` as for [`Checker::modem`].
    fn modem_balance(
        &self,
        table: &RawModem,
        modem: &ModemConfig,
        first: bool,
        many: bool,
        ussd: &Ussd,
    ) -> Result<Option<BalanceCheck>, ConfigError> {
        let key = |field: &str| {
            if many {
                format!("modem[{}].{field}", modem.name)
            } else {
                format!("modem.{field}")
            }
        };
        let Some(code) = &table.balance else {
            let stray = [
                table.balance_interval.as_ref().map(Spanned::span),
                table.low_balance.as_ref().map(Spanned::span),
            ];
            let fields = ["balance_interval", "low_balance"];
            if let Some((field, span)) = fields
                .iter()
                .zip(stray)
                .find_map(|(field, span)| span.map(|span| (field, span)))
            {
                return Err(ConfigError {
                    key: key(field),
                    line: Some(line_of(self.text, span.start)),
                    message: "needs this modem's own balance = \"<code>\"".into(),
                });
            }
            return Ok(ussd.balance.clone().filter(|_| first));
        };
        Ok(Some(BalanceCheck {
            code: self.balance_code(&key("balance"), code, ussd.encoding)?,
            interval: self.balance_interval(
                &key("balance_interval"),
                &table.balance_interval,
                ussd.interval,
            )?,
            // Not `[ussd] low_balance`: the amount is in this SIM's currency.
            low_below: table.low_balance.as_ref().map(|amount| *amount.get_ref()),
        }))
    }

    fn modem_number(
        &self,
        key: &str,
        number: &Option<Spanned<String>>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(number) = number else {
            return Ok(None);
        };
        let text = number.get_ref().trim();
        let digits = text.strip_prefix('+').unwrap_or_default();
        if !text.starts_with('+')
            || !(1..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            let message = "must be E.164: + and up to 15 digits, e.g. \"+447700900123\"";
            return Err(self.error(key, number, message));
        }
        Ok(Some(text.to_string()))
    }

    fn modem_device(
        &self,
        key: &str,
        device: &Option<Spanned<String>>,
    ) -> Result<String, ConfigError> {
        match device {
            Some(device) if !device.get_ref().trim().is_empty() => {
                Ok(device.get_ref().trim().to_string())
            }
            Some(device) => Err(self.error(key, device, "must not be empty")),
            None => Err(ConfigError {
                key: key.into(),
                line: None,
                message:
                    "is required: the modem's AT port, e.g. /dev/serial/by-id/usb-…-if00-port0"
                        .into(),
            }),
        }
    }

    fn modem_pin(
        &self,
        key: &str,
        pin: &Option<Spanned<String>>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(pin) = pin else {
            return Ok(None);
        };
        let value = pin.get_ref().trim();
        if !(4..=8).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.error(key, pin, "a SIM PIN is 4 to 8 digits"));
        }
        Ok(Some(value.to_string()))
    }

    fn modem_storage(
        &self,
        key: &str,
        storage: &Option<Spanned<String>>,
    ) -> Result<String, ConfigError> {
        let Some(storage) = storage else {
            return Ok("SM".into());
        };
        let value = storage.get_ref().trim().to_ascii_uppercase();
        if !["SM", "ME", "MT"].contains(&value.as_str()) {
            return Err(self.error(key, storage, "use SM (SIM), ME (modem) or MT (both)"));
        }
        Ok(value)
    }

    fn modem_cnmi(
        &self,
        key: &str,
        cnmi: &Option<Spanned<String>>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(cnmi) = cnmi else {
            return Ok(None);
        };
        let fields: Vec<&str> = cnmi.get_ref().split(',').collect();
        let valid = fields.len() == 5
            && fields
                .iter()
                .all(|f| matches!(f.trim().parse::<u8>(), Ok(0..=3)));
        if !valid {
            return Err(self.error(key, cnmi, "five numbers 0–3, e.g. \"2,1,0,2,0\""));
        }
        Ok(Some(cnmi.get_ref().replace(' ', "")))
    }

    /// `[api]`: the address, the token and the readiness grace.
    fn api(&self, api: &RawApi) -> Result<(SocketAddr, Option<String>, Duration), ConfigError> {
        let listen = match &api.listen {
            Some(listen) => listen.get_ref().trim().parse().map_err(|_| {
                self.error(
                    "api.listen",
                    listen,
                    "an address and port, e.g. \"127.0.0.1:8640\"",
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8640)),
        };
        let token = match &api.token {
            // Short tokens load (DESIGN.md's own example is "change-me"); the daemon warns.
            Some(token) if token.get_ref().trim().is_empty() => {
                return Err(self.error(
                    "api.token",
                    token,
                    "must not be empty (leave it out to have one generated)",
                ));
            }
            Some(token) => Some(token.get_ref().trim().to_string()),
            None => None,
        };
        let ready_grace = self.duration(
            "api.ready_grace",
            &api.ready_grace,
            Duration::from_secs(120),
            Duration::ZERO..=DAY,
        )?;
        Ok((listen, token, ready_grace))
    }

    /// `[sms]` and `[retention]`.
    fn gateway(
        &self,
        sms: &RawSms,
        retention: &RawRetention,
    ) -> Result<GatewaySettings, ConfigError> {
        let max_parts = match &sms.max_parts {
            Some(parts) if (1..=255).contains(parts.get_ref()) => *parts.get_ref() as usize,
            Some(parts) => {
                return Err(self.error("sms.max_parts", parts, "must be between 1 and 255"));
            }
            None => 10,
        };
        let kept = |key: &str, value: &Option<Spanned<String>>| {
            self.duration(key, value, 30 * DAY, Duration::from_secs(3600)..=3650 * DAY)
        };
        let routing = match &sms.routing {
            Some(name) => Routing::from_name(name.get_ref().trim()).ok_or_else(|| {
                self.error(
                    "sms.routing",
                    name,
                    "use \"prefix_then_round_robin\" or \"first\"",
                )
            })?,
            None => Routing::default(),
        };
        Ok(GatewaySettings {
            max_parts,
            routing,
            status_reports: sms.status_reports.unwrap_or(true),
            validity: Some(self.duration(
                "sms.validity",
                &sms.validity,
                DAY,
                Duration::from_secs(300)..=63 * 7 * DAY,
            )?),
            resend_interrupted: sms.resend_interrupted.unwrap_or(false),
            incomplete_timeout: self.duration(
                "sms.incomplete_timeout",
                &sms.incomplete_timeout,
                Duration::from_secs(3600),
                Duration::from_secs(10)..=7 * DAY,
            )?,
            report_timeout_margin: self.duration(
                "sms.report_timeout_margin",
                &sms.report_timeout_margin,
                Duration::from_secs(3600),
                Duration::from_secs(60)..=7 * DAY,
            )?,
            retention_events: kept("retention.events", &retention.events)?,
            retention_messages: kept("retention.messages", &retention.messages)?,
            ..GatewaySettings::default()
        })
    }

    /// `device_id` (a positive integer, default 1), `device_name` (default: the host name)
    /// and the first modem's `number` (checked with the modem).
    fn device(&self, raw: &Raw, number: Option<String>) -> Result<Device, ConfigError> {
        let id = match &raw.device_id {
            Some(id) if *id.get_ref() >= 1 => *id.get_ref() as u64,
            Some(id) => return Err(self.error("device_id", id, "must be a positive integer")),
            None => 1,
        };
        let name = match &raw.device_name {
            Some(name) if name.get_ref().trim().is_empty() => {
                return Err(self.error("device_name", name, "must not be empty"));
            }
            Some(name) => name.get_ref().trim().to_string(),
            None => crate::webhook::formats::host_name(),
        };
        Ok(Device { id, name, number })
    }

    /// `[smtp]`: an error points at the key's line in the section.
    fn smtp(
        &self,
        raw: Option<&Spanned<SmtpSection>>,
    ) -> Result<Option<SmtpSettings>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let mut section = raw.get_ref().clone();
        section.ca_file = section.ca_file.map(|file| self.beside_config(&file));
        section
            .resolve()
            .map(Some)
            .map_err(|(key, message)| ConfigError {
                key: format!("smtp.{key}"),
                line: key_line_after(self.text, raw.span().start, key)
                    .or_else(|| Some(line_of(self.text, raw.span().start))),
                message,
            })
    }

    /// `[[webhook]]`: an error points at the key's own line in its section.
    fn webhooks(
        &self,
        raw: &[Spanned<WebhookSection>],
        smtp: Option<&SmtpSettings>,
    ) -> Result<(Vec<EndpointConfig>, Vec<Subscription>), ConfigError> {
        let sections: Vec<WebhookSection> = raw
            .iter()
            .map(|section| {
                let mut section = section.get_ref().clone();
                section.template_file = section.template_file.map(|file| self.beside_config(&file));
                section
            })
            .collect();
        resolve_all(&sections, smtp).map_err(|error| {
            let line = raw
                .iter()
                .find(|section| section.get_ref().name == error.name)
                .map(|section| {
                    let start = section.span().start;
                    key_line_after(self.text, start, error.key)
                        .unwrap_or_else(|| line_of(self.text, start))
                });
            ConfigError {
                key: format!("webhook[{}].{}", error.name, error.key),
                line,
                message: error.message,
            }
        })
    }
}

impl Checker<'_> {
    /// `[mqtt]`: the settings, and the endpoint and subscription of its event queue (checked
    /// as a `[[webhook]]` with the same `events` and `format` keys would be).
    fn mqtt(
        &self,
        section: &Spanned<MqttSection>,
        device: &Device,
    ) -> Result<(MqttSettings, EndpointConfig, Subscription), ConfigError> {
        let start = section.span().start;
        let located = |key: &str, message: String| ConfigError {
            key: format!("mqtt.{key}"),
            line: key_line_after(self.text, start, key).or(Some(line_of(self.text, start))),
            message,
        };
        let mut mqtt = section.get_ref().clone();
        mqtt.ca_file = mqtt.ca_file.map(|file| self.beside_config(&file));
        let mqtt = &mqtt;
        let settings = mqtt
            .resolve(&device.name)
            .map_err(|error| located(error.key, error.message))?;
        let queue = WebhookSection {
            name: MQTT_ENDPOINT.into(),
            url: "https://mqtt.invalid/".into(),
            events: mqtt.events.clone(),
            enabled: true,
            format: mqtt.format.clone(),
            ..WebhookSection::default()
        };
        let (mut endpoint, subscription) = queue
            .resolve(None)
            .map_err(|error| located(error.key, error.message))?;
        endpoint.url = format!("mqtt://{}:{}", settings.host, settings.port);
        Ok((settings, endpoint, subscription))
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            key: path.display().to_string(),
            line: None,
            message: format!("cannot read the config file: {error}"),
        })?;
        Config::parse_beside(&text, path.parent())
    }

    /// Checks config text; relative paths in it are the working directory's.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_beside(text, None)
    }

    /// Checks config text read from a file in `base`, which relative paths are taken from.
    fn parse_beside(text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let raw = read_raw(text)?;
        let check = Checker { text, base };
        let modems = check.modems(raw.modem.as_ref())?;
        let Some(first) = modems.first().cloned() else {
            return Err(ConfigError {
                key: "modem".into(),
                line: None,
                message: "at least one modem is required".into(),
            });
        };
        let device = check.device(&raw, first.number.clone())?;
        let (listen, token, ready_grace) = check.api(&raw.api.unwrap_or_default())?;
        let smtp = check.smtp(raw.smtp.as_ref())?;
        let (mut webhooks, mut subscriptions) = check.webhooks(&raw.webhook, smtp.as_ref())?;
        let mqtt = match &raw.mqtt {
            Some(section) => {
                if webhooks
                    .iter()
                    .any(|endpoint| endpoint.name == MQTT_ENDPOINT)
                {
                    return Err(ConfigError {
                        key: format!("webhook[{MQTT_ENDPOINT}].name"),
                        line: None,
                        message: format!(
                            "{MQTT_ENDPOINT:?} is the [mqtt] section's queue; pick another name"
                        ),
                    });
                }
                let (settings, endpoint, subscription) = check.mqtt(section, &device)?;
                webhooks.push(endpoint);
                subscriptions.push(subscription);
                Some(settings)
            }
            None => None,
        };
        let ussd = check.ussd(&raw.ussd.unwrap_or_default())?;
        let reject_calls = raw.calls.and_then(|calls| calls.reject).unwrap_or(false);
        let (mut modems, mut first) = (modems, first);
        if let Some(tables) = raw.modem.as_ref().map(RawModems::tables) {
            let (tables, many) = tables;
            for (index, (modem, table)) in modems.iter_mut().zip(tables).enumerate() {
                modem.balance = check.modem_balance(table, modem, index == 0, many, &ussd)?;
            }
        }
        first.balance = modems.first().and_then(|modem| modem.balance.clone());
        for modem in modems.iter_mut().chain(std::iter::once(&mut first)) {
            modem.ussd_request = ussd.encoding;
            modem.reject_calls = reject_calls;
        }
        let modem_balances = modems
            .iter()
            .filter_map(|modem| {
                let check = modem.balance.clone()?;
                Some((modem.name.clone(), check))
            })
            .collect();
        let modem_events = check.modem_events(&raw.modem_events.unwrap_or_default(), &first)?;
        Ok(Config {
            data_dir: raw.data_dir.as_ref().map_or_else(
                || PathBuf::from("/var/lib/smsrelay"),
                |d| PathBuf::from(d.get_ref()),
            ),
            log_level: check.log_level(&raw.log_level)?,
            modem: first,
            modems,
            listen,
            token,
            ready_grace,
            gateway: GatewaySettings {
                receiving_number: device.number.clone(),
                modem_events,
                ussd_timeout: ussd.timeout,
                balance: ussd.balance,
                modem_balances,
                ..check.gateway(
                    &raw.sms.unwrap_or_default(),
                    &raw.retention.unwrap_or_default(),
                )?
            },
            webhooks,
            subscriptions,
            smtp,
            webhook_clock_check: raw.webhook_clock_check.unwrap_or(true),
            webhook_clock_wait: check.duration(
                "webhook_clock_wait",
                &raw.webhook_clock_wait,
                Duration::from_secs(300),
                Duration::ZERO..=DAY,
            )?,
            device,
            mqtt,
        })
    }

    /// The gateway's view of modem `modem` (one of [`Config::modems`]) with its driver.
    pub fn modem_slot(modem: &ModemConfig, handle: crate::modem::ModemHandle) -> ModemSlot {
        ModemSlot {
            name: modem.name.clone(),
            sim: modem.sim,
            number: modem.number.clone(),
            send: modem.send,
            prefixes: modem.prefixes.clone(),
            handle,
        }
    }

    /// The first modem driver's settings.
    pub fn modem_settings(&self) -> ModemSettings {
        self.modem_settings_for(&self.modem)
    }

    /// The driver settings of one of [`Config::modems`].
    pub fn modem_settings_for(&self, modem: &ModemConfig) -> ModemSettings {
        let mut settings = ModemSettings::new(&modem.device);
        settings.name = modem.name.clone();
        settings.baud = modem.baud;
        settings.init = InitSettings {
            pin: modem.pin.clone(),
            refused_pins: Some(self.data_dir.join(crate::modem::pin::REFUSED_PIN_FILE)),
            storage: modem.storage.clone(),
            smsc: modem.smsc.clone(),
            registration_timeout: modem.registration_timeout,
            command_timeout: modem.command_timeout,
            cnmi: modem.cnmi.clone(),
            ..InitSettings::default()
        };
        settings.send_timeout = modem.send_timeout;
        settings.sweep_interval = modem.sweep_interval;
        settings.session.command_gap = modem.command_gap;
        settings.reset_command = modem.reset_command.clone();
        settings.health_interval = modem.health_interval;
        settings.reject_calls = modem.reject_calls;
        settings.ussd_request = modem.ussd_request;
        settings
    }

    /// The resolved settings as TOML-like text, secrets masked (`smsrelay check-config`).
    pub fn describe(&self) -> String {
        let mask = |present: bool| if present { "\"********\"" } else { "(none)" };
        let seconds = |d: Duration| format!("\"{}\"", humantime::format_duration(d));
        let mut out = format!(
            "data_dir = {:?}\nlog_level = \"{}\"\nwebhook_clock_check = {}\nwebhook_clock_wait = {}\n\n[modem]\ndevice = {:?}\nbaud = {}\npin = {}\nstorage = {:?}\ncommand_timeout = {}\nsend_timeout = {}\nsweep_interval = {}\ncommand_gap = {}\nreset_command = {}\ncnmi = {}\nnumber = {}\nname = {:?}\nhealth_interval = {}\n\n[api]\nlisten = \"{}\"\ntoken = {}\nready_grace = {}\n\n[sms]\nmax_parts = {}\nstatus_reports = {}\nvalidity = {}\nresend_interrupted = {}\nincomplete_timeout = {}\nreport_timeout_margin = {}\n\n[retention]\nevents = {}\nmessages = {}\n",
            self.data_dir.display().to_string(),
            self.log_level.to_string().to_ascii_lowercase(),
            self.webhook_clock_check,
            seconds(self.webhook_clock_wait),
            self.modem.device,
            self.modem.baud,
            mask(self.modem.pin.is_some()),
            self.modem.storage,
            seconds(self.modem.command_timeout),
            seconds(self.modem.send_timeout),
            seconds(self.modem.sweep_interval),
            seconds(self.modem.command_gap),
            self.modem
                .reset_command
                .as_deref()
                .map_or("(none)".into(), |c| format!("{c:?}")),
            self.modem
                .cnmi
                .as_deref()
                .map_or("(automatic)".into(), |c| format!("{c:?}")),
            self.device
                .number
                .as_deref()
                .map_or("(none)".into(), |n| format!("{n:?}")),
            self.modem.name,
            seconds(self.modem.health_interval),
            self.listen,
            if self.token.is_some() {
                "\"********\""
            } else {
                "(generated in data_dir)"
            },
            seconds(self.ready_grace),
            self.gateway.max_parts,
            self.gateway.status_reports,
            self.gateway
                .validity
                .map_or("(network default)".into(), seconds),
            self.gateway.resend_interrupted,
            seconds(self.gateway.incomplete_timeout),
            seconds(self.gateway.report_timeout_margin),
            seconds(self.gateway.retention_events),
            seconds(self.gateway.retention_messages),
        );
        let events = &self.gateway.modem_events;
        out.push_str(&format!(
            "\n[modem_events]\ndebounce = {}\nsignal_low = {}\nsignal_hysteresis = {}\n\n[calls]\nreject = {}\n\n[ussd]\ntimeout = {}\nrequest_encoding = {:?}\nbalance = {}\n",
            seconds(events.debounce),
            events.signal_low_dbm,
            events.signal_hysteresis_db,
            self.modem.reject_calls,
            seconds(self.gateway.ussd_timeout),
            self.modem.ussd_request.name(),
            describe_balance(self.gateway.balance.as_ref()),
        ));
        out.insert_str(
            0,
            &format!(
                "device_id = {}\ndevice_name = {:?}\n",
                self.device.id, self.device.name
            ),
        );
        out = out.replacen(
            "\n[sms]\n",
            &format!("\n[sms]\nrouting = \"{}\"\n", self.gateway.routing.name()),
            1,
        );
        // [modem] above is the first; with several, each is listed with what tells it apart.
        if self.modems.len() > 1 {
            for modem in &self.modems {
                out.push_str(&format!(
                    "\n[[modem]]\nname = {:?}\ndevice = {:?}\nsim = {}\nsend = {}\nprefixes = {:?}\nnumber = {}\npin = {}\nbalance = {}\n",
                    modem.name,
                    modem.device,
                    modem.sim,
                    modem.send,
                    modem.prefixes,
                    modem
                        .number
                        .as_deref()
                        .map_or("(none)".into(), |n| format!("{n:?}")),
                    mask(modem.pin.is_some()),
                    describe_balance(modem.balance.as_ref()),
                ));
            }
        } else if self.modem.balance != self.gateway.balance {
            // One modem whose table has its own balance check, which replaces [ussd]'s.
            out = out.replacen(
                "\n[api]\n",
                &format!(
                    "balance = {}\n\n[api]\n",
                    describe_balance(self.modem.balance.as_ref())
                ),
                1,
            );
        }
        for (endpoint, subscription) in self.webhooks.iter().zip(&self.subscriptions) {
            if self.mqtt.is_some() && endpoint.name == MQTT_ENDPOINT {
                out.push_str(&self.describe_mqtt(endpoint, subscription));
                continue;
            }
            let secrets = match (&endpoint.format_secret, endpoint.secrets.len()) {
                (Some(_), _) => format!("\"********\" (the {} key)", endpoint.format.name()),
                (None, 0) => "(unsigned)".to_string(),
                (None, count) => format!("{count} × \"whsec_********\""),
            };
            out.push_str(&format!(
                "\n[[webhook]]\nname = {:?}\nurl = {:?}\ntransport = {:?}\nformat = {:?}\nevents = {:?}\nrouting = {}\nsecrets = {}\ntimeout = {}\nattempts = {}\nenabled = {}\n",
                endpoint.name,
                masked_url(&endpoint.url),
                endpoint.transport.name(),
                match endpoint.template {
                    Some(_) => "template",
                    None => endpoint.format.name(),
                },
                subscription.events,
                describe_routing(&subscription.routing),
                secrets,
                seconds(endpoint.timeout),
                endpoint.schedule.len(),
                endpoint.enabled,
            ));
            if let Some(template) = &endpoint.template {
                out.push_str(&format!("template = {:?}\n", template.source()));
            }
            if let Some(content_type) = &endpoint.content_type {
                out.push_str(&format!("content_type = {content_type:?}\n"));
            }
            // Header values are where services put their API keys (`Authorization`, ...).
            for (name, _) in &endpoint.headers {
                out.push_str(&format!("header = \"{name}: ********\"\n"));
            }
            if let Transport::Mail(mail) = &endpoint.transport {
                let to: Vec<String> = mail.to.iter().map(ToString::to_string).collect();
                out.push_str(&format!("mail_to = {to:?}\n"));
            }
        }
        if let Some(smtp) = &self.smtp {
            out.push_str(&format!(
                "\n[smtp]\nhost = {:?}\nport = {}\nsecurity = {:?}\nusername = {}\npassword = {}\nfrom = {:?}\nca_file = {}\n",
                smtp.host,
                smtp.port,
                smtp.security.name(),
                smtp.credentials
                    .as_ref()
                    .map_or("(none)".into(), |(user, _)| format!("{user:?}")),
                mask(smtp.credentials.is_some()),
                smtp.from.to_string(),
                smtp.ca_file
                    .as_deref()
                    .map_or("(bundled roots only)".into(), |path| format!("{path:?}")),
            ));
        }
        out
    }

    /// `[mqtt]` as `check-config` shows it, the password masked.
    fn describe_mqtt(&self, endpoint: &EndpointConfig, subscription: &Subscription) -> String {
        let Some(mqtt) = &self.mqtt else {
            return String::new();
        };
        let security = match &mqtt.security {
            crate::mqtt::Security::Plain => "none".to_string(),
            crate::mqtt::Security::Tls { ca_file: None } => "tls (web roots)".to_string(),
            crate::mqtt::Security::Tls {
                ca_file: Some(file),
            } => {
                format!("tls (trusting {})", file.display())
            }
        };
        format!(
            "\n[mqtt]\nbroker = {:?}\ntls = {:?}\nusername = {}\npassword = {}\nclient_id = {:?}\n\
             topic_prefix = {:?}\nformat = {:?}\nevents = {:?}\ncommands = {}\n\
             home_assistant = {}\nnotify_to = {}\n",
            format!("{}:{}", mqtt.host, mqtt.port),
            security,
            mqtt.credentials
                .as_ref()
                .map_or("(none)".to_string(), |(user, _)| format!("{user:?}")),
            if mqtt.credentials.is_some() {
                "\"********\""
            } else {
                "(none)"
            },
            mqtt.client_id,
            mqtt.prefix,
            endpoint.format.name(),
            subscription.events,
            mqtt.commands,
            mqtt.home_assistant,
            mqtt.notify_to
                .as_deref()
                .map_or("(none)".to_string(), |to| format!("{to:?}")),
        )
    }
}

/// `url` as `check-config` shows it, with what services put their tokens in masked: a
/// password, every query value (and a query word without one), and path segments that look
/// like a token (`https://hooks.slack.com/services/********/********/********`).
fn masked_url(url: &str) -> String {
    const MASK: &str = "********";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    }
    if parsed.query().is_some() {
        let pairs: Vec<String> = parsed
            .query_pairs()
            .map(|(name, value)| {
                if value.is_empty() {
                    MASK.to_string()
                } else {
                    format!("{name}={MASK}")
                }
            })
            .collect();
        parsed.set_query(Some(&pairs.join("&")));
    }
    if !parsed.cannot_be_a_base() {
        let path: Vec<String> = parsed
            .path_segments()
            .map(|segments| {
                segments
                    .map(|segment| {
                        if looks_like_a_token(segment) {
                            MASK.to_string()
                        } else {
                            segment.to_string()
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        parsed.set_path(&path.join("/"));
    }
    parsed.to_string()
}

/// A URL path segment that may be a secret: long, several digits, or a `:` (a Telegram bot
/// token is `bot<id>:<key>`; Slack's and Discord's webhook paths are ids and keys).
fn looks_like_a_token(segment: &str) -> bool {
    let digits = segment.chars().filter(char::is_ascii_digit).count();
    segment.len() > 20 || digits > 2 || segment.contains(':')
}

/// An endpoint's inbound SMS routing in words, for `check-config`.
fn describe_routing(routing: &crate::store::routing::Routing) -> String {
    if routing.unmatched {
        return "\"inbound SMS no keywords or senders endpoint took\"".into();
    }
    if routing.takes_all() {
        return "\"every event subscribed to\"".into();
    }
    let mut parts = Vec::new();
    if !routing.keywords.is_empty() {
        parts.push(format!("keywords {:?}", routing.keywords));
    }
    if !routing.senders.is_empty() {
        parts.push(format!("senders {:?}", routing.senders));
    }
    format!(
        "{:?}",
        format!("inbound SMS matching {}", parts.join(" and "))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_ussd_and_modem_events_reach_their_settings() {
        let config = Config::parse(
            "[modem]\ndevice = \"/dev/x\"\nname = \"gate\"\nhealth_interval = \"2s\"\n\
             [modem_events]\ndebounce = \"500ms\"\nsignal_low = -95\nsignal_hysteresis = 4\n\
             [calls]\nreject = true\n\
             [ussd]\nbalance = \"*100#\"\ninterval = \"1h\"\nlow_balance = 5.5\n\
             request_encoding = \"packed_hex\"\ntimeout = \"10s\"\n",
        );
        let config = match config {
            Ok(config) => config,
            Err(error) => panic!("{error}"),
        };
        let modem = config.modem_settings();
        assert_eq!(modem.name, "gate");
        assert_eq!(modem.health_interval, Duration::from_secs(2));
        assert!(modem.reject_calls);
        assert_eq!(modem.ussd_request, RequestEncoding::PackedHex);
        let events = &config.gateway.modem_events;
        assert_eq!(events.modem, "gate");
        assert_eq!(events.debounce, Duration::from_millis(500));
        assert_eq!(
            (events.signal_low_dbm, events.signal_hysteresis_db),
            (-95, 4)
        );
        assert_eq!(config.gateway.ussd_timeout, Duration::from_secs(10));
        assert_eq!(
            config.gateway.balance,
            Some(BalanceCheck {
                code: "*100#".into(),
                interval: Duration::from_secs(3600),
                low_below: Some(5.5),
            })
        );
        let shown = config.describe();
        assert!(shown.contains("[calls]\nreject = true"), "{shown}");
        assert!(
            shown.contains("balance = \"*100#\" every \"1h\", low below 5.5"),
            "{shown}"
        );
    }

    const EXAMPLE: &str = include_str!("../config/smsrelay.toml");

    #[test]
    fn the_shipped_example_is_valid() {
        let config = Config::parse(EXAMPLE).expect("the example config is valid");
        assert_eq!(config.modem.storage, "SM");
        assert_eq!(config.listen.port(), 8640);
    }

    #[test]
    fn the_design_example_is_valid_and_secrets_are_masked() {
        // DESIGN.md's Config section, verbatim (the CLI test checks the same file).
        let text = include_str!("../tests/fixtures/config/design-example.toml");
        let config = Config::parse(text).expect("valid");
        assert_eq!(config.modem.pin.as_deref(), Some("1234"));
        assert_eq!(config.modem.sweep_interval, Duration::from_secs(300));
        assert_eq!(config.webhooks.len(), 1);
        let shown = config.describe();
        assert!(!shown.contains("1234"), "{shown}");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
        assert!(!shown.contains("change-me"), "{shown}");
        assert!(shown.contains("sweep_interval = \"5m\""), "{shown}");
    }

    #[test]
    fn an_mqtt_section_becomes_a_queue_and_is_shown_masked() {
        let text = "device_name = \"shed\"\n[modem]\ndevice = \"/dev/x\"\n[mqtt]\n\
                    url = \"mqtt://10.0.0.5\"\nusername = \"gw\"\npassword = \"s3cret\"\n\
                    events = [\"sms.received\"]\n";
        let config = Config::parse(text).expect("valid");
        let mqtt = config.mqtt.as_ref().expect("mqtt");
        assert_eq!((mqtt.host.as_str(), mqtt.port), ("10.0.0.5", 1883));
        assert_eq!(mqtt.prefix, "smsrelay/shed");
        let queue = config
            .subscriptions
            .iter()
            .find(|s| s.endpoint == MQTT_ENDPOINT);
        assert_eq!(
            queue.map(|s| s.events.clone()),
            Some(vec!["sms.received".to_string()])
        );
        let shown = config.describe();
        assert!(
            shown.contains("[mqtt]") && !shown.contains("[[webhook]]"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");

        struct Case {
            what: &'static str,
            text: &'static str,
            key: &'static str,
            line: Option<usize>,
        }
        let cases = [
            Case {
                what: "bad url",
                text: "[modem]\ndevice = \"/d\"\n[mqtt]\nurl = \"http://x\"\n",
                key: "mqtt.url",
                line: Some(4),
            },
            Case {
                what: "unknown key",
                text: "[modem]\ndevice = \"/d\"\n[mqtt]\nurl = \"mqtt://x\"\nqos = 2\n",
                key: "mqtt.qos",
                line: Some(5),
            },
            Case {
                what: "bad pattern",
                text: "[modem]\ndevice = \"/d\"\n[mqtt]\nurl = \"mqtt://x\"\nevents = [\"\"]\n",
                key: "mqtt.events",
                line: Some(5),
            },
            Case {
                what: "a webhook named mqtt",
                text: "[modem]\ndevice = \"/d\"\n[mqtt]\nurl = \"mqtt://x\"\n[[webhook]]\nname = \"mqtt\"\nurl = \"http://h/\"\n",
                key: "webhook[mqtt].name",
                line: None,
            },
        ];
        for case in cases {
            let error = Config::parse(case.text).expect_err(case.what);
            assert_eq!(error.key, case.key, "{}: {error}", case.what);
            assert_eq!(error.line, case.line, "{}: {error}", case.what);
        }
    }

    #[test]
    fn the_report_timeout_margin_is_read_and_shown() {
        let config = Config::parse("[modem]\ndevice = \"/dev/x\"\n").expect("valid");
        assert_eq!(
            config.gateway.report_timeout_margin,
            Duration::from_secs(3600)
        );
        let config =
            Config::parse("[modem]\ndevice = \"/dev/x\"\n[sms]\nreport_timeout_margin = \"30m\"\n")
                .expect("valid");
        assert_eq!(
            config.gateway.report_timeout_margin,
            Duration::from_secs(1800)
        );
        let shown = config.describe();
        assert!(shown.contains("report_timeout_margin = \"30m\""), "{shown}");
    }

    #[test]
    fn several_modems_are_read_with_their_defaults() {
        let text = "[sms]\nrouting = \"first\"\n\n[[modem]]\ndevice = \"/dev/a\"\n\n[[modem]]\nname = \"austria\"\ndevice = \"/dev/b\"\nsim = 5\nnumber = \"+436641234567\"\nprefixes = [\"+43\"]\n\n[[modem]]\ndevice = \"/dev/c\"\nsend = false\n";
        let config = Config::parse(text).expect("valid");
        let seen: Vec<(&str, u32, bool, &[String])> = config
            .modems
            .iter()
            .map(|m| (m.name.as_str(), m.sim, m.send, m.prefixes.as_slice()))
            .collect();
        let austria = vec!["+43".to_string()];
        assert_eq!(
            seen,
            vec![
                ("modem1", 0, true, &[][..]),
                ("austria", 5, true, austria.as_slice()),
                ("modem3", 2, false, &[][..]),
            ]
        );
        assert_eq!(config.modem, config.modems[0]);
        assert_eq!(config.gateway.routing, Routing::First);
        assert_eq!(config.modem_settings_for(&config.modems[1]).name, "austria");
        // One [modem] table is one modem, named modem1, SIM 0.
        let one = Config::parse("[modem]\ndevice = \"/dev/x\"\n").expect("valid");
        assert_eq!(one.modems.len(), 1);
        assert_eq!((one.modem.name.as_str(), one.modem.sim), ("modem1", 0));
        assert_eq!(one.gateway.routing, Routing::PrefixThenRoundRobin);
    }

    #[test]
    fn each_modem_may_have_its_own_balance_check() {
        let text = "[ussd]\nbalance = \"*100#\"\ninterval = \"2h\"\nlow_balance = 5\n\n\
             [[modem]]\ndevice = \"/dev/a\"\n\n\
             [[modem]]\nname = \"spare\"\ndevice = \"/dev/b\"\nsim = 1\nbalance = \"*101#\"\nlow_balance = 2.5\n\n\
             [[modem]]\nname = \"kenya\"\ndevice = \"/dev/c\"\nbalance = \"*144#\"\nbalance_interval = \"1d\"\n\n\
             [[modem]]\nname = \"quiet\"\ndevice = \"/dev/d\"\n";
        let config = Config::parse(text).expect("valid");
        let check = |code: &str, hours: u64, low_below: Option<f64>| BalanceCheck {
            code: code.into(),
            interval: Duration::from_secs(hours * 3600),
            low_below,
        };
        let seen: Vec<(&str, Option<BalanceCheck>)> = config
            .modems
            .iter()
            .map(|modem| (modem.name.as_str(), modem.balance.clone()))
            .collect();
        assert_eq!(
            seen,
            vec![
                // [ussd] balance: the first modem's only.
                ("modem1", Some(check("*100#", 2, Some(5.0)))),
                // Its own code; [ussd] interval; its own low_balance, never [ussd]'s.
                ("spare", Some(check("*101#", 2, Some(2.5)))),
                ("kenya", Some(check("*144#", 24, None))),
                ("quiet", None),
            ]
        );
        assert_eq!(config.gateway.balance, Some(check("*100#", 2, Some(5.0))));
        let names: Vec<&str> = config
            .gateway
            .modem_balances
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(names, ["modem1", "spare", "kenya"]);
        let shown = config.describe();
        for line in [
            "name = \"spare\"\ndevice = \"/dev/b\"\nsim = 1\nsend = true\nprefixes = []\nnumber = (none)\npin = (none)\nbalance = \"*101#\" every \"2h\", low below 2.5\n",
            "name = \"quiet\"\ndevice = \"/dev/d\"\nsim = 3\nsend = true\nprefixes = []\nnumber = (none)\npin = (none)\nbalance = (none)\n",
            "pin = (none)\nbalance = \"*100#\" every \"2h\", low below 5\n",
        ] {
            assert!(shown.contains(line), "{line:?} in\n{shown}");
        }
        // One [modem] table with its own check: it replaces [ussd]'s, and check-config says so.
        let one = Config::parse(
            "[modem]\ndevice = \"/dev/x\"\nbalance = \"*102#\"\n[ussd]\nbalance = \"*100#\"\n",
        )
        .expect("valid");
        assert_eq!(one.modem.balance, Some(check("*102#", 6, None)));
        assert_eq!(
            one.gateway.modem_balances,
            vec![("modem1".to_string(), check("*102#", 6, None))]
        );
        let shown = one.describe();
        assert!(
            shown.contains("balance = \"*102#\" every \"6h\"\n\n[api]"),
            "{shown}"
        );
    }

    #[test]
    fn several_modems_errors_name_the_modem_and_key() {
        let cases = [
            (
                "[[modem]]\nname = \"a\"\ndevice = \"/dev/a\"\n[[modem]]\nname = \"a\"\ndevice = \"/dev/b\"\n",
                "modem[a].name",
                Some(5),
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\n[[modem]]\ndevice = \"/dev/b\"\nbaud = 1\n",
                "modem[modem2].baud",
                Some(5),
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\n[[modem]]\nname = \"b\"\n",
                "modem[b].device",
                None,
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\nprefixes = [\"+4x\"]\n",
                "modem[modem1].prefixes",
                Some(3),
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\nsim = -1\n",
                "modem[modem1].sim",
                Some(3),
            ),
            (
                "[[modem]]\nname = \"bad name\"\ndevice = \"/dev/a\"\n",
                "modem[].name",
                Some(2),
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\nnumber = \"0664\"\n",
                "modem[modem1].number",
                Some(3),
            ),
            (
                "[modem]\ndevice = \"/dev/a\"\n[sms]\nrouting = \"random\"\n",
                "sms.routing",
                Some(4),
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\n[[modem]]\ndevice = \"/dev/b\"\nbalance = \"*1\\\"#\"\n",
                "modem[modem2].balance",
                Some(5),
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\nbalance = \"*100#\"\nbalance_interval = \"0s\"\n",
                "modem[modem1].balance_interval",
                Some(4),
            ),
            (
                "[[modem]]\ndevice = \"/dev/a\"\nlow_balance = 5\n",
                "modem[modem1].low_balance",
                Some(3),
            ),
            (
                "[modem]\ndevice = \"/dev/a\"\nbalance_interval = \"1h\"\n",
                "modem.balance_interval",
                Some(3),
            ),
        ];
        for (text, key, line) in cases {
            let error = Config::parse(text).expect_err(text);
            assert_eq!(
                (error.key.as_str(), error.line),
                (key, line),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn only_the_device_is_required() {
        let config = Config::parse("[modem]\ndevice = \"/dev/ttyUSB2\"\n").expect("valid");
        assert_eq!(config.modem.baud, 115_200);
        assert_eq!(config.gateway.max_parts, 10);
        assert!(config.webhooks.is_empty());
        let error = Config::parse("").expect_err("no device");
        assert_eq!(error.key, "modem.device");
    }

    #[test]
    fn a_format_and_its_raw_key_are_described_masked() {
        let text = "device_id = 3\n[modem]\ndevice = \"/dev/x\"\nnumber = \"+447700900999\"\n[[webhook]]\nname = \"gw\"\nurl = \"https://x\"\nformat = \"gatewayapi\"\nsecret = \"raw-key-123\"\n";
        let config = Config::parse(text).expect("valid");
        assert_eq!(
            config.webhooks[0].format,
            crate::webhook::Format::Gatewayapi
        );
        assert!(
            config.webhooks[0].secrets.is_empty(),
            "no Standard Webhooks secret"
        );
        let described = config.describe();
        assert!(!described.contains("raw-key-123"), "{described}");
        for line in [
            "device_id = 3",
            "number = \"+447700900999\"",
            "format = \"gatewayapi\"",
            "secrets = \"********\" (the gatewayapi key)",
        ] {
            assert!(described.contains(line), "{line} in {described}");
        }
    }

    #[test]
    fn passwords_and_query_values_in_urls_are_masked() {
        let cases = [
            ("https://example.com/hook", "https://example.com/hook"),
            (
                "https://hooks.example.com/sms?token=s3cr3t&x=1",
                "https://hooks.example.com/sms?token=********&x=********",
            ),
            (
                "https://crm:hunter2@example.com/in",
                "https://crm:********@example.com/in",
            ),
            ("https://crm@example.com/in", "https://crm@example.com/in"),
            ("mailto:ops@example.com", "mailto:ops@example.com"),
            ("not a url", "not a url"),
            (
                "https://example.com/in?s3cr3tT0ken",
                "https://example.com/in?********",
            ),
            (
                "https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/********/********/********",
            ),
            (
                "https://api.telegram.org/bot123456:AAE-secret/sendMessage",
                "https://api.telegram.org/********/sendMessage",
            ),
            (
                "https://discord.com/api/webhooks/112233445566778899/abcDEFghiJKLmnoPQRstu",
                "https://discord.com/api/webhooks/********/********",
            ),
            (
                "https://example.com/v1/sms-in",
                "https://example.com/v1/sms-in",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(masked_url(url), shown, "{url}");
        }
    }

    #[test]
    fn the_device_identity_has_its_defaults_and_is_read() {
        let check = |text: &str, id: u64, name: Option<&str>, number: Option<&str>| {
            let device = Config::parse(text).expect(text).device;
            assert_eq!(device.id, id, "{text}");
            if let Some(name) = name {
                assert_eq!(device.name, name, "{text}");
            }
            assert!(!device.name.is_empty(), "{text}");
            assert_eq!(device.number.as_deref(), number, "{text}");
        };
        check("[modem]\ndevice = \"/dev/x\"\n", 1, None, None);
        check(
            "device_id = 7\ndevice_name = \"shop\"\n[modem]\ndevice = \"/dev/x\"\nnumber = \"+447700900999\"\n",
            7,
            Some("shop"),
            Some("+447700900999"),
        );
    }

    #[test]
    fn the_command_gap_defaults_to_none_and_reaches_the_session() {
        let gap = |text: &str| {
            let config = Config::parse(text).expect(text);
            assert_eq!(
                config.modem_settings().session.command_gap,
                config.modem.command_gap,
                "{text}"
            );
            config.modem.command_gap
        };
        assert_eq!(gap("[modem]\ndevice = \"/dev/x\"\n"), Duration::ZERO);
        assert_eq!(
            gap("[modem]\ndevice = \"/dev/x\"\ncommand_gap = \"100ms\"\n"),
            Duration::from_millis(100)
        );
        let error = Config::parse("[modem]\ndevice = \"/dev/x\"\ncommand_gap = \"5s\"\n")
            .expect_err("over the cap");
        assert_eq!(error.key, "modem.command_gap");
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let cases = [
            (
                "[modem]\ndevice = \"/dev/x\"\nname = \"a b\"\n",
                "modem.name",
                3,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[modem_events]\nsignal_low = -20\n",
                "modem_events.signal_low",
                4,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[ussd]\nrequest_encoding = \"ucs2\"\n",
                "ussd.request_encoding",
                4,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[ussd]\n\nbalance = \"*1\\\"#\"\n",
                "ussd.balance",
                5,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\nsweep_interval = \"often\"\n",
                "modem.sweep_interval",
                3,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\npin = \"12ab\"\n",
                "modem.pin",
                3,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n\n[api]\nlisten = \"localhost\"\n",
                "api.listen",
                5,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[sms]\nmax_parts = 0\n",
                "sms.max_parts",
                4,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[sms]\nvalidity = \"1s\"\n",
                "sms.validity",
                4,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[sms]\nreport_timeout_margin = \"1s\"\n",
                "sms.report_timeout_margin",
                4,
            ),
            (
                "log_level = \"loud\"\n[modem]\ndevice = \"/dev/x\"\n",
                "log_level",
                1,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n\n[[webhook]]\nname = \"crm\"\nurl = \"ftp://x\"\n",
                "webhook[crm].url",
                6,
            ),
            (
                "[modem] # the stick\ndevice = \"/dev/x\"\nbaud = \"fast\"\n",
                "modem.baud",
                3,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[[webhook]]\nname = \"crm\"\nurl = \"https://x\"\ntimeout = 5\n",
                "webhook[0].timeout",
                6,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[[webhook]]\nname = \"crm\"\nurl = \"https://x\"\n\ntimeout = \"2h\"\n",
                "webhook[crm].timeout",
                7,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\n[[webhook]]\nname = \"crm\"\nurl = \"https://x\"\nformat = \"twilio\"\n",
                "webhook[crm].format",
                6,
            ),
            (
                "device_id = 0\n[modem]\ndevice = \"/dev/x\"\n",
                "device_id",
                1,
            ),
            (
                "device_name = \" \"\n[modem]\ndevice = \"/dev/x\"\n",
                "device_name",
                1,
            ),
            (
                "[modem]\ndevice = \"/dev/x\"\nnumber = \"07700 900123\"\n",
                "modem.number",
                3,
            ),
        ];
        for (text, key, line) in cases {
            let error = Config::parse(text).expect_err(text);
            assert_eq!(
                (error.key.as_str(), error.line),
                (key, Some(line)),
                "{error}"
            );
        }
        let unknown =
            Config::parse("[modem]\ndevice = \"/dev/x\"\nbaudrate = 9600\n").expect_err("typo");
        assert_eq!(unknown.line, Some(3), "{unknown}");
        assert!(unknown.message.contains("baudrate"), "{unknown}");
        let syntax = Config::parse("[modem\ndevice = 1").expect_err("broken");
        assert_eq!(syntax.line, Some(1), "{syntax}");
    }

    #[test]
    fn the_readme_endpoint_example_loads_and_its_templates_render() {
        use crate::store::{Event, Job};
        use crate::webhook::formats::Context;

        let text = include_str!("../tests/fixtures/config/endpoints-example.toml");
        let readme = include_str!("../README.md");
        assert!(readme.contains(text), "README shows the fixture verbatim");
        let config = Config::parse(text).expect("valid");
        let smtp = config.smtp.as_ref().expect("[smtp]");
        assert_eq!((smtp.port, smtp.security.name()), (587, "starttls"));
        let names: Vec<&str> = config.webhooks.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["opening-hours", "parcels", "office", "telegram", "ntfy"]
        );
        assert_eq!(config.webhooks[2].transport.name(), "email");
        let described = config.describe();
        assert!(!described.contains("app-password"), "{described}");
        let event = Event {
            sequence: 1,
            id: "0190c0de-0000-7000-8000-000000000001".into(),
            name: "sms.received".into(),
            api_version: "2025-01-01".into(),
            created_at: 1_700_000_000,
            clock_suspect: false,
            data: serde_json::json!({
                "from": "+4917012345",
                "text": "Parcel \"42\" is\nhere",
                "received_at": "2023-11-14T22:13:20Z",
            }),
        };
        let job = Job {
            event_sequence: 1,
            sequence: 1,
            endpoint: "telegram".into(),
            task_id: "t".into(),
            attempts: 0,
            created_at: 0,
            enable_probe: false,
        };
        let render = |index: usize| {
            let template = config.webhooks[index]
                .template
                .as_ref()
                .expect("a template");
            let body = template
                .render(&event, &job, &Context::default())
                .expect("renders");
            String::from_utf8(body).expect("UTF-8")
        };
        let telegram: serde_json::Value = serde_json::from_str(&render(3)).expect("JSON");
        assert_eq!(
            telegram,
            serde_json::json!({
                "chat_id": 123456789_u64,
                "text": "SMS from +4917012345: Parcel \"42\" is\nhere",
            })
        );
        assert_eq!(render(4), "+4917012345: Parcel \"42\" is\nhere");
        assert_eq!(
            render(2),
            "Parcel \"42\" is\nhere\n\n-- \nFrom +4917012345, received 2023-11-14T22:13:20Z"
        );
    }
}
