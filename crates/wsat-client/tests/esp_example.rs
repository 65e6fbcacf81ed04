//! The ESP example app, both shapes (`examples/esp_example.rs` on `Client`,
//! `examples/esp_example_stream.rs` on `WebSocket`), run as processes against an in-test
//! echo server; the test reads their logs as the anchor's pytest reads the device's
//! (docs/ESP-CLIENT.md §5.2 `test_echo`, `test_close`).
//!
//! How the example binaries are found: cargo gives integration tests the paths of the
//! package's *binaries* (`CARGO_BIN_EXE_<name>`) but not of its examples, and
//! `cargo test --test esp_example` does not build the examples at all. So the test builds
//! them itself, once, with the cargo that runs it (`env!("CARGO")`): `cargo build
//! --example … --message-format=json` for the profile and target directory the test runs
//! from, and takes each binary's path from cargo's `compiler-artifact` message. Cargo
//! holds no lock while tests run; run without the variables cargo sets for the test
//! process, the build shares the test's artifacts and is a no-op when the examples are
//! fresh (`cargo test --workspace` has built them already); and the path is the one cargo
//! reports, so neither a stale binary nor a guessed `target/<profile>/examples/` layout
//! can be run. The build has a generous bound (it may compile on a busy machine); each run
//! of an example has its own, short one. (`cargo run --example` from the test would do
//! both in one step, but then one bound would cover compiling and running.)

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsat_proto::{Connection, ConnectionConfig, ConnectionState, Event, OpCode, Role};
use wsat_testkit::peer::{accept_upgrade, ScriptedPeer};
use wsat_testkit::process::output_within;

const EXAMPLES: [&str; 2] = ["esp_example", "esp_example_stream"];
/// The variables (or prefixes) cargo sets for a test process, besides `CARGO`.
const CARGO_TEST_VARS: [&str; 6] = [
    "CARGO_PKG_",
    "CARGO_BIN_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
];
/// The bound on building the examples (a no-op when they are fresh).
const BUILD_BOUND: Duration = Duration::from_secs(600);
/// The bound on one run of an example: a few hundred milliseconds of work.
const RUN_BOUND: Duration = Duration::from_secs(30);
/// What the examples are told: 3 messages, 50 ms apart, close after 1 s without data.
const FAST: [&str; 6] = ["--count", "3", "--interval-ms", "50", "--no-data-timeout-ms", "1000"];

/// The example's binary, built on first use (both examples in one cargo run).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(build_examples);
    built
        .get(name)
        .unwrap_or_else(|| panic!("cargo reported no executable for the example {name}: {built:?}"))
        .clone()
}

fn build_examples() -> HashMap<String, PathBuf> {
    let mut cargo = Command::new(env!("CARGO"));
    // Without the variables cargo sets for this test process: a build script that watches
    // one of them (ring's watches CARGO_MANIFEST_DIR) would otherwise rerun here, and again
    // in the next `cargo test`, each rebuilding what the other built.
    for (name, _) in std::env::vars_os() {
        if CARGO_TEST_VARS.iter().any(|v| name.to_string_lossy().starts_with(v)) {
            cargo.env_remove(name);
        }
    }
    cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--package",
        "wsat-client",
        "--message-format=json-render-diagnostics",
    ]);
    for name in EXAMPLES {
        cargo.args(["--example", name]);
    }
    // The profile and target directory of this test: <target dir>/<profile dir>/deps/<test>.
    let exe = std::env::current_exe().expect("the test executable");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
        None => {}
    }
    // Cargo marks the root of a target directory with CACHEDIR.TAG (a `--target <triple>`
    // build has one more level; then cargo's default applies).
    if let Some(target_dir) = profile_dir.parent().filter(|d| d.join("CACHEDIR.TAG").is_file()) {
        cargo.arg("--target-dir").arg(target_dir);
    }
    let mut child = cargo
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo");
    let (code, out, err) = output_within(&mut child, BUILD_BOUND);
    assert_eq!(code, Some(0), "building the examples failed:\n{err}");
    out.lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(r#""kind":["example"]"#))
        .filter_map(|l| Some((json_string(l, "name")?, PathBuf::from(json_string(l, "executable")?))))
        .collect()
}

/// The first string value of `"key":` in one line of cargo's JSON (its target's name comes
/// before any other `name`), with `\"` and `\\` unescaped.
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
}

/// What the echo server saw on one connection.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    texts: Vec<String>,
    close_code: Option<u16>,
}

