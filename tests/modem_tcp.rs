//! End-to-end tests of `wsat modem --tcp`: the AT port over a TCP socket, driven like the MCU
//! drives the chip, against real peers (the seed's Python servers, wsat's echo server) and
//! scripted ones. Every answer is compared byte for byte with the firmware's
//! (shared/spec/esp-at-websocket.md; section numbers below refer to it).

mod modem_support;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use modem_support::*;
use wsat_testkit::{peer_or_skip, shared_dir, SeedServer, TestPki};

fn wsopen_line(link: usize, state: u8, uri: &str) -> String {
    format!("+WSOPEN:{link},{state},\"{uri}\"\r\n")
}

/// `AT+WSOPEN=<link>,"<uri>"` answered `+WS_CONNECTED:<link>` then OK (§6.1).
fn open(at: &mut AtClient, link: usize, uri: &str) {
    at.at(
        &format!("AT+WSOPEN={link},\"{uri}\""),
        format!("+WS_CONNECTED:{link}\r\n\r\nOK\r\n"),
    );
}

/// `AT+WSOPEN` that fails after the connection attempt: `+WS_DISCONNECTED` then ERROR (§6.1).
fn open_fails(at: &mut AtClient, link: usize, uri: &str) {
    at.at(
        &format!("AT+WSOPEN={link},\"{uri}\""),
        format!("+WS_DISCONNECTED:{link}\r\n\r\nERROR\r\n"),
    );
}

/// `AT+WSSEND=<link>,<n>`, the prompt, the payload, then `SEND OK` and the server's echo in
/// either order (§13.1: the echo may come first).
fn send_and_echo(at: &mut AtClient, link: usize, payload: &[u8]) {
    at.at(&format!("AT+WSSEND={link},{}", payload.len()), PROMPT);
    at.send(payload);
    at.expect_any_order(&[SEND_OK, &ws_data(link, payload)]);
}

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The seed document's sessions (shared/seeds/001_*.txt) against its own servers

#[test]
fn seed_ws_session_against_the_seed_server() {
    if !peer_or_skip("seed_ws_session_against_the_seed_server") {
        return;
    }
    let server = SeedServer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let uri = server.uri();

    at.at("AT+CWMODE=1", OK);
    at.at(
        "AT+CWJAP=\"espressif\",\"1234567890\"",
        b"WIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n",
    );
    // §13.1, byte for byte.
    open(&mut at, 0, &uri);
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("test");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,4,test\r\n"]);
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    at.at("AT+WSCLOSE=0", OK);
    // A local close prints no URC and forgets the link (§8.1).
    at.at("AT+WSOPEN?", OK);
    at.expect_silence(Duration::from_millis(300));
}

/// asctime(3) of a Unix time: `Wed Nov 13 17:00:15 2024` (the day padded with a space).
fn asctime(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {day:2} {:02}:{:02}:{:02} {year}",
        DAYS[usize::try_from(days.rem_euclid(7)).expect("0..7")],
        MONTHS[usize::try_from(month - 1).expect("0..12")],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn asctime_formats_like_the_firmware_examples() {
    assert_eq!(asctime(1_731_517_215), "Wed Nov 13 17:00:15 2024");
    assert_eq!(asctime(5), "Thu Jan  1 00:00:05 1970");
}

#[test]
fn seed_wss_mutual_tls_session_with_the_firmware_pki() {
    if !peer_or_skip("seed_wss_mutual_tls_session_with_the_firmware_pki") {
        return;
    }
    let pki = shared_dir().expect("gated").join("pki/esp-at-default");
    let server = SeedServer::wss(None);
    let mut args = FAST.to_vec();
    args.extend(["--pki", pki.to_str().expect("UTF-8 path")]);
    let modem = Modem::tcp(&args);
    let mut at = modem.connect();
    let uri = server.uri();

    at.at("AT+CWMODE=1", OK);
    at.at(
        "AT+CWJAP=\"espressif\",\"1234567890\"",
        b"WIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n",
    );
    at.at("AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"", OK);
    at.expect(b"+TIME_UPDATED\r\n");
    // `+CIPSNTPTIME:<asctime in UTC+8>` without CR LF, then OK (§12).
    let now = || {
        i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        )
        .expect("i64")
    };
    let before = now();
    at.send("AT+CIPSNTPTIME?\r\n");
    at.expect(b"AT+CIPSNTPTIME?\r\n");
    let got = at.read_until(OK, STEP);
    let after = now();
    let candidates: Vec<String> = (before..=after)
        .map(|t| format!("+CIPSNTPTIME:{}\r\nOK\r\n", asctime(t + 8 * 3600)))
        .collect();
    assert!(
        candidates.iter().any(|c| c.as_bytes() == got),
        "AT+CIPSNTPTIME? answered \"{}\", expected one of {candidates:?}",
        got.escape_ascii()
    );

    // The seed's mutual-TLS example: client cert #0, CA #0, no host name check (§4.4).
    at.at("AT+WSCFG=0,30,60,4096,3,0,0", OK);
    open(&mut at, 0, &uri);
    send_and_echo(&mut at, 0, b"test");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------------------------
// TLS: the auth modes of AT+WSCFG (§4.2, §4.4) with a generated PKI

fn tls_modem(pki_dir: &Path) -> Modem {
    let mut args = FAST.to_vec();
    args.extend(["--pki", pki_dir.to_str().expect("UTF-8 path")]);
    Modem::tcp(&args)
}

#[test]
fn wscfg_names_the_missing_pki_item() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two CAs, two client certificates, but only one client key.
    for (name, pem) in [
        ("wss_ca_00.crt", &pki.ca.cert_pem),
        ("wss_ca_01.crt", &pki.other_ca.cert_pem),
        ("wss_client_00.crt", &pki.client.cert_pem),
        ("wss_client_00.key", &pki.client.key_pem),
        ("wss_client_01.crt", &pki.other_client.cert_pem),
    ] {
        std::fs::write(dir.path().join(name), pem).expect("write");
    }
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();
    // §4.2 step 7: the lines have no leading CR LF.
    at.at("AT+WSCFG=0,30,60,4096,3,5,0", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,30,60,4096,1,2,0", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,30,60,4096,1,1,0", b"NO PRVT_KEY FOUND\r\n\r\nERROR\r\n");
    // §13.4: only CA #0 and #1 stored.
    at.at("AT+WSCFG=0,10,120,1024,2,0,5", b"NO CA FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,10,120,1024,2,0,2", b"NO CA FOUND\r\n\r\nERROR\r\n");
    // The certificate is checked before the CA (mode 3 with both missing).
    at.at("AT+WSCFG=0,10,120,1024,3,7,7", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    // Mode 2 ignores pki_number, mode 1 ignores ca_number.
    at.at("AT+WSCFG=0,10,120,1024,2,9,1", OK);
    at.at("AT+WSCFG=0,10,120,1024,1,0,9", OK);
    at.at("AT+WSCFG=0,10,120,1024,3,0,1", OK);
}

#[test]
fn wscfg_without_any_pki_finds_no_certificate() {
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    at.at("AT+WSCFG=0,10,120,1024,1,0,0", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,10,120,1024,2,0,0", b"NO CA FOUND\r\n\r\nERROR\r\n");
}

#[test]
fn tls_mode_2_verifies_the_chain_but_not_the_host_name() {
    let pki = TestPki::generate();
    let dir = firmware_pki_dir(&pki);
    // A firmware-shaped leaf: CN "L1 CA", CA:TRUE, no subjectAltName, signed by `ca` (CA #1).
    let server = wss_echo(&pki.firmware_leaf, None);
    let expired = wss_echo(&pki.expired_server, None);
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();

    // CA #0 did not sign the server: the handshake fails (§6.1 failure path).
    at.at("AT+WSCFG=0,30,60,1024,2,0,0", OK);
    open_fails(&mut at, 0, &server.uri());
    at.at("AT+WSOPEN?", OK);

    // CA #1 did: connects although 127.0.0.1 is not the certificate's name.
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    open(&mut at, 0, &server.uri());
    send_and_echo(&mut at, 0, b"verified");
    at.at("AT+WSCLOSE=0", OK);

    // The right CA but an expired certificate: validity is checked.
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    open_fails(&mut at, 0, &expired.uri());
}

#[test]
fn tls_mode_0_connects_without_verification() {
    let pki = TestPki::generate();
    let dir = firmware_pki_dir(&pki);
    let server = wss_echo(&pki.other_server, None);
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();

    // Mode 2 with CA #1 rejects a server signed by the other CA ...
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    open_fails(&mut at, 0, &server.uri());
    // ... mode 0 does not verify at all (§4.4) ...
    at.at("AT+WSCFG=0,30,60,1024,0", OK);
    open(&mut at, 0, &server.uri());
    send_and_echo(&mut at, 0, b"insecure");
    at.at("AT+WSCLOSE=0", OK);
    // ... and neither does the default configuration (§4.3).
    open(&mut at, 1, &server.uri());
    send_and_echo(&mut at, 1, b"default");
    at.at("AT+WSCLOSE=1", OK);
}

#[test]
fn tls_without_a_client_certificate_fails_where_one_is_required() {
    let pki = TestPki::generate();
    let dir = firmware_pki_dir(&pki);
    let server = wss_echo(&pki.firmware_leaf, Some(&pki.ca));
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();

    // Mode 2: the server is verified but the modem presents no certificate.
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    open_fails(&mut at, 0, &server.uri());
    // Mode 3 with client #1 (signed by the other CA): the server rejects it.
    at.at("AT+WSCFG=0,30,60,1024,3,1,1", OK);
    open_fails(&mut at, 0, &server.uri());
    // Mode 3 with client #0: mutual TLS works.
    at.at("AT+WSCFG=0,30,60,1024,3,0,1", OK);
    open(&mut at, 0, &server.uri());
    send_and_echo(&mut at, 0, b"mutual");
    at.at("AT+WSCLOSE=0", OK);
    // Mode 1: client certificate, no server verification.
    at.at("AT+WSCFG=0,30,60,1024,1,0,0", OK);
    open(&mut at, 0, &server.uri());
    send_and_echo(&mut at, 0, b"client only");
    at.at("AT+WSCLOSE=0", OK);
}

// ---------------------------------------------------------------------------------------------
// §13.2 – §13.4

#[test]
fn surplus_payload_gives_busy_then_send_ok() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("testXY");
    // §13.2: busy first, then SEND OK; only "test" is sent, so only "test" is echoed.
    let echo = ws_data(0, b"test");
    at.expect_with_floating(&[BUSY, SEND_OK], &echo);
    at.expect_silence(Duration::from_millis(300));
    at.at("AT", OK);
}

#[test]
fn payload_bytes_are_taken_verbatim_including_crlf_and_at_commands() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &server.uri());
    // §1.7: CR LF, `AT…\r\n` and `+++` in the payload are data; it may arrive in pieces.
    let payload = b"AT\r\n+++\0AT+RST\r\n";
    at.at(&format!("AT+WSSEND=0,{}", payload.len()), PROMPT);
    at.send(&payload[..5]);
    at.expect_silence(Duration::from_millis(200));
    at.send(&payload[5..]);
    at.expect_any_order(&[SEND_OK, &ws_data(0, payload)]);
}

