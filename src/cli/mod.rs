//! Command-line parsing and dispatch (the fixed contract of DESIGN.md).

mod connect;
mod demo;
mod echo;
mod modem;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The ESP-AT WebSocket modem on a host, and WebSocket tools around it.
#[derive(Debug, Parser)]
#[command(name = "wsat", version, about, long_about = None, propagate_version = true)]
pub struct Args {
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Be an ESP-AT WebSocket modem: answer the AT command set byte for byte like the chip,
    /// on stdio (default), a TCP socket, a pseudo-terminal or a serial port.
    Modem(modem::ModemArgs),
    /// Run an echo server: every text or binary message comes back with its type.
    EchoServer(echo::EchoArgs),
    /// Connect to a WebSocket server: stdin lines go out as messages, messages are printed.
    Connect(connect::ConnectArgs),
    /// Show wsat at work with nothing else needed: in-process servers, scripted sessions.
    Demo,
}

/// Logs go to stderr, never to stdout (which `connect` and the modem's stdio port use).
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// The runtime a subcommand runs on. The modem takes one thread: its AT engine, AT port and
/// links then hand work to each other without waking a second thread, which cut the
/// AT+WSSEND → `+WS_DATA` round trip from ≈ 290 to ≈ 175 µs (p50) on a 2-core machine
/// (BENCHMARKS.md, "Modem"). The others
/// use every core (the echo server's connections, the demo's servers).
pub fn runtime_for(command: &Command) -> tokio::runtime::Builder {
    match command {
        Command::Modem(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

/// Runs one subcommand.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Modem(args) => modem::run(args).await,
        Command::EchoServer(args) => echo::run(args).await,
        Command::Connect(args) => connect::run(args).await,
        Command::Demo => demo::run().await,
    }
}
