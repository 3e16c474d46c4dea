//! The command line: its shape ([`args`]), the commands that talk to a running daemon
//! ([`remote`]) and those that work alone ([`offline`]). `main.rs` only parses the arguments,
//! starts logging and turns the outcome into an exit code ([`exit_code`]).

pub mod args;
pub mod offline;
pub mod remote;

use std::path::Path;

pub use args::{Cli, Commands, FleetAction, MockModemArgs, PduAction, WebhookAction};

use crate::config::Config;

/// Exit 0.
pub const SUCCESS: u8 = 0;
/// A bad config file or argument.
pub const EXIT_USAGE: u8 = 2;

/// An error that is the caller's to fix: a bad argument or config file (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error: 2 for a bad argument or config, 75 when the daemon stopped for
/// a failing store (the service manager restarts it), 1 for the rest.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        EXIT_USAGE
    } else if let Some(crate::daemon::DaemonError::StoreFailed(_)) = error.downcast_ref() {
        crate::daemon::EXIT_STORE_FAILED
    } else {
        1
    }
}

/// Runs a parsed command line; `start_logging` is called once with the level to log at (the
/// daemon's comes from its config). Returns the exit code of a command that chooses one.
pub fn run(cli: Cli, start_logging: impl FnOnce(simplelog::LevelFilter)) -> anyhow::Result<u8> {
    let level = cli.log_level;
    let config = cli.config;
    match cli.command {
        Commands::Run => offline::run_daemon(&config, level, start_logging),
        Commands::Demo => {
            // Quiet by default: the demo narrates itself.
            start_logging(level.unwrap_or(simplelog::LevelFilter::Warn));
            offline::demo()
        }
        command => {
            start_logging(level.unwrap_or(simplelog::LevelFilter::Info));
            dispatch(command, &config)
        }
    }
}

fn dispatch(command: Commands, config: &Path) -> anyhow::Result<u8> {
    match command {
        Commands::Run | Commands::Demo => Ok(SUCCESS),
        Commands::AtDecode { capture, pending } => offline::at_decode(&capture, pending.as_deref()),
        Commands::MockModem(args) => offline::mock_modem(args),
        Commands::CheckConfig { path } => offline::check_config(path.as_deref().unwrap_or(config)),
        Commands::ForgetRefusedPin => offline::forget_refused_pin(config),
        Commands::Pdu { action } => offline::pdu(action),
        Commands::Fleet { action } => offline::fleet(action),
        Commands::Token => remote::token(config),
        Commands::Send {
            to,
            text,
            callback_data,
            idempotency_key,
            dry_run,
            no_status_report,
            modem,
            sim,
            wait,
            timeout,
        } => remote::send(
            config,
            &remote::SendArgs {
                to,
                text,
                callback_data,
                idempotency_key,
                dry_run,
                status_report: !no_status_report,
                wait: wait.then_some(timeout),
                modem,
                sim,
            },
        ),
        Commands::Status => remote::status(config),
        Commands::Ussd {
            code,
            cancel,
            modem,
        } => remote::ussd(config, code.as_deref(), cancel, modem.as_deref()),
        Commands::Messages { state, limit } => remote::messages(config, state.as_deref(), limit),
        Commands::Events { after, follow } => remote::events(config, after, follow),
        Commands::Webhook { action } => remote::webhook(config, action),
    }
}

/// Loads the config file; its errors are the caller's to fix (exit 2).
pub fn load_config(path: &Path) -> Result<Config, UsageError> {
    Config::load(path).map_err(|error| UsageError(format!("{}: {error}", path.display())))
}