#[test]
fn headers_are_listed_and_sent_as_the_firmware_does() {
    let (tx, rx) = report::<Vec<u8>>();
    let tx = std::sync::Mutex::new(tx);
    let peer = Peer::spawn(move |mut tcp: TcpStream, _| {
        let head = ws_accept(&mut tcp);
        let _ = tx.lock().expect("lock").send(head);
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();

    // §13.3 exactly.
    let auth = "AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=";
    assert_eq!(auth.len(), 49);
    at.at("AT+WSHEAD=49", PROMPT);
    at.send(auth);
    at.expect(OK);
    at.at("AT+WSHEAD?", format!("+WSHEAD:0,\"{auth}\"\r\n\r\nOK\r\n"));
    // A second header: newest first, value kept verbatim (§5.1, §5.2).
    let second = "X-Second: two";
    at.at(&format!("AT+WSHEAD={}", second.len()), PROMPT);
    at.send(second);
    at.expect(OK);
    at.at(
        "AT+WSHEAD?",
        format!("+WSHEAD:0,\"{second}\"\r\n+WSHEAD:1,\"{auth}\"\r\n\r\nOK\r\n"),
    );

    open(&mut at, 0, &peer.uri());
    let head = rx.recv_timeout(STEP).expect("the peer saw the upgrade request");
    let head = String::from_utf8(head).expect("an ASCII request head");
    // §11.2: the exact request, in this order; the library writes "<key>: <value>", so the
    // stored values' leading spaces give two spaces on the wire (§5.3).
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
fn wshead_rejects_a_trailing_crlf_and_a_missing_colon() {
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    // §5.1: the payload is read in full, then rejected.
    at.at("AT+WSHEAD=7", PROMPT);
    at.send("X: ab\r\n");
    at.expect(ERROR);
    at.at("AT+WSHEAD=5", PROMPT);
    at.send("X:\0ab");
    at.expect(ERROR);
    at.at("AT+WSHEAD=5", PROMPT);
    at.send("Xa b!");
    at.expect(ERROR);
    at.at("AT+WSHEAD?", OK);
    // A key may be empty; the value is everything after the first colon.
    at.at("AT+WSHEAD=6", PROMPT);
    at.send(":a:b:c");
    at.expect(OK);
    at.at("AT+WSHEAD?", b"+WSHEAD:0,\":a:b:c\"\r\n\r\nOK\r\n");
}

#[test]
fn open_fails_with_disconnected_then_a_delayed_error_when_nothing_listens() {
    let modem = Modem::tcp(&["--open-error-delay-ms", "800", "--reconnect-delay-ms", "300"]);
    let mut at = modem.connect();
    let uri = format!("ws://127.0.0.1:{}", closed_port());
    // §13.4 with link 1.
    at.send(format!("AT+WSOPEN=1,\"{uri}\"\r\n"));
    at.expect(format!("AT+WSOPEN=1,\"{uri}\"\r\n+WS_DISCONNECTED:1\r\n"));
    let urc_at = Instant::now();
    // §1.6: the command is still running, so input is answered busy and discarded.
    at.send("AT\r\n");
    at.expect(BUSY);
    at.expect(ERROR);
    let gap = urc_at.elapsed();
    assert!(
        gap >= Duration::from_millis(600),
        "ERROR came {gap:?} after +WS_DISCONNECTED; --open-error-delay-ms is 800 (§6.1)"
    );
    // The link was destroyed (§10), and nothing else follows (no reconnect).
    at.at("AT+WSOPEN?", OK);
    at.expect_silence(Duration::from_millis(700));
    at.at("AT", OK);
}

#[test]
fn open_on_an_open_link_and_send_on_a_closed_link_are_errors() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &server.uri());
    // §13.4: link 0 already open.
    at.at("AT+WSOPEN=0,\"ws://host\"", ERROR);
    at.at("AT+WSOPEN=0,\"ws://host\"", ERROR);
    // §13.4: link 2 not open: no prompt, and the payload that follows is command input (§1.7).
    at.at("AT+WSSEND=2,4", ERROR);
    at.expect_silence(Duration::from_millis(200));
    at.send("test");
    at.expect(b"test");
    at.send("\r\n");
    at.expect(b"\r\n\r\nERROR\r\n");
    // The open link is untouched.
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &server.uri())));
    send_and_echo(&mut at, 0, b"still here");
    // AT+WSCLOSE of a link that is not open is still OK (§8.1).
    at.at("AT+WSCLOSE=2", OK);
    at.at("AT+WSCLOSE=0", OK);
    at.at("AT+WSCLOSE=0", OK);
    at.at("AT+WSSEND=0,4", ERROR);
}

