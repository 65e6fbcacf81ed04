//! A link's opening handshake through `wsat modem --tcp`, seen by a scripted server: the exact
//! upgrade request (FIRMWARE.md §11.1, §11.2: headers from AT+WSHEAD, subprotocol, auth, userinfo, path
//! and query, the 1023-byte limit), the server refusing or answering late, an open that fails
//! against nothing with its delayed ERROR (FIRMWARE.md §6.1), and the headers an auto-reconnect sends
//! (FIRMWARE.md §5.3).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{modem_tcp, FAST};
use tokio::io::AsyncWriteExt;
use wsat_testkit::at_host::{AtClient, BUSY, ERROR, OK, PROMPT, STEP};
use wsat_testkit::free_port;
use wsat_testkit::peer::{accept_upgrade, drain, read_request, ScriptedPeer};

#[test]
fn headers_are_listed_and_sent_as_the_firmware_does() {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            let head = accept_upgrade(&mut tcp).await.head_only();
            let _ = tx.send(head);
            drain(&mut tcp).await;
        }
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();

    // FIRMWARE.md §13.3 exactly.
    let auth = "AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=";
    assert_eq!(auth.len(), 49);
    at.at("AT+WSHEAD=49", PROMPT);
    at.send(auth);
    at.expect(OK);
    at.at("AT+WSHEAD?", format!("+WSHEAD:0,\"{auth}\"\r\n\r\nOK\r\n"));
    // A second header: newest first, value kept verbatim (FIRMWARE.md §5.1, §5.2).
    let second = "X-Second: two";
    at.at(&format!("AT+WSHEAD={}", second.len()), PROMPT);
    at.send(second);
    at.expect(OK);
    at.at(
        "AT+WSHEAD?",
        format!("+WSHEAD:0,\"{second}\"\r\n+WSHEAD:1,\"{auth}\"\r\n\r\nOK\r\n"),
    );

    at.open(0, &peer.uri());
    let head = rx.recv_timeout(STEP).expect("the peer saw the upgrade request");
    let head = String::from_utf8(head).expect("an ASCII request head");
    // FIRMWARE.md §11.2: the exact request, in this order; the library writes "<key>: <value>", so the
    // stored values' leading spaces give two spaces on the wire (FIRMWARE.md §5.3).
    let key_line = head
        .lines()
        .find(|l| l.starts_with("Sec-WebSocket-Key: "))
        .unwrap_or_else(|| panic!("no key in {head:?}"));
    let key = &key_line["Sec-WebSocket-Key: ".len()..];
    assert!(
        key.len() == 24 && key.ends_with("=="),
        "key {key:?} is not 16 bytes in base64"
    );
    let expected = format!(
        "GET / HTTP/1.1\r\n\
         Connection: Upgrade\r\n\
         Host: 127.0.0.1:{}\r\n\
         User-Agent: ESP32 Websocket Client\r\n\
         Upgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         X-Second:  two\r\n\
         AUTHORIZATION:  Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=\r\n\
         \r\n",
        peer.port()
    );
    assert_eq!(head, expected, "upgrade request");

    // AT+WSHEAD=0 deletes them all, at once, without a prompt.
    at.at("AT+WSHEAD=0", OK);
    at.at("AT+WSHEAD?", OK);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn open_fails_with_disconnected_then_a_delayed_error_when_nothing_listens() {
    let modem = modem_tcp(&["--open-error-delay-ms", "800", "--reconnect-delay-ms", "300"]);
    let mut at = modem.connect();
    let uri = format!("ws://127.0.0.1:{}", free_port());
    // FIRMWARE.md §13.4 with link 1.
    at.send(format!("AT+WSOPEN=1,\"{uri}\"\r\n"));
    at.expect(format!("AT+WSOPEN=1,\"{uri}\"\r\n+WS_DISCONNECTED:1\r\n"));
    let urc_at = Instant::now();
    // FIRMWARE.md §1.6: the command is still running, so input is answered busy and discarded.
    at.send("AT\r\n");
    at.expect(BUSY);
    at.expect(ERROR);
    let gap = urc_at.elapsed();
    assert!(
        gap >= Duration::from_millis(600),
        "ERROR came {gap:?} after +WS_DISCONNECTED; --open-error-delay-ms is 800 (FIRMWARE.md §6.1)"
    );
    // The link was destroyed (FIRMWARE.md §10), and nothing else follows (no reconnect).
    at.at("AT+WSOPEN?", OK);
    at.expect_silence(Duration::from_millis(700));
    at.at("AT", OK);
}

/// A peer that records every upgrade request head and then holds the connection.
fn recording_peer() -> (ScriptedPeer, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel::<String>();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            let head = accept_upgrade(&mut tcp).await.head_only();
            let _ = tx.send(String::from_utf8(head).expect("ASCII head"));
            drain(&mut tcp).await;
        }
    });
    (peer, rx)
}

/// The request head's lines after the fixed part (FIRMWARE.md §11.2), and its request line.
fn request_extras(head: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = head.split("\r\n").collect();
    let fixed = [
        "Connection: Upgrade",
        "User-Agent: ESP32 Websocket Client",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
    ];
    assert_eq!(lines[1], fixed[0], "{head:?}");
    assert!(lines[2].starts_with("Host: 127.0.0.1:"), "{head:?}");
    assert_eq!(&lines[3..6], &fixed[1..], "{head:?}");
    assert!(lines[6].starts_with("Sec-WebSocket-Key: "), "{head:?}");
    assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    let extras = lines[7..lines.len() - 2].iter().map(|s| (*s).to_owned()).collect();
    (lines[0].to_owned(), extras)
}

