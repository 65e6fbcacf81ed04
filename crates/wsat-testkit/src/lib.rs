//! wsat's one test kit: everything the tests (and the load tool's AT host) share, one
//! module per job.
//!
//! | module | what |
//! |---|---|
//! | [`peer`] | scripted TCP peers ([`peer::ScriptedPeer`]): read a request, accept the upgrade (returning what followed it), redirect, drain |
//! | [`frames`] | WebSocket frames: one builder (server or client), one reader |
//! | [`fault`] | the fault-injection server of the fault matrix ([`fault::FaultPeer`], docs/FAULTS.md) |
//! | [`events`] | the client library's events, awaited with a deadline |
//! | [`process`] | child processes: killed on drop, [`process::output_within`], [`process::exit_within`], `/proc` memory ([`process::rss_kib`], [`process::hwm_kib`]), binaries of the build |
//! | [`at_host`] | the host end of an AT port ([`at_host::AtClient`]): send a line, expect exact bytes with a deadline, read URCs as events |
//! | [`modem_process`] | `wsat modem` as a child process on a TCP or pty AT port ([`modem_process::ModemCommand`]) |
//! | [`data`] | deterministic payloads and junk |
//! | this crate's root | real peers: the seed examples' Python servers ([`SeedServer`]), generated PKI ([`TestPki`]), the skip gate, free ports, fuzz corpus replay |
//!
//! wsat is tested against peers it did not write: the seed document's two Python echo servers
//! (`ws-server.py`, `wss-server.py`, run by `scripts/seed_server.py` on `websockets==12.0`), the
//! firmware's PKI in the shared reference directory, and generated certificates. This crate finds
//! those peers, starts and stops them, and makes a missing peer either a loud failure (CI) or a
//! visible skip (a developer's quick `cargo test`).
//!
//! * Paths: [`workspace_root`], [`shared_dir`], [`python`].
//! * The skip gate: [`peer_or_skip`], [`shared_or_skip`], [`python_or_skip`], [`skip`].
//! * Ports and polling: [`free_port`], [`wait_until`].
//! * Peers: [`SeedServer`] (the seed examples' servers), [`TestPki`] (generated certificates).
//!
//! `scripts/test.sh` (the project's test command) creates `<root>/.venv` with the pinned peers
//! and exports `WSAT_PYTHON`, `WSAT_SHARED` and `WSAT_REQUIRE_PEERS=1`, so under it — and in CI —
//! no test can skip silently.
//!
//! Typical use:
//!
//! ```no_run
//! use wsat_testkit::{peer_or_skip, SeedServer};
//!
//! #[test]
//! fn echoes_through_the_seed_server() {
//!     if !peer_or_skip("echoes_through_the_seed_server") {
//!         return;
//!     }
//!     let server = SeedServer::ws();
//!     // connect wsat's client to server.uri() ...
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod at_host;
pub mod data;
pub mod events;
pub mod fault;
pub mod frames;
pub mod modem_process;
pub mod peer;
#[cfg(feature = "pki")]
mod pki;
pub mod process;
mod seed;

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(feature = "pki")]
pub use pki::{Credential, CredentialFiles, PkiFiles, TestPki};
pub use seed::{SeedKind, SeedServer, WssCerts};

/// Env var naming the peers venv's Python (set by `scripts/test.sh`).
pub const ENV_PYTHON: &str = "WSAT_PYTHON";
/// Env var naming the shared reference directory (set by `scripts/test.sh` when it exists).
pub const ENV_SHARED: &str = "WSAT_SHARED";
/// Env var that, when `1`, turns every missing peer into a test failure instead of a skip.
pub const ENV_REQUIRE_PEERS: &str = "WSAT_REQUIRE_PEERS";

/// The root of the Cargo workspace (the repository root), where `scripts/` and `.venv/` live.
///
/// Derived from this crate's manifest directory at compile time (`<root>/crates/wsat-testkit`),
/// so it is right whatever the test's working directory is.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .expect("wsat-testkit must live at <workspace>/crates/wsat-testkit");
    root.to_path_buf()
}

/// The shared, read-only reference directory (seed documents, firmware PKI), if present.
///
/// `$WSAT_SHARED` when set and a directory; otherwise `<root>/../shared` if it exists.
/// `None` means the tests that read it cannot run: gate them with [`shared_or_skip`].
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_SHARED).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    let dir = workspace_root().parent()?.join("shared");
    dir.is_dir().then_some(dir)
}

/// The Python interpreter of the peers venv (with `websockets==12.0` and `kosoku`), if present.
///
/// `$WSAT_PYTHON` when set and an existing file; otherwise `<root>/.venv/bin/python` if it
/// exists. `None` means the Python peers cannot run: gate them with [`python_or_skip`].
/// Run `scripts/test.sh` (or `scripts/venv.sh`) to create the venv.
pub fn python() -> Option<PathBuf> {
    if let Some(py) = std::env::var_os(ENV_PYTHON).filter(|v| !v.is_empty()) {
        let py = PathBuf::from(py);
        return py.is_file().then_some(py);
    }
    let py = workspace_root().join(".venv").join("bin").join("python");
    py.is_file().then_some(py)
}

/// Whether missing peers must fail tests (`WSAT_REQUIRE_PEERS=1`, as `scripts/test.sh` and CI set).
pub fn peers_required() -> bool {
    std::env::var(ENV_REQUIRE_PEERS).is_ok_and(|v| v.trim() == "1")
}