// ---------------------------------------------------------------------------------------------
// §7.3, §8.5, §13.6: fragmentation out, chunking in

#[test]
fn large_incoming_frame_is_split_by_buffer_size() {
    let (tx, rx) = report::<Vec<ClientFrame>>();
    let tx = std::sync::Mutex::new(tx);
    // The peer records the modem's frames, then answers with one 2500-byte text frame.
    let peer = Peer::spawn(move |mut tcp: TcpStream, _| {
        ws_accept(&mut tcp);
        let mut frames = Vec::new();
        while let Some(f) = read_client_frame(&mut tcp) {
            let last = f.fin;
            frames.push(f);
            if last {
                break;
            }
        }
        let payload: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
        let _ = tx.lock().expect("lock").send(frames);
        use std::io::Write;
        let _ = tcp.write_all(&server_frame(1, true, &payload));
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &peer.uri());

    let payload = pattern(2500);
    at.at("AT+WSSEND=0,2500", PROMPT);
    at.send(&payload);
    // §13.6: default buffer 1024 ⇒ 1024 + 1024 + 452, each its own URC; SEND OK anywhere.
    at.expect_with_floating(
        &[
            &ws_data(0, &payload[..1024]),
            &ws_data(0, &payload[1024..2048]),
            &ws_data(0, &payload[2048..]),
        ],
        SEND_OK,
    );
    // §7.3: a send longer than buffer_size is fragmented: text without FIN, continuations,
    // FIN on the last; every frame masked.
    let frames = rx.recv_timeout(STEP).expect("the peer got the message");
    let shape: Vec<(u8, bool, bool, usize)> = frames
        .iter()
        .map(|f| (f.opcode, f.fin, f.masked, f.payload.len()))
        .collect();
    assert_eq!(
        shape,
        vec![(1, false, true, 1024), (0, false, true, 1024), (0, true, true, 452)]
    );
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn wscfg_buffer_size_sets_the_chunk_size() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let payload = pattern(3000);
    at.at("AT+WSCFG=0,30,60,2048", OK);
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,3000", PROMPT);
    at.send(&payload);
    at.expect_with_floating(&[&ws_data(0, &payload[..2048]), &ws_data(0, &payload[2048..])], SEND_OK);
    at.at("AT+WSCLOSE=0", OK);
}

// ---------------------------------------------------------------------------------------------
// Faults: §8.3, §8.4, §10

#[test]
fn a_server_close_frame_removes_the_link() {
    let (tx, rx) = report::<Option<ClientFrame>>();
    let tx = std::sync::Mutex::new(tx);
    let peer = Peer::spawn(move |mut tcp: TcpStream, n| {
        ws_accept(&mut tcp);
        if n == 0 {
            use std::io::Write;
            tcp.write_all(&server_frame(8, true, &[0x03, 0xe8, b'b', b'y', b'e']))
                .expect("send close");
            let _ = tx.lock().expect("lock").send(read_client_frame(&mut tcp));
        }
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &peer.uri());
    // §8.4: the URC, and the link is gone at once.
    at.expect(b"+WS_CLOSED:0\r\n");
    at.at("AT+WSOPEN?", OK);
    at.at("AT+WSSEND=0,4", ERROR);
    // The library answers the close with a (masked) close frame of its own.
    let answer = rx.recv_timeout(STEP).expect("the peer reported");
    let answer = answer.expect("a frame after our close");
    assert_eq!(
        (answer.opcode, answer.fin, answer.masked),
        (8, true, true),
        "{answer:?}"
    );
    // The id is free again.
    open(&mut at, 0, &peer.uri());
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &peer.uri())));
    at.expect_silence(Duration::from_millis(300));
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn a_server_dying_mid_frame_disconnects_and_the_link_reconnects() {
    let peer = Peer::spawn(move |mut tcp: TcpStream, n| {
        ws_accept(&mut tcp);
        if n == 0 {
            // Half a frame: the header of a 10-byte text frame and 5 of its bytes, then TCP ends.
            let frame = server_frame(1, true, b"0123456789");
            use std::io::Write;
            tcp.write_all(&frame[..frame.len() - 5]).expect("half a frame");
            std::thread::sleep(Duration::from_millis(100));
            return;
        }
        hold(&mut tcp);
    });
    let modem = Modem::tcp(&["--reconnect-delay-ms", "1500", "--open-error-delay-ms", "200"]);
    let mut at = modem.connect();
    let uri = peer.uri();
    open(&mut at, 0, &uri);
    // §8.3: read error / EOF without a close frame. (The canonical emulation delivers whole
    // chunks of min(remaining, buffer_size), so the 5 bytes are not reported, §8.5.)
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    let down = Instant::now();
    // §6.2: state 3 while waiting to reconnect; the link is still listed.
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 3, &uri)));
    // §13.4: WSSEND on a link in state 3 prompts, swallows the payload, then ERROR.
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("test");
    at.expect(ERROR);
    // §13.5: after the reconnect delay the link comes back by itself.
    at.expect(b"+WS_CONNECTED:0\r\n");
    let after = down.elapsed();
    assert!(
        after >= Duration::from_millis(1300),
        "reconnected {after:?} after the disconnect; --reconnect-delay-ms is 1500 (§10)"
    );
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    assert_eq!(peer.accepted(), 2);
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(300));
}

