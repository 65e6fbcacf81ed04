//! `wsat-bench` end to end: tiny runs (one round, 30 ms + 200 ms per measurement) against
//! the real echo server, checked for their CSV, table and chart. Speed is never asserted:
//! only that figures exist, that every implementation's echoes were counted (and, on JSON
//! workloads, compared with what was sent), and that compression moved fewer bytes.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wsat_testkit::process::exit_within;

const IMPLEMENTATIONS: [&str; 8] = [
    "wsat",
    "wsat+deflate",
    "wsat-stream",
    "wsat-stream+deflate",
    "tokio-tungstenite",
    "fastwebsockets",
    "raw-tcp",
    "raw-tcp-batched",
];
const WORKLOADS: [&str; 3] = ["1x20Bx1", "2x1KiBx4", "2xjson-1KiBx4"];
const HEADER: &str =
    "workload,implementation,msgs_per_s,mb_per_s,p50_us,p99_us,cpu_us_per_msg,peak_rss_kib,wire_bytes_per_msg";

/// Whether `implementation` has a row on `workload`: compressing ones on JSON only.
fn runs_on(implementation: &str, workload: &str) -> bool {
    !implementation.ends_with("+deflate") || workload.contains("json-")
}

/// Runs wsat-bench with `args` plus one quick round, writing the CSV to `csv`; its stdout.
fn bench(args: &[&str], csv: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsat-bench"))
        .args(["--rounds", "1", "--warmup-ms", "30", "--measure-ms", "200"])
        .args(args)
        .arg("--csv")
        .arg(csv)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wsat-bench");
    let code = exit_within(&mut child, Duration::from_secs(180));
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert_eq!(code, Some(0), "--- stdout ---\n{out}\n--- stderr ---\n{err}");
    out
}

/// The CSV's rows (header checked), each split into its cells.
fn rows(csv: &str) -> Vec<Vec<String>> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(HEADER));
    lines.map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

fn cell(rows: &[Vec<String>], workload: &str, implementation: &str, i: usize) -> f64 {
    let row = rows
        .iter()
        .find(|r| r[0] == workload && r[1] == implementation)
        .unwrap_or_else(|| panic!("no row for {workload} {implementation}: {rows:?}"));
    row[i].parse().unwrap_or_else(|_| panic!("{row:?}"))
}

#[test]
fn a_tiny_bench_writes_csv_table_and_chart_for_every_implementation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bench.csv");
    let svg = dir.path().join("bench.svg");
    let workloads = WORKLOADS.join(",");
    let out = bench(&["--workloads", &workloads], &csv, &["--svg".as_ref(), svg.as_os_str()]);
    let text = std::fs::read_to_string(&csv).expect("the CSV");
    let rows = rows(&text);
    let mut expected = 0;
    for workload in WORKLOADS {
        for implementation in IMPLEMENTATIONS {
            let has = rows.iter().any(|r| r[0] == workload && r[1] == implementation);
            assert_eq!(
                has,
                runs_on(implementation, workload),
                "{workload} {implementation}:\n{text}"
            );
            if !has {
                continue;
            }
            expected += 1;
            // msgs/s, MB/s, p50, p99, peak RSS and wire bytes (CPU per message may round to 0).
            for i in [2, 3, 4, 5, 7, 8] {
                let v = cell(&rows, workload, implementation, i);
                assert!(
                    v > 0.0 && v.is_finite(),
                    "cell {i} of {workload} {implementation}:\n{text}"
                );
            }
            assert!(
                out.contains(&format!("| {workload} | {implementation} |")),
                "no table line for {workload} {implementation}:\n{out}"
            );
        }
    }
    assert_eq!(rows.len(), expected, "{text}");
    // The 20-byte echo: a client frame of 2 + 4 (mask) + 20 bytes, the server's of 2 + 20:
    // 48 on the wire per message for every WebSocket client, 40 for raw TCP.
    for (implementation, bytes) in [
        ("wsat", 48.0),
        ("wsat-stream", 48.0),
        ("fastwebsockets", 48.0),
        ("raw-tcp", 40.0),
    ] {
        let wire = cell(&rows, "1x20Bx1", implementation, 8);
        assert!(
            (wire - bytes).abs() < 1.0,
            "{implementation}: {wire} bytes per message, not {bytes}"
        );
    }
    let chart = std::fs::read_to_string(&svg).expect("the chart");
    assert!(chart.starts_with("<svg"), "{chart:.200}");
    for implementation in IMPLEMENTATIONS {
        assert!(chart.contains(implementation), "no legend entry for {implementation}");
    }
}

#[test]
fn the_deflate_rows_move_fewer_bytes_than_the_uncompressed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("deflate.csv");
    let workload = "1xjson-1KiBx2";
    let out = bench(
        &[
            "--workloads",
            workload,
            "--impls",
            "wsat,wsat+deflate,wsat-stream,wsat-stream+deflate",
        ],
        &csv,
        &[],
    );
    let rows = rows(&std::fs::read_to_string(&csv).expect("the CSV"));
    assert_eq!(rows.len(), 4, "{rows:?}");
    for plain in ["wsat", "wsat-stream"] {
        let deflated = format!("{plain}+deflate");
        let (off, on) = (cell(&rows, workload, plain, 8), cell(&rows, workload, &deflated, 8));
        // Uncompressed: 1024 + 2 + 2 (length) + 4 (mask) out, 1024 + 4 back.
        assert!((off - 2060.0).abs() < 1.0, "{plain}: {off} bytes per message\n{out}");
        assert!(
            on > 0.0 && on < off * 0.8,
            "{deflated}: {on} bytes per message against {off} uncompressed\n{out}"
        );
        assert!(cell(&rows, workload, &deflated, 2) > 0.0, "{out}");
    }
}
