//! The seed document's sessions (shared/seeds/001_*.txt) through `wsat modem --tcp` against
//! the seed's own Python servers (ws, and wss with mutual TLS and the firmware's PKI), every
//! answer compared byte for byte with the firmware's (docs/FIRMWARE.md; section
//! numbers below refer to it). The pty variant is in tests/modem_ports.rs.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{modem_tcp, FAST};
use wsat_testkit::at_host::{wsopen_line, OK, PROMPT, SEND_OK, STEP};
use wsat_testkit::{peer_or_skip, shared_dir, SeedServer};

#[test]
fn seed_ws_session_against_the_seed_server() {
    if !peer_or_skip("seed_ws_session_against_the_seed_server") {
        return;
    }
    let server = SeedServer::ws();
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    let uri = server.uri();

    at.at("AT+CWMODE=1", OK);
    at.at(
        "AT+CWJAP=\"espressif\",\"1234567890\"",
        b"WIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n",
    );
    // FIRMWARE.md §13.1, byte for byte.
    at.open(0, &uri);
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("test");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,4,test\r\n"]);
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    at.at("AT+WSCLOSE=0", OK);
    // A local close prints no URC and forgets the link (FIRMWARE.md §8.1).
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
    let modem = modem_tcp(&args);
    let mut at = modem.connect();
    let uri = server.uri();

    at.at("AT+CWMODE=1", OK);
    at.at(
        "AT+CWJAP=\"espressif\",\"1234567890\"",
        b"WIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n",
    );
    at.at("AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"", OK);
    at.expect(b"+TIME_UPDATED\r\n");
    // `+CIPSNTPTIME:<asctime in UTC+8>` without CR LF, then OK (FIRMWARE.md §12).
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

    // The seed's mutual-TLS example: client cert #0, CA #0, no host name check (FIRMWARE.md §4.4).
    at.at("AT+WSCFG=0,30,60,4096,3,0,0", OK);
    at.open(0, &uri);
    at.send_and_echo(0, b"test");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(200));
}