#[test]
fn unanswered_pings_drop_the_link_and_it_reconnects() {
    let (tx, rx) = report::<ClientFrame>();
    let tx = std::sync::Mutex::new(tx);
    // Reads the modem's frames, reports them, never answers (no pong).
    let peer = Peer::spawn(move |mut tcp: TcpStream, n| {
        ws_accept(&mut tcp);
        if n == 0 {
            while let Some(f) = read_client_frame(&mut tcp) {
                let _ = tx.lock().expect("lock").send(f);
            }
        }
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    // Ping every 1 s, pong timeout 2 s.
    at.at("AT+WSCFG=0,1,2", OK);
    open(&mut at, 0, &peer.uri());
    let up = Instant::now();
    at.expect_within(b"+WS_DISCONNECTED:0\r\n", Duration::from_secs(8));
    let lasted = up.elapsed();
    assert!(
        lasted >= Duration::from_millis(2500) && lasted <= Duration::from_secs(6),
        "dropped after {lasted:?}; expected ping after ~1 s + pong timeout 2 s (§10)"
    );
    let ping = rx.recv_timeout(Duration::from_secs(1)).expect("the peer got a ping");
    assert_eq!(
        (ping.opcode, ping.fin, ping.masked, ping.payload.len()),
        (9, true, true, 0)
    );
    // §15 item 10: dropped, then re-established.
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_failed_open_forgets_the_link_configuration() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let payload = pattern(1500);

    // Control: buffer_size 2048 is observable as one 1500-byte chunk.
    at.at("AT+WSCFG=0,30,60,2048", OK);
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,1500", PROMPT);
    at.send(&payload);
    at.expect_any_order(&[SEND_OK, &ws_data(0, &payload)]);
    // AT+WSCLOSE frees the configuration (§8.1) ...
    at.at("AT+WSCLOSE=0", OK);
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,1500", PROMPT);
    at.send(&payload);
    at.expect_with_floating(&[&ws_data(0, &payload[..1024]), &ws_data(0, &payload[1024..])], SEND_OK);
    at.at("AT+WSCLOSE=0", OK);

    // ... and so does a failed AT+WSOPEN (§3, §4.2): the next open uses the defaults.
    at.at("AT+WSCFG=0,30,60,2048", OK);
    open_fails(&mut at, 0, &format!("ws://127.0.0.1:{}", closed_port()));
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,1500", PROMPT);
    at.send(&payload);
    at.expect_with_floating(&[&ws_data(0, &payload[..1024]), &ws_data(0, &payload[1024..])], SEND_OK);
    at.at("AT+WSCLOSE=0", OK);
}

// ---------------------------------------------------------------------------------------------
// The AT client coming and going (DESIGN: one client at a time, state survives)

#[test]
fn the_data_prompt_survives_the_at_client_reconnecting() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("te");
    at.expect_silence(Duration::from_millis(200));
    drop(at);

    // §1.7: no timeout in data mode; the new client gets the banner, then finishes the payload.
    let mut at = modem.connect();
    at.expect_silence(Duration::from_millis(300));
    at.send("st");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,4,test\r\n"]);
    at.at("AT", OK);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn links_survive_the_at_client_reconnecting() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    at.at("AT+WSHEAD=6", PROMPT);
    at.send("X-A: b");
    at.expect(OK);
    open(&mut at, 1, &server.uri());

    // A second client while one is attached is turned away without a banner.
    let mut second = modem.connect_raw();
    assert!(second.closed_within(STEP), "a second AT client was not refused");
    assert!(
        second.received.is_empty(),
        "the refused client got {:?}",
        second.received.escape_ascii().to_string()
    );
    at.at("AT", OK);
    drop(at);

    let mut at = modem.connect();
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(1, 2, &server.uri())));
    at.at("AT+WSHEAD?", b"+WSHEAD:0,\"X-A: b\"\r\n\r\nOK\r\n");
    send_and_echo(&mut at, 1, b"after reconnect");
    at.at("AT+WSCLOSE=1", OK);
}

// ---------------------------------------------------------------------------------------------
// Bad input (§1.3 – §1.6): the firmware's answers, and the port stays usable

#[test]
fn random_junk_leaves_the_port_usable() {
    let mut modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let mut rng = Rng::new(0x5eed_0001);

    // Printable junk without CR, LF or NUL: echoed byte for byte (§1.3), never answered
    // (every 256 bytes without a terminator are discarded silently).
    let junk: Vec<u8> = (0..4096)
        .map(|_| b' ' + u8::try_from(rng.below(95)).expect("< 95"))
        .collect();
    at.send(&junk);
    at.expect(&junk);
    at.expect_silence(Duration::from_millis(300));
    // Whatever is left (or nothing) plus CR LF is a line that does not start with AT.
    at.send("\r\n");
    at.expect(b"\r\n\r\nERROR\r\n");
    at.at("AT", OK);

    // Any bytes at all, in odd pieces.
    let junk = rng.bytes(4096);
    let mut rest = &junk[..];
    while !rest.is_empty() {
        let n = usize::try_from(1 + rng.below(200)).expect("small").min(rest.len());
        at.send(&rest[..n]);
        rest = &rest[n..];
    }
    let answered = at.drain(Duration::from_millis(500));
    assert!(!answered.is_empty(), "not even an echo");
    modem.assert_alive();
    at.send("\r\n");
    at.expect(b"\r\n\r\nERROR\r\n");
    at.at("AT", OK);
}

#[test]
fn over_long_lines() {
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    // §1.3: a line longer than 256 bytes including CR LF is an error, even if it starts with AT.
    let long = format!("AT+{}", "X".repeat(297));
    at.at(&long, ERROR);
    // 254 characters + CR LF is the longest accepted line; one more is too long.
    let longest = format!("AT+WSHEAD={}", "0".repeat(244));
    assert_eq!(longest.len(), 254);
    at.at(&longest, OK);
    at.at(&format!("{longest}0"), ERROR);
    // 300 bytes without a terminator: echoed, then silently discarded, so a following AT is clean.
    let junk = "A".repeat(300);
    at.send(&junk);
    at.expect(&junk);
    at.expect_silence(Duration::from_millis(300));
    at.at("AT", OK);
    // Special case: a discarded buffer ending in CR keeps the CR, so a lone LF ends an empty
    // line (⇒ ERROR).
    let junk = format!("{}\r", "B".repeat(299));
    at.send(&junk);
    at.expect(&junk);
    at.expect_silence(Duration::from_millis(300));
    at.send("\n");
    at.expect(b"\n\r\nERROR\r\n");
    at.at("AT", OK);
}

