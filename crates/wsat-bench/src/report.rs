//! The results table of `wsat-bench`: text for the terminal, CSV for files.

use std::fmt::Write as _;

use super::stats::Figures;
use super::workload::{format_size, Workload};

/// The implementations compared, in table order. A `+deflate` suffix is the same client
/// offering permessage-deflate (`ClientConfig::compression`), which the echo server
/// accepts; those run on JSON workloads only ([`runs_on`]).
pub const IMPLEMENTATIONS: [&str; 8] = [
    "wsat",
    "wsat+deflate",
    "wsat-stream",
    "wsat-stream+deflate",
    "tokio-tungstenite",
    "fastwebsockets",
    "raw-tcp",
    "raw-tcp-batched",
];

/// [`IMPLEMENTATIONS`] as the default of `--impls`.
pub const DEFAULT_IMPLS: &str =
    "wsat,wsat+deflate,wsat-stream,wsat-stream+deflate,tokio-tungstenite,fastwebsockets,raw-tcp,raw-tcp-batched";

/// The suffix of an implementation that compresses (permessage-deflate).
pub const DEFLATE_SUFFIX: &str = "+deflate";

/// Whether `implementation` is measured on `workload`: a compressing one only on JSON
/// messages (compressing the byte pattern of the other workloads would measure the
/// compressor on trivial input); every other one everywhere.
pub fn runs_on(implementation: &str, workload: &Workload) -> bool {
    !implementation.ends_with(DEFLATE_SUFFIX) || workload.is_json()
}

/// The reference for ratios: the same bytes over plain TCP, one write and one exact read per
/// message (the per-message limit of the loopback path; `raw-tcp-batched` shows what
/// batching many messages per system call can reach beyond it).
pub const RAW: &str = "raw-tcp";

/// One row: a workload run through one implementation (medians over the rounds).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// One of [`IMPLEMENTATIONS`].
    pub implementation: String,
    /// Medians of the rounds.
    pub figures: Figures,
    /// How many rounds the medians are of.
    pub rounds: usize,
}

/// The CSV header: the columns the issue fixes, then the extra ones (`wire_bytes_per_msg`:
/// TCP payload bytes the echo server read and wrote per echoed message).
pub const CSV_HEADER: &str =
    "workload,implementation,msgs_per_s,mb_per_s,p50_us,p99_us,cpu_us_per_msg,peak_rss_kib,wire_bytes_per_msg";

/// One CSV line per row, header first.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let f = &r.figures;
        let _ = writeln!(
            out,
            "{},{},{:.0},{:.2},{:.1},{:.1},{:.3},{:.0},{:.1}",
            r.workload,
            r.implementation,
            f.msgs_per_s,
            f.mb_per_s,
            f.p50_us,
            f.p99_us,
            f.cpu_us_per_msg,
            f.peak_rss_kib,
            f.wire_bytes_per_msg
        );
    }
    out
}

/// `row`'s messages/s divided by those of `implementation` on the same workload.
pub fn ratio(rows: &[Row], row: &Row, implementation: &str) -> Option<f64> {
    let base = rows
        .iter()
        .find(|r| r.workload == row.workload && r.implementation == implementation)?;
    (base.figures.msgs_per_s > 0.0).then(|| row.figures.msgs_per_s / base.figures.msgs_per_s)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// The table for the terminal and BENCHMARKS.md (GitHub markdown). `wire B/msg` is what
/// the echo server read and wrote per message, both directions ("-" when not measured).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| workload | implementation | msgs/s | MB/s | p50 µs | p99 µs | CPU µs/msg | wire B/msg | peak RSS MiB | ×raw-tcp | ×wsat |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let f = &r.figures;
        let wire = if f.wire_bytes_per_msg > 0.0 {
            format!("{:.0}", f.wire_bytes_per_msg)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {wire} | {:.1} | {} | {} |",
            r.workload,
            r.implementation,
            f.msgs_per_s,
            f.mb_per_s,
            f.p50_us,
            f.p99_us,
            f.cpu_us_per_msg,
            f.peak_rss_kib / 1024.0,
            fmt_ratio(ratio(rows, r, RAW)),
            fmt_ratio(ratio(rows, r, "wsat")),
        );
    }
    out
}

