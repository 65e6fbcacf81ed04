//! End-to-end tests of `wsat modem --pty --link PATH`: a host program opens the pseudo-terminal
//! by the symlink's path, as it would open a USB-serial adapter, and talks AT to it
//! (shared/spec/esp-at-websocket.md §13; DESIGN.md: "a peer closing and reopening it must keep
//! working").

mod modem_support;

use std::time::Duration;

use modem_support::*;
use wsat_testkit::{peer_or_skip, SeedServer};

fn wsopen_line(link: usize, state: u8, uri: &str) -> String {
    format!("+WSOPEN:{link},{state},\"{uri}\"\r\n")
}

/// The seed's ws session (shared/seeds/001, spec §13.1) over an opened AT port.
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
    let mut modem = Modem::pty(&link, FAST);
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
    // Raw mode both ways: CR, LF, NUL, DEL, ^C, ^D, ^S/^Q and 8-bit bytes are data (§1.7, §8.5).
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyWS0");
    let server = EchoPeer::ws();
    let modem = Modem::pty(&link, FAST);
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
    let modem = Modem::pty(&link, FAST);
    let mut at = open_pty(&link);
    at.expect(READY);
    seed_ws_session(&mut at, &server.uri());
    // The host closes the port in the middle of a payload and comes back (§1.7: no timeout).
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
