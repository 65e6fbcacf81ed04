//! `wsat modem`: the ESP-AT WebSocket AT port.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use wsat::modem::control::{self, Schedule};
use wsat::modem::link::LinkProfile;
use wsat::modem::trace::Trace;
use wsat::modem::{pki, port, Modem, ModemOptions};
use wsat_at::{EngineConfig, Firmware};
use wsat_client::ChunkPolicy;

/// Which firmware to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirmwareArg {
    /// ESP-AT v4.1–v5.0 (the seed documents): the default.
    V5,
    /// Current master: AT+WSDATAFMT, the <fin> parameter of AT+WSSEND, 16 KiB limits.
    Master,
}

/// How received frames are cut into `+WS_DATA` chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChunkingArg {
    /// As the chip: each +WS_DATA is what one read returned, at most buffer_size.
    Chip,
    /// min(remaining, buffer_size) cuts, the same on every run (reproducible transcripts).
    Full,
}

/// Options of `wsat modem`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("transport").multiple(false))]
pub struct ModemArgs {
    /// Serve the AT port on standard input and output (the default).
    #[arg(long, group = "transport")]
    stdio: bool,
    /// Listen for one AT client at a time on this TCP address (e.g. 127.0.0.1:3333; a bare
    /// port binds to loopback only). A new client takes the port over at once, like a new
    /// cable, and finds it as after boot (echo on, an empty line; a pending AT+WSSEND
    /// payload is discarded); links, headers and configuration survive.
    #[arg(long, value_name = "ADDR|PORT", group = "transport")]
    tcp: Option<String>,
    /// Create a pseudo-terminal (raw mode) and print its path on stderr.
    #[arg(long, group = "transport")]
    pty: bool,
    /// With --pty: keep a symlink to the pty at PATH (like socat's link=).
    #[arg(long, value_name = "PATH", requires = "pty")]
    link: Option<PathBuf>,
    /// Open a serial device (USB-serial adapter, UART), 8N1.
    #[arg(long, value_name = "DEV", group = "transport")]
    serial: Option<String>,
    /// Baud rate of --serial, and of every transport with --pace.
    #[arg(long, default_value_t = 115_200, value_parser = clap::value_parser!(u32).range(300..=4_000_000))]
    baud: u32,
    /// Run the AT port at --baud (8N1: 10 bits a byte) in both directions, on any
    /// transport, so a driver meets the chip's line rate (115200 baud: 11.5 KB/s).
    #[arg(long)]
    pace: bool,
    /// Faults on demand: a TCP port (a bare port binds to loopback) taking one command per
    /// line, answered `ok` or `error: <why>`: drop <link>, wifi off|on, reset [noise],
    /// busy <ms>, latency <ms>, noise <rate> <seed>, fail <AT-command> <count>, status.
    #[arg(long, value_name = "ADDR|PORT")]
    control: Option<String>,
    /// Run the control commands of FILE on a schedule: one `@<ms> <command>` per line
    /// (milliseconds after start), `#` comments.
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// Folder with the firmware's wss PKI: wss_ca_NN.crt, wss_client_NN.crt, wss_client_NN.key.
    #[arg(long, value_name = "DIR")]
    pki: Option<PathBuf>,
    /// Number of WebSocket links (link ids 0..N-1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    links: u16,
    /// Firmware behaviour to reproduce.
    #[arg(long, value_enum, default_value_t = FirmwareArg::V5)]
    firmware: FirmwareArg,
    /// Delay before each reconnect attempt (the firmware waits 10–15 s, typically 15).
    #[arg(long, value_name = "MS", default_value_t = 15_000)]
    reconnect_delay_ms: u64,
    /// Delay between +WS_DISCONNECTED and the ERROR of a failed AT+WSOPEN (the firmware: ≈5 s).
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    open_error_delay_ms: u64,
    /// Bound on each network step of a link: TCP connect, TLS, upgrade (the firmware: 10 s).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    network_timeout_ms: u64,
    /// How received frames are cut into +WS_DATA chunks. Either way every byte read is
    /// reported, before +WS_DISCONNECTED at the latest.
    #[arg(long, value_enum, default_value_t = ChunkingArg::Chip)]
    chunking: ChunkingArg,
    /// Record every AT byte, both directions, with timestamps. Credentials (the auth of
    /// AT+WSOPEN, a URI's password, AT+WSHEAD values) are written as <redacted>.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write credentials into the --trace file as they are. Logs (-v, RUST_LOG) hide them
    /// always.
    #[arg(long, requires = "trace")]
    trace_secrets: bool,
}

