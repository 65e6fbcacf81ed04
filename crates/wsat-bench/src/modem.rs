//! `wsat-bench --modem`: the modem's figures through its real AT ports.
//!
//! A real `wsat modem` child process (the `wsat` binary, see [`crate::locate_wsat`]) is
//! driven over its TCP AT port and over a pseudo-terminal, with links to the bench's echo
//! server. The AT driver is the bench process itself, speaking the firmware's protocol byte
//! for byte: AT+WSCFG / AT+WSOPEN, then AT+WSSEND, `>`, the payload, `SEND OK` and the
//! echoed `+WS_DATA`.
//!
//! * Round trips: one link, one message at a time, timed from the first byte of the
//!   AT+WSSEND command to the last byte of the echo's `+WS_DATA` URC(s).
//! * Throughput: [`THROUGHPUT_LINKS`] links, AT+WSSEND as fast as the AT flow allows (one
//!   command at a time, round robin over the links: the port is one serial line), echoed
//!   payload bytes counted per second, every echoed byte checked against what was sent.
//! * Memory: the modem process's `VmRSS` / `VmHWM` with the links open, after the
//!   throughput run.
//!
//! Placement: the echo server on the server core, the modem on the client core (it is the
//! client of the echo server, like the clients of the WebSocket comparison); the driver is
//! not pinned (it plays the host MCU at the other end of the serial line, and a 2-core
//! machine has no third core to give it). Every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use wsat_testkit::at_host::{AtClient, AtEvent, EchoCheck};
use wsat_testkit::data::payload;
use wsat_testkit::modem_process::{Modem, ModemCommand};

use super::orchestrate::{command as pinned_command, Pinning, ServerProcess};
use super::report::{ModemMeasure, ModemRow};
use super::stats::{median, percentile, Figures};
use super::sys;

/// Payload sizes of the round-trip rows.
pub const ROUND_TRIP_SIZES: [usize; 3] = [20, 1024, 4096];
/// Links open during the throughput run (the firmware has three).
pub const THROUGHPUT_LINKS: usize = 3;
/// Message size of the throughput run.
pub const THROUGHPUT_SIZE: usize = 4096;
/// The link buffer configured with AT+WSCFG (the firmware's maximum): every message here
/// is one frame out and, normally, one `+WS_DATA` back.
const BUFFER_SIZE: usize = 8192;
/// Bound on any one answer of the modem (a prompt, `SEND OK`, an echo).
const STEP: Duration = Duration::from_secs(10);
/// Bound on AT+WSOPEN (the firmware's own default timeout is 15 s).
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Which AT port of `wsat modem` is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `wsat modem --tcp 127.0.0.1:0`.
    Tcp,
    /// `wsat modem --pty --link PATH`, opened by path in raw mode.
    Pty,
}

impl Transport {
    /// Both, in table order.
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Pty];

    /// The name in the table: `tcp` or `pty`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Pty => "pty",
        }
    }
}

/// What `wsat-bench --modem` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rounds; each figure is the median over them. Every round starts fresh modems.
    pub rounds: usize,
    /// Load before each measured interval.
    pub warmup: Duration,
    /// Each measured interval.
    pub measure: Duration,
}

/// Starts `wsat modem` (`wsat`: the `wsat` binary) on `transport`, pinned to the client
/// core, and waits (bounded) until it announces its AT port. Its stderr lines after that are
/// passed on (warnings); it is killed when dropped.
fn start_modem(wsat: &Path, pinning: &Pinning, transport: Transport) -> anyhow::Result<Modem> {
    let command = ModemCommand::wrapping(pinned_command(&pinning.client, wsat));
    let command = match transport {
        Transport::Tcp => command.tcp(),
        Transport::Pty => command.pty(&unique_link_path()),
    };
    // A failed open answers in well under a second instead of the firmware's ≈5 s.
    command
        .args(["--open-error-delay-ms", "200", "--network-timeout-ms", "5000"])
        .forward_stderr("wsat-bench: modem: ")
        .try_start()
}

