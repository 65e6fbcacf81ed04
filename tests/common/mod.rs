//! Shared pieces of the end-to-end tests: event collection with deadlines, small scripted
//! peers for the fault cases real servers do not produce on demand, and the `wsat` binary's
//! echo server as a child process.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use wsat_client::{Event, Events};

/// How long any single expected event may take before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// The next event, failing the test after [`STEP`].
pub async fn next(events: &mut Events) -> Event {
    match tokio::time::timeout(STEP, events.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("event stream ended"),
        Err(_) => panic!("no event within {STEP:?}"),
    }
}

/// Events until one matches `stop` (included), failing after [`STEP`] per event.
pub async fn until(events: &mut Events, stop: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let ev = next(events).await;
        let done = stop(&ev);
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

/// A scripted TCP peer on 127.0.0.1: `handler` runs for each accepted connection.
pub async fn scripted_peer<F, Fut>(handler: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        let handler = std::sync::Arc::new(handler);
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            // Reap finished connections, so a long test does not accumulate them.
            while conns.try_join_next().is_some() {}
            conns.spawn(handler(tcp));
        }
    });
    (addr, task)
}

/// Reads an upgrade request and answers 101; returns bytes that followed the request.
pub async fn accept_upgrade(tcp: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(req)) = wsat_proto::handshake::parse_request(&buf) {
            let resp = wsat_proto::handshake::accept_response(&req.key, None);
            tcp.write_all(&resp).await.expect("write 101");
            return buf.split_off(req.head_len);
        }
        let n = tcp.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "client left during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the peer closes, discarding everything.
pub async fn drain(tcp: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// A child process, killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `wsat` binary under test.
pub fn wsat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsat"))
}

/// Starts `wsat echo-server EXTRA…` on a free port (its stderr to `stderr`) and returns it
/// once it listens.
pub fn echo_server(extra: &[&str], stderr: Stdio) -> (Killed, u16) {
    let port = wsat_testkit::free_port();
    let child = wsat()
        .args(["echo-server", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stderr(stderr)
        .spawn()
        .expect("spawn echo-server");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "echo-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// The exit code and the whole stdout and stderr (both piped) of `child` once it exits,
/// failing the test after `bound`. The pipes are drained while it runs, so a chatty child
/// cannot block on a full pipe.
pub fn output_within(child: &mut Child, bound: Duration) -> (Option<i32>, String, String) {
    fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
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

/// The exit code of `child` once it exits, failing the test after `bound`.
pub fn exit_within(child: &mut Child, bound: Duration) -> Option<i32> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident set size of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