pub async fn run(args: ModemArgs) -> anyhow::Result<ExitCode> {
    let pki = match &args.pki {
        Some(dir) => pki::load(dir).with_context(|| format!("loading the PKI from {}", dir.display()))?,
        None => wsat_at::Pki::default(),
    };
    let engine = EngineConfig {
        links: usize::from(args.links),
        firmware: match args.firmware {
            FirmwareArg::V5 => Firmware::V5,
            FirmwareArg::Master => Firmware::Master,
        },
        pki,
        ..EngineConfig::default()
    };
    let trace = args
        .trace
        .as_deref()
        .map(|p| Trace::create(p, !args.trace_secrets))
        .transpose()
        .context("creating the trace file")?;
    let link = LinkProfile {
        reconnect_delay: Duration::from_millis(args.reconnect_delay_ms),
        open_error_delay: Duration::from_millis(args.open_error_delay_ms),
        network_timeout: Duration::from_millis(args.network_timeout_ms),
        chunking: match args.chunking {
            ChunkingArg::Chip => ChunkPolicy::Eager,
            ChunkingArg::Full => ChunkPolicy::Full,
        },
    };
    let (tx, rx) = port::channel();
    let mut options = ModemOptions {
        engine,
        link,
        banner_per_attach: false,
        exit_on_detach: false,
        trace,
        pace_baud: args.pace.then_some(args.baud),
    };
    let schedule = args
        .faults
        .as_deref()
        .map(Schedule::load)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("reading the --faults schedule")?;
    let _pty;
    if let Some(addr) = &args.tcp {
        // The AT port carries credentials (AT+WSOPEN auth, AT+WSHEAD): never expose it
        // beyond this machine unless an address says so.
        let addr = &port::bind_address(addr);
        let local = port::tcp(addr, tx)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!("wsat modem: AT port on tcp://{local}");
        options.banner_per_attach = true;
    } else if args.pty {
        let pty = port::pty(args.link.as_deref(), tx).context("creating the pseudo-terminal")?;
        match &pty.link {
            Some(link) => eprintln!(
                "wsat modem: AT port on {} (linked from {})",
                pty.path.display(),
                link.display()
            ),
            None => eprintln!("wsat modem: AT port on {}", pty.path.display()),
        }
        _pty = pty;
    } else if let Some(dev) = &args.serial {
        port::serial(dev, args.baud, tx).with_context(|| format!("opening {dev}"))?;
        eprintln!("wsat modem: AT port on {dev} at {} baud", args.baud);
    } else {
        port::stdio(tx);
        options.exit_on_detach = true;
    }
    // Ctrl-C or a plain `kill`: stop cleanly, so the --link symlink is removed.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    let modem = Modem::new(options);
    if let Some(addr) = &args.control {
        let local = control::serve(addr, modem.handle())
            .await
            .with_context(|| format!("listening for control on {addr}"))?;
        eprintln!("wsat modem: control port on tcp://{local}");
    }
    if let Some(schedule) = schedule {
        let file = args
            .faults
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        schedule
            .check(|request| modem.check(request))
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))
            .context("checking the --faults schedule")?;
        schedule.spawn(modem.handle());
    }
    modem.run(rx, shutdown).await;
    Ok(ExitCode::SUCCESS)
}