#[test]
fn wsopen_subprotocol_auth_userinfo_path_and_query_reach_the_server() {
    let (peer, heads) = recording_peer();
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    let port = peer.port();
    let next = |at: &mut AtClient, link: usize, params: &str| {
        at.at(
            &format!("AT+WSOPEN={link},{params}"),
            format!("+WS_CONNECTED:{link}\r\n\r\nOK\r\n"),
        );
        let head = heads.recv_timeout(STEP).expect("an upgrade request");
        request_extras(&head)
    };

    let (line, extras) = next(&mut at, 0, &format!("\"ws://127.0.0.1:{port}\",\"chat\""));
    assert_eq!(line, "GET / HTTP/1.1");
    assert_eq!(extras, ["Sec-WebSocket-Protocol: chat"]);

    // "" is an empty subprotocol, sent with an empty value; a timeout; auth verbatim.
    let (line, extras) = next(
        &mut at,
        1,
        &format!("\"ws://127.0.0.1:{port}/p/q?x=1&y=2\",\"\",5000,\"Bearer t0k3n\""),
    );
    assert_eq!(line, "GET /p/q?x=1&y=2 HTTP/1.1");
    assert_eq!(extras, ["Sec-WebSocket-Protocol: ", "Authorization: Bearer t0k3n"]);

    // Userinfo becomes Basic auth; a query without a path gives "/?query" (FIRMWARE.md §11.1).
    let (line, extras) = next(&mut at, 2, &format!("\"ws://user:pass@127.0.0.1:{port}?k=v\""));
    assert_eq!(line, "GET /?k=v HTTP/1.1");
    assert_eq!(extras, ["Authorization: Basic dXNlcjpwYXNz"]);
    for link in 0..3 {
        at.at(&format!("AT+WSCLOSE={link}"), OK);
    }

    // An explicit auth wins over userinfo; `\,` and `\"` are AT escapes (FIRMWARE.md §1.4, §1.5); the
    // URI is listed as given (after unescaping).
    let (line, extras) = next(
        &mut at,
        0,
        &format!("\"ws://u:p@127.0.0.1:{port}/a\\,b\",,1000,\"Basic \\\"x\\\"\""),
    );
    assert_eq!(line, "GET /a,b HTTP/1.1");
    assert_eq!(extras, ["Authorization: Basic \"x\""]);
    at.at(
        "AT+WSOPEN?",
        format!("+WSOPEN:0,2,\"ws://u:p@127.0.0.1:{port}/a,b\"\r\n\r\nOK\r\n"),
    );
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn an_upgrade_request_over_1023_bytes_fails_the_open() {
    let (peer, heads) = recording_peer();
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    // Fixed part (~200 bytes) + 4 headers of ~220 bytes > 1023 bytes (FIRMWARE.md §11.2).
    for i in 0..4 {
        let header = format!("X-Big{i}:{}", "v".repeat(210));
        at.at(&format!("AT+WSHEAD={}", header.len()), PROMPT);
        at.send(&header);
        at.expect(OK);
    }
    at.open_fails(0, &peer.uri());
    assert!(heads.try_recv().is_err(), "the oversized request reached the server");
    at.at("AT+WSHEAD=0", OK);
    at.open(0, &peer.uri());
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn a_rejected_upgrade_fails_the_open() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        let _ = read_request(&mut tcp).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await;
        drain(&mut tcp).await;
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.open_fails(2, &peer.uri());
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn a_late_upgrade_answer_gives_connected_then_error() {
    // The server answers the upgrade 1.2 s late; AT+WSOPEN's timeout is 400 ms (FIRMWARE.md §6.1).
    let peer = ScriptedPeer::start(|mut tcp, n| async move {
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        accept_upgrade(&mut tcp).await.head_only();
        drain(&mut tcp).await;
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    let started = Instant::now();
    at.at(
        &format!("AT+WSOPEN=0,\"{}\",,400", peer.uri()),
        b"+WS_CONNECTED:0\r\n\r\nERROR\r\n",
    );
    assert!(started.elapsed() >= Duration::from_millis(1100));
    at.at("AT+WSOPEN?", OK);
    at.expect_silence(Duration::from_millis(500));
    at.open(0, &peer.uri());
}

#[test]
fn headers_added_later_do_not_reach_auto_reconnects() {
    let (tx, rx) = mpsc::channel::<String>();
    let peer = ScriptedPeer::start(move |mut tcp, n| {
        let tx = tx.clone();
        async move {
            let head = accept_upgrade(&mut tcp).await.head_only();
            let _ = tx.send(String::from_utf8(head).expect("ASCII"));
            if n > 0 {
                drain(&mut tcp).await;
            } else {
                // Connection 0 ends after a moment: the link reconnects.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let modem = modem_tcp(&["--reconnect-delay-ms", "500"]);
    let mut at = modem.connect();
    at.at("AT+WSHEAD=6", PROMPT);
    at.send("X-A: 1");
    at.expect(OK);
    at.open(0, &peer.uri());
    // FIRMWARE.md §5.3: headers set after the open do not affect the link nor its auto-reconnects.
    at.at("AT+WSHEAD=6", PROMPT);
    at.send("X-B: 2");
    at.expect(OK);
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    at.expect(b"+WS_CONNECTED:0\r\n");
    for i in 0..2 {
        let head = rx.recv_timeout(STEP).expect("an upgrade request");
        let (_, extras) = request_extras(&head);
        assert_eq!(extras, ["X-A:  1"], "request {i}");
    }
    at.at("AT+WSCLOSE=0", OK);
}
