//! The byte-exact transcripts of spec §13 (and the seed examples), played against the engine with
//! a fake glue. H = host → device, D = device → host.

mod common;

use common::{esc, Glue};
use wsat_at::{Action, Completion, Firmware, LinkEvent};

/// Concatenates expected device pieces and escapes them.
fn d(parts: &[&[u8]]) -> String {
    esc(&parts.concat())
}

#[test]
fn t13_1_open_send_echo_query_close() {
    let mut g = Glue::new();
    g.host(b"AT+WSOPEN=0,\"ws://192.168.200.249:8765\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=0,\"ws://192.168.200.249:8765\"\r\n",
            b"+WS_CONNECTED:0\r\n",
            b"\r\nOK\r\n",
        ])
    );
    g.host(b"AT+WSSEND=0,4\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSSEND=0,4\r\n", b"\r\nOK\r\n\r\n>"]));
    g.host(b"test");
    assert_eq!(g.device(), d(&[b"\r\nSEND OK\r\n", b"+WS_DATA:0,4,test\r\n"]));
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN?\r\n",
            b"+WSOPEN:0,2,\"ws://192.168.200.249:8765\"\r\n",
            b"\r\nOK\r\n",
        ])
    );
    g.host(b"AT+WSCLOSE=0\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSCLOSE=0\r\n", b"\r\nOK\r\n"]));
    assert!(g.links.is_empty());
}

#[test]
fn t13_2_surplus_payload() {
    for (syslog, busy) in [
        (false, &b"\r\nbusy p...\r\n"[..]),
        (true, b"ERR CODE:0x010b0000\r\n\r\nbusy p...\r\n"),
    ] {
        let mut g = Glue::new();
        g.echo = false;
        if syslog {
            g.host(b"AT+SYSLOG=1\r\n");
        }
        g.host(b"AT+WSOPEN=0,\"ws://h:1\"\r\n");
        g.device();
        g.host(b"AT+WSSEND=0,4\r\n");
        assert_eq!(g.device(), d(&[b"AT+WSSEND=0,4\r\n\r\nOK\r\n\r\n>"]));
        g.host(b"testXY");
        assert_eq!(g.device(), d(&[busy, b"\r\nSEND OK\r\n"]));
        assert_eq!(g.sent.last().map(|s| s.payload.as_slice()), Some(&b"test"[..]));
    }
}

#[test]
fn t13_3_headers() {
    let mut g = Glue::new();
    g.host(b"AT+WSHEAD=49\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSHEAD=49\r\n\r\nOK\r\n\r\n>"]));
    g.host(b"AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=");
    assert_eq!(g.device(), d(&[b"\r\nOK\r\n"]));
    g.host(b"AT+WSHEAD?\r\n");
    assert_eq!(
        g.device(),
        d(&[b"AT+WSHEAD?\r\n+WSHEAD:0,\"AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=\"\r\n\r\nOK\r\n"])
    );
    g.host(b"AT+WSHEAD=0\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSHEAD=0\r\n\r\nOK\r\n"]));
    g.host(b"AT+WSHEAD?\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSHEAD?\r\n\r\nOK\r\n"]));
}

#[test]
fn t13_4_failures() {
    let mut g = Glue::new();
    g.refuse.insert("ws://10.0.0.99:9".into());
    g.host(b"AT+WSOPEN=1,\"ws://10.0.0.99:9\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=1,\"ws://10.0.0.99:9\"\r\n",
            b"+WS_DISCONNECTED:1\r\n",
            b"\r\nERROR\r\n",
        ])
    );

    g.host(b"AT+WSOPEN=0,\"ws://host\"\r\n");
    g.device();
    g.host(b"AT+WSOPEN=0,\"ws://host\"\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSOPEN=0,\"ws://host\"\r\n\r\nERROR\r\n"]));

    g.host(b"AT+WSSEND=2,4\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSSEND=2,4\r\n\r\nERROR\r\n"]));

    g.drop_link(0);
    assert_eq!(g.device(), d(&[b"+WS_DISCONNECTED:0\r\n"]));
    g.host(b"AT+WSSEND=0,4\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSSEND=0,4\r\n\r\nOK\r\n\r\n>"]));
    g.host(b"test");
    assert_eq!(g.device(), d(&[b"\r\nERROR\r\n"]));

    g.host(b"AT+WSCFG=0,10,120,1024,2,0,5\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSCFG=0,10,120,1024,2,0,5\r\n",
            b"NO CA FOUND\r\n",
            b"\r\nERROR\r\n"
        ])
    );
}

#[test]
fn t13_5_unsolicited_lifecycle() {
    let mut g = Glue::new();
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.drop_link(0);
    assert_eq!(g.device(), d(&[b"+WS_DISCONNECTED:0\r\n"]));
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(g.device(), d(&[b"+WSOPEN:0,3,\"ws://h\"\r\n\r\nOK\r\n"]));
    g.engine.handle_link_event(g.links[&0].handle, LinkEvent::Connecting);
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(g.device(), d(&[b"+WSOPEN:0,1,\"ws://h\"\r\n\r\nOK\r\n"]));
    g.reconnect(0, false);
    assert_eq!(g.device(), d(&[b"+WS_DISCONNECTED:0\r\n"]));
    g.reconnect(0, true);
    assert_eq!(g.device(), d(&[b"+WS_CONNECTED:0\r\n"]));
    assert_eq!(g.engine.link_status(0), Some(wsat_at::LinkStatus::Connected));
    g.server_close(0);
    assert_eq!(g.device(), d(&[b"+WS_CLOSED:0\r\n"]));
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(g.device(), d(&[b"\r\nOK\r\n"]));
}