#[test]
fn malformed_commands_get_the_firmware_answers() {
    let mut modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let cases: &[(&str, &[u8])] = &[
        // Line level (§1.3, §1.4).
        ("", ERROR),
        ("at", OK),
        ("At", OK),
        ("ATE", ERROR),
        ("AT+UNKNOWN", ERROR),
        ("AT+GMR ", ERROR),
        ("AT+WSOPEN? ", ERROR),
        ("AT+WSOPEN=?", ERROR),
        ("AT+WSOPEN", ERROR),
        ("AT+WSCFG?", ERROR),
        ("AT+WSCFG=?", ERROR),
        ("AT+WSCFG", ERROR),
        ("AT+WSSEND", ERROR),
        ("AT+WSHEAD", ERROR),
        ("AT+WSHEAD=?", ERROR),
        // v5 has no AT+WSDATAFMT (§9).
        ("AT+WSDATAFMT=0,1,63", ERROR),
        // AT+WSCFG (§4.2).
        ("AT+WSCFG=3,10,120", ERROR),
        ("AT+WSCFG=-1,10,120", ERROR),
        ("AT+WSCFG=,10,120", ERROR),
        ("AT+WSCFG=0,0,120", ERROR),
        ("AT+WSCFG=0,7201,120", ERROR),
        ("AT+WSCFG=0,10,0", ERROR),
        ("AT+WSCFG=0,10,7201", ERROR),
        ("AT+WSCFG=0,10,120,0", ERROR),
        ("AT+WSCFG=0,10,120,8193", ERROR),
        ("AT+WSCFG=0,10,120,", ERROR),
        ("AT+WSCFG=0,10,120,1024,4", ERROR),
        ("AT+WSCFG=0,10,120,1024,0,0,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,0,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,1,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,1,-1,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,0,", ERROR),
        ("AT+WSCFG=0,10,\"120\"", ERROR),
        ("AT+WSCFG=0,10, 120", ERROR),
        ("AT+WSCFG=0,10,+120", ERROR),
        ("AT+WSCFG=0,10,4294967417", ERROR),
        ("AT+WSCFG=0x2,0x1,7200,8192", OK),
        ("at+wscfg=1,7200,1", OK),
        ("AT+WSCFG=0,10,120,1024,0", OK),
        ("AT+WSCFG=0,10,120,010", OK),
        // AT+WSOPEN parameters (§6.1): quotes, commas, ranges.
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1", ERROR),
        ("AT+WSOPEN=0,ws://127.0.0.1:1", ERROR),
        ("AT+WSOPEN=0,\"ws://a,b\"", ERROR),
        ("AT+WSOPEN=0,\"ws://a\"b\"", ERROR),
        ("AT+WSOPEN=0,\"ws://a\\", ERROR),
        ("AT+WSOPEN=0", ERROR),
        ("AT+WSOPEN=0,", ERROR),
        ("AT+WSOPEN=3,\"ws://127.0.0.1:1\"", ERROR),
        ("AT+WSOPEN=-1,\"ws://127.0.0.1:1\"", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",,0", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",,180001", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",,,\"Basic x\"", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",\"p\",1000,\"a\",1", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",p", ERROR),
        // The URI does not parse, or the scheme is not ws/wss: ERROR without a URC.
        ("AT+WSOPEN=0,\"\"", ERROR),
        ("AT+WSOPEN=0,\"127.0.0.1:1\"", ERROR),
        ("AT+WSOPEN=0,\"http://127.0.0.1:1\"", ERROR),
        // AT+WSSEND (§7.2): checked before the link is looked up, and no link is open.
        ("AT+WSSEND=0,8193", ERROR),
        ("AT+WSSEND=0,-1", ERROR),
        ("AT+WSSEND=0,abc", ERROR),
        ("AT+WSSEND=0,", ERROR),
        ("AT+WSSEND=3,4", ERROR),
        ("AT+WSSEND=0,4,16", ERROR),
        ("AT+WSSEND=0,4,,100", ERROR),
        ("AT+WSSEND=0,4,1,60001", ERROR),
        ("AT+WSSEND=0,4,1,100,1", ERROR),
        ("AT+WSSEND=0,0", ERROR),
        ("AT+WSSEND=0,4", ERROR),
        // AT+WSCLOSE (§8.1) and AT+WSHEAD (§5.1).
        ("AT+WSCLOSE=3", ERROR),
        ("AT+WSCLOSE=0,1", ERROR),
        ("AT+WSCLOSE=", ERROR),
        ("AT+WSCLOSE=0", OK),
        ("AT+WSHEAD=-1", ERROR),
        ("AT+WSHEAD=0,1", ERROR),
        ("AT+WSHEAD=", ERROR),
    ];
    for (cmd, answer) in cases {
        at.at(cmd, answer);
    }
    at.expect_silence(Duration::from_millis(200));
    // §1.3: two commands in one write: the second is answered busy and dropped.
    at.send("AT\r\nAT\r\n");
    at.expect(b"AT\r\n\r\nbusy p...\r\n\r\nOK\r\n");
    at.expect_silence(Duration::from_millis(200));
    // ATE0 (the line itself still echoed), then nothing is echoed (§12).
    at.at("ATE0", OK);
    at.send("AT\r\n");
    at.expect(OK);
    at.send("AT+WSOPEN?\r\n");
    at.expect(OK);
    at.send("ATE1\r\n");
    at.expect(OK);
    at.at("AT", OK);
    modem.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// --trace, --firmware master

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
    let modem = Modem::tcp(&args);
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

#[test]
fn master_firmware_sends_empty_messages_and_formats_data_with_metadata() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(&[FAST, &["--firmware", "master"]].concat());
    let mut at = modem.connect();
    open(&mut at, 0, &server.uri());
    // §9.1: length 0 sends an empty frame at once, without a prompt; the echo is an empty chunk.
    at.send("AT+WSSEND=0,0\r\n");
    at.expect(b"AT+WSSEND=0,0\r\n");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,0,\r\n"]);
    // §9.2: exactly three parameters.
    at.at("AT+WSDATAFMT=0", ERROR);
    at.at("AT+WSDATAFMT=0,3,63", ERROR);
    at.at("AT+WSDATAFMT=0,1,64", ERROR);
    at.at("AT+WSDATAFMT=0,1,0", ERROR);
    // Level 1 (frame), mask 63: opcode, fin, payload_len, payload_offset, data_len, trailer.
    at.at("AT+WSDATAFMT=0,1,63", OK);
    send_meta(&mut at, b"test", &[b"+WS_DATA:0,1,1,4,0,4,test\r\n"]);
    // A 2500-byte frame in 1024-byte chunks: header on the first, trailer on the last only.
    let p = pattern(2500);
    let first = [&b"+WS_DATA:0,1,1,2500,0,1024,"[..], &p[..1024]].concat();
    let last = [&p[2048..], &b"\r\n"[..]].concat();
    send_meta(&mut at, &p, &[&first, &p[1024..2048], &last]);
    // Level 0 with the default mask 48 is the v5 format again.
    at.at("AT+WSDATAFMT=0,,", OK);
    send_meta(&mut at, b"plain", &[b"+WS_DATA:0,5,plain\r\n"]);
    // Level 0, mask 4: only payload_len, no data_len, no trailer.
    at.at("AT+WSDATAFMT=0,0,4", OK);
    send_meta(&mut at, b"xyz", &[b"+WS_DATA:0,3,xyz"]);
    at.at("AT+WSCLOSE=0", OK);
}

