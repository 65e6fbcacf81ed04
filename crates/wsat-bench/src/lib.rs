//! `wsat-bench`: the same echo workloads through wsat-client, tokio-tungstenite,
//! fastwebsockets and plain TCP against one echo server, each measurement in a fresh client
//! process, server and client pinned to different cores (see BENCHMARKS.md); with
//! `--modem`, the figures of `wsat modem` driven through its TCP and pty AT ports instead.
//!
//! A crate of its own so that the peers it compares wsat with (and its chart) are
//! dependencies of this tool only, never of the `wsat` binary or the libraries. The server
//! and the clients are this executable (`--serve`, `--client`); the modem is the `wsat`
//! binary, found next to this one or given with `--wsat-bin` / `WSAT_BIN`
//! ([`locate_wsat`]).

#![forbid(unsafe_code)]

pub mod chart;
pub mod load;
pub mod modem;
pub mod orchestrate;
pub mod report;
pub mod server;
pub mod stats;
pub mod sys;
pub mod workload;

use std::path::{Path, PathBuf};

/// The environment variable that names the `wsat` binary `--modem` drives.
pub const WSAT_BIN_ENV: &str = "WSAT_BIN";

/// The `wsat` binary that `--modem` starts as `wsat modem`: `explicit` (from `--wsat-bin`
/// or [`WSAT_BIN_ENV`]) if given, else `wsat` in the directory of `bench_exe` (cargo puts
/// both binaries of the workspace in `target/<profile>/`). Either must be an existing file;
/// the error says where it looked and how to build or name it.
pub fn locate_wsat(explicit: Option<&Path>, bench_exe: &Path) -> anyhow::Result<PathBuf> {
    let (path, origin) = match explicit {
        Some(p) => (p.to_path_buf(), format!("given with --wsat-bin / {WSAT_BIN_ENV}")),
        None => {
            let dir = bench_exe.parent().unwrap_or_else(|| Path::new("."));
            (
                dir.join(format!("wsat{}", std::env::consts::EXE_SUFFIX)),
                format!("next to {}", bench_exe.display()),
            )
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        anyhow::bail!(
            "--modem needs the `wsat` binary, and there is none at {} ({origin}): build it in the same \
             profile (`cargo build --release -p wsat` beside `cargo run --release -p wsat-bench`), or name \
             it with --wsat-bin PATH or {WSAT_BIN_ENV}=PATH",
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsat_is_found_next_to_the_bench_or_where_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bench = dir.path().join("wsat-bench");
        let err = format!("{:#}", locate_wsat(None, &bench).unwrap_err());
        assert!(err.contains("--modem needs the `wsat` binary"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("cargo build --release -p wsat"), "{err}");
        let wsat = dir.path().join(format!("wsat{}", std::env::consts::EXE_SUFFIX));
        std::fs::write(&wsat, b"").expect("a file");
        assert_eq!(locate_wsat(None, &bench).expect("the sibling"), wsat);
        let named = dir.path().join("elsewhere");
        let err = format!("{:#}", locate_wsat(Some(&named), &bench).unwrap_err());
        assert!(err.contains("elsewhere") && err.contains(WSAT_BIN_ENV), "{err}");
        std::fs::write(&named, b"").expect("a file");
        assert_eq!(locate_wsat(Some(&named), &bench).expect("the named one"), named);
    }
}
