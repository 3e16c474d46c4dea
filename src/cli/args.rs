//! The command line's shape (clap): every subcommand and its arguments. The commands
//! themselves are in [`super::remote`] (the daemon's API) and [`super::offline`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use simplelog::LevelFilter;

use crate::mock::{Profile, ReportBehaviour};

/// A USB GSM modem as a reliable SMS gateway.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log level: error, warn, info, debug, trace (default: info, or the config's for run).
    #[arg(long, global = true)]
    pub log_level: Option<LevelFilter>,
    /// The config file (`smsrelay run`'s, or the one of the daemon a command talks to).
    #[arg(
        long,
        global = true,
        env = "SMSRELAY_CONFIG",
        default_value = "/etc/smsrelay/smsrelay.toml"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Classifies a captured AT byte stream (a file, or - for stdin): one line per item.
    AtDecode {
        /// The capture: raw bytes as read from the modem port.
        capture: PathBuf,
        /// The command whose answer the capture holds, e.g. AT+CMGL=4.
        #[arg(long)]
        pending: Option<String>,
    },
    /// Runs a simulated modem on a pseudo-terminal: point gammu, minicom or smsrelay at it.
    MockModem(MockModemArgs),
    /// Decodes or encodes SMS PDUs, offline.
    Pdu {
        /// Decode or encode.
        #[command(subcommand)]
        action: PduAction,
    },
    /// Everything on one machine with no hardware: a simulated modem, the daemon and a
    /// webhook receiver; an SMS in, one out, then the API to play with until Ctrl-C.
    Demo,
    /// Runs the gateway: modem, store, webhooks (the systemd service runs this).
    Run,
    /// Sends an SMS through the running daemon.
    Send {
        /// The recipient: +<country code><number>, or national digits.
        #[arg(long)]
        to: String,
        /// The text.
        #[arg(long)]
        text: String,
        /// Data returned in every event of this message.
        #[arg(long)]
        callback_data: Option<String>,
        /// Makes a repeat within 24 h return the first answer instead of a second SMS.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Everything but the modem: the message goes queued → sent → delivered with
        /// `dry_run: true` in its events, and nothing reaches the network.
        #[arg(long)]
        dry_run: bool,
        /// Ask no status report for this message (overrides `[sms] status_reports`).
        #[arg(long)]
        no_status_report: bool,
        /// Send through this modem (its `[[modem]] name`) and no other.
        #[arg(long, conflicts_with = "sim")]
        modem: Option<String>,
        /// Send through the modem with this SIM slot number (`[[modem]] sim`) and no other.
        #[arg(long)]
        sim: Option<u32>,
        /// Follow the message to delivered, failed or expired (or sent, when no status report
        /// was requested), showing each step. Exit 0 delivered or sent, 3 failed, 4 expired,
        /// 5 still under way at --timeout.
        #[arg(long)]
        wait: bool,
        /// How long --wait follows the message.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Shows the modems, the queues and the webhooks.
    Status,
    /// Sends a USSD code (e.g. '*100#' for the balance) through the running daemon and prints
    /// the network's answer; when it opens a menu, send the choice the same way.
    Ussd {
        /// The code, or the answer to an open menu.
        #[arg(required_unless_present = "cancel")]
        code: Option<String>,
        /// Ends the open menu session instead.
        #[arg(long, conflicts_with = "code")]
        cancel: bool,
        /// The modem by name (default: the only one).
        #[arg(long)]
        modem: Option<String>,
    },
    /// Lists recent messages.
    Messages {
        /// Only this state: queued, sending, sent, delivered, failed, expired.
        #[arg(long)]
        state: Option<String>,
        /// How many, 1 to 1000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
    },
    /// Prints events, oldest first; --follow keeps printing new ones.
    Events {
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep waiting for new events.
        #[arg(long)]
        follow: bool,
    },
    /// A webhook endpoint: send it a test event, re-enable it, list or replay its dead letters.
    Webhook {
        /// What to do with the endpoint.
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// Prints the API token (from the config, or the one generated into the data dir).
    Token,
    /// Forgets that the SIM refused the configured PIN, so the next start enters it once more
    /// (offline: edits the data dir; needed only when the SIM's PIN was changed to match the
    /// config, as changing `[modem] pin` clears the record by itself).
    ForgetRefusedPin,
    /// Checks a config file: prints the resolved settings with secrets masked, or the errors
    /// (exit 2).
    CheckConfig {
        /// The config file (default: --config).
        path: Option<PathBuf>,
    },
    /// Every gateway on an MQTT broker.
    Fleet {
        /// What to show.
        #[command(subcommand)]
        action: FleetAction,
    },
}

/// `smsrelay fleet …`.
#[derive(Subcommand)]
pub enum FleetAction {
    /// Lists every gateway that publishes under `<base>/+/`, from their retained `status` and
    /// `state`: online or offline, each modem's state, signal and operator, the outbox.
    Status {
        /// The broker: mqtt://host:1883 or mqtts://host:8883.
        #[arg(long)]
        mqtt: String,
        /// The first topic level the gateways share (their `topic_prefix` is `<base>/<name>`).
        #[arg(long, default_value = "smsrelay")]
        base: String,
        /// The broker's user name.
        #[arg(long, env = "SMSRELAY_MQTT_USERNAME")]
        username: Option<String>,
        /// The broker's password.
        #[arg(long, env = "SMSRELAY_MQTT_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// A PEM file of CA certificates to trust for mqtts://.
        #[arg(long)]
        ca_file: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Stop listening this long after the last retained message arrived.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        quiet: std::time::Duration,
        /// Give up when the broker does not answer within this long.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

/// `smsrelay mock-modem`'s settings.
#[derive(clap::Args)]
pub struct MockModemArgs {
    /// Vendor behaviour: generic, huawei, sim800, quectel, wavecom, qualcomm.
    #[arg(long, default_value = "generic")]
    pub profile: Profile,
    /// Keep a symlink here pointing at the current device (it survives re-enumeration).
    #[arg(long)]
    pub link: Option<PathBuf>,
    /// Serve the JSON-lines control interface on this address, e.g. 127.0.0.1:8641.
    #[arg(long)]
    pub control: Option<std::net::SocketAddr>,
    /// The SIM asks for this PIN (three wrong tries lock it; the PUK is 12345678).
    #[arg(long)]
    pub pin: Option<String>,
    /// The SMSC stored in the modem; "none" for an empty one (sends then need one in the PDU).
    #[arg(long, default_value = "+447700900001")]
    pub smsc: String,
    /// Network round trip of a send: time from Ctrl-Z to +CMGS.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub submit_delay: std::time::Duration,
    /// Status reports: delivered, temporary_then_delivered, permanent_failure, none.
    #[arg(long, default_value = "delivered")]
    pub report: ReportBehaviour,
    /// Time from +CMGS to the status report.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub report_delay: std::time::Duration,
    /// Slots per storage.
    #[arg(long, default_value_t = 30)]
    pub capacity: usize,
    /// Periodic vendor noise (^RSSI for huawei), e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub noise: Option<std::time::Duration>,
    /// Run this many modems, each on its own PTY (one path per line on stdout). With more
    /// than one, --link gets -1, -2… appended and --control's port counts up per modem.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub count: u8,
}

/// `smsrelay webhook …`.
#[derive(Subcommand)]
pub enum WebhookAction {
    /// Queues a `webhook.test` event for one endpoint.
    Test {
        /// The endpoint's name.
        name: String,
    },
    /// Lists an endpoint's dead letters: deliveries that ran out of attempts.
    DeadLetters {
        /// The endpoint's name.
        name: String,
    },
    /// Sends a dead letter again, with a fresh retry schedule and the same webhook-id.
    Replay {
        /// The endpoint's name.
        name: String,
        /// The event's sequence number (`event_sequence` in `dead-letters`).
        sequence: u64,
    },
    /// Re-enables a disabled endpoint: a test event first, then what it held.
    Enable {
        /// The endpoint's name.
        name: String,
    },
}

/// `smsrelay pdu …`.
#[derive(Subcommand)]
pub enum PduAction {
    /// Prints a PDU (hex, as in +CMGR/+CMT/+CDS) as JSON.
    Decode {
        /// The PDU in hex.
        hex: String,
        /// The hex is a TPDU alone, without the leading SMSC field.
        #[arg(long)]
        no_smsc: bool,
    },
    /// Prints the SMS-SUBMIT parts for a text: one line per part, its AT+CMGS length and hex.
    Encode {
        /// The recipient: +<country code><number>, national digits, as dialled.
        #[arg(long)]
        to: String,
        /// The message text.
        #[arg(long)]
        text: String,
        /// Use UCS-2 even when the text fits the GSM 7-bit alphabet.
        #[arg(long)]
        ucs2: bool,
        /// Ask for a delivery report.
        #[arg(long)]
        status_report: bool,
        /// Validity period, e.g. 30m, 12h, 1d, 4w (rounded up to what TP-VP can say).
        #[arg(long, value_parser = humantime::parse_duration)]
        validity: Option<std::time::Duration>,
        /// Send as a flash SMS (class 0).
        #[arg(long)]
        flash: bool,
        /// Service centre number to write into the PDU (default: 00, the modem's AT+CSCA).
        #[arg(long)]
        smsc: Option<String>,
        /// Concatenation reference for a multipart text.
        #[arg(long, default_value_t = 0)]
        reference: u16,
        /// Use a 16-bit concatenation reference (152 GSM characters per part, not 153).
        #[arg(long)]
        wide_reference: bool,
    },
}
