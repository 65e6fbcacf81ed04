//! `wsat`: the ESP-AT WebSocket modem on a host, and WebSocket tools around it.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    cli::init_logging(args.verbose);
    let runtime = match cli::runtime_for(&args.command).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsat: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cli::run(args.command));
    // A blocking read of stdin (`connect`, the stdio modem) cannot be cancelled; waiting
    // for it would keep the process alive until the next line arrives.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsat: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