fn send_meta(at: &mut AtClient, payload: &[u8], expected: &[&[u8]]) {
    at.at(&format!("AT+WSSEND=0,{}", payload.len()), PROMPT);
    at.send(payload);
    at.expect_with_floating(expected, SEND_OK);
}

#[test]
fn the_modem_answers_after_a_burst_of_commands_on_several_links() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    for link in 0..3 {
        open(&mut at, link, &server.uri());
    }
    at.at(
        "AT+WSOPEN?",
        format!(
            "{}{}{}\r\nOK\r\n",
            wsopen_line(0, 2, &server.uri()),
            wsopen_line(1, 2, &server.uri()),
            wsopen_line(2, 2, &server.uri())
        ),
    );
    for round in 0..5 {
        for link in 0..3 {
            send_and_echo(&mut at, link, format!("link {link} round {round}").as_bytes());
        }
    }
    for link in 0..3 {
        at.at(&format!("AT+WSCLOSE={link}"), OK);
    }
    at.at("AT+WSOPEN?", OK);
}

// ---------------------------------------------------------------------------------------------
// The upgrade request (§6.1, §11.1, §11.2) and what the server sends (§8.5, §10)

/// A peer that records every upgrade request head and then holds the connection.
fn recording_peer() -> (Peer, std::sync::mpsc::Receiver<String>) {
    let (tx, rx) = report::<String>();
    let tx = std::sync::Mutex::new(tx);
    let peer = Peer::spawn(move |mut tcp: TcpStream, _| {
        let head = ws_accept(&mut tcp);
        let _ = tx
            .lock()
            .expect("lock")
            .send(String::from_utf8(head).expect("ASCII head"));
        hold(&mut tcp);
    });
    (peer, rx)
}

/// The request head's lines after the fixed part (§11.2), and its request line.
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
    let modem = Modem::tcp(FAST);
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

    // Userinfo becomes Basic auth; a query without a path gives "/?query" (§11.1).
    let (line, extras) = next(&mut at, 2, &format!("\"ws://user:pass@127.0.0.1:{port}?k=v\""));
    assert_eq!(line, "GET /?k=v HTTP/1.1");
    assert_eq!(extras, ["Authorization: Basic dXNlcjpwYXNz"]);
    for link in 0..3 {
        at.at(&format!("AT+WSCLOSE={link}"), OK);
    }

    // An explicit auth wins over userinfo; `\,` and `\"` are AT escapes (§1.4, §1.5); the
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
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    // Fixed part (~200 bytes) + 4 headers of ~220 bytes > 1023 bytes (§11.2).
    for i in 0..4 {
        let header = format!("X-Big{i}:{}", "v".repeat(210));
        at.at(&format!("AT+WSHEAD={}", header.len()), PROMPT);
        at.send(&header);
        at.expect(OK);
    }
    open_fails(&mut at, 0, &peer.uri());
    assert!(heads.try_recv().is_err(), "the oversized request reached the server");
    at.at("AT+WSHEAD=0", OK);
    open(&mut at, 0, &peer.uri());
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn a_rejected_upgrade_fails_the_open() {
    let peer = Peer::spawn(|mut tcp: TcpStream, _| {
        use std::io::{Read, Write};
        let mut buf = [0u8; 2048];
        let _ = tcp.read(&mut buf);
        let _ = tcp.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open_fails(&mut at, 2, &peer.uri());
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn server_frames_of_every_kind() {
    let (tx, rx) = report::<Vec<ClientFrame>>();
    let tx = std::sync::Mutex::new(tx);
    let peer = Peer::spawn(move |mut tcp: TcpStream, _| {
        use std::io::Write;
        ws_accept(&mut tcp);
        let mut script = Vec::new();
        script.extend(server_frame(1, true, b""));
        script.extend(server_frame(2, true, b"\0\r\n\xff"));
        // A fragmented message: each fragment is reported, with no marker (§8.5).
        script.extend(server_frame(1, false, b"frag"));
        script.extend(server_frame(9, true, b"ping-data"));
        script.extend(server_frame(0, false, b"men"));
        script.extend(server_frame(0, true, b"ted"));
        // Unsolicited pong and a reserved opcode: no URC.
        script.extend(server_frame(10, true, b"pong"));
        script.extend(server_frame(3, true, b"rsv"));
        script.extend(server_frame(1, true, b"end"));
        tcp.write_all(&script).expect("frames");
        // The modem answers the ping with a pong carrying the same payload.
        let frames: Vec<ClientFrame> = std::iter::from_fn(|| read_client_frame(&mut tcp)).take(1).collect();
        let _ = tx.lock().expect("lock").send(frames);
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    at.send(format!("AT+WSOPEN=0,\"{}\"\r\n", peer.uri()));
    // Data right after the upgrade may come before the OK (§6.1).
    let urcs: &[&[u8]] = &[
        b"+WS_DATA:0,0,\r\n",
        b"+WS_DATA:0,4,\0\r\n\xff\r\n",
        b"+WS_DATA:0,4,frag\r\n",
        b"+WS_DATA:0,3,men\r\n",
        b"+WS_DATA:0,3,ted\r\n",
        b"+WS_DATA:0,3,end\r\n",
    ];
    at.expect(format!("AT+WSOPEN=0,\"{}\"\r\n+WS_CONNECTED:0\r\n", peer.uri()));
    at.expect_with_floating(urcs, OK);
    at.expect_silence(Duration::from_millis(300));
    let frames = rx.recv_timeout(STEP).expect("the peer reported");
    let pong = frames.first().expect("a pong");
    assert_eq!(
        (pong.opcode, pong.fin, pong.masked, pong.payload.as_slice()),
        (10, true, true, &b"ping-data"[..])
    );
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &peer.uri())));
}

#[test]
fn wssend_opcodes_ping_and_close() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &server.uri());
    // A ping: the server's pong is not reported (§7.3).
    at.at("AT+WSSEND=0,2,9", PROMPT);
    at.send("hi");
    at.expect(SEND_OK);
    at.expect_silence(Duration::from_millis(300));
    // Binary, hex opcode, timeout 0.
    at.at("AT+WSSEND=0,3,0x2,0", PROMPT);
    at.send("bin");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,3,bin\r\n"]);
    // A close frame sent by AT: the server answers with its own, so +WS_CLOSED (§7.3).
    at.at("AT+WSSEND=0,2,8", PROMPT);
    at.send([0x03, 0xe8]);
    at.expect_any_order(&[SEND_OK, b"+WS_CLOSED:0\r\n"]);
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn a_late_upgrade_answer_gives_connected_then_error() {
    // The server answers the upgrade 1.2 s late; AT+WSOPEN's timeout is 400 ms (§6.1).
    let peer = Peer::spawn(|mut tcp: TcpStream, n| {
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1200));
        }
        ws_accept(&mut tcp);
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let started = Instant::now();
    at.at(
        &format!("AT+WSOPEN=0,\"{}\",,400", peer.uri()),
        b"+WS_CONNECTED:0\r\n\r\nERROR\r\n",
    );
    assert!(started.elapsed() >= Duration::from_millis(1100));
    at.at("AT+WSOPEN?", OK);
    at.expect_silence(Duration::from_millis(500));
    open(&mut at, 0, &peer.uri());
}