/// What a row of `wsat-bench --modem` measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemMeasure {
    /// One link, one AT+WSSEND of `payload` bytes at a time, each waited for until its
    /// `+WS_DATA` echo is complete: the round trip through the AT port.
    RoundTrip {
        /// Bytes per message.
        payload: usize,
    },
    /// `links` links open, AT+WSSEND of `payload` bytes as fast as the AT port takes
    /// them, round robin over the links, echoes counted as they come.
    Throughput {
        /// Links open (and sent on).
        links: usize,
        /// Bytes per message.
        payload: usize,
    },
}

/// One row of `wsat-bench --modem` (medians over the rounds).
#[derive(Debug, Clone, PartialEq)]
pub struct ModemRow {
    /// The AT port: `tcp` or `pty`.
    pub transport: String,
    /// What was measured.
    pub measure: ModemMeasure,
    /// Medians of the rounds. `msgs_per_s` is round trips/s (or echoed messages/s),
    /// `cpu_us_per_msg` and `peak_rss_kib` (`VmHWM`) are the modem process's.
    pub figures: Figures,
    /// The modem process's resident set (`VmRSS`, KiB) at the end of the measurement.
    pub rss_kib: f64,
    /// How many rounds the medians are of.
    pub rounds: usize,
}

/// The CSV header of `wsat-bench --modem --csv` (a file of its own: other columns than
/// [`CSV_HEADER`]).
pub const MODEM_CSV_HEADER: &str =
    "transport,measure,links,payload,msgs_per_s,mb_per_s,p50_us,p99_us,modem_cpu_us_per_msg,modem_rss_kib,modem_peak_rss_kib";