/// Report that `test` cannot run because of `reason`, in the way the environment demands.
///
/// With `WSAT_REQUIRE_PEERS=1` this panics (the test fails, telling to run `scripts/test.sh`),
/// so CI can never skip silently. Otherwise it prints `SKIPPED <test>: <reason>` to stderr
/// (uncaptured, so it shows in a plain `cargo test`) and returns; the caller should then return
/// early from the test.
pub fn skip(test: &str, reason: &str) {
    skip_as(peers_required(), test, reason);
}

/// [`skip`] with the requirement passed in (testable without touching process-wide env).
fn skip_as(required: bool, test: &str, reason: &str) {
    if required {
        panic!(
            "{test}: {reason}; {ENV_REQUIRE_PEERS}=1 forbids skipping. The peers come from \
             scripts/test.sh (it creates .venv and exports {ENV_PYTHON}) and from the shared \
             reference directory beside the repository (../shared, or {ENV_SHARED}); \
             unset {ENV_REQUIRE_PEERS} to skip locally."
        );
    }
    // Straight to the stderr handle, not eprintln!: libtest captures eprintln! output of passing
    // tests, and a skip must stay visible in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}

/// Why the Python peers venv is unavailable, or `None` when [`python`] finds it.
fn python_missing() -> Option<String> {
    if python().is_some() {
        return None;
    }
    Some(match std::env::var_os(ENV_PYTHON).filter(|v| !v.is_empty()) {
        Some(v) => format!("{ENV_PYTHON}={} does not exist", Path::new(&v).display()),
        None => format!(
            "the peers venv {} is absent ({ENV_PYTHON} unset)",
            workspace_root().join(".venv").display()
        ),
    })
}

/// Why the shared directory is unavailable, or `None` when [`shared_dir`] finds it.
fn shared_missing() -> Option<String> {
    if shared_dir().is_some() {
        return None;
    }
    Some(match std::env::var_os(ENV_SHARED).filter(|v| !v.is_empty()) {
        Some(v) => format!("{ENV_SHARED}={} is not a directory", Path::new(&v).display()),
        None => format!("../shared not found ({ENV_SHARED} unset)"),
    })
}

/// Gate for tests that need the Python peers *and* the shared directory (e.g. a [`SeedServer`]).
///
/// Returns `true` when both are there. Otherwise calls [`skip`] — which panics under
/// `WSAT_REQUIRE_PEERS=1` — and returns `false`; the test should then `return`.
pub fn peer_or_skip(test: &str) -> bool {
    let missing: Vec<String> = [python_missing(), shared_missing()].into_iter().flatten().collect();
    if missing.is_empty() {
        return true;
    }
    skip(test, &missing.join("; "));
    false
}

/// Gate for tests that only read the shared directory (firmware PKI, seed documents).
///
/// `Some(dir)` when present; otherwise [`skip`]s (panicking under `WSAT_REQUIRE_PEERS=1`) and
/// returns `None`.
pub fn shared_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(reason) = shared_missing() {
        skip(test, &reason);
        return None;
    }
    shared_dir()
}

/// Gate for tests that only need the peers venv's Python (e.g. a Python test client).
///
/// `Some(python)` when present; otherwise [`skip`]s (panicking under `WSAT_REQUIRE_PEERS=1`) and
/// returns `None`.
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(reason) = python_missing() {
        skip(test, &reason);
        return None;
    }
    python()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, drop the listener).
///
/// There is a small race until the peer binds it; [`SeedServer`] retries on "address in use".
/// Prefer binding port 0 directly when the code under test can report its port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("cannot bind 127.0.0.1:0 to find a free port (is loopback up?)");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
        .port()
}

/// Waits until `f` holds (polling every 10 ms), failing the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `body` on every checked-in fuzz input of `target`: `fuzz/corpus/<target>/` (must
/// exist and hold files) and `fuzz/regressions/<target>/` (fixed crashes, optional), so that
/// `cargo test` on stable re-checks what the cargo-fuzz targets found. Returns how many ran;
/// a failing input is named before its panic is passed on.
pub fn replay_fuzz_inputs(target: &str, body: fn(&[u8])) -> usize {
    let fuzz = workspace_root().join("fuzz");
    let mut count = 0;
    for (kind, required) in [("corpus", true), ("regressions", false)] {
        let dir = fuzz.join(kind).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if required => panic!("{}: {e}", dir.display()),
            Err(_) => continue,
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
        files.sort();
        assert!(!required || !files.is_empty(), "{} is empty", dir.display());
        for file in files {
            let data = std::fs::read(&file).expect("readable input");
            if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
                eprintln!("failing input: {}", file.display());
                std::panic::resume_unwind(panic);
            }
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_scripts() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
        assert!(root.join("scripts").join("seed_server.py").is_file());
    }

    #[test]
    #[should_panic(expected = "WSAT_REQUIRE_PEERS=1 forbids skipping")]
    fn skip_panics_when_peers_are_required() {
        skip_as(true, "some_test", "the peer is absent");
    }

    #[test]
    fn skip_returns_when_peers_are_optional() {
        skip_as(
            false,
            "(testkit self-test: this is what a skip looks like)",
            "the peer is absent",
        );
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the free port can be bound");
    }

    #[test]
    fn shared_dir_has_the_seed_when_present() {
        let Some(shared) = shared_or_skip("shared_dir_has_the_seed_when_present") else {
            return;
        };
        let seeds = std::fs::read_dir(shared.join("seeds")).expect("shared/seeds is readable");
        assert!(seeds
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("001_")));
    }

    #[test]
    fn python_when_present_runs() {
        let Some(py) = python_or_skip("python_when_present_runs") else {
            return;
        };
        let out = std::process::Command::new(&py)
            .args(["-c", "import websockets; print(websockets.__version__)"])
            .output()
            .expect("the peers venv python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "12.0");
    }
}
