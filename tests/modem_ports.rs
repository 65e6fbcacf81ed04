//! The modem's other transports: stdio, and a serial device (a pty pair stands in for a
//! UART: `serialport` opens its far side like any tty).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wsat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsat"))
}

/// Reads until `want` has arrived (exactly), failing after a few seconds.
fn expect(reader: &mut impl Read, want: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want.len() {
        assert!(
            Instant::now() < deadline,
            "timed out; got {:?}",
            got.escape_ascii().to_string()
        );
        match reader.read(&mut buf) {
            Ok(0) => panic!("port closed; got {:?}", got.escape_ascii().to_string()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(got.escape_ascii().to_string(), want.escape_ascii().to_string());
}

/// Reads until the bytes end with `suffix`, failing after a few seconds.
fn read_until(reader: &mut impl Read, suffix: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.ends_with(suffix) {
        assert!(
            Instant::now() < deadline,
            "timed out; got {:?}",
            got.escape_ascii().to_string()
        );
        let mut buf = [0u8; 256];
        let n = reader.read(&mut buf).expect("read");
        assert!(n > 0, "port closed; got {:?}", got.escape_ascii().to_string());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn stdio_banner_commands_and_exit_at_end_of_input() {
    let mut child = wsat()
        .args(["modem", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    expect(&mut stdout, b"\r\nready\r\n");
    stdin.write_all(b"AT\r\n").expect("write");
    expect(&mut stdout, b"AT\r\n\r\nOK\r\n");
    stdin.write_all(b"ATE0\r\n").expect("write");
    expect(&mut stdout, b"ATE0\r\n\r\nOK\r\n");
    stdin.write_all(b"AT+WSOPEN?\r\n").expect("write");
    expect(&mut stdout, b"\r\nOK\r\n");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the modem did not exit at the end of input");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serial_device() {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let pair = nix::pty::openpty(None, None).expect("openpty");
    let mut attrs = tcgetattr(pair.master.as_fd()).expect("termios");
    cfmakeraw(&mut attrs);
    tcsetattr(pair.master.as_fd(), SetArg::TCSANOW, &attrs).expect("raw");
    let device = nix::unistd::ttyname(pair.slave.as_fd()).expect("ttyname");
    let mut child = wsat()
        .args(["modem", "--serial", &device.display().to_string(), "--baud", "115200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut port = std::fs::File::from(pair.master);
    expect(&mut port, b"\r\nready\r\n");
    port.write_all(b"AT+GMR\r\n").expect("write");
    let gmr = read_until(&mut port, b"\r\n\r\nOK\r\n");
    assert!(
        gmr.starts_with(b"AT+GMR\r\nAT version:"),
        "{:?}",
        gmr.escape_ascii().to_string()
    );
    port.write_all(b"at+wsopen?\r\n").expect("write");
    expect(&mut port, b"at+wsopen?\r\n\r\nOK\r\n");
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a stdio modem with `--trace`, plays a session that carries credentials, returns the
/// trace file's text.
fn traced_session(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("at.trace");
    let mut child = wsat()
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
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    expect(&mut stdout, b"\r\nready\r\n");
    let header = b"AUTHORIZATION: Basic c2VjcmV0LWhlYWRlcg==";
    stdin
        .write_all(format!("AT+WSHEAD={}\r\n", header.len()).as_bytes())
        .expect("write");
    read_until(&mut stdout, b"\r\n>");
    stdin.write_all(header).expect("write");
    read_until(&mut stdout, b"\r\nOK\r\n");
    stdin.write_all(b"AT+WSHEAD?\r\n").expect("write");
    read_until(&mut stdout, b"\r\nOK\r\n");
    // Split across writes: the password must still be recognised.
    stdin.write_all(b"AT+WSOPEN=0,\"ws://user:hunt").expect("write");
    stdin.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(50));
    stdin
        .write_all(b"er2@127.0.0.1:9\",,1000,\"Bearer tok3n-value\"\r\n")
        .expect("write");
    read_until(&mut stdout, b"\r\nERROR\r\n");
    drop(stdin);
    let _ = child.wait();
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
    let mut child = wsat()
        .args(["modem", "--pty", "--link", &link.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "a terminated modem exits cleanly: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the modem ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the --link symlink was left behind"
    );
}