/// An echo server on wsat-proto's server role: echoes every data frame as it came, answers
/// pings and the close (with the client's code), and closes TCP after the closing
/// handshake; records what each connection sent.
fn echo_server() -> (ScriptedPeer, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let record = record.clone();
        async move {
            let request = accept_upgrade(&mut tcp).await;
            let slot = {
                let mut all = record.lock().unwrap();
                all.push(Seen::default());
                all.len() - 1
            };
            serve_echo(tcp, &request.after, |update: &dyn Fn(&mut Seen)| {
                update(&mut record.lock().unwrap()[slot])
            })
            .await;
        }
    });
    (peer, seen)
}

async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, leftover: &[u8], seen: impl Fn(&dyn Fn(&mut Seen))) {
    let mut conn = Connection::new(ConnectionConfig::rfc(Role::Server), Instant::now());
    conn.handle_bytes(leftover, Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Data(d) if d.opcode.is_data() => {
                    if d.opcode == OpCode::TEXT {
                        seen(&|s| s.texts.push(String::from_utf8_lossy(&d.data).into_owned()));
                    }
                    let _ = conn.send_frame(d.opcode, d.fin, &d.data);
                }
                Event::CloseReceived(frame) => {
                    let code = frame.map(|f| f.code);
                    seen(&|s| s.close_code = code);
                }
                _ => {}
            }
        }
        while let Some(out) = conn.poll_transmit() {
            if io.write_all(&out).await.is_err() {
                return;
            }
        }
        if matches!(conn.state(), ConnectionState::Closed | ConnectionState::Failed) {
            let _ = io.shutdown().await;
            return;
        }
        match io.read(&mut buf).await {
            Ok(n) if n > 0 => conn.handle_bytes(&buf[..n], Instant::now()),
            _ => return,
        }
    }
}

/// `uri` and [`FAST`].
fn with_fast(uri: &str) -> Vec<&str> {
    [&[uri][..], &FAST[..]].concat()
}

