//! A link that is lost, through `wsat modem --tcp`: a server's close frame (FIRMWARE.md §8.4), a server
//! dying mid-frame (FIRMWARE.md §8.3), a close sent by AT that the server answers by dropping TCP, and the
//! reconnects that follow, with their states and timing (FIRMWARE.md §6.2, §10, §13.5), with the
//! firmware's timings shortened. Pings that go unanswered are in tests/modem_links.rs.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{modem_tcp, FAST};
use tokio::io::AsyncWriteExt;
use wsat_testkit::at_host::{wsopen_line, ERROR, OK, PROMPT, SEND_OK, STEP};
use wsat_testkit::frames::{read_frame, server_frame, Frame};
use wsat_testkit::peer::{accept_upgrade, drain, ScriptedPeer};
use wsat_testkit::wait_until;

#[test]
fn a_server_close_frame_removes_the_link() {
    let (tx, rx) = mpsc::channel::<Option<Frame>>();
    let peer = ScriptedPeer::start(move |mut tcp, n| {
        let tx = tx.clone();
        async move {
            accept_upgrade(&mut tcp).await.head_only();
            if n == 0 {
                tcp.write_all(&server_frame(8, true, &[0x03, 0xe8, b'b', b'y', b'e']))
                    .await
                    .expect("send close");
                let _ = tx.send(read_frame(&mut tcp).await);
            }
            drain(&mut tcp).await;
        }
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.open(0, &peer.uri());
    // FIRMWARE.md §8.4: the URC, and the link is gone at once.
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
    at.open(0, &peer.uri());
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &peer.uri())));
    at.expect_silence(Duration::from_millis(300));
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn a_server_dying_mid_frame_disconnects_and_the_link_reconnects() {
    let peer = ScriptedPeer::start(|mut tcp, n| async move {
        accept_upgrade(&mut tcp).await.head_only();
        if n == 0 {
            // Half a frame: the header of a 10-byte text frame and 5 of its bytes, then TCP ends.
            let frame = server_frame(1, true, b"0123456789");
            tcp.write_all(&frame[..frame.len() - 5]).await.expect("half a frame");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        drain(&mut tcp).await;
    });
    let modem = modem_tcp(&["--reconnect-delay-ms", "1500", "--open-error-delay-ms", "200"]);
    let mut at = modem.connect();
    let uri = peer.uri();
    at.open(0, &uri);
    // FIRMWARE.md §8.3: read error / EOF without a close frame. What was read of the unfinished
    // frame is printed first (FIRMWARE.md §8.5): its 5 bytes, sent in one write.
    at.expect(b"+WS_DATA:0,5,01234\r\n+WS_DISCONNECTED:0\r\n");
    let down = Instant::now();
    // FIRMWARE.md §6.2: state 3 while waiting to reconnect; the link is still listed.
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 3, &uri)));
    // FIRMWARE.md §13.4: WSSEND on a link in state 3 prompts, swallows the payload, then ERROR.
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("test");
    at.expect(ERROR);
    // FIRMWARE.md §13.5: after the reconnect delay the link comes back by itself.
    at.expect(b"+WS_CONNECTED:0\r\n");
    let after = down.elapsed();
    assert!(
        after >= Duration::from_millis(1300),
        "reconnected {after:?} after the disconnect; --reconnect-delay-ms is 1500 (FIRMWARE.md §10)"
    );
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    assert_eq!(peer.accepted(), 2);
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_reconnect_attempt_in_progress_is_state_1() {
    // Connection 0 dies at once; connection 1 answers its upgrade only after 1.5 s.
    let peer = ScriptedPeer::start(|mut tcp, n| async move {
        if n == 1 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        accept_upgrade(&mut tcp).await.head_only();
        if n != 0 {
            drain(&mut tcp).await;
        }
    });
    let modem = modem_tcp(&["--reconnect-delay-ms", "300", "--network-timeout-ms", "5000"]);
    let mut at = modem.connect();
    let uri = peer.uri();
    at.open(0, &uri);
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    wait_until("the reconnect attempt", STEP, || peer.accepted() == 2);
    // FIRMWARE.md §6.2: state 1 during the (re)connect attempt.
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 1, &uri)));
    // FIRMWARE.md §7.3 corner case: a send in state 1 waits for the attempt and then succeeds.
    at.at("AT+WSSEND=0,4", PROMPT);
    at.send("wait");
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.expect(SEND_OK);
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &uri)));
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn failed_reconnects_repeat_the_disconnected_urc_until_wsclose() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await.head_only();
    });
    let modem = modem_tcp(&["--reconnect-delay-ms", "400"]);
    let mut at = modem.connect();
    let uri = peer.uri();
    at.open(0, &uri);
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    drop(peer); // nothing listens any more
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 3, &uri)));
    // A local close ends it: no URC, no more attempts (FIRMWARE.md §8.1).
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(1000));
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn a_close_sent_by_at_then_dropped_tcp_reconnects() {
    // The server drops TCP when it sees a close frame, without answering it (FIRMWARE.md §7.3, opcode 8).
    let peer = ScriptedPeer::start(|mut tcp, n| async move {
        accept_upgrade(&mut tcp).await.head_only();
        if n == 0 {
            while let Some(f) = read_frame(&mut tcp).await {
                if f.opcode == 8 {
                    return;
                }
            }
        }
        drain(&mut tcp).await;
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.open(0, &peer.uri());
    at.at("AT+WSSEND=0,2,8", PROMPT);
    at.send([0x03, 0xe8]);
    at.expect_any_order(&[SEND_OK, b"+WS_DISCONNECTED:0\r\n"]);
    // Not a close handshake for the AT layer: the link stays and comes back.
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, &peer.uri())));
    at.at("AT+WSCLOSE=0", OK);
}
