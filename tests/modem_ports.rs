//! The modem's AT port itself, on each transport: TCP (one host at a time; links, headers and
//! a half-sent payload survive a host that leaves; `--trace` records both directions), a pty
//! opened by its `--link` path as a host opens a USB-serial adapter (reopened, binary payloads,
//! the seed session; the link removed when the modem is terminated), stdio, and a serial
//! device (a pty pair stands in for a UART: `serialport` opens its far side like any tty); and
//! the trace's redaction of credentials. Spec: docs/FIRMWARE.md §1, §13.

mod common;

use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{modem_pty, modem_tcp, wsat, EchoPeer, FAST};
use wsat_testkit::at_host::{ws_data, wsopen_line, AtClient, ERROR, OK, PROMPT, READY, SEND_OK, STEP};
use wsat_testkit::process::{exit_within, Killed};
use wsat_testkit::{peer_or_skip, SeedServer};

// ---------------------------------------------------------------------------------------------
// stdio, a serial device, the trace's redaction, the pty link's removal

#[test]
fn stdio_banner_commands_and_exit_at_end_of_input() {
    let mut child = Killed(
        wsat()
            .args(["modem", "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let mut at = AtClient::stdio(&mut child);
    at.expect(READY);
    at.send(b"AT\r\n");
    at.expect(b"AT\r\n\r\nOK\r\n");
    at.send(b"ATE0\r\n");
    at.expect(b"ATE0\r\n\r\nOK\r\n");
    at.send(b"AT+WSOPEN?\r\n");
    at.expect(b"\r\nOK\r\n");
    at.close_input();
    // The modem exits at the end of its input, successfully.
    assert_eq!(exit_within(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn serial_device() {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let pair = nix::pty::openpty(None, None).expect("openpty");
    let mut attrs = tcgetattr(pair.master.as_fd()).expect("termios");
    cfmakeraw(&mut attrs);
    tcsetattr(pair.master.as_fd(), SetArg::TCSANOW, &attrs).expect("raw");
    let device = nix::unistd::ttyname(pair.slave.as_fd()).expect("ttyname");
    let _child = Killed(
        wsat()
            .args(["modem", "--serial", &device.display().to_string(), "--baud", "115200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let mut port = AtClient::tty(std::fs::File::from(pair.master), "serial AT client");
    port.expect(READY);
    port.send(b"AT+GMR\r\n");
    let gmr = port.read_until(b"\r\n\r\nOK\r\n", STEP);
    assert!(
        gmr.starts_with(b"AT+GMR\r\nAT version:"),
        "{:?}",
        gmr.escape_ascii().to_string()
    );
    port.send(b"at+wsopen?\r\n");
    port.expect(b"at+wsopen?\r\n\r\nOK\r\n");
}

/// Runs a stdio modem with `--trace`, plays a session that carries credentials, returns the
/// trace file's text.
fn traced_session(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("at.trace");
    let mut child = Killed(
        wsat()
            .args([
                "modem",
                "--stdio",
                "--open-error-delay-ms",
                "10",
                "--trace",
                &trace.display().to_string(),
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let mut at = AtClient::stdio(&mut child);
    at.expect(READY);
    let header = b"AUTHORIZATION: Basic c2VjcmV0LWhlYWRlcg==";
    at.send(format!("AT+WSHEAD={}\r\n", header.len()));
    at.read_until(b"\r\n>", STEP);
    at.send(header);
    at.read_until(b"\r\nOK\r\n", STEP);
    at.send(b"AT+WSHEAD?\r\n");
    at.read_until(b"\r\nOK\r\n", STEP);
    // Split across writes: the password must still be recognised.
    at.send(b"AT+WSOPEN=0,\"ws://user:hunt");
    std::thread::sleep(Duration::from_millis(50));
    at.send(b"er2@127.0.0.1:9\",,1000,\"Bearer tok3n-value\"\r\n");
    at.read_until(b"\r\nERROR\r\n", STEP);
    at.close_input();
    exit_within(&mut child, Duration::from_secs(10));
    std::fs::read_to_string(&trace).expect("trace")
}

#[test]
fn the_trace_hides_credentials_unless_asked() {
    let text = traced_session(&[]);
    for secret in ["hunter2", "tok3n-value", "c2VjcmV0LWhlYWRlcg=="] {
        assert!(!text.contains(secret), "{secret} in the trace:\n{text}");
    }
    assert!(text.contains("<redacted>") && text.contains("AT+WSHEAD?"), "{text}");
    assert!(text.contains(" in ") && text.contains(" out "), "{text}");
    let open = traced_session(&["--trace-secrets"]);
    for secret in ["hunter2", "tok3n-value", "c2VjcmV0LWhlYWRlcg=="] {
        assert!(open.contains(secret), "--trace-secrets must keep {secret}:\n{open}");
    }
}

#[test]
fn the_pty_link_is_removed_when_the_modem_is_terminated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyWS0");
    let mut child = Killed(
        wsat()
            .args(["modem", "--pty", "--link", &link.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::symlink_metadata(&link).is_err() {
        assert!(Instant::now() < deadline, "no link appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = std::fs::read_link(&link).expect("a symlink");
    assert!(target.starts_with("/dev/pts/"), "{}", target.display());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(
        exit_within(&mut child, Duration::from_secs(10)),
        Some(0),
        "a terminated modem exits cleanly"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the --link symlink was left behind"
    );
}

// ---------------------------------------------------------------------------------------------
// A pty opened by its link: a host program opens the pseudo-terminal by the symlink's path, as
// it would open a USB-serial adapter, and talks AT to it
// (docs/FIRMWARE.md §13; DESIGN.md: "a peer closing and reopening it must keep
// working").

/// The host opens the pty by its link, as it would open a USB-serial adapter.
fn open_pty(link: &Path) -> AtClient {
    AtClient::open_pty(link).expect("open the pty")
}

/// The seed's ws session (shared/seeds/001, FIRMWARE.md §13.1) over an opened AT port.
fn seed_ws_session(at: &mut AtClient, uri: &str) {
    at.at("AT+CWMODE=1", OK);
    at.at(
        "AT+CWJAP=\"espressif\",\"1234567890\"",
        b"WIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n",
    );
    at.at(&format!("AT+WSOPEN=0,\"{uri}\""), b"+WS_CONNECTED:0\r\n\r\nOK\r\n");
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("test");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,4,test\r\n"]);
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, uri)));
}

#[test]
fn seed_ws_session_over_the_pty_and_reopening_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyWS0");
    let server = EchoPeer::ws();
    let mut modem = modem_pty(&link, FAST);
    let dev = modem.pty.clone().expect("a pty");
    assert_eq!(
        std::fs::read_link(&link).expect("the --link symlink exists"),
        dev,
        "the symlink points at the pty"
    );

    // The banner was printed once at start and waited in the pty for the first reader.
    let mut at = open_pty(&link);
    at.expect(READY);
    seed_ws_session(&mut at, &server.uri());

    // Close the port with the link still open, reopen it: nothing was lost, nothing repeats.
    drop(at);
    let mut at = open_pty(&link);
    let queued = at.drain(Duration::from_millis(300));
    assert!(
        queued.is_empty(),
        "bytes waited for the reopened port: \"{}\"",
        queued.escape_ascii()
    );
    at.at("AT", OK);
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &server.uri())));
    at.at("AT+WSSEND=0,5", PROMPT);
    at.send("again");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,5,again\r\n"]);
    at.at("AT+WSCLOSE=0", OK);
    at.at("AT+WSOPEN?", OK);
    modem.assert_alive();
}

#[test]
fn the_pty_carries_binary_payloads_unchanged() {
    // Raw mode both ways: CR, LF, NUL, DEL, ^C, ^D, ^S/^Q and 8-bit bytes are data (FIRMWARE.md §1.7, §8.5).
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyWS0");
    let server = EchoPeer::ws();
    let modem = modem_pty(&link, FAST);
    let mut at = open_pty(&link);
    at.expect(READY);
    at.at(
        &format!("AT+WSOPEN=1,\"{}\"", server.uri()),
        b"+WS_CONNECTED:1\r\n\r\nOK\r\n",
    );
    let payload: Vec<u8> = (0..=255u8)
        .chain([b'\r', b'\n', 0x03, 0x04, 0x11, 0x13, 0x1a, 0x7f])
        .collect();
    at.at(&format!("AT+WSSEND=1,{},2", payload.len()), PROMPT);
    at.send(&payload);
    at.expect_any_order(&[SEND_OK, &ws_data(1, &payload)]);
    at.at("AT+WSCLOSE=1", OK);
    drop(modem);
}

#[test]
fn the_pty_session_with_the_seed_server_survives_a_port_closed_mid_prompt() {
    if !peer_or_skip("the_pty_session_with_the_seed_server_survives_a_port_closed_mid_prompt") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyWS0");
    let server = SeedServer::ws();
    let modem = modem_pty(&link, FAST);
    let mut at = open_pty(&link);
    at.expect(READY);
    seed_ws_session(&mut at, &server.uri());
    // The host closes the port in the middle of a payload and comes back (FIRMWARE.md §1.7: no timeout).
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("te");
    drop(at);
    let mut at = open_pty(&link);
    at.expect_silence(Duration::from_millis(300));
    at.send("st");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,4,test\r\n"]);
    at.at("AT+WSCLOSE=0", OK);
    drop(modem);
}

// ---------------------------------------------------------------------------------------------
// TCP: the AT host coming and going (one host at a time, state survives), and --trace

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_new_at_client_finds_the_port_as_after_boot() {
    let server = EchoPeer::ws();
    let modem = modem_tcp(FAST);

    // Left in data mode, after ATE0: the payload so far is discarded, never sent.
    let mut at = modem.connect();
    at.open(0, &server.uri());
    at.at("ATE0", OK);
    at.send("AT+WSSEND=0,6\r\n");
    at.expect(PROMPT);
    at.send("abc");
    at.expect_silence(Duration::from_millis(200));
    drop(at);
    let mut at = modem.connect();
    // Echo is on again, and AT is a command, not the rest of the payload ("abcAT\r").
    at.at("AT", OK);
    at.expect_silence(Duration::from_millis(300));
    // The link survived and carries the next payload whole.
    at.send_and_echo(0, b"whole");

    // Left mid-line: the next client's line starts empty.
    at.send("AT+GM");
    drop(at);
    let mut at = modem.connect();
    at.at("AT", OK);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn a_new_at_client_takes_the_port_over_and_links_survive() {
    let server = EchoPeer::ws();
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.at("AT+WSHEAD=6", PROMPT);
    at.send("X-A: b");
    at.expect(OK);
    at.open(1, &server.uri());

    // A second client while one is attached takes the port over at once, like a new
    // cable: it gets the banner and the first connection is closed.
    let mut second = modem.connect();
    assert!(at.closed_within(STEP), "the first AT client was not closed");
    second.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(1, 2, &server.uri())));
    second.at("AT+WSHEAD?", b"+WSHEAD:0,\"X-A: b\"\r\n\r\nOK\r\n");
    second.send_and_echo(1, b"after takeover");

    // A client that says nothing does not keep the port from the next one.
    let idle = modem.connect();
    assert!(second.closed_within(STEP), "the second AT client was not closed");
    drop(idle);
    let mut at = modem.connect();
    at.at("AT+WSCLOSE=1", OK);
}

/// One line of the trace: direction, length, and the bytes as written (escaped).
fn parse_trace_line(line: &str) -> (String, usize, String) {
    let rest = line.trim_start();
    let (time, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("trace line {line:?}"));
    time.parse::<f64>()
        .unwrap_or_else(|_| panic!("no timestamp in {line:?}"));
    let rest = rest.trim_start();
    let (dir, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("trace line {line:?}"));
    let rest = rest.trim_start();
    let (len, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("trace line {line:?}"));
    let len = len.parse().unwrap_or_else(|_| panic!("no length in {line:?}"));
    let quoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or_else(|| panic!("bytes not quoted in {line:?}"));
    (dir.to_owned(), len, quoted.to_owned())
}

#[test]
fn trace_records_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("at.trace");
    let mut args = FAST.to_vec();
    args.extend(["--trace", trace.to_str().expect("UTF-8 path")]);
    let modem = modem_tcp(&args);
    let mut at = modem.connect();
    at.at("AT", OK);
    at.at("AT+WSHEAD=3", PROMPT);
    at.send("a:\"");
    at.expect(OK);
    at.at("AT+WSHEAD?", b"+WSHEAD:0,\"a:\"\"\r\n\r\nOK\r\n");
    at.at("AT+NOPE", ERROR);

    let text = String::from_utf8(read_file(&trace)).expect("a text trace");
    let (mut ins, mut outs) = ((String::new(), 0), (String::new(), 0));
    for line in text.lines() {
        let (dir, len, bytes) = parse_trace_line(line);
        let side = match dir.as_str() {
            "in" => &mut ins,
            "out" => &mut outs,
            other => panic!("direction {other:?} in {line:?}"),
        };
        side.0.push_str(&bytes);
        side.1 += len;
    }
    assert_eq!(ins.0, at.sent.escape_ascii().to_string(), "the trace's `in` lines");
    assert_eq!(ins.1, at.sent.len());
    assert_eq!(
        outs.0,
        at.received.escape_ascii().to_string(),
        "the trace's `out` lines"
    );
    assert_eq!(outs.1, at.received.len());
    assert!(outs.0.starts_with("\\r\\nready\\r\\n"), "the banner is traced");
}
