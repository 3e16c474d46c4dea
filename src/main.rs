//! The `smsrelay` binary: parses arguments, starts logging, calls the library, picks the exit code.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
use smsrelay::at::{Digester, Item, Pending};

/// A USB GSM modem as a reliable SMS gateway.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: LevelFilter,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = ConfigBuilder::new().build();
    // Logging is a nicety here: without a terminal we simply run without it.
    let _ = TermLogger::init(
        cli.log_level,
        config,
        TerminalMode::Stderr,
        ColorChoice::Auto,
    );
    match cli.command {
        Commands::AtDecode { capture, pending } => at_decode(&capture, pending.as_deref()),
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
