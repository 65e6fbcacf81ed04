//! Data on open links through `wsat modem --tcp` against real and scripted servers: incoming
//! frames cut into `+WS_DATA` chunks of `buffer_size` (FIRMWARE.md §8.5, §13.6), outgoing sends fragmented
//! (FIRMWARE.md §7.3), every kind of server frame, AT+WSSEND's opcodes and the master firmware's FIN
//! parameter (FIRMWARE.md §9.1), URCs while the host is at the prompt (§1.8), several links at once and
//! `--links`, and keep-alive: answered pings keep a link up, unanswered ones drop it and it
//! reconnects (FIRMWARE.md §10, §15 item 10). The AT formatting alone is in
//! crates/wsat-at/tests/transcripts.rs.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{modem_tcp, EchoPeer, FAST};
use tokio::io::AsyncWriteExt;
use wsat_testkit::at_host::{ws_data, wsopen_line, AtClient, ERROR, OK, PROMPT, SEND_OK, STEP};
use wsat_testkit::data::pattern;
use wsat_testkit::frames::{read_frame, server_frame, Frame};
use wsat_testkit::peer::{accept_upgrade, drain, ScriptedPeer};

#[test]
fn large_incoming_frame_is_split_by_buffer_size() {
    let (tx, rx) = mpsc::channel::<Vec<Frame>>();
    // The peer records the modem's frames, then answers with one 2500-byte text frame.
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            accept_upgrade(&mut tcp).await.head_only();
            let mut frames = Vec::new();
            while let Some(f) = read_frame(&mut tcp).await {
                let last = f.fin;
                frames.push(f);
                if last {
                    break;
                }
            }
            let payload: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
            let _ = tx.send(frames);
            let _ = tcp.write_all(&server_frame(1, true, &payload)).await;
            drain(&mut tcp).await;
        }
    });
    // Exact cuts: the reproducible chunking (the chip's may be smaller, FIRMWARE.md §13.6).
    let modem = modem_tcp(&[FAST, &["--chunking", "full"]].concat());
    let mut at = modem.connect();
    at.open(0, &peer.uri());

    let payload = pattern(2500);
    at.at("AT+WSSEND=0,2500", PROMPT);
    at.send(&payload);
    // FIRMWARE.md §13.6: default buffer 1024 ⇒ 1024 + 1024 + 452, each its own URC; SEND OK anywhere.
    at.expect_with_floating(
        &[
            &ws_data(0, &payload[..1024]),
            &ws_data(0, &payload[1024..2048]),
            &ws_data(0, &payload[2048..]),
        ],
        SEND_OK,
    );
    // FIRMWARE.md §7.3: a send longer than buffer_size is fragmented: text without FIN, continuations,
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
    // Exact cuts: the reproducible chunking (the chip's may be smaller, FIRMWARE.md §13.6).
    let modem = modem_tcp(&[FAST, &["--chunking", "full"]].concat());
    let mut at = modem.connect();
    let payload = pattern(3000);
    at.at("AT+WSCFG=0,30,60,2048", OK);
    at.open(0, &server.uri());
    at.at("AT+WSSEND=0,3000", PROMPT);
    at.send(&payload);
    at.expect_with_floating(&[&ws_data(0, &payload[..2048]), &ws_data(0, &payload[2048..])], SEND_OK);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn the_modem_answers_after_a_burst_of_commands_on_several_links() {
    let server = EchoPeer::ws();
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    for link in 0..3 {
        at.open(link, &server.uri());
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
            at.send_and_echo(link, format!("link {link} round {round}").as_bytes());
        }
    }
    for link in 0..3 {
        at.at(&format!("AT+WSCLOSE={link}"), OK);
    }
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn server_frames_of_every_kind() {
    let (tx, rx) = mpsc::channel::<Vec<Frame>>();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            accept_upgrade(&mut tcp).await.head_only();
            let mut script = Vec::new();
            script.extend(server_frame(1, true, b""));
            script.extend(server_frame(2, true, b"\0\r\n\xff"));
            // A fragmented message: each fragment is reported, with no marker (FIRMWARE.md §8.5).
            script.extend(server_frame(1, false, b"frag"));
            script.extend(server_frame(9, true, b"ping-data"));
            script.extend(server_frame(0, false, b"men"));
            script.extend(server_frame(0, true, b"ted"));
            // Unsolicited pong and a reserved opcode: no URC.
            script.extend(server_frame(10, true, b"pong"));
            script.extend(server_frame(3, true, b"rsv"));
            script.extend(server_frame(1, true, b"end"));
            tcp.write_all(&script).await.expect("frames");
            // The modem answers the ping with a pong carrying the same payload.
            let frames: Vec<Frame> = read_frame(&mut tcp).await.into_iter().collect();
            let _ = tx.send(frames);
            drain(&mut tcp).await;
        }
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.send(format!("AT+WSOPEN=0,\"{}\"\r\n", peer.uri()));
    // Data right after the upgrade may come before the OK (FIRMWARE.md §6.1).
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
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.open(0, &server.uri());
    // A ping: the server's pong is not reported (FIRMWARE.md §7.3).
    at.at("AT+WSSEND=0,2,9", PROMPT);
    at.send("hi");
    at.expect(SEND_OK);
    at.expect_silence(Duration::from_millis(300));
    // Binary, hex opcode, timeout 0.
    at.at("AT+WSSEND=0,3,0x2,0", PROMPT);
    at.send("bin");
    at.expect_any_order(&[SEND_OK, b"+WS_DATA:0,3,bin\r\n"]);
    // A close frame sent by AT: the server answers with its own, so +WS_CLOSED (FIRMWARE.md §7.3).
    at.at("AT+WSSEND=0,2,8", PROMPT);
    at.send([0x03, 0xe8]);
    at.expect_any_order(&[SEND_OK, b"+WS_CLOSED:0\r\n"]);
    at.at("AT+WSOPEN?", OK);
}