/// One CSV line per modem row, header first. Round-trip rows have `links` 1; throughput
/// rows leave the percentiles empty.
pub fn modem_csv(rows: &[ModemRow]) -> String {
    let mut out = String::from(MODEM_CSV_HEADER);
    out.push('\n');
    for r in rows {
        let f = &r.figures;
        let (kind, links, payload, p50, p99) = match r.measure {
            ModemMeasure::RoundTrip { payload } => (
                "round-trip",
                1,
                payload,
                format!("{:.1}", f.p50_us),
                format!("{:.1}", f.p99_us),
            ),
            ModemMeasure::Throughput { links, payload } => ("throughput", links, payload, String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{},{kind},{links},{payload},{:.0},{:.3},{p50},{p99},{:.2},{:.0},{:.0}",
            r.transport, f.msgs_per_s, f.mb_per_s, f.cpu_us_per_msg, r.rss_kib, f.peak_rss_kib
        );
    }
    out
}

/// The tables of `wsat-bench --modem` (GitHub markdown): round trips first, then the
/// sustained throughput with the modem's memory.
pub fn modem_table(rows: &[ModemRow]) -> String {
    let mut out = String::new();
    out.push_str("| transport | payload | round trips/s | p50 µs | p99 µs | modem CPU µs/rt |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        if let ModemMeasure::RoundTrip { payload } = r.measure {
            let f = &r.figures;
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
                r.transport,
                format_size(payload),
                f.msgs_per_s,
                f.p50_us,
                f.p99_us,
                f.cpu_us_per_msg
            );
        }
    }
    out.push('\n');
    out.push_str(
        "| transport | links | message | msgs/s | bytes/s | MB/s | modem CPU µs/msg | modem VmRSS MiB | modem VmHWM MiB |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        if let ModemMeasure::Throughput { links, payload } = r.measure {
            let f = &r.figures;
            let _ = writeln!(
                out,
                "| {} | {links} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} |",
                r.transport,
                format_size(payload),
                f.msgs_per_s,
                f.mb_per_s * 1e6,
                f.mb_per_s,
                f.cpu_us_per_msg,
                r.rss_kib / 1024.0,
                f.peak_rss_kib / 1024.0
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str, implementation: &str, msgs: f64) -> Row {
        Row {
            workload: workload.parse().expect("workload"),
            implementation: implementation.to_owned(),
            figures: Figures {
                msgs_per_s: msgs,
                mb_per_s: msgs * 20.0 / 1e6,
                p50_us: 24.0,
                p99_us: 31.5,
                cpu_us_per_msg: 2.25,
                peak_rss_kib: 3072.0,
                wire_bytes_per_msg: 52.0,
            },
            rounds: 3,
        }
    }

    #[test]
    fn csv_has_the_fixed_columns_and_one_line_per_row() {
        let rows = [row("1x20Bx1", "wsat", 40000.0), row("1x20Bx1", "raw-tcp", 42000.0)];
        let text = csv(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("workload,implementation,msgs_per_s,mb_per_s,p50_us,p99_us,cpu_us_per_msg"));
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "1x20Bx1,wsat,40000,0.80,24.0,31.5,2.250,3072,52.0");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn ratios_are_per_workload() {
        let rows = [
            row("1x20Bx1", "wsat", 40000.0),
            row("1x20Bx1", "raw-tcp", 50000.0),
            row("1x1KiBx1", "wsat", 10.0),
        ];
        assert_eq!(ratio(&rows, &rows[0], RAW), Some(0.8));
        assert_eq!(ratio(&rows, &rows[1], "wsat"), Some(1.25));
        assert_eq!(ratio(&rows, &rows[2], RAW), None);
        let t = table(&rows);
        assert!(
            t.contains("| 1x20Bx1 | wsat | 40000 | 0.8 | 24.0 | 31.5 | 2.25 | 52 | 3.0 | 0.80 | 1.00 |"),
            "{t}"
        );
        assert!(t.contains("| 1x1KiBx1 | wsat | 10 |"), "{t}");
        assert!(t.lines().nth(4).is_some_and(|l| l.ends_with("| - | 1.00 |")), "{t}");
    }

    #[test]
    fn the_default_impls_are_all_of_them() {
        assert_eq!(DEFAULT_IMPLS, IMPLEMENTATIONS.join(","));
    }

    #[test]
    fn compressing_implementations_run_on_json_only() {
        let json: Workload = "1xjson-1KiBx1".parse().expect("workload");
        let pattern: Workload = "1x1KiBx1".parse().expect("workload");
        for i in IMPLEMENTATIONS {
            assert!(runs_on(i, &json), "{i}");
            assert_eq!(runs_on(i, &pattern), !i.ends_with(DEFLATE_SUFFIX), "{i}");
        }
        let mut unmeasured = row("1x20Bx1", "wsat", 1.0);
        unmeasured.figures.wire_bytes_per_msg = 0.0;
        assert!(table(&[unmeasured]).contains("| 2.25 | - | 3.0 |"));
    }

    #[test]
    fn modem_table_and_csv() {
        let f = Figures {
            msgs_per_s: 5000.0,
            mb_per_s: 0.1,
            p50_us: 150.3,
            p99_us: 400.0,
            cpu_us_per_msg: 60.0,
            peak_rss_kib: 6144.0,
            wire_bytes_per_msg: 0.0,
        };
        let rows = [
            ModemRow {
                transport: "tcp".to_owned(),
                measure: ModemMeasure::RoundTrip { payload: 20 },
                figures: f,
                rss_kib: 5120.0,
                rounds: 3,
            },
            ModemRow {
                transport: "pty".to_owned(),
                measure: ModemMeasure::Throughput {
                    links: 3,
                    payload: 4096,
                },
                figures: Figures { mb_per_s: 12.5, ..f },
                rss_kib: 5120.0,
                rounds: 3,
            },
        ];
        let t = modem_table(&rows);
        assert!(t.contains("| tcp | 20B | 5000 | 150.3 | 400.0 | 60.0 |"), "{t}");
        assert!(
            t.contains("| pty | 3 | 4KiB | 5000 | 12500000 | 12.50 | 60.0 | 5.0 | 6.0 |"),
            "{t}"
        );
        let c = modem_csv(&rows);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines[0], MODEM_CSV_HEADER);
        assert_eq!(lines[1], "tcp,round-trip,1,20,5000,0.100,150.3,400.0,60.00,5120,6144");
        assert_eq!(lines[2], "pty,throughput,3,4096,5000,12.500,,,60.00,5120,6144");
    }
}