#[test]
fn t13_6_large_incoming_frame() {
    let mut g = Glue::new();
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.pieces.clear();
    let frame: Vec<u8> = (0..2500u32).map(|i| b'a' + (i % 26) as u8).collect();
    g.receive(0, 1, &frame);
    let expected = [
        b"+WS_DATA:0,1024,".as_slice(),
        &frame[..1024],
        b"\r\n",
        b"+WS_DATA:0,1024,",
        &frame[1024..2048],
        b"\r\n",
        b"+WS_DATA:0,452,",
        &frame[2048..],
        b"\r\n",
    ]
    .concat();
    assert_eq!(g.device(), esc(&expected));
    // One write per chunk.
    assert_eq!(g.pieces.len(), 3);
}

/// The seed's TCP example session end to end (bring-up commands included).
#[test]
fn seed_example_session() {
    let mut g = Glue::new();
    g.engine.boot();
    assert_eq!(g.device(), d(&[b"\r\nready\r\n"]));
    g.host(b"AT+CWMODE=1\r\n");
    assert_eq!(g.device(), d(&[b"AT+CWMODE=1\r\n\r\nOK\r\n"]));
    g.host(b"AT+CWJAP=\"espressif\",\"1234567890\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+CWJAP=\"espressif\",\"1234567890\"\r\n",
            b"WIFI CONNECTED\r\n",
            b"WIFI GOT IP\r\n",
            b"\r\nOK\r\n",
        ])
    );
    g.now = 1_731_488_415;
    g.host(b"AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n",
            b"\r\nOK\r\n",
            b"+TIME_UPDATED\r\n",
        ])
    );
    g.host(b"AT+CIPSNTPTIME?\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+CIPSNTPTIME?\r\n",
            b"+CIPSNTPTIME:Wed Nov 13 17:00:15 2024",
            b"\r\nOK\r\n",
        ])
    );
    g.host(b"AT+WSCFG=0,30,60,4096,3,0,0\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSCFG=0,30,60,4096,3,0,0\r\n\r\nOK\r\n"]));
    g.host(b"AT+WSOPEN=0,\"wss://127.0.0.1:8766\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=0,\"wss://127.0.0.1:8766\"\r\n",
            b"+WS_CONNECTED:0\r\n",
            b"\r\nOK\r\n",
        ])
    );
    assert_eq!(g.links[&0].buffer_size, 4096);
}

/// Glue-timed flow: WSOPEN stays BUSY until the (delayed) completion; URCs still print.
#[test]
fn open_is_busy_until_completion_and_urcs_interleave() {
    let mut g = Glue::new();
    g.auto = false;
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    let Some(Action::Open { link, .. }) = g.take_action() else {
        panic!("no open")
    };
    g.host(b"AT\r\n");
    g.engine.handle_link_event(link, LinkEvent::Disconnected);
    g.host(b"AT\r\n");
    g.engine.complete(Completion::Open { link, ok: false });
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=0,\"ws://h\"\r\n",
            b"\r\nbusy p...\r\n",
            b"+WS_DISCONNECTED:0\r\n",
            b"\r\nbusy p...\r\n",
            b"\r\nERROR\r\n",
        ])
    );
}

#[test]
fn master_send_length_zero_and_fragment_start() {
    let mut g = Glue::with(Firmware::Master);
    g.echo = false;
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.host(b"AT+WSSEND=0,0\r\n");
    assert_eq!(g.device(), d(&[b"\r\nSEND OK\r\n"]));
    g.host(b"AT+WSSEND=0,3,1,500,0\r\n");
    g.host(b"abc");
    g.host(b"AT+WSSEND=0,3,0,500,1\r\n");
    g.host(b"def");
    assert_eq!(
        g.device(),
        d(&[
            b"\r\nOK\r\n\r\n>",
            b"\r\nSEND OK\r\n",
            b"\r\nOK\r\n\r\n>",
            b"\r\nERROR\r\n",
        ])
    );
    let frames: Vec<(u8, bool, &[u8])> = g.sent.iter().map(|s| (s.opcode, s.fin, s.payload.as_slice())).collect();
    assert_eq!(frames, vec![(1, true, &b""[..]), (1, false, b"abc"), (0, true, b"")]);
}

#[test]
fn master_datafmt_frame_level_on_a_large_frame() {
    let mut g = Glue::with(Firmware::Master);
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSDATAFMT=0,1,63\r\n");
    g.host(b"AT+WSCFG=0,10,120,4\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.receive(0, 2, b"0123456789");
    assert_eq!(g.device(), d(&[b"+WS_DATA:0,2,1,10,0,4,0123", b"4567", b"89\r\n"]));
}
