//! Runs the whole comparison: the server process, then one client process per
//! (round, workload, implementation), implementations alternated, medians of the rounds.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::report::{runs_on, Row};
use super::stats::Figures;
use super::workload::Workload;

/// Where processes run.
#[derive(Debug, Clone)]
pub struct Pinning {
    /// `taskset -c N` prefix for the server, or none.
    pub server: Option<String>,
    /// `taskset -c N` prefix for the clients, or none.
    pub client: Option<String>,
}

impl Pinning {
    /// Server on `server_core`, clients on `client_core`, if `taskset` works and the cores
    /// exist; otherwise unpinned with a warning on stderr.
    pub fn detect(server_core: usize, client_core: usize, wanted: bool) -> Pinning {
        let none = Pinning {
            server: None,
            client: None,
        };
        if !wanted {
            return none;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores < 2 || server_core.max(client_core) >= cores || server_core == client_core {
            eprintln!(
                "wsat-bench: warning: {cores} core(s) available; cannot pin server to {server_core} and clients to {client_core}: running unpinned"
            );
            return none;
        }
        let works = Command::new("taskset")
            .args(["-c", &server_core.to_string(), "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            eprintln!(
                "wsat-bench: warning: `taskset` (util-linux) is missing or refused: running unpinned (apt-get install util-linux)"
            );
            return none;
        }
        Pinning {
            server: Some(server_core.to_string()),
            client: Some(client_core.to_string()),
        }
    }

    /// Whether both sides are pinned.
    pub fn pinned(&self) -> bool {
        self.server.is_some() && self.client.is_some()
    }
}

/// `exe` as a command, prefixed with `taskset -c CORE` when `core` is set: how the server,
/// the client processes and the modem of `wsat-bench --modem` are started.
pub(super) fn command(core: &Option<String>, exe: &Path) -> Command {
    match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", c]).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// The echo server process; killed on drop.
pub struct ServerProcess {
    child: Child,
    /// WebSocket echo address.
    pub ws_addr: String,
    /// TCP echo address.
    pub tcp_addr: String,
    /// The address that answers the echoes' byte counters (see
    /// [`super::server::WireCounters`]).
    pub stats_addr: Option<String>,
}

impl ServerProcess {
    /// Starts `wsat-bench --serve` (pinned) and waits for its addresses.
    pub fn start(exe: &Path, pinning: &Pinning) -> anyhow::Result<ServerProcess> {
        let mut child = command(&pinning.server, exe)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the echo server process")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let mut ws_addr = None;
        let mut tcp_addr = None;
        let mut stats_addr = None;
        for part in line.split_whitespace() {
            if let Some(a) = part.strip_prefix("ws=") {
                ws_addr = Some(a.to_owned());
            } else if let Some(a) = part.strip_prefix("tcp=") {
                tcp_addr = Some(a.to_owned());
            } else if let Some(a) = part.strip_prefix("stats=") {
                stats_addr = Some(a.to_owned());
            }
        }
        match (ws_addr, tcp_addr) {
            (Some(ws_addr), Some(tcp_addr)) => Ok(ServerProcess {
                child,
                ws_addr,
                tcp_addr,
                stats_addr,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the echo server did not report its addresses: {line:?}")
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measurement in a fresh client process.
pub fn measure(
    exe: &Path,
    pinning: &Pinning,
    server: &ServerProcess,
    implementation: &str,
    workload: Workload,
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<Figures> {
    let mut cmd = command(&pinning.client, exe);
    cmd.args(["--client", implementation])
        .args(["--ws-addr", &server.ws_addr, "--tcp-addr", &server.tcp_addr])
        .args(["--workloads", &workload.to_string()])
        .args(["--warmup-ms", &warmup.as_millis().to_string()])
        .args(["--measure-ms", &seconds.as_millis().to_string()]);
    if let Some(stats) = &server.stats_addr {
        cmd.args(["--stats-addr", stats]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running the {implementation} client"))?;
    // A client that hangs (a peer library stuck, say) is killed, not waited for forever.
    let deadline = Instant::now() + warmup + seconds + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{implementation} on {workload}: no result within the time limit, killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    match stdout.lines().find_map(Figures::from_line) {
        Some(f) if status.success() => Ok(f),
        _ => bail!(
            "{implementation} on {workload} failed ({status}): {}{}",
            stdout.trim(),
            stderr.trim()
        ),
    }
}

/// Everything a comparison needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Implementations, in table order.
    pub implementations: Vec<String>,
    /// Rounds (medians are taken over them).
    pub rounds: usize,
    /// Warm-up per measurement.
    pub warmup: Duration,
    /// Measured interval per measurement.
    pub measure: Duration,
}

/// Runs every (round, workload, implementation) that [`runs_on`] allows (compressing
/// implementations only on JSON workloads); each round rotates the implementation order so
/// that drift hits all alike. Progress goes to stderr.
pub fn compare(exe: &Path, pinning: &Pinning, server: &ServerProcess, opts: &Options) -> anyhow::Result<Vec<Row>> {
    let n = opts.implementations.len();
    let mut samples: Vec<Vec<Vec<Figures>>> = vec![vec![Vec::new(); n]; opts.workloads.len()];
    for round in 0..opts.rounds {
        for (wi, w) in opts.workloads.iter().enumerate() {
            for k in 0..n {
                let ii = (k + round + wi) % n;
                let name = &opts.implementations[ii];
                if !runs_on(name, w) {
                    continue;
                }
                let f = match measure(exe, pinning, server, name, *w, opts.warmup, opts.measure) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("wsat-bench: warning: round {} {w} {name}: {e:#}", round + 1);
                        continue;
                    }
                };
                eprintln!(
                    "round {}/{} {w:<16} {name:<20} {:>10.0} msg/s {:>9.1} MB/s p50 {:>8.1} µs p99 {:>8.1} µs cpu {:>7.2} µs/msg wire {:>9.1} B/msg",
                    round + 1,
                    opts.rounds,
                    f.msgs_per_s,
                    f.mb_per_s,
                    f.p50_us,
                    f.p99_us,
                    f.cpu_us_per_msg,
                    f.wire_bytes_per_msg
                );
                samples[wi][ii].push(f);
            }
        }
    }
    let mut rows = Vec::new();
    for (wi, w) in opts.workloads.iter().enumerate() {
        for (ii, name) in opts.implementations.iter().enumerate() {
            if !runs_on(name, w) {
                continue;
            }
            rows.push(Row {
                workload: *w,
                implementation: name.clone(),
                figures: Figures::median_of(&samples[wi][ii]),
                rounds: samples[wi][ii].len(),
            });
        }
    }
    Ok(rows)
}
