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