/// A fresh path for the pty's symlink in the temporary directory.
fn unique_link_path() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "wsat-bench-modem-{}-{}.pty",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// What the bench does on the host end of an AT port, on top of the test kit's
/// [`AtClient`] (commands, events, every wait bounded by a deadline).
trait Driver {
    /// Configures `link` (buffer [`BUFFER_SIZE`], pings out of the way) and opens it to
    /// `uri`, waiting for `+WS_CONNECTED`.
    fn open_link(&mut self, link: usize, uri: &str) -> anyhow::Result<()>;

    /// Writes AT+WSSEND for `len` binary bytes on `link` and waits for its `>`; echoes
    /// that arrive meanwhile go to `on_data`.
    fn send_command(
        &mut self,
        link: usize,
        len: usize,
        deadline: Instant,
        on_data: impl FnMut(usize, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;

    /// One round trip of `body` on `link`: AT+WSSEND, `>`, the payload, `SEND OK` and the
    /// complete, identical echo. Returns the time from the command's first byte to the
    /// echo's last.
    fn round_trip(&mut self, link: usize, body: &[u8], check: &mut EchoCheck) -> anyhow::Result<Duration>;
}

impl Driver for AtClient {
    fn open_link(&mut self, link: usize, uri: &str) -> anyhow::Result<()> {
        self.command(&format!("AT+WSCFG={link},7200,7200,{BUFFER_SIZE}"), STEP)?;
        let lines = self
            .command(&format!("AT+WSOPEN={link},\"{uri}\""), OPEN_TIMEOUT)
            .with_context(|| format!("opening link {link} to {uri} (is the echo server up?)"))?;
        let connected = format!("+WS_CONNECTED:{link}");
        ensure!(
            lines.contains(&connected),
            "AT+WSOPEN={link} answered OK without {connected}: {}",
            lines.join(" | ")
        );
        Ok(())
    }

    fn send_command(
        &mut self,
        link: usize,
        len: usize,
        deadline: Instant,
        mut on_data: impl FnMut(usize, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.write(format!("AT+WSSEND={link},{len},2\r\n").as_bytes())?;
        self.pump(deadline, "> prompt for AT+WSSEND", |ev| match ev {
            AtEvent::Prompt => Ok(true),
            AtEvent::Line(l) if l == "OK" => Ok(false),
            AtEvent::Data { link, bytes } => on_data(link, &bytes).map(|()| false),
            AtEvent::Line(l) => bail!("AT+WSSEND={link},{len}: {l:?} instead of the > prompt"),
        })
    }

    fn round_trip(&mut self, link: usize, body: &[u8], check: &mut EchoCheck) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let deadline = start + STEP;
        self.send_command(link, body.len(), deadline, |l, _| {
            bail!("+WS_DATA on link {l} before the payload was sent")
        })?;
        check.sent(body);
        self.write(body)?;
        let mut send_ok = false;
        let mut echoed_at = None;
        self.pump(deadline, "SEND OK and the complete +WS_DATA echo", |ev| {
            match ev {
                AtEvent::Line(l) if l == "SEND OK" => send_ok = true,
                AtEvent::Data { link: l, bytes } if l == link => {
                    check.received(&bytes).with_context(|| format!("echo on link {link}"))?;
                    if check.in_flight() == 0 {
                        echoed_at = Some(Instant::now());
                    }
                }
                other => bail!("AT+WSSEND={link}: unexpected {}", other.describe()),
            }
            Ok(send_ok && echoed_at.is_some())
        })?;
        Ok(echoed_at.map_or(Duration::ZERO, |t| t - start))
    }
}

/// Round trips of `size` bytes on link 0 for `warmup`, then for `measure`: their rate,
/// percentiles, and the modem's CPU time and peak memory.
fn measure_round_trips(port: &mut AtClient, modem: &Modem, size: usize, opts: &Options) -> anyhow::Result<Figures> {
    // Alternating bodies: an echo of the previous message would not pass as this one's.
    let bodies = [payload(0, size), payload(1, size)];
    let mut check = EchoCheck::new();
    let mut seq = 0usize;
    let warm_end = Instant::now() + opts.warmup;
    while Instant::now() < warm_end {
        port.round_trip(0, &bodies[seq % 2], &mut check)?;
        seq += 1;
    }
    let cpu_before = sys::cpu_time_of(modem.pid());
    let start = Instant::now();
    let stop = start + opts.measure;
    let mut latencies = Vec::new();
    while Instant::now() < stop {
        latencies.push(port.round_trip(0, &bodies[seq % 2], &mut check)?.as_nanos() as u64);
        seq += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = sys::cpu_time_of(modem.pid())
        .zip(cpu_before)
        .map_or(0.0, |(after, before)| after.saturating_sub(before).as_secs_f64());
    latencies.sort_unstable();
    let n = latencies.len() as f64;
    let us = |p| percentile(&latencies, p).map_or(f64::NAN, |ns| ns as f64 / 1e3);
    Ok(Figures {
        msgs_per_s: n / elapsed,
        mb_per_s: n * size as f64 / elapsed / 1e6,
        p50_us: us(50.0),
        p99_us: us(99.0),
        cpu_us_per_msg: cpu * 1e6 / n,
        peak_rss_kib: modem.try_memory_kib()?.1 as f64,
        wire_bytes_per_msg: 0.0,
    })
}

/// What the throughput run has seen: every link's echo check, and the bytes echoed while
/// the measured interval ran.
struct Tally {
    checks: Vec<EchoCheck>,
    counting: bool,
    counted: u64,
}

impl Tally {
    fn data(&mut self, link: usize, bytes: &[u8]) -> anyhow::Result<()> {
        let check = self
            .checks
            .get_mut(link)
            .ok_or_else(|| anyhow!("+WS_DATA on link {link}, which was not sent on"))?;
        check.received(bytes).with_context(|| format!("echo on link {link}"))?;
        if self.counting {
            self.counted += bytes.len() as u64;
        }
        Ok(())
    }
}

/// [`THROUGHPUT_SIZE`] messages round robin over links `0..links` as fast as the AT port
/// takes them (each waits only for its own `SEND OK`), echoes counted as they come; then
/// every echo still in flight is awaited and checked.
fn measure_throughput(port: &mut AtClient, modem: &Modem, links: usize, opts: &Options) -> anyhow::Result<Figures> {
    let size = THROUGHPUT_SIZE;
    let mut tally = Tally {
        checks: (0..links).map(|_| EchoCheck::new()).collect(),
        counting: false,
        counted: 0,
    };
    let warm_end = Instant::now() + opts.warmup;
    let mut stop = warm_end + opts.measure;
    let mut start = warm_end;
    let mut cpu_before = None;
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        if !tally.counting && now >= warm_end {
            tally.counting = true;
            cpu_before = sys::cpu_time_of(modem.pid());
            start = now;
            stop = now + opts.measure;
        }
        if now >= stop {
            break;
        }
        let link = (seq % links as u64) as usize;
        let body = payload(seq, size);
        seq += 1;
        let deadline = now + STEP;
        port.send_command(link, size, deadline, |l, b| tally.data(l, b))?;
        tally.checks[link].sent(&body);
        port.write(&body)?;
        port.pump(deadline, "SEND OK", |ev| match ev {
            AtEvent::Line(l) if l == "SEND OK" => Ok(true),
            AtEvent::Data { link, bytes } => tally.data(link, &bytes).map(|()| false),
            other => bail!("AT+WSSEND={link}: unexpected {}", other.describe()),
        })?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = sys::cpu_time_of(modem.pid())
        .zip(cpu_before)
        .map_or(0.0, |(after, before)| after.saturating_sub(before).as_secs_f64());
    tally.counting = false;
    let counted = tally.counted as f64;
    if tally.checks.iter().any(|c| c.in_flight() > 0) {
        port.pump(Instant::now() + STEP, "rest of the echoes", |ev| match ev {
            AtEvent::Data { link, bytes } => {
                tally.data(link, &bytes)?;
                Ok(tally.checks.iter().all(|c| c.in_flight() == 0))
            }
            other => bail!("waiting for the last echoes: unexpected {}", other.describe()),
        })?;
    }
    ensure!(counted > 0.0, "no echo arrived during the measured interval");
    let msgs = counted / size as f64;
    Ok(Figures {
        msgs_per_s: msgs / elapsed,
        mb_per_s: counted / elapsed / 1e6,
        p50_us: 0.0,
        p99_us: 0.0,
        cpu_us_per_msg: cpu * 1e6 / msgs,
        peak_rss_kib: modem.try_memory_kib()?.1 as f64,
        wire_bytes_per_msg: 0.0,
    })
}

/// One measurement of one round: what, its figures, the modem's `VmRSS` (KiB) after it.
type Sample = (ModemMeasure, Figures, f64);

/// One round on one transport, in a fresh modem: link 0 for the round trips of every size,
/// then links 1 and 2 too for the throughput and the memory figures.
fn transport_round(
    wsat: &Path,
    pinning: &Pinning,
    server: &ServerProcess,
    transport: Transport,
    opts: &Options,
) -> anyhow::Result<Vec<Sample>> {
    let mut modem = start_modem(wsat, pinning, transport)?;
    let run = |modem: &Modem| -> anyhow::Result<Vec<Sample>> {
        let mut port = modem.try_attach()?;
        port.command("ATE0", STEP).context("the AT port does not answer")?;
        let uri = format!("ws://{}/", server.ws_addr);
        port.open_link(0, &uri)?;
        let mut out = Vec::new();
        for size in ROUND_TRIP_SIZES {
            let f = measure_round_trips(&mut port, modem, size, opts)
                .with_context(|| format!("round trips of {size} bytes"))?;
            out.push((
                ModemMeasure::RoundTrip { payload: size },
                f,
                modem.try_memory_kib()?.0 as f64,
            ));
        }
        for link in 1..THROUGHPUT_LINKS {
            port.open_link(link, &uri)?;
        }
        let f = measure_throughput(&mut port, modem, THROUGHPUT_LINKS, opts)
            .with_context(|| format!("throughput over {THROUGHPUT_LINKS} links"))?;
        let measure = ModemMeasure::Throughput {
            links: THROUGHPUT_LINKS,
            payload: THROUGHPUT_SIZE,
        };
        out.push((measure, f, modem.try_memory_kib()?.0 as f64));
        Ok(out)
    };
    let result = run(&modem);
    result.map_err(|e| {
        let words = modem.last_words();
        e.context(format!("wsat modem over {} ({words})", transport.name()))
    })
}

/// Runs every round (transport order alternating per round) and returns the medians, one
/// row per (transport, measurement). Progress goes to stderr; any failure is an error.
pub fn run(wsat: &Path, pinning: &Pinning, server: &ServerProcess, opts: &Options) -> anyhow::Result<Vec<ModemRow>> {
    let rounds = opts.rounds.max(1);
    let mut samples: Vec<(Transport, Vec<Sample>)> = Transport::ALL.iter().map(|t| (*t, Vec::new())).collect();
    for round in 0..rounds {
        for k in 0..samples.len() {
            let i = (k + round) % samples.len();
            let transport = samples[i].0;
            let got = transport_round(wsat, pinning, server, transport, opts)
                .with_context(|| format!("round {} over {}", round + 1, transport.name()))?;
            for (measure, f, rss) in &got {
                let what = match measure {
                    ModemMeasure::RoundTrip { payload } => format!("round trip {payload:>5} B"),
                    ModemMeasure::Throughput { links, payload } => format!("{links} links × {payload} B"),
                };
                eprintln!(
                    "round {}/{rounds} {:<4} {what:<18} {:>8.0} msg/s {:>8.2} MB/s p50 {:>8.1} µs p99 {:>8.1} µs modem cpu {:>6.1} µs/msg rss {:>5.1} MiB",
                    round + 1,
                    transport.name(),
                    f.msgs_per_s,
                    f.mb_per_s,
                    f.p50_us,
                    f.p99_us,
                    f.cpu_us_per_msg,
                    rss / 1024.0
                );
            }
            samples[i].1.extend(got);
        }
    }
    let mut rows = Vec::new();
    for (transport, all) in &samples {
        let mut measures: Vec<ModemMeasure> = Vec::new();
        for (m, _, _) in all {
            if !measures.contains(m) {
                measures.push(*m);
            }
        }
        for m in measures {
            let of: Vec<&Sample> = all.iter().filter(|(x, _, _)| *x == m).collect();
            let figures: Vec<Figures> = of.iter().map(|(_, f, _)| *f).collect();
            let rss: Vec<f64> = of.iter().map(|(_, _, r)| *r).collect();
            rows.push(ModemRow {
                transport: transport.name().to_owned(),
                measure: m,
                figures: Figures::median_of(&figures),
                rss_kib: median(&rss),
                rounds: of.len(),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// An [`AtClient`] on a TCP connection whose other end is `fake`, a scripted modem that
    /// gets the stream and returns when done.
    fn fake_modem(fake: impl FnOnce(TcpStream) + Send + 'static) -> AtClient {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            fake(s);
        });
        AtClient::connect_tcp(addr, "fake modem").expect("connect")
    }

    /// Reads from the driver until `bytes` more bytes came (a command line or a payload).
    fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        s.read_exact(&mut buf).expect("the driver's bytes");
        buf
    }

    fn read_line(s: &mut TcpStream) -> String {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.extend(read_exact(s, 1));
        }
        String::from_utf8(line).expect("text")
    }

    #[test]
    fn a_round_trip_with_a_split_echo_and_late_send_ok() {
        let body = payload(5, 300);
        let echo = body.clone();
        let mut port = fake_modem(move |mut s| {
            assert_eq!(read_line(&mut s), "AT+WSSEND=1,300,2\r\n");
            s.write_all(b"\r\nOK\r\n\r\n>").unwrap();
            let got = read_exact(&mut s, 300);
            let mut out = b"+WS_DATA:1,100,".to_vec();
            out.extend_from_slice(&got[..100]);
            out.extend_from_slice(b"\r\n+WS_DATA:1,200,");
            out.extend_from_slice(&got[100..]);
            out.extend_from_slice(b"\r\n\r\nSEND OK\r\n");
            // Piece by piece, as a slow port would.
            for piece in out.chunks(7) {
                s.write_all(piece).unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
        });
        let mut check = EchoCheck::new();
        let t = port.round_trip(1, &body, &mut check).expect("a round trip");
        assert!(t > Duration::ZERO);
        assert_eq!((check.in_flight(), check.echoed()), (0, echo.len() as u64));
    }

    #[test]
    fn an_altered_echo_is_an_error() {
        let body = payload(1, 20);
        let mut port = fake_modem(|mut s| {
            read_line(&mut s);
            s.write_all(b"\r\nOK\r\n\r\n>").unwrap();
            let mut got = read_exact(&mut s, 20);
            got[7] ^= 1;
            let mut out = b"\r\nSEND OK\r\n+WS_DATA:0,20,".to_vec();
            out.extend_from_slice(&got);
            out.extend_from_slice(b"\r\n");
            s.write_all(&out).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let e = port.round_trip(0, &body, &mut EchoCheck::new()).unwrap_err();
        assert!(format!("{e:#}").contains("echoed byte 7 differs"), "{e:#}");
    }

    #[test]
    fn a_failed_open_says_which_link_and_why() {
        let mut port = fake_modem(|mut s| {
            assert_eq!(read_line(&mut s), "AT+WSCFG=2,7200,7200,8192\r\n");
            s.write_all(b"\r\nOK\r\n").unwrap();
            assert!(read_line(&mut s).starts_with("AT+WSOPEN=2,\"ws://127.0.0.1:9/\""));
            s.write_all(b"+WS_DISCONNECTED:2\r\n\r\nERROR\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let e = format!("{:#}", port.open_link(2, "ws://127.0.0.1:9/").unwrap_err());
        assert!(e.contains("opening link 2 to ws://127.0.0.1:9/"), "{e}");
        assert!(e.contains("+WS_DISCONNECTED:2 | ERROR"), "{e}");
    }

    #[test]
    fn silence_and_a_closed_port_end_the_wait() {
        let mut port = fake_modem(|mut s| {
            read_line(&mut s);
            std::thread::sleep(Duration::from_millis(500));
        });
        let started = Instant::now();
        let e = format!("{:#}", port.command("AT", Duration::from_millis(100)).unwrap_err());
        assert!(e.contains("no answer to AT from the modem in time"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let e = format!("{:#}", port.command("AT", Duration::from_secs(5)).unwrap_err());
        assert!(e.contains("closed by the modem"), "{e}");
    }
}