#[test]
fn urcs_arrive_while_the_modem_waits_for_a_payload() {
    // The server pushes a message 400 ms after the upgrade; the host is at the prompt then.
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await.head_only();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = tcp.write_all(&server_frame(1, true, b"push")).await;
        drain(&mut tcp).await;
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.open(0, &peer.uri());
    at.at("AT+WSSEND=0,4", PROMPT);
    // FIRMWARE.md §1.8: a URC may come between `>` and the result.
    at.expect(b"+WS_DATA:0,4,push\r\n");
    at.send("data");
    at.expect(SEND_OK);
}

#[test]
fn more_links_with_the_links_option() {
    let server = EchoPeer::ws();
    let modem = modem_tcp(&[FAST, &["--links", "5"]].concat());
    let mut at = modem.connect();
    at.at("AT+WSCFG=4,10,120", OK);
    at.at("AT+WSCFG=5,10,120", ERROR);
    at.open(4, &server.uri());
    at.send_and_echo(4, b"five");
    at.at("AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(4, 2, &server.uri())));
    at.at("AT+WSCLOSE=4", OK);
}

#[test]
fn the_largest_send_v5() {
    let server = EchoPeer::ws();
    // The echo as one 8192-byte chunk: the reproducible chunking.
    let modem = modem_tcp(&[FAST, &["--chunking", "full"]].concat());
    let mut at = modem.connect();
    at.at("AT+WSCFG=0,30,60,8192", OK);
    at.open(0, &server.uri());
    let payload = pattern(8192);
    at.at("AT+WSSEND=0,8192", PROMPT);
    at.send(&payload);
    at.expect_any_order(&[SEND_OK, &ws_data(0, &payload)]);
    at.at("AT+WSCLOSE=0", OK);
}

#[test]
fn master_fin_parameter_and_its_quirks() {
    let (tx, rx) = mpsc::channel::<Frame>();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            accept_upgrade(&mut tcp).await.head_only();
            while let Some(f) = read_frame(&mut tcp).await {
                let _ = tx.send(f);
            }
        }
    });
    let modem = modem_tcp(&[FAST, &["--firmware", "master"]].concat());
    let mut at = modem.connect();
    at.open(0, &peer.uri());
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
    // FIRMWARE.md §9.1: a fragmented text message built with fin=0.
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

#[test]
fn unanswered_pings_drop_the_link_and_it_reconnects() {
    let (tx, rx) = mpsc::channel::<Frame>();
    // Reads the modem's frames, reports them, never answers (no pong).
    let peer = ScriptedPeer::start(move |mut tcp, n| {
        let tx = tx.clone();
        async move {
            accept_upgrade(&mut tcp).await.head_only();
            if n == 0 {
                while let Some(f) = read_frame(&mut tcp).await {
                    let _ = tx.send(f);
                }
            }
            drain(&mut tcp).await;
        }
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    // Ping every 1 s, pong timeout 2 s.
    at.at("AT+WSCFG=0,1,2", OK);
    at.open(0, &peer.uri());
    let up = Instant::now();
    at.expect_within(b"+WS_DISCONNECTED:0\r\n", Duration::from_secs(8));
    let lasted = up.elapsed();
    assert!(
        lasted >= Duration::from_millis(2500) && lasted <= Duration::from_secs(6),
        "dropped after {lasted:?}; expected ping after ~1 s + pong timeout 2 s (FIRMWARE.md §10)"
    );
    let ping = rx.recv_timeout(Duration::from_secs(1)).expect("the peer got a ping");
    assert_eq!(
        (ping.opcode, ping.fin, ping.masked, ping.payload.len()),
        (9, true, true, 0)
    );
    // FIRMWARE.md §15 item 10: dropped, then re-established.
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.at("AT+WSCLOSE=0", OK);
    at.expect_silence(Duration::from_millis(300));
}

#[test]
fn answered_pings_keep_the_link_up() {
    let server = EchoPeer::ws();
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    // Ping every second, pong timeout 1 s: the echo server answers every ping.
    at.at("AT+WSCFG=0,1,1", OK);
    at.open(0, &server.uri());
    at.expect_silence(Duration::from_millis(3500));
    at.send_and_echo(0, b"alive");
    at.at("AT+WSCLOSE=0", OK);
}
