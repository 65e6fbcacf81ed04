//! The results table of `wsat bench`: text for the terminal, CSV for files.

use std::fmt::Write as _;

use super::stats::Figures;
use super::workload::Workload;

/// The implementations compared, in table order.
pub const IMPLEMENTATIONS: [&str; 4] = ["wsat", "tokio-tungstenite", "fastwebsockets", "raw-tcp"];

/// The reference for ratios: the physical limit of the loopback path.
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

/// The CSV header the issue fixes (extra columns come after it).
pub const CSV_HEADER: &str = "workload,implementation,msgs_per_s,mb_per_s,p50_us,p99_us,cpu_us_per_msg,peak_rss_kib";

/// One CSV line per row, header first.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let f = &r.figures;
        let _ = writeln!(
            out,
            "{},{},{:.0},{:.2},{:.1},{:.1},{:.3},{:.0}",
            r.workload,
            r.implementation,
            f.msgs_per_s,
            f.mb_per_s,
            f.p50_us,
            f.p99_us,
            f.cpu_us_per_msg,
            f.peak_rss_kib
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

/// The table for the terminal and BENCHMARKS.md (GitHub markdown).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| workload | implementation | msgs/s | MB/s | p50 µs | p99 µs | CPU µs/msg | peak RSS MiB | ×raw-tcp | ×wsat |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let f = &r.figures;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {} | {} |",
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
        assert_eq!(lines[1], "1x20Bx1,wsat,40000,0.80,24.0,31.5,2.250,3072");
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
            t.contains("| 1x20Bx1 | wsat | 40000 | 0.8 | 24.0 | 31.5 | 2.25 | 3.0 | 0.80 | 1.00 |"),
            "{t}"
        );
        assert!(t.contains("| 1x1KiBx1 | wsat | 10 |"), "{t}");
        assert!(t.lines().nth(4).is_some_and(|l| l.ends_with("| - | 1.00 |")), "{t}");
    }
}
