//! Shared pieces of wsat-bench's end-to-end tests: bounded waits on child processes, and
//! the `wsat` binary that `--modem` drives.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Read;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// The exit code of `child` once it exits, failing the test after `bound`.
pub fn exit_within(child: &mut Child, bound: Duration) -> Option<i32> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exit code, stdout and stderr of `child` (both piped), failing the test after `bound`.
/// The pipes are drained while it runs, so a chatty child cannot stall on a full pipe.
pub fn output_within(child: &mut Child, bound: Duration) -> (Option<i32>, String, String) {
    fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).expect("read a pipe");
            text
        })
    }
    let out = drain(child.stdout.take().expect("stdout piped"));
    let err = drain(child.stderr.take().expect("stderr piped"));
    let code = exit_within(child, bound);
    (code, out.join().expect("stdout"), err.join().expect("stderr"))
}

/// The `wsat` binary of this build: `target/<profile>/wsat`, the parent of the `deps`
/// directory this test runs from. Cargo cannot name another package's binary to a test
/// (`CARGO_BIN_EXE_wsat` exists only in the `wsat` package's tests), so it is looked up
/// there; `cargo test --workspace` builds it, `cargo test -p wsat-bench` alone does not.
pub fn wsat_binary() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test executable");
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let wsat = profile_dir.join(format!("wsat{}", std::env::consts::EXE_SUFFIX));
    assert!(
        wsat.is_file(),
        "the `wsat` binary is not at {}: build it first with `cargo build -p wsat` (same profile as the \
         tests), or run `cargo test --workspace`, which builds it",
        wsat.display()
    );
    wsat
}
