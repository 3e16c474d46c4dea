//! The commands that work without a running daemon: `run` and `demo` themselves, the config
//! check, the PIN record, and the tools (`pdu`, `at-decode`, `mock-modem`).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use simplelog::LevelFilter;

use super::{FleetAction, MockModemArgs, PduAction, SUCCESS, UsageError, load_config};
use crate::at::{Digester, Item, Pending};
use crate::mock::{MockConfig, MockModem};
use crate::pdu::{self, Address, ConcatReference, MessageClass, SubmitOptions, Validity};

/// Two worker threads: a Pi has four cores at most, and the work is mostly waiting.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// `smsrelay run`: the daemon until SIGTERM or SIGINT, logging at the config's level unless
/// `level` says otherwise.
pub fn run_daemon(
    config: &Path,
    level: Option<LevelFilter>,
    start_logging: impl FnOnce(LevelFilter),
) -> anyhow::Result<u8> {
    let config = load_config(config)?;
    start_logging(level.unwrap_or(config.log_level));
    let daemon = async {
        let stop = crate::service::stop_signal().map_err(crate::daemon::DaemonError::Signals)?;
        crate::daemon::run(config, stop).await
    };
    match runtime()?.block_on(daemon) {
        Ok(()) => Ok(SUCCESS),
        Err(error) => {
            // Into the journal too: stderr alone is easy to miss under systemd.
            log::error!("{error}");
            Err(error.into())
        }
    }
}

/// `smsrelay demo`.
pub fn demo() -> anyhow::Result<u8> {
    runtime()?.block_on(crate::demo::run()).context("demo")?;
    Ok(SUCCESS)
}

/// `smsrelay check-config`: the resolved settings with secrets masked, or the errors.
pub fn check_config(path: &Path) -> anyhow::Result<u8> {
    let config = load_config(path)?;
    println!("# {}: valid", path.display());
    print!("{}", config.describe());
    Ok(SUCCESS)
}