#[test]
fn a_reconnect_attempt_in_progress_is_state_1() {
    // Connection 0 dies at once; connection 1 answers its upgrade only after 1.5 s.
    let peer = Peer::spawn(|mut tcp: TcpStream, n| {
        if n == 1 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        ws_accept(&mut tcp);
        if n != 0 {
            hold(&mut tcp);
        }
    });
    let modem = Modem::tcp(&["--reconnect-delay-ms", "300", "--network-timeout-ms", "5000"]);
    let mut at = modem.connect();
    let uri = peer.uri();
    open(&mut at, 0, &uri);
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    wait_until("the reconnect attempt", STEP, || peer.accepted() == 2);
    // §6.2: state 1 during the (re)connect attempt.
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 1, &uri)));
    // §7.3 corner case: a send in state 1 waits for the attempt and then succeeds.
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("wait");
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.expect(SEND_OK);
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn failed_reconnects_repeat_the_disconnected_urc_until_wsclose() {
    let peer = Peer::spawn(|mut tcp: TcpStream, _| {
        ws_accept(&mut tcp);
    });
    let modem = Modem::tcp(&["--reconnect-delay-ms", "400"]);
    let mut at = modem.connect();
    let uri = peer.uri();
    open(&mut at, 0, &uri);
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    drop(peer); // nothing listens any more
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 3, &uri)));
    // A local close ends it: no URC, no more attempts (§8.1).
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(1000));
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn urcs_arrive_while_the_modem_waits_for_a_payload() {
    // The server pushes a message 400 ms after the upgrade; the host is at the prompt then.
    let peer = Peer::spawn(|mut tcp: TcpStream, _| {
        use std::io::Write;
        ws_accept(&mut tcp);
        std::thread::sleep(Duration::from_millis(400));
        let _ = tcp.write_all(&server_frame(1, true, b"push"));
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &peer.uri());
    at.at("AT+WSSEND=0,4", PROMPT);
    // §1.8: a URC may come between `>` and the result.
    at.expect(b"+WS_DATA:0,4,push\r\n");
    at.send("data");
    at.expect(SEND_OK);
}

#[test]
fn syslog_adds_error_codes_from_the_core_only() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    at.at("AT+SYSLOG=1", OK);
    // §2 examples.
    at.at("AT+WSSEND=0,abc", b"ERR CODE:0x01080001\r\n\r\nERROR\r\n");
    at.at("AT+WSSEND=5,4", ERROR);
    at.at("AT+NOPE", b"ERR CODE:0x01090000\r\n\r\nERROR\r\n");
    at.at("", b"ERR CODE:0x01030000\r\n\r\nERROR\r\n");
    at.at("AT+WSOPEN? ", b"ERR CODE:0x01090000\r\n\r\nERROR\r\n");
    // A missing trailing parameter is a FAIL with the index (§1.5); overflow prints nothing.
    at.at("AT+WSCFG=0,10", b"ERR CODE:0x01080002\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,10,4294967417", ERROR);
    at.at("AT+WSCFG=,10,120", ERROR);
    // No handler for the type: no code even with SYSLOG=1 (§1.4).
    at.at("AT+WSCFG?", ERROR);
    // Busy input and surplus payload (§1.6, §13.2).
    at.send("AT\r\nAT\r\n");
    at.expect(b"AT\r\nERR CODE:0x010b0000\r\n\r\nbusy p...\r\n\r\nOK\r\n");
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("testXY");
    at.expect_with_floating(&[b"ERR CODE:0x010b0000\r\n", BUSY, SEND_OK], &ws_data(0, b"test"));
    at.at("AT+SYSLOG=0", OK);
    at.at("AT+NOPE", ERROR);
}

#[test]
fn a_nul_byte_drops_the_line_so_far() {
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    // §1.3: everything up to and including the NUL is dropped after the echo.
    at.send(b"XX\0AT\r\n");
    at.expect(b"XX\0AT\r\n\r\nOK\r\n");
}

#[test]
fn at_rst_forgets_links_headers_and_configuration() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    at.at("AT+WSHEAD=4", PROMPT);
    at.send("A: b");
    at.expect(OK);
    open(&mut at, 0, &server.uri());
    at.at("ATE0", OK);
    // §12: OK, then the reboot's banner; all WS state lost, echo back on.
    at.send("AT+RST\r\n");
    at.expect(OK);
    at.expect(READY);
    at.at("AT+WSOPEN?", OK);
    at.at("AT+WSHEAD?", OK);
    open(&mut at, 0, &server.uri());
    // AT+RST inside busy input forces a restart (§1.6).
    at.send(format!("AT+WSOPEN=1,\"ws://127.0.0.1:{}\"\r\n", closed_port()));
    at.read_until(b"+WS_DISCONNECTED:1\r\n", STEP);
    at.send("xxAT+RST\r\nyy");
    at.expect(b"\r\nWill force to restart!!!\r\n\r\nOK\r\n");
    at.expect(READY);
    at.expect_silence(Duration::from_millis(500));
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn more_links_with_the_links_option() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(&[FAST, &["--links", "5"]].concat());
    let mut at = modem.connect();
    at.at("AT+WSCFG=4,10,120", OK);
    at.at("AT+WSCFG=5,10,120", ERROR);
    open(&mut at, 4, &server.uri());
    send_and_echo(&mut at, 4, b"five");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(4, 2, &server.uri())));
    at.at("AT+WSCLOSE=4", OK);
}

#[test]
fn bytes_sent_before_the_prompt_are_busy_input_and_lost() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &server.uri());
    // §1.7 item 6: the payload must wait for `>`; sent with the command it is discarded.
    at.send("AT+WSSEND=0,4\r\ntest");
    at.expect(b"AT+WSSEND=0,4\r\n");
    at.expect(BUSY);
    at.expect(PROMPT);
    at.expect_silence(Duration::from_millis(200));
    at.send("abcd");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,4,abcd\r\n"]);
}

#[test]
fn line_assembly_across_writes() {
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let pause = || std::thread::sleep(Duration::from_millis(100));
    // The longest accepted line in two pieces.
    let longest = format!("AT+WSHEAD={}", "0".repeat(244));
    at.send(&longest[..200]);
    pause();
    at.send(format!("{}\r\n", &longest[200..]));
    at.expect(format!("{longest}\r\n\r\nOK\r\n"));
    // 200 + 100 bytes without a terminator: discarded once more than 255 have accumulated.
    at.send("C".repeat(200));
    pause();
    at.send("C".repeat(100));
    at.expect("C".repeat(300));
    at.expect_silence(Duration::from_millis(200));
    at.at("AT", OK);
    // A terminator split between two writes still ends the line.
    at.send("AT\r");
    pause();
    at.send("\n");
    at.expect(b"AT\r\n\r\nOK\r\n");
    // A lone CR or LF does not end a line (§1.3).
    at.send("AT\rX\nY\r\n");
    at.expect(b"AT\rX\nY\r\n\r\nERROR\r\n");
}