/// Runs `example` with `args` (and `stdin` written to its input); returns its log
/// messages after checking the exit status, the silent stderr and the ESP log format
/// `<I|W|E> (<ms>) WEBSOCKET: <message>` of every line.
fn run(example_name: &str, args: &[&str], stdin: Option<&str>) -> (Option<i32>, Vec<String>) {
    let mut child = Command::new(example(example_name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {example_name}: {e}"));
    let mut input = child.stdin.take().expect("stdin piped");
    if let Some(line) = stdin {
        input.write_all(line.as_bytes()).expect("write stdin");
    }
    drop(input);
    let (code, out, err) = output_within(&mut child, RUN_BOUND);
    assert!(err.is_empty(), "{example_name} wrote to stderr:\n{err}\nstdout:\n{out}");
    let messages = out
        .lines()
        .map(|line| log_message(line).unwrap_or_else(|| panic!("{example_name}: not an ESP log line: {line:?}\n{out}")))
        .collect();
    (code, messages)
}

/// The message of `I (123) WEBSOCKET: message`.
fn log_message(line: &str) -> Option<String> {
    let (level, rest) = line.split_at_checked(1)?;
    let rest = rest.strip_prefix(" (")?;
    let (ms, rest) = rest.split_once(") WEBSOCKET: ")?;
    (matches!(level, "I" | "W" | "E") && !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.to_string())
}

/// Where `wanted` is in `log` (the first time at or after `from`), or a failure that shows
/// the log.
fn position(log: &[String], wanted: &str, from: usize) -> usize {
    log.iter()
        .skip(from)
        .position(|m| m == wanted)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no {wanted:?} at or after line {from} of the log:\n{}", log.join("\n")))
}

/// The log of a session that connected, sent `hello 0000`..`hello 0002`, got each back as
/// one DATA event and closed cleanly with 1000; `events` when the example reports the
/// `Client`'s extra events (BEFORE_CONNECT, FINISH).
fn assert_echo_session(log: &[String], events: bool) {
    let show = || log.join("\n");
    for bad in ["WEBSOCKET_EVENT_ERROR", "WEBSOCKET_EVENT_DISCONNECTED"] {
        assert!(!log.iter().any(|m| m == bad), "{bad} in the log:\n{}", show());
    }
    let connected = position(log, "WEBSOCKET_EVENT_CONNECTED", 0);
    if events {
        let before = log
            .iter()
            .position(|m| m.starts_with("WEBSOCKET_EVENT_BEFORE_CONNECT ("));
        assert!(before.is_some_and(|b| b < connected), "{}", show());
    }
    let sends: Vec<&String> = log.iter().filter(|m| m.starts_with("Sending ")).collect();
    assert_eq!(
        sends,
        ["Sending hello 0000", "Sending hello 0001", "Sending hello 0002"],
        "{}",
        show()
    );
    let echoes: Vec<&String> = log.iter().filter(|m| m.starts_with("Received=hello")).collect();
    assert_eq!(echoes.len(), 3, "three echoes:\n{}", show());
    let mut after = connected;
    for i in 0..3 {
        let sent = position(log, &format!("Sending hello {i:04}"), connected);
        let echo = position(log, &format!("Received=hello {i:04}"), sent);
        assert!(echo > after, "echo {i} out of order:\n{}", show());
        after = echo;
        // One DATA event, whole: the ESP example's four lines.
        assert_eq!(
            log[echo - 2..=echo + 1],
            [
                "WEBSOCKET_EVENT_DATA".to_string(),
                "Received opcode=1".into(),
                format!("Received=hello {i:04}"),
                "Total payload length=10, data_len=10, current payload offset=0".into(),
            ],
            "{}",
            show()
        );
    }
    // The clean close: the server's close frame as a DATA event, CLOSED with its code.
    let shutdown = position(log, "No data received for 1000 ms, signaling shutdown", after);
    let close_frame = position(log, "Received closed message with code=1000", shutdown);
    assert_eq!(log[close_frame - 1], "Received opcode=8", "{}", show());
    let closed = position(log, "WEBSOCKET_EVENT_CLOSED", close_frame);
    assert_eq!(log[closed + 1], r#"Close status code=1000, reason="""#, "{}", show());
    if events {
        position(log, "WEBSOCKET_EVENT_FINISH", closed);
    }
    assert_eq!(log.last().map(String::as_str), Some("Websocket Stopped"), "{}", show());
}

/// What the server must have seen: the three texts and a close with 1000.
fn assert_server_saw_the_session(seen: &Mutex<Vec<Seen>>) {
    let seen = seen.lock().unwrap().clone();
    let expected = Seen {
        texts: vec!["hello 0000".into(), "hello 0001".into(), "hello 0002".into()],
        close_code: Some(1000),
    };
    assert_eq!(seen, [expected], "one connection, three texts, a close with 1000");
}

#[test]
fn the_client_example_echoes_three_hellos_and_closes_cleanly() {
    let (server, seen) = echo_server();
    let uri = server.uri();
    let (code, log) = run("esp_example", &with_fast(&uri), None);
    assert_eq!(code, Some(0), "exit status; log:\n{}", log.join("\n"));
    assert_eq!(log[0], format!("Connecting to {uri}..."));
    assert_echo_session(&log, true);
    assert_server_saw_the_session(&seen);
}

#[test]
fn the_websocket_example_echoes_three_hellos_and_closes_cleanly() {
    let (server, seen) = echo_server();
    let uri = server.uri();
    let (code, log) = run("esp_example_stream", &with_fast(&uri), None);
    assert_eq!(code, Some(0), "exit status; log:\n{}", log.join("\n"));
    assert_eq!(log[0], format!("Connecting to {uri}..."));
    assert_echo_session(&log, false);
    assert_server_saw_the_session(&seen);
}

#[test]
fn both_examples_read_the_uri_from_stdin_as_the_esp_example_does() {
    for name in EXAMPLES {
        let (server, seen) = echo_server();
        let uri = server.uri();
        let (code, log) = run(name, &FAST, Some(&format!("{uri}\n")));
        assert_eq!(code, Some(0), "{name}: exit status; log:\n{}", log.join("\n"));
        assert_eq!(
            log[..3],
            [
                "Please enter uri of websocket endpoint".to_string(),
                format!("Endpoint uri: {uri}"),
                format!("Connecting to {uri}..."),
            ],
            "{name}"
        );
        assert_echo_session(&log, name == "esp_example");
        assert_server_saw_the_session(&seen);
    }
}

#[test]
fn the_websocket_example_reports_a_refused_connect_and_fails() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, log) = run("esp_example_stream", &[&format!("ws://127.0.0.1:{port}")[..]], None);
    assert_eq!(code, Some(1), "exit status; log:\n{}", log.join("\n"));
    assert_eq!(log[1], "WEBSOCKET_EVENT_ERROR", "{}", log.join("\n"));
    assert!(log[2].starts_with("Last error: "), "{}", log.join("\n"));
    assert!(!log.iter().any(|m| m == "WEBSOCKET_EVENT_CONNECTED"));
}