/// `smsrelay forget-refused-pin`: removes the record of a PIN the SIM refused.
pub fn forget_refused_pin(config: &Path) -> anyhow::Result<u8> {
    use crate::modem::pin::{self, Forgotten};
    let loaded = load_config(config)?;
    let path = loaded.data_dir.join(pin::REFUSED_PIN_FILE);
    let forgotten =
        pin::forget(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    match forgotten {
        Forgotten::Nothing => println!("no refused PIN is recorded ({})", path.display()),
        Forgotten::Sims(sims) => println!(
            "forgot the refused PIN of {}; the next start enters [modem] pin once",
            if sims.is_empty() {
                "no SIM".to_string()
            } else {
                sims.join(", ")
            }
        ),
        Forgotten::Unreadable(why) => println!(
            "removed an unreadable record of refused PINs ({why}); the next start enters \
             [modem] pin once"
        ),
    }
    Ok(SUCCESS)
}

/// `smsrelay mock-modem`: a simulated modem on a PTY until killed.
pub fn mock_modem(args: MockModemArgs) -> anyhow::Result<u8> {
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
    let count = usize::from(args.count.max(1));
    let mut served = Vec::new();
    for index in 0..count {
        // One modem keeps the names as given; several are told apart by a suffix and port.
        let link = args.link.as_ref().map(|link| {
            if count == 1 {
                link.clone()
            } else {
                let mut named = link.clone().into_os_string();
                named.push(format!("-{}", index + 1));
                std::path::PathBuf::from(named)
            }
        });
        let control = args
            .control
            .map(|address| {
                let port = address.port();
                let port = if port == 0 {
                    0
                } else {
                    port.checked_add(index as u16)
                        .ok_or_else(|| std::io::Error::other("the control ports run past 65535"))?
                };
                std::net::TcpListener::bind(std::net::SocketAddr::new(address.ip(), port))
            })
            .transpose()
            .map_err(|error| UsageError(format!("--control: {error}")))?;
        let modem = MockModem::start(config.clone(), link.clone())
            .context("cannot open a pseudo-terminal")
            .map(std::sync::Arc::new)?;
        // The device paths go to stdout so that scripts can read them; the rest is logging.
        println!("{}", modem.path().display());
        if let Some(link) = &link {
            log::info!("link {} → {}", link.display(), modem.path().display());
        }
        served.push((modem, control));
    }
    let mut threads = Vec::new();
    for (modem, control) in served {
        match control {
            Some(listener) => {
                if let Ok(address) = listener.local_addr() {
                    log::info!("control interface on {address} (JSON lines)");
                }
                threads.push(std::thread::spawn(move || {
                    crate::mock::control::serve(modem, listener)
                }));
            }
            // Kept alive by the parked thread below.
            None => threads.push(std::thread::spawn(move || {
                let _modem = modem;
                loop {
                    std::thread::park();
                }
            })),
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    Ok(SUCCESS)
}

/// `smsrelay pdu decode|encode`.
pub fn pdu(action: PduAction) -> anyhow::Result<u8> {
    match action {
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
                _ => {
                    return Err(
                        UsageError("--reference above 255 needs --wide-reference".into()).into(),
                    );
                }
            };
            let smsc = smsc
                .as_deref()
                .map(Address::from_number)
                .transpose()
                .map_err(|error| UsageError(format!("--smsc: {error}")))?;
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
    }
}

fn pdu_decode(hex: &str, no_smsc: bool) -> anyhow::Result<u8> {
    let json = if no_smsc {
        pdu::Tpdu::from_hex(hex).map(|tpdu| pdu::tpdu_json(&tpdu))
    } else {
        pdu::Pdu::from_hex(hex).map(|pdu| pdu::pdu_json(&pdu))
    }
    .map_err(|error| UsageError(format!("cannot decode PDU: {error}")))?;
    let text = serde_json::to_string_pretty(&json)
        .map_err(|error| UsageError(format!("cannot print JSON: {error}")))?;
    println!("{text}");
    Ok(SUCCESS)
}

fn pdu_encode(to: &str, text: &str, options: &SubmitOptions) -> anyhow::Result<u8> {
    let recipient =
        Address::from_number(to).map_err(|error| UsageError(format!("--to: {error}")))?;
    let outgoing = pdu::submit_parts(&recipient, text, options)
        .map_err(|error| UsageError(format!("cannot encode: {error}")))?;
    for part in outgoing.parts {
        println!("{} {}", part.cmgs_length, part.hex);
    }
    Ok(SUCCESS)
}

/// `smsrelay at-decode`: classifies a captured AT byte stream, one line per item.
pub fn at_decode(capture: &Path, pending: Option<&str>) -> anyhow::Result<u8> {
    let mut bytes = Vec::new();
    let read = if capture.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(capture)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map(|_| ())
    };
    read.map_err(|error| UsageError(format!("cannot read {}: {error}", capture.display())))?;
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
    Ok(SUCCESS)
}

/// `smsrelay fleet status`: the gateways' retained messages, as a table or JSON. Exit 0 with
/// at least one gateway found, 1 with none.
pub fn fleet(action: FleetAction) -> anyhow::Result<u8> {
    let FleetAction::Status {
        mqtt,
        base,
        username,
        password,
        ca_file,
        json,
        quiet,
        timeout,
    } = action;
    let base = crate::mqtt::topics::check_prefix(&base)
        .map_err(|error| UsageError(format!("--base: {error}")))?;
    let options = crate::mqtt::fleet::FleetOptions {
        url: mqtt,
        username,
        password,
        ca_file,
        base,
        quiet,
        timeout,
    };
    let rows = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(crate::mqtt::fleet::collect(&options))
        .map_err(|error| anyhow::anyhow!("fleet status: {error}"))?;
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                serde_json::json!({ "gateway": row.name, "status": row.status, "state": row.state })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        eprintln!(
            "no gateway publishes under {}/+/ on {}",
            options.base, options.url
        );
    } else {
        print!("{}", crate::mqtt::fleet::table(&rows));
    }
    Ok(if rows.is_empty() { 1 } else { SUCCESS })
}
