//! `wsat-bench --modem` end to end: a tiny run (one round, 20 ms + 100 ms per measurement)
//! through a real echo server and real `wsat modem` processes on both AT ports, checked for
//! its tables and non-zero figures. Speed is never asserted: only that figures exist.
//!
//! The modem is the `wsat` binary of the same build, which wsat-bench finds next to its own
//! executable (`target/<profile>/`): `cargo test --workspace` builds it; with
//! `cargo test -p wsat-bench` alone, `cargo build -p wsat` first.

use std::process::{Command, Stdio};
use std::time::Duration;

use wsat_testkit::process::output_within;

/// The numeric cells of the table rows that start with `| {transport} |`.
fn rows<'a>(table: &'a str, transport: &str) -> Vec<Vec<&'a str>> {
    table
        .lines()
        .filter(|l| l.starts_with(&format!("| {transport} |")))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

fn positive(cell: &str, line: &[&str]) {
    let v: f64 = cell
        .parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a number in {line:?}"));
    assert!(
        v > 0.0 && v.is_finite(),
        "{cell:?} is not a positive figure in {line:?}"
    );
}

#[test]
fn a_tiny_modem_bench_prints_both_tables_with_figures() {
    // Fails with a clear message if the `wsat` binary has not been built.
    wsat_testkit::process::target_binary("wsat");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsat-bench"))
        // The default: `wsat` next to wsat-bench, the same build.
        .env_remove("WSAT_BIN")
        .args(["--modem", "--rounds", "1", "--warmup-ms", "20", "--measure-ms", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wsat-bench");
    let (code, out, err) = output_within(&mut child, Duration::from_secs(60));
    assert_eq!(code, Some(0), "--- stdout ---\n{out}\n--- stderr ---\n{err}");
    assert!(
        out.contains("| transport | payload | round trips/s | p50 µs | p99 µs | modem CPU µs/rt |"),
        "{out}"
    );
    assert!(
        out.contains("| transport | links | message | msgs/s | bytes/s | MB/s |"),
        "{out}"
    );
    for transport in ["tcp", "pty"] {
        let rows = rows(&out, transport);
        let round_trips: Vec<_> = rows.iter().filter(|r| r.len() == 6).collect();
        let throughput: Vec<_> = rows.iter().filter(|r| r.len() == 9).collect();
        let sizes: Vec<&str> = round_trips.iter().map(|r| r[1]).collect();
        assert_eq!(sizes, ["20B", "1KiB", "4KiB"], "{transport}:\n{out}");
        for r in &round_trips {
            // round trips/s, p50, p99 (the modem's CPU time may round to 0 on 100 ms).
            for cell in &r[2..5] {
                positive(cell, r);
            }
        }
        assert_eq!(throughput.len(), 1, "{transport}:\n{out}");
        let r = throughput[0];
        assert_eq!((r[1], r[2]), ("3", "4KiB"), "{out}");
        // msgs/s, bytes/s, MB/s, VmRSS, VmHWM.
        for i in [3, 4, 5, 7, 8] {
            positive(r[i], r);
        }
    }
}

#[test]
fn modem_and_svg_do_not_go_together() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsat-bench"))
        .args(["--modem", "--svg", "x.svg"])
        .output()
        .expect("run wsat-bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--svg"), "{err}");
}

#[test]
fn a_missing_wsat_binary_is_a_clear_error_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-wsat-here");
    for how in ["flag", "env"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsat-bench"));
        cmd.args(["--modem", "--rounds", "1", "--no-pin"])
            .env_remove("WSAT_BIN");
        if how == "flag" {
            cmd.arg("--wsat-bin").arg(&missing);
        } else {
            cmd.env("WSAT_BIN", &missing);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run wsat-bench");
        let (code, out, err) = output_within(&mut child, Duration::from_secs(10));
        assert_eq!(code, Some(1), "{how}: --- stdout ---\n{out}\n--- stderr ---\n{err}");
        assert!(err.contains("--modem needs the `wsat` binary"), "{how}: {err}");
        assert!(err.contains(&missing.display().to_string()), "{how}: {err}");
        assert!(err.contains("cargo build --release -p wsat"), "{how}: {err}");
        // Refused before the echo server was started.
        assert!(!err.contains("echo server pid"), "{how}: {err}");
    }
}
