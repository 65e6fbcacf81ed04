//! `wsat-bench`: the load tool (see the library's modules and BENCHMARKS.md). Run it with
//! `cargo run --release -p wsat-bench -- …`; `--modem` also needs the `wsat` binary (built
//! by `cargo build --release -p wsat`, found next to this one, or named with --wsat-bin).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Measure: the same echo workloads through wsat (Client and WebSocket, with and without
/// permessage-deflate), tokio-tungstenite, fastwebsockets and raw TCP against one pinned
/// echo server; a table, CSV and a chart (BENCHMARKS.md). With --modem, the figures of
/// `wsat modem` through its TCP and pty AT ports instead.
#[derive(Debug, Parser)]
#[command(name = "wsat-bench", version, long_about = None)]
pub struct BenchArgs {
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Every workload briefly: 3 rounds of 0.2 s warm-up + 0.6 s measured (about 2.5 minutes).
    #[arg(long)]
    quick: bool,
    /// Write one CSV row per (workload, implementation) to FILE.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the chart (SVG) of the table to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Rounds; each figure is the median over them (at least 3 recommended).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Workloads as CONNSxSIZExWINDOW, comma-separated; SIZE as json-SIZE sends JSON-like
    /// documents of that size (1024 different ones per connection) instead of a byte pattern.
    #[arg(long, default_value = wsat_bench::workload::DEFAULT_WORKLOADS)]
    workloads: String,
    /// Implementations, comma-separated, among wsat (wsat_client::Client), wsat-stream
    /// (wsat_client::WebSocket, split), wsat+deflate and wsat-stream+deflate (the same
    /// offering permessage-deflate; JSON workloads only), tokio-tungstenite, fastwebsockets,
    /// raw-tcp (one write and one exact read per message) and raw-tcp-batched (a window per
    /// write, every echo that has arrived per read: the ceiling for pipelined workloads).
    #[arg(long, default_value = wsat_bench::report::DEFAULT_IMPLS)]
    impls: String,
    /// Warm-up per measurement, ms (default 1000, --quick 200).
    #[arg(long)]
    warmup_ms: Option<u64>,
    /// Measured interval per measurement, ms (default 3000, --quick 600).
    #[arg(long)]
    measure_ms: Option<u64>,
    /// Measure the modem instead: `wsat modem` driven through its TCP and pty AT ports
    /// (AT+WSSEND → `+WS_DATA` round trips, 3-link throughput, RSS). --csv then writes the
    /// modem's own columns; --workloads, --impls and --svg do not apply.
    #[arg(long, conflicts_with = "svg")]
    modem: bool,
    /// The `wsat` binary that --modem starts as `wsat modem` (default: `wsat` in the
    /// directory of this executable, where cargo puts it: `cargo build --release -p wsat`).
    #[arg(long, value_name = "PATH", env = wsat_bench::WSAT_BIN_ENV)]
    wsat_bin: Option<PathBuf>,
    /// Do not pin the server and the clients (or the modem) to cores.
    #[arg(long)]
    no_pin: bool,
    /// The server's core.
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// The clients' core (and the modem's, with --modem).
    #[arg(long, default_value_t = 1)]
    client_core: usize,
    /// Internal: be the echo server.
    #[arg(long, hide = true)]
    serve: bool,
    /// Internal: be one client process of this implementation.
    #[arg(long, hide = true)]
    client: Option<String>,
    /// Internal: the WebSocket echo address.
    #[arg(long, hide = true)]
    ws_addr: Option<String>,
    /// Internal: the TCP echo address.
    #[arg(long, hide = true)]
    tcp_addr: Option<String>,
    /// Internal: the echo server's byte counters.
    #[arg(long, hide = true)]
    stats_addr: Option<String>,
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    init_logging(args.verbose);
    // The measurements run on runtimes and processes of their own.
    match imp::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, never to stdout (where the results and the server's address go).
fn init_logging(verbose: u8) {
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

mod imp {
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::{bail, Context};
    use wsat_bench::orchestrate::{compare, Options, Pinning, ServerProcess};
    use wsat_bench::report::{self, IMPLEMENTATIONS};
    use wsat_bench::workload::Workload;
    use wsat_bench::{chart, load, locate_wsat, modem, server};

    use super::BenchArgs;

    pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
        let workloads = Workload::parse_list(&args.workloads).map_err(anyhow::Error::msg)?;
        let warmup = Duration::from_millis(args.warmup_ms.unwrap_or(if args.quick { 200 } else { 1000 }));
        let measure = Duration::from_millis(args.measure_ms.unwrap_or(if args.quick { 600 } else { 3000 }));
        if args.serve {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            tokio::task::LocalSet::new().block_on(&rt, server::serve())?;
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(implementation) = args.client {
            let (Some(ws_addr), Some(tcp_addr), [workload]) = (args.ws_addr, args.tcp_addr, &workloads[..]) else {
                bail!("--client needs --ws-addr, --tcp-addr and one workload");
            };
            let plan = load::Plan {
                implementation,
                workload: *workload,
                ws_addr,
                tcp_addr,
                stats_addr: args.stats_addr,
                warmup,
                measure,
            };
            println!("{}", load::run(&plan)?.to_line());
            return Ok(ExitCode::SUCCESS);
        }
        let implementations: Vec<String> = args
            .impls
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = implementations.iter().find(|i| !IMPLEMENTATIONS.contains(&i.as_str())) {
            bail!("unknown implementation {bad:?} (known: {})", IMPLEMENTATIONS.join(", "));
        }
        let exe = std::env::current_exe().context("locating the wsat-bench executable")?;
        // Checked before anything starts: without it, --modem cannot run at all.
        let wsat = if args.modem {
            Some(locate_wsat(args.wsat_bin.as_deref(), &exe)?)
        } else {
            None
        };
        let pinning = Pinning::detect(args.server_core, args.client_core, !args.no_pin);
        let server = ServerProcess::start(&exe, &pinning)?;
        let pin_note = if pinning.pinned() && args.modem {
            format!(
                "server on core {}, modem on core {}, AT driver (this process) unpinned",
                args.server_core, args.client_core
            )
        } else if pinning.pinned() {
            format!(
                "server on core {}, clients on core {}",
                args.server_core, args.client_core
            )
        } else {
            "unpinned".to_owned()
        };
        eprintln!(
            "wsat-bench: echo server pid {} (ws {}, tcp {}), {pin_note}; {} round(s) of {} ms warm-up + {} ms",
            server.pid(),
            server.ws_addr,
            server.tcp_addr,
            args.rounds,
            warmup.as_millis(),
            measure.as_millis()
        );
        if let Some(wsat) = wsat {
            let opts = modem::Options {
                rounds: args.rounds.max(1),
                warmup,
                measure,
            };
            let rows = modem::run(&wsat, &pinning, &server, &opts)?;
            println!("{}", report::modem_table(&rows));
            if let Some(path) = &args.csv {
                std::fs::write(path, report::modem_csv(&rows))
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wsat-bench: wrote {}", path.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        {
            let opts = Options {
                workloads,
                implementations: implementations.clone(),
                rounds: args.rounds.max(1),
                warmup,
                measure,
            };
            let rows = compare(&exe, &pinning, &server, &opts)?;
            println!("{}", report::table(&rows));
            if let Some(path) = &args.csv {
                std::fs::write(path, report::csv(&rows)).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wsat-bench: wrote {}", path.display());
            }
            if let Some(path) = &args.svg {
                let title = format!(
                    "wsat-bench: messages/s ÷ raw TCP, median of {} rounds ({pin_note})",
                    opts.rounds
                );
                chart::write_svg(&rows, &implementations, &title, path)?;
                eprintln!("wsat-bench: wrote {}", path.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
