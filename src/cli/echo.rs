//! `wsat echo-server`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use wsat::echo_server::{default_deflate, EchoOptions, EchoServer, DEFAULT_MAX_CONNECTIONS};
use wsat::tls_server::server_config;

/// Options of `wsat echo-server`.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Address to listen on, e.g. 127.0.0.1:8765.
    #[arg(long, default_value = "127.0.0.1:8765")]
    listen: String,
    /// Serve wss with this certificate chain (PEM).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Require a client certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "cert")]
    client_ca: Option<PathBuf>,
    /// Close a connection whose TLS handshake and upgrade are not done this long after it
    /// was accepted (half-open and silent peers). A number with a unit, `500ms`, `10s` or
    /// `2m`; a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// At most this many connections at once. When full, the oldest connection still in its
    /// handshake is closed to make room; when all are upgraded, new ones are refused at once.
    /// Keep it well below the descriptor limit (`ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Per connection, stop reading while more than this many echoed bytes wait to be
    /// written (a peer that sends and does not read). Bytes, or with a unit: `512KiB`,
    /// `4MiB`.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_size)]
    max_queued_bytes: usize,
    /// The largest message echoed; a longer one closes the connection with 1009. A
    /// compressed message counts decompressed, and is cut off once it inflates past this
    /// (compression bombs). Bytes, or with a unit: `1MiB`.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_message: usize,
    /// Decline every permessage-deflate (RFC 7692) offer. By default the first valid offer
    /// is accepted as it stands (malformed ones are declined) and echoes of compressed
    /// messages go back compressed.
    #[arg(long)]
    no_deflate: bool,
}

impl EchoArgs {
    fn options(&self) -> EchoOptions {
        EchoOptions {
            handshake_timeout: self.handshake_timeout,
            max_connections: self.max_connections as usize,
            max_queued_bytes: self.max_queued_bytes,
            max_message: self.max_message,
            deflate: (!self.no_deflate).then(default_deflate),
        }
    }
}

pub async fn run(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let client_ca = args.client_ca.as_ref().map(read).transpose()?;
            Some(server_config(&read(cert)?, &read(key)?, client_ca.as_deref()).context("TLS setup")?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let server = EchoServer::bind(&args.listen, tls)
        .await
        .with_context(|| format!("listening on {}", args.listen))?
        .with_options(args.options());
    eprintln!("echo server listening on {scheme}://{}", server.local_addr()?);
    warn_if_over_descriptor_limit(args.max_connections);
    server.run().await;
    Ok(ExitCode::SUCCESS)
}

/// Descriptors the server needs beside its connections: stdio, the listener, the runtime's
/// epoll and wakers, with room to spare.
const SPARE_DESCRIPTORS: u64 = 32;

/// Warns when `--max-connections` does not fit under the soft descriptor limit: `accept`
/// would then fail with EMFILE before the limit is reached (the server backs off, but new
/// connections wait until descriptors free up instead of being served or refused).
fn warn_if_over_descriptor_limit(max_connections: u32) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    if u64::from(max_connections) + SPARE_DESCRIPTORS > limit {
        tracing::warn!(
            "--max-connections {max_connections} leaves too few of the {limit} descriptors `ulimit -n` \
             allows; lower it or raise the limit"
        );
    }
}

/// The soft limit on open descriptors, from `/proc/self/limits` (Linux; `None` elsewhere
/// or when unlimited).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let limit = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    limit.split_whitespace().next()?.parse().ok()
}

/// Splits `text` into a non-negative decimal number and the unit after it.
fn number_and_unit(text: &str) -> Result<(f64, &str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    Ok((value, unit.trim()))
}

/// A duration such as `500ms`, `10s`, `1.5s` or `2m`; a bare number is seconds. Zero is
/// refused: it would close every connection before its upgrade.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (value, unit) = number_and_unit(text)?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}`: use ms, s or m")),
    };
    let duration = Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// A size in bytes such as `4096`, `512KiB` or `4MiB` (`K`/`KB`/`M`/`MB` are read as the
/// binary units too).
fn parse_size(text: &str) -> Result<usize, String> {
    let (value, unit) = number_and_unit(text)?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" | "kB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return Err(format!("unknown unit `{unit}`: use KiB, MiB or GiB")),
    };
    let bytes = value * scale as f64;
    if bytes.fract() != 0.0 || bytes > usize::MAX as f64 {
        return Err(format!("`{text}` is not a whole number of bytes that fits"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: EchoArgs,
    }

    #[test]
    fn the_defaults_are_the_library_s() {
        let cli = Cli::try_parse_from(["echo"]).expect("no options needed");
        assert_eq!(cli.args.options(), EchoOptions::default());
    }

    #[test]
    fn options_reach_the_server() {
        let cli = Cli::try_parse_from([
            "echo",
            "--handshake-timeout",
            "500ms",
            "--max-connections",
            "8",
            "--max-queued-bytes",
            "1MiB",
            "--max-message",
            "2MiB",
            "--no-deflate",
        ])
        .expect("valid options");
        let expected = EchoOptions {
            handshake_timeout: Duration::from_millis(500),
            max_connections: 8,
            max_queued_bytes: 1 << 20,
            max_message: 2 << 20,
            deflate: None,
        };
        assert_eq!(cli.args.options(), expected);
        assert!(Cli::try_parse_from(["echo", "--max-connections", "0"]).is_err());
    }

    #[test]
    fn the_descriptor_limit_is_read() {
        if std::path::Path::new("/proc/self/limits").exists() {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        let ok = |t: &str| parse_duration(t).expect(t);
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("10"), Duration::from_secs(10));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        for bad in ["", "s", "0", "0ms", "-1s", "10h", "1e3", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_take_binary_units() {
        let ok = |t: &str| parse_size(t).expect(t);
        assert_eq!(ok("4096"), 4096);
        assert_eq!(ok("512KiB"), 512 << 10);
        assert_eq!(ok("4MiB"), 4 << 20);
        assert_eq!(ok("4M"), 4 << 20);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("1.5KiB"), 1536);
        for bad in ["", "MiB", "1.5", "4TiB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
