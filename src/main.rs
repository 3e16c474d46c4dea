//! The `smsrelay` binary: parses arguments, starts logging, calls the library, picks the exit code.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
use smsrelay::at::{Digester, Item, Pending};
use smsrelay::mock::{MockConfig, MockModem, Profile, ReportBehaviour};
use smsrelay::pdu::{self, Address, ConcatReference, MessageClass, SubmitOptions, Validity};

/// A USB GSM modem as a reliable SMS gateway.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (default: info, or the config's for run).
    #[arg(long, global = true)]
    log_level: Option<LevelFilter>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
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
        #[command(subcommand)]
        action: PduAction,
    },
    /// Everything on one machine with no hardware: a simulated modem, the daemon and a
    /// webhook receiver; an SMS in, one out, then the API to play with until Ctrl-C.
    Demo,
    /// Runs the gateway: modem, store, webhooks (the systemd service runs this).
    Run {
        /// The config file.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
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
        /// Follow the message to delivered, failed or expired (or sent, when no status report
        /// was requested), showing each step. Exit 0 delivered or sent, 3 failed, 4 expired,
        /// 5 still under way at --timeout.
        #[arg(long)]
        wait: bool,
        /// How long --wait follows the message.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// The config file the daemon runs with (for its address and token).
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Shows the modem, the queues and the webhooks.
    Status {
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Lists recent messages.
    Messages {
        /// Only this state: queued, sending, sent, delivered, failed, expired.
        #[arg(long)]
        state: Option<String>,
        /// How many, 1 to 1000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Prints events, oldest first; --follow keeps printing new ones.
    Events {
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep waiting for new events.
        #[arg(long)]
        follow: bool,
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Sends a test event to a webhook.
    Webhook {
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// Prints the API token (from the config, or the one generated into the data dir).
    Token {
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Forgets that the SIM refused the configured PIN, so the next start enters it once more
    /// (offline: edits the data dir; needed only when the SIM's PIN was changed to match the
    /// config, as changing `[modem] pin` clears the record by itself).
    ForgetRefusedPin {
        /// The config file the daemon runs with (for its data_dir).
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Checks a config file: prints the resolved settings with secrets masked, or the errors
    /// (exit 2).
    CheckConfig {
        /// The config file.
        #[arg(default_value = "/etc/smsrelay/smsrelay.toml")]
        path: PathBuf,
    },
}

#[derive(clap::Args)]
struct MockModemArgs {
    /// Vendor behaviour: generic, huawei, sim800, quectel, wavecom, qualcomm.
    #[arg(long, default_value = "generic")]
    profile: Profile,
    /// Keep a symlink here pointing at the current device (it survives re-enumeration).
    #[arg(long)]
    link: Option<PathBuf>,
    /// Serve the JSON-lines control interface on this address, e.g. 127.0.0.1:8641.
    #[arg(long)]
    control: Option<std::net::SocketAddr>,
    /// The SIM asks for this PIN (three wrong tries lock it; the PUK is 12345678).
    #[arg(long)]
    pin: Option<String>,
    /// The SMSC stored in the modem; "none" for an empty one (sends then need one in the PDU).
    #[arg(long, default_value = "+447700900001")]
    smsc: String,
    /// Network round trip of a send: time from Ctrl-Z to +CMGS.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    submit_delay: std::time::Duration,
    /// Status reports: delivered, temporary_then_delivered, permanent_failure, none.
    #[arg(long, default_value = "delivered")]
    report: ReportBehaviour,
    /// Time from +CMGS to the status report.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    report_delay: std::time::Duration,
    /// Slots per storage.
    #[arg(long, default_value_t = 30)]
    capacity: usize,
    /// Periodic vendor noise (^RSSI for huawei), e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    noise: Option<std::time::Duration>,
}

#[derive(Subcommand)]
enum WebhookAction {
    /// Queues a `webhook.test` event for one endpoint.
    Test {
        /// The endpoint's name.
        name: String,
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Lists an endpoint's dead letters: deliveries that ran out of attempts.
    DeadLetters {
        /// The endpoint's name.
        name: String,
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Sends a dead letter again, with a fresh retry schedule and the same webhook-id.
    Replay {
        /// The endpoint's name.
        name: String,
        /// The event's sequence number (`event_sequence` in `dead-letters`).
        sequence: u64,
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
    /// Re-enables a disabled endpoint: a test event first, then what it held.
    Enable {
        /// The endpoint's name.
        name: String,
        /// The config file the daemon runs with.
        #[arg(long, default_value = "/etc/smsrelay/smsrelay.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum PduAction {
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

fn init_logging(level: LevelFilter) {
    let mut config = ConfigBuilder::new();
    // journald stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        config.set_time_level(LevelFilter::Off);
    }
    // Logging is a nicety here: without a terminal we simply run without it.
    let _ = TermLogger::init(
        level,
        config.build(),
        TerminalMode::Stderr,
        ColorChoice::Auto,
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Commands::Run { config } = &cli.command {
        return run(config, cli.log_level);
    }
    if let Commands::Demo = &cli.command {
        // Quiet by default: the demo narrates itself.
        init_logging(cli.log_level.unwrap_or(LevelFilter::Warn));
        return demo();
    }
    init_logging(cli.log_level.unwrap_or(LevelFilter::Info));
    match cli.command {
        Commands::Run { .. } | Commands::Demo => ExitCode::SUCCESS,
        Commands::AtDecode { capture, pending } => at_decode(&capture, pending.as_deref()),
        Commands::MockModem(args) => mock_modem(args),
        Commands::CheckConfig { path } => check_config(&path),
        Commands::ForgetRefusedPin { config } => forget_refused_pin(&config),
        Commands::Send {
            to,
            text,
            callback_data,
            idempotency_key,
            wait,
            timeout,
            config,
        } => {
            let mut ended = None;
            let code = with_client(&config, |client| {
                let request =
                    serde_json::json!({ "to": to, "text": text, "callback_data": callback_data });
                let message = client.send(
                    &request,
                    idempotency_key.as_deref(),
                    wait.then_some(timeout),
                    |line| println!("{line}"),
                )?;
                ended = Some(smsrelay::client::wait_end(&message));
                Ok(())
            });
            match ended {
                Some(end) if wait => wait_exit_code(end),
                _ => code,
            }
        }
        Commands::Status { config } => with_client(&config, |client| {
            print_json(&client.get("/v1/status")?);
            Ok(())
        }),
        Commands::Messages {
            state,
            limit,
            config,
        } => with_client(&config, |client| {
            let mut path = format!("/v1/messages?limit={limit}");
            if let Some(state) = state {
                path.push_str(&format!("&state={state}"));
            }
            let listed = client.get(&path)?;
            for message in listed["messages"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<9}  {:<16}  {}",
                    message["id"].as_str().unwrap_or(""),
                    message["state"].as_str().unwrap_or(""),
                    message["to"].as_str().unwrap_or(""),
                    message["text"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(40)
                        .collect::<String>()
                );
            }
            Ok(())
        }),
        Commands::Events {
            after,
            follow,
            config,
        } => with_client(&config, |client| {
            let mut after = after;
            loop {
                let page = client.get(&format!("/v1/events?after={after}&limit=100"))?;
                let events = page["events"].as_array().cloned().unwrap_or_default();
                for event in &events {
                    println!("{event}");
                    after = event["sequence"].as_u64().unwrap_or(after);
                }
                if !follow {
                    return Ok(());
                }
                if events.is_empty() {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }),
        Commands::Webhook { action } => match action {
            WebhookAction::Test { name, config } => with_client(&config, |client| {
                print_json(
                    &client.post(&format!("/v1/webhooks/{name}/test"), &serde_json::json!({}))?,
                );
                Ok(())
            }),
            WebhookAction::DeadLetters { name, config } => with_client(&config, |client| {
                print_json(&client.get(&format!("/v1/webhooks/{name}/dead-letters"))?);
                Ok(())
            }),
            WebhookAction::Replay {
                name,
                sequence,
                config,
            } => with_client(&config, |client| {
                print_json(&client.post(
                    &format!("/v1/webhooks/{name}/dead-letters/{sequence}/replay"),
                    &serde_json::json!({}),
                )?);
                Ok(())
            }),
            WebhookAction::Enable { name, config } => with_client(&config, |client| {
                print_json(&client.post(
                    &format!("/v1/webhooks/{name}/enable"),
                    &serde_json::json!({}),
                )?);
                Ok(())
            }),
        },
        Commands::Token { config } => match smsrelay::config::Config::load(&config) {
            Ok(loaded) => match smsrelay::client::read_token(&loaded) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => usage_error(&error.to_string()),
            },
            Err(error) => usage_error(&format!("{}: {error}", config.display())),
        },
        Commands::Pdu { action } => match action {
            PduAction::Decode { hex, no_smsc } => pdu_decode(&hex, no_smsc),
            PduAction::Encode {
                to,
                text,
                ucs2,
                status_report,
                validity,
                flash,
                smsc,
                reference,
                wide_reference,
            } => {
                let reference = match u8::try_from(reference) {
                    Ok(narrow) if !wide_reference => ConcatReference::Eight(narrow),
                    _ if wide_reference => ConcatReference::Sixteen(reference),
                    _ => return usage_error("--reference above 255 needs --wide-reference"),
                };
                let smsc = match smsc.as_deref().map(Address::from_number).transpose() {
                    Ok(smsc) => smsc,
                    Err(error) => return usage_error(&format!("--smsc: {error}")),
                };
                let options = SubmitOptions {
                    smsc,
                    status_report,
                    validity: validity.map(Validity::relative),
                    class: flash.then_some(MessageClass::Flash),
                    force_ucs2: ucs2,
                    reference,
                };
                pdu_encode(&to, &text, &options)
            }
        },
    }
}

fn forget_refused_pin(config: &std::path::Path) -> ExitCode {
    use smsrelay::modem::pin::{self, Forgotten};
    let loaded = match smsrelay::config::Config::load(config) {
        Ok(loaded) => loaded,
        Err(error) => return usage_error(&format!("{}: {error}", config.display())),
    };
    let path = loaded.data_dir.join(pin::REFUSED_PIN_FILE);
    match pin::forget(&path) {
        Ok(Forgotten::Nothing) => println!("no refused PIN is recorded ({})", path.display()),
        Ok(Forgotten::Sims(sims)) => println!(
            "forgot the refused PIN of {}; the next start enters [modem] pin once",
            if sims.is_empty() {
                "no SIM".to_string()
            } else {
                sims.join(", ")
            }
        ),
        Ok(Forgotten::Unreadable(why)) => println!(
            "removed an unreadable record of refused PINs ({why}); the next start enters \
             [modem] pin once"
        ),
        Err(error) => {
            eprintln!("smsrelay: cannot remove {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn mock_modem(args: MockModemArgs) -> ExitCode {
    let config = MockConfig {
        profile: args.profile,
        pin: args.pin,
        smsc: (args.smsc != "none").then_some(args.smsc),
        submit_delay: args.submit_delay,
        report: args.report,
        report_delay: args.report_delay,
        capacity: args.capacity,
        noise_interval: args.noise,
        ..MockConfig::default()
    };
    let control = match args.control.map(std::net::TcpListener::bind).transpose() {
        Ok(control) => control,
        Err(error) => return usage_error(&format!("--control: {error}")),
    };
    let modem = match MockModem::start(config, args.link.clone()) {
        Ok(modem) => std::sync::Arc::new(modem),
        Err(error) => {
            eprintln!("smsrelay: cannot open a pseudo-terminal: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The device path goes to stdout so that scripts can read it; the rest is logging.
    println!("{}", modem.path().display());
    if let Some(link) = &args.link {
        log::info!("link {} → {}", link.display(), modem.path().display());
    }
    match control {
        Some(listener) => {
            if let Ok(address) = listener.local_addr() {
                log::info!("control interface on {address} (JSON lines)");
            }
            smsrelay::mock::control::serve(modem, listener);
        }
        None => loop {
            std::thread::park();
        },
    }
    ExitCode::SUCCESS
}

/// `send --wait`'s exit code: 0 delivered (or sent, no report asked), 3 failed, 4 expired,
/// 5 still under way when the wait ran out (1 and 2 stay the errors of every command).
fn wait_exit_code(end: Option<smsrelay::client::WaitEnd>) -> ExitCode {
    use smsrelay::client::WaitEnd;
    match end {
        Some(WaitEnd::Delivered | WaitEnd::SentWithoutReport) => ExitCode::SUCCESS,
        Some(WaitEnd::Failed) => ExitCode::from(3),
        Some(WaitEnd::Expired) => ExitCode::from(4),
        None => ExitCode::from(5),
    }
}

/// Bad input on the command line: one line on stderr, exit code 2.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("smsrelay: {message}");
    ExitCode::from(2)
}

fn pdu_decode(hex: &str, no_smsc: bool) -> ExitCode {
    let json = if no_smsc {
        pdu::Tpdu::from_hex(hex).map(|tpdu| pdu::tpdu_json(&tpdu))
    } else {
        pdu::Pdu::from_hex(hex).map(|pdu| pdu::pdu_json(&pdu))
    };
    match json.map(|json| serde_json::to_string_pretty(&json)) {
        Ok(Ok(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => usage_error(&format!("cannot print JSON: {error}")),
        Err(error) => usage_error(&format!("cannot decode PDU: {error}")),
    }
}

fn pdu_encode(to: &str, text: &str, options: &SubmitOptions) -> ExitCode {
    let recipient = match Address::from_number(to) {
        Ok(recipient) => recipient,
        Err(error) => return usage_error(&format!("--to: {error}")),
    };
    match pdu::submit_parts(&recipient, text, options) {
        Ok(outgoing) => {
            for part in outgoing.parts {
                println!("{} {}", part.cmgs_length, part.hex);
            }
            ExitCode::SUCCESS
        }
        Err(error) => usage_error(&format!("cannot encode: {error}")),
    }
}

fn at_decode(capture: &PathBuf, pending: Option<&str>) -> ExitCode {
    let mut bytes = Vec::new();
    let read = if capture.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(capture)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map(|_| ())
    };
    if let Err(error) = read {
        eprintln!("smsrelay: cannot read {}: {error}", capture.display());
        return ExitCode::from(2);
    }
    let mut digester = Digester::new();
    digester.set_pending(pending.map(Pending::new));
    digester.push(&bytes);
    while let Some(item) = digester.next_item() {
        match item {
            Item::Echo(line) => println!("echo     {line}"),
            Item::Prompt => println!("prompt   >"),
            Item::Info(line) => println!("info     {line}"),
            Item::Final(result) => {
                println!("final    {result}");
                digester.set_pending(None);
            }
            Item::Urc(urc) => println!("urc      {urc:?}"),
            // With echo on, a capture holds the command itself: what follows is its answer.
            Item::Unexpected(line)
                if line
                    .get(..2)
                    .is_some_and(|at| at.eq_ignore_ascii_case("AT")) =>
            {
                println!("command  {line}");
                digester.set_pending(Some(Pending::new(&line)));
            }
            Item::Unexpected(line) => println!("unknown  {line}"),
            Item::Overflow { discarded } => println!("overflow {discarded} bytes skipped"),
        }
    }
    ExitCode::SUCCESS
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match smsrelay::config::Config::load(path) {
        Ok(config) => {
            println!("# {}: valid", path.display());
            print!("{}", config.describe());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("smsrelay: {}: {error}", path.display());
            ExitCode::from(2)
        }
    }
}

fn run(path: &std::path::Path, level: Option<LevelFilter>) -> ExitCode {
    let config = match smsrelay::config::Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("smsrelay: {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    init_logging(level.unwrap_or(config.log_level));
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let daemon = async {
        let stop =
            smsrelay::service::stop_signal().map_err(smsrelay::daemon::DaemonError::Signals)?;
        smsrelay::daemon::run(config, stop).await
    };
    match runtime.block_on(daemon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ smsrelay::daemon::DaemonError::StoreFailed(_)) => {
            eprintln!("smsrelay: {error}");
            ExitCode::from(smsrelay::daemon::EXIT_STORE_FAILED)
        }
        Err(error) => {
            log::error!("{error}");
            eprintln!("smsrelay: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

/// Runs a CLI call against the daemon the config describes; errors exit 1 (2 for a bad
/// config).
fn with_client(
    config: &std::path::Path,
    call: impl FnOnce(&smsrelay::client::Client) -> Result<(), smsrelay::client::ClientError>,
) -> ExitCode {
    let loaded = match smsrelay::config::Config::load(config) {
        Ok(loaded) => loaded,
        Err(error) => return usage_error(&format!("{}: {error}", config.display())),
    };
    let outcome = smsrelay::client::Client::from_config(&loaded).and_then(|client| call(&client));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smsrelay: {error}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(smsrelay::demo::run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smsrelay demo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Two worker threads: a Pi has four cores at most, and the work is mostly waiting.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("smsrelay: cannot start the runtime: {error}");
            ExitCode::FAILURE
        })
}
