//! The `smsrelay` binary: parses arguments, starts logging, calls the library's `cli`, and
//! turns the outcome into an exit code, printing an error's whole chain on one line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
use smsrelay::cli::{self, Cli};

fn init_logging(level: LevelFilter) {
    let mut config = ConfigBuilder::new();
    // journald stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        config.set_time_level(LevelFilter::Off);
    }
    // Colours only on a terminal: not into the journal or a file a user greps.
    let colours = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    // Logging is a nicety here: without a terminal we simply run without it.
    let _ = TermLogger::init(level, config.build(), TerminalMode::Stderr, colours);
}

fn main() -> ExitCode {
    match cli::run(Cli::parse(), init_logging) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("smsrelay: {error:#}");
            ExitCode::from(cli::exit_code(&error))
        }
    }
}
