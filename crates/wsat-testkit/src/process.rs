//! Child processes under test: killed on drop, waited on with a bound, measured from
//! `/proc/<pid>/status`, and found in the build's target directory.

use std::fmt::Display;
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process, killed and reaped on drop (so a failing test leaves no process behind).
#[derive(Debug)]
pub struct Killed(pub Child);

impl Deref for Killed {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exit code of `child` once it exits (`None` if a signal ended it). After `bound` the
/// child is killed and the test fails.
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

/// The exit code and the whole stdout and stderr (both must be piped) of `child` once it
/// exits, failing the test after `bound` (see [`exit_within`]). The pipes are drained while
/// it runs, so a chatty child cannot block on a full pipe.
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

/// A `kB` field of `/proc/<pid>/status` (e.g. `"VmRSS:"`), `pid` a number or `"self"`;
/// `None` if the process is gone or has no such field.
pub fn status_kib(pid: impl Display, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resident set size of process `pid` now, KiB (`VmRSS`); panics if it cannot be read.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:").unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Peak resident set size of process `pid` since it started, KiB (`VmHWM`); panics if it
/// cannot be read. The peak catches growth between two samples of [`rss_kib`].
pub fn hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:").unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// A binary of this build, `target/<profile>/<name>`: the parent of the `deps` directory the
/// running test executable is in. Cargo names another package's binary to no test
/// (`CARGO_BIN_EXE_<name>` exists only in the tests of the binary's own package), so it is
/// looked up there; `cargo test --workspace` builds it, `cargo test -p <other package>` alone
/// does not, and the panic says so.
pub fn target_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test executable");
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the `{name}` binary is not at {}: build it first with `cargo build -p {name}` (same profile as \
         the tests), or run `cargo test --workspace`, which builds it",
        binary.display()
    );
    binary
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn this_process_has_a_resident_set() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        assert!(hwm_kib(me) >= rss_kib(me) / 2);
        assert!(status_kib("self", "VmRSS:").is_some_and(|kib| kib > 0));
        assert_eq!(status_kib(me, "NoSuchField:"), None);
    }

    #[test]
    fn output_within_collects_both_pipes() {
        let mut child = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        let (code, out, err) = output_within(&mut child, Duration::from_secs(10));
        assert_eq!((code, out.as_str(), err.as_str()), (Some(3), "out\n", "err\n"));
    }

    #[test]
    #[should_panic(expected = "did not exit within")]
    fn exit_within_fails_a_child_that_hangs() {
        let mut child = Killed(Command::new("sleep").arg("30").spawn().expect("sleep"));
        exit_within(&mut child, Duration::from_millis(100));
    }
}
