//! `wsat-bench` end to end: a tiny run (one round, 30 ms + 200 ms per measurement) of two
//! workloads through every implementation against the real echo server, checked for its
//! CSV, its table and its chart. Speed is never asserted: only that figures exist and that
//! every implementation's echoes were counted.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use wsat_testkit::process::exit_within;

const IMPLEMENTATIONS: [&str; 5] = [
    "wsat",
    "tokio-tungstenite",
    "fastwebsockets",
    "raw-tcp",
    "raw-tcp-batched",
];
const WORKLOADS: [&str; 2] = ["1x20Bx1", "2x1KiBx4"];

#[test]
fn a_tiny_bench_writes_csv_table_and_chart_for_every_implementation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bench.csv");
    let svg = dir.path().join("bench.svg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsat-bench"))
        .args(["--rounds", "1", "--warmup-ms", "30", "--measure-ms", "200"])
        .args(["--workloads", &WORKLOADS.join(",")])
        .arg("--csv")
        .arg(&csv)
        .arg("--svg")
        .arg(&svg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wsat-bench");
    let code = exit_within(&mut child, Duration::from_secs(120));
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

    let csv = std::fs::read_to_string(&csv).expect("the CSV");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("workload,implementation,msgs_per_s,mb_per_s,p50_us,p99_us,cpu_us_per_msg,peak_rss_kib")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for workload in WORKLOADS {
        for implementation in IMPLEMENTATIONS {
            let row = rows
                .iter()
                .find(|r| r[0] == workload && r[1] == implementation)
                .unwrap_or_else(|| panic!("no row for {workload} {implementation}:\n{csv}"));
            // msgs/s, MB/s, p50, p99 and peak RSS (CPU per message may round to 0).
            for i in [2, 3, 4, 5, 7] {
                let v: f64 = row[i].parse().unwrap_or_else(|_| panic!("{row:?}"));
                assert!(v > 0.0 && v.is_finite(), "cell {i} of {row:?}");
            }
            assert!(
                out.contains(&format!("| {workload} | {implementation} |")),
                "no table line for {workload} {implementation}:\n{out}"
            );
        }
    }
    assert_eq!(rows.len(), WORKLOADS.len() * IMPLEMENTATIONS.len(), "{csv}");
    let chart = std::fs::read_to_string(&svg).expect("the chart");
    assert!(chart.starts_with("<svg"), "{chart:.200}");
    for implementation in IMPLEMENTATIONS {
        assert!(chart.contains(implementation), "no legend entry for {implementation}");
    }
}
