//! The `wsat` binary: `echo-server` and `connect` talking to each other, `demo`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::{echo_server, wsat};
use wsat_testkit::process::{exit_within, Killed};

#[test]
fn connect_and_echo_server_talk_and_eof_closes_cleanly() {
    let (_server, port) = echo_server(&[], Stdio::null());
    let mut child = wsat()
        .args(["connect", &format!("ws://127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn connect");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    for line in ["first line", "ünïcödé ✓", "/ping hi", "last"] {
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
        if line.starts_with("/ping") {
            continue; // a ping is not echoed as a message
        }
        let mut out = String::new();
        stdout.read_line(&mut out).expect("read");
        assert_eq!(out, format!("{line}\n"));
    }
    drop(stdin);
    assert_eq!(exit_within(&mut child, Duration::from_secs(10)), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(err.contains("connected to ws://127.0.0.1"), "{err}");
}

#[test]
fn connect_to_nothing_fails_with_a_clear_error() {
    let port = wsat_testkit::free_port();
    let out = wsat()
        .args(["connect", &format!("ws://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TCP connect") && err.contains("refused"), "{err}");
}

#[test]
fn mutual_tls_between_the_two_commands() {
    let pki = wsat_testkit::TestPki::generate();
    let (_dir, files) = pki.write_tempdir();
    let s = |p: &std::path::Path| p.display().to_string();
    let (_server, port) = echo_server(
        &[
            "--cert",
            &s(&files.server.cert),
            "--key",
            &s(&files.server.key),
            "--client-ca",
            &s(&files.ca.cert),
        ],
        Stdio::null(),
    );
    let uri = format!("wss://127.0.0.1:{port}");
    let run = |extra: &[String]| {
        let mut child = wsat()
            .args(["connect", &uri, "--ca", &s(&files.ca.cert)])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn connect");
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = writeln!(stdin, "secret");
        drop(stdin);
        let mut out = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut out);
        (out, exit_within(&mut child, Duration::from_secs(10)))
    };
    let with_cert = run(&[
        "--cert".into(),
        s(&files.client.cert),
        "--key".into(),
        s(&files.client.key),
    ]);
    assert_eq!(with_cert, ("secret\n".into(), Some(0)));
    let (out, code) = run(&[]);
    assert_eq!((out.as_str(), code), ("", Some(1)), "no client certificate, no echo");
}

#[test]
fn demo_plays_the_seed_sessions_byte_for_byte() {
    let out = wsat().arg("demo").output().expect("run demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("D: +WS_CONNECTED:0\\r\\n").count(), 2, "{text}");
    assert_eq!(text.matches("D: +WS_DATA:0,4,test\\r\\n").count(), 2, "{text}");
    assert!(text.contains("H: AT+WSCFG=0,30,60,4096,3,0,0\\r\\n"), "{text}");
    assert!(
        text.contains("Every answer above matched the firmware's bytes."),
        "{text}"
    );
}

/// The AT port carries credentials: `--tcp PORT` without an address listens on loopback
/// only.
#[test]
fn a_bare_modem_tcp_port_binds_to_loopback() {
    let port = wsat_testkit::free_port();
    let mut modem = Killed(
        wsat()
            .args(["modem", "--tcp", &port.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsat modem"),
    );
    let mut first = String::new();
    BufReader::new(modem.0.stderr.take().expect("stderr piped"))
        .read_line(&mut first)
        .expect("read stderr");
    assert_eq!(
        first.trim_end(),
        format!("wsat modem: AT port on tcp://127.0.0.1:{port}")
    );
}

/// A stdio modem whose host stopped reading for good (stdout closed) ends, as when the
/// host detaches, instead of answering into the void for ever.
#[test]
fn a_stdio_modem_ends_when_its_stdout_is_gone() {
    use std::io::Read;
    let mut modem = Killed(
        wsat()
            .arg("modem")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wsat modem"),
    );
    let mut stdout = modem.0.stdout.take().expect("stdout piped");
    let mut banner = [0u8; 9];
    stdout.read_exact(&mut banner).expect("the banner");
    assert_eq!(&banner, b"\r\nready\r\n");
    drop(stdout);
    let mut stdin = modem.0.stdin.take().expect("stdin piped");
    stdin.write_all(b"AT\r\n").expect("a command");
    stdin.flush().expect("flush");
    // Keep stdin open: only the failed write can end it.
    let code = exit_within(&mut modem.0, Duration::from_secs(5));
    drop(stdin);
    assert!(code.is_some(), "ended by a signal instead of exiting");
}