#[test]
fn wscfg_on_an_open_link_does_not_touch_it_and_is_freed_by_wsclose() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let payload = pattern(1500);
    let in_default_chunks = |at: &mut AtClient| {
        at.at("AT+WSSEND=0,1500", PROMPT);
        at.send(&payload);
        at.expect_with_floating(&[&ws_data(0, &payload[..1024]), &ws_data(0, &payload[1024..])], SEND_OK);
    };
    open(&mut at, 0, &server.uri());
    // §4.2 note / §15 item 20: accepted, applies only to a next open ...
    at.at("AT+WSCFG=0,30,60,4096", OK);
    in_default_chunks(&mut at);
    // ... but AT+WSCLOSE frees it, so the next open has the defaults again.
    at.at("AT+WSCLOSE=0", OK);
    open(&mut at, 0, &server.uri());
    in_default_chunks(&mut at);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn an_unparsable_uri_keeps_the_configuration_a_bad_scheme_does_not() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    let payload = pattern(1500);
    // §6.1 step 3: client creation fails ⇒ ERROR, config kept.
    at.at("AT+WSCFG=0,30,60,2048", OK);
    at.at("AT+WSOPEN=0,\"\"", ERROR);
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,1500", PROMPT);
    at.send(&payload);
    at.expect_any_order(&[SEND_OK, &ws_data(0, &payload)]);
    at.at("AT+WSCLOSE=0", OK);
    // §6.1 step 5: the start fails on a scheme other than ws/wss ⇒ clean(L), config lost.
    at.at("AT+WSCFG=0,30,60,2048", OK);
    at.at("AT+WSOPEN=0,\"http://127.0.0.1:1\"", ERROR);
    open(&mut at, 0, &server.uri());
    at.at("AT+WSSEND=0,1500", PROMPT);
    at.send(&payload);
    at.expect_with_floating(&[&ws_data(0, &payload[..1024]), &ws_data(0, &payload[1024..])], SEND_OK);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn headers_added_later_do_not_reach_auto_reconnects() {
    let (tx, rx) = report::<String>();
    let tx = std::sync::Mutex::new(tx);
    let peer = Peer::spawn(move |mut tcp: TcpStream, n| {
        let head = ws_accept(&mut tcp);
        let _ = tx.lock().expect("lock").send(String::from_utf8(head).expect("ASCII"));
        if n > 0 {
            hold(&mut tcp);
        } else {
            // Connection 0 ends after a moment: the link reconnects.
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let modem = Modem::tcp(&["--reconnect-delay-ms", "500"]);
    let mut at = modem.connect();
    at.at("AT+WSHEAD=6", PROMPT);
    at.send("X-A: 1");
    at.expect(OK);
    open(&mut at, 0, &peer.uri());
    // §5.3: headers set after the open do not affect the link nor its auto-reconnects.
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

#[test]
fn answered_pings_keep_the_link_up() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    // Ping every second, pong timeout 1 s: the echo server answers every ping.
    at.at("AT+WSCFG=0,1,1", OK);
    open(&mut at, 0, &server.uri());
    at.expect_silence(Duration::from_millis(3500));
    send_and_echo(&mut at, 0, b"alive");
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn the_largest_send_v5() {
    let server = EchoPeer::ws();
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    at.at("AT+WSCFG=0,30,60,8192", OK);
    open(&mut at, 0, &server.uri());
    let payload = pattern(8192);
    at.at("AT+WSSEND=0,8192", PROMPT);
    at.send(&payload);
    at.expect_any_order(&[SEND_OK, &ws_data(0, &payload)]);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn a_close_sent_by_at_then_dropped_tcp_reconnects() {
    // The server drops TCP when it sees a close frame, without answering it (§7.3, opcode 8).
    let peer = Peer::spawn(|mut tcp: TcpStream, n| {
        ws_accept(&mut tcp);
        if n == 0 {
            while let Some(f) = read_client_frame(&mut tcp) {
                if f.opcode == 8 {
                    return;
                }
            }
        }
        hold(&mut tcp);
    });
    let modem = Modem::tcp(FAST);
    let mut at = modem.connect();
    open(&mut at, 0, &peer.uri());
    at.at("AT+WSSEND=0,2,8", PROMPT);
    at.send([0x03, 0xe8]);
    at.expect_any_order(&[SEND_OK, b"+WS_DISCONNECTED:0\r\n"]);
    // Not a close handshake for the AT layer: the link stays and comes back.
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &peer.uri())));
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn master_fin_parameter_and_its_quirks() {
    let (tx, rx) = report::<ClientFrame>();
    let tx = std::sync::Mutex::new(tx);
    let peer = Peer::spawn(move |mut tcp: TcpStream, _| {
        ws_accept(&mut tcp);
        while let Some(f) = read_client_frame(&mut tcp) {
            let _ = tx.lock().expect("lock").send(f);
        }
    });
    let modem = Modem::tcp(&[FAST, &["--firmware", "master"]].concat());
    let mut at = modem.connect();
    open(&mut at, 0, &peer.uri());
    let frame = |expected: (u8, bool, &[u8])| {
        let f = rx.recv_timeout(STEP).expect("a frame");
        assert_eq!((f.opcode, f.fin, f.payload.as_slice()), expected);
        assert!(f.masked);
    };
    let send = |at: &mut AtClient, params: &str, payload: &[u8], result: &[u8]| {
        at.at(&format!("AT+WSSEND=0,{params}"), PROMPT);
        at.send(payload);
        at.expect(result);
    };
    // §9.1: a fragmented text message built with fin=0.
    send(&mut at, "3,1,1000,0", b"abc", SEND_OK);
    frame((1, false, b"abc"));
    send(&mut at, "3,0,1000,0", b"def", SEND_OK);
    frame((0, false, b"def"));
    // Opcode 0 with fin=1 sends an empty final continuation and reports ERROR for len > 0.
    send(&mut at, "3,0,1000,1", b"ghi", ERROR);
    frame((0, true, b""));
    // Length 0: no prompt, the empty frame, SEND OK.
    at.at("AT+WSSEND=0,0,1", SEND_OK);
    frame((1, true, b""));
    // A control opcode with fin=0 is refused after the payload was read; nothing is sent.
    send(&mut at, "2,9,1000,0", b"xx", ERROR);
    send(&mut at, "4,2,1000,1", b"full", SEND_OK);
    frame((2, true, b"full"));
    // 16 KiB limits.
    at.at("AT+WSCFG=1,10,120,16384", OK);
    at.at("AT+WSCFG=1,10,120,16385", ERROR);
    at.at("AT+WSSEND=0,16385", ERROR);
    at.at("AT+WSSEND=0,4,1,1000,2", ERROR);
    at.at("AT+WSSEND=0,4,1,,1", ERROR);
    at.at("AT+WSCLOSE=0", OK);
}
