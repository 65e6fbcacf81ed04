//! Port mechanics (FIRMWARE.md §1): echo, line assembly, limits, busy, data mode, URC interleaving,
//! restart, completions and link-event filtering.

use crate::testutil::{esc, T};
use crate::{Action, Completion, LinkEvent, LinkStatus, PortState};

#[test]
fn bare_at() {
    let mut t = T::new();
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
    assert_eq!(t.e.port_state(), PortState::Idle { buffered: 0 });
}

#[test]
fn boot_banner_keeps_state() {
    let mut t = T::new();
    t.io(b"ATE0\r\n");
    t.e.boot();
    assert_eq!(t.out(), esc(b"\r\nready\r\n"));
    assert_eq!(t.io(b"AT\r\n"), esc(b"\r\nOK\r\n"));
}

#[test]
fn echo_is_per_chunk_and_before_the_response() {
    let mut t = T::new();
    let mut pieces = Vec::new();
    for b in b"AT\r\n" {
        t.e.feed(&[*b]);
        while let Some(p) = t.e.poll_output() {
            pieces.push(p);
        }
    }
    let expected: Vec<Vec<u8>> = vec![
        b"A".to_vec(),
        b"T".to_vec(),
        b"\r".to_vec(),
        b"\n".to_vec(),
        b"\r\nOK\r\n".to_vec(),
    ];
    assert_eq!(pieces, expected);
}

#[test]
fn two_commands_in_one_write_give_busy_before_ok() {
    let mut t = T::new();
    assert_eq!(t.io(b"AT\r\nAT\r\n"), esc(b"AT\r\n\r\nbusy p...\r\n\r\nOK\r\n"));
}

#[test]
fn bytes_after_a_parse_failure_are_processed_in_idle() {
    let mut t = T::new();
    assert_eq!(t.io(b"\r\nAT\r\n"), esc(b"\r\n\r\nERROR\r\nAT\r\n\r\nOK\r\n"));
}

#[test]
fn ate0_ate1_and_ate() {
    let mut t = T::new();
    assert_eq!(t.io(b"ATE0\r\n"), esc(b"ATE0\r\n\r\nOK\r\n"));
    assert_eq!(t.io(b"AT\r\n"), esc(b"\r\nOK\r\n"));
    assert_eq!(t.io(b"ATE1\r\n"), esc(b"\r\nOK\r\n"));
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
    assert_eq!(t.io(b"ATE\r\n"), esc(b"ATE\r\n\r\nERROR\r\n"));
}

#[test]
fn lone_cr_or_lf_do_not_terminate() {
    let mut t = T::new();
    assert_eq!(t.io(b"AT\r"), esc(b"AT\r"));
    assert_eq!(t.io(b"X\n"), esc(b"X\n"));
    assert_eq!(t.io(b"\r\n"), esc(b"\r\n\r\nERROR\r\n"));
}

#[test]
fn empty_line_is_error_with_no_at_code() {
    let mut t = T::new();
    assert_eq!(t.io(b"\r\n"), esc(b"\r\n\r\nERROR\r\n"));
    t.io(b"AT+SYSLOG=1\r\n");
    assert_eq!(t.io(b"\r\n"), esc(b"\r\nERR CODE:0x01030000\r\n\r\nERROR\r\n"));
    assert_eq!(t.io(b"XY\r\n"), esc(b"XY\r\nERR CODE:0x01030000\r\n\r\nERROR\r\n"));
}

#[test]
fn nul_drops_everything_before_it() {
    let mut t = T::new();
    assert_eq!(t.io(b"garbage\0AT\r\n"), esc(b"garbage\0AT\r\n\r\nOK\r\n"));
}

#[test]
fn unterminated_input_over_255_bytes_is_discarded_silently() {
    let mut t = T::new();
    let junk = vec![b'x'; 256];
    assert_eq!(t.io(&junk), esc(&junk));
    assert_eq!(t.e.port_state(), PortState::Idle { buffered: 0 });
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
    // 255 bytes are still kept.
    t.io(&junk[..255]);
    assert_eq!(t.e.port_state(), PortState::Idle { buffered: 255 });
}

#[test]
fn discard_keeps_a_trailing_cr() {
    let mut t = T::new();
    let mut junk = vec![b'x'; 300];
    junk.push(b'\r');
    t.io(&junk);
    assert_eq!(t.e.port_state(), PortState::Idle { buffered: 1 });
    assert_eq!(t.io(b"\n"), esc(b"\n\r\nERROR\r\n"));
}

#[test]
fn line_limit_is_256_bytes_including_crlf() {
    let mut t = T::new();
    t.io(b"AT+SYSLOG=1\r\n");
    // `AT+GMR,` + junk: runs AT+GMR when it fits.
    let mut line = b"AT+GMR,".to_vec();
    line.resize(254, b'y');
    line.extend_from_slice(b"\r\n");
    assert!(t.io(&line).ends_with(&esc(b"\r\nOK\r\n")));
    let mut long = b"AT+GMR,".to_vec();
    long.resize(255, b'y');
    long.extend_from_slice(b"\r\n");
    let expected = [long.as_slice(), b"ERR CODE:0x01030000\r\n\r\nERROR\r\n"].concat();
    assert_eq!(t.io(&long), esc(&expected));
}

#[test]
fn a_128_kib_line_is_refused_and_not_kept() {
    let mut t = T::new();
    let mut line = b"AT+GMR,".to_vec();
    line.resize(128 * 1024, b'y');
    line.extend_from_slice(b"\r\n");
    assert_eq!(t.io(&line), esc(&[line.as_slice(), b"\r\nERROR\r\n"].concat()));
    assert_eq!(t.e.port_state(), PortState::Idle { buffered: 0 });
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
}

#[test]
fn lowercase_prefix_and_names() {
    let mut t = T::new();
    assert_eq!(t.io(b"at\r\n"), esc(b"at\r\n\r\nOK\r\n"));
    assert_eq!(t.io(b"at+wsopen?\r\n"), esc(b"at+wsopen?\r\n\r\nOK\r\n"));
    assert_eq!(t.io(b"at+syslog?\r\n"), esc(b"at+syslog?\r\n+SYSLOG:0\r\n\r\nOK\r\n"));
}

#[test]
fn junk_after_query_is_unsupported() {
    let mut t = T::new();
    t.io(b"AT+SYSLOG=1\r\n");
    assert_eq!(
        t.io(b"AT+WSOPEN? \r\n"),
        esc(b"AT+WSOPEN? \r\nERR CODE:0x01090000\r\n\r\nERROR\r\n")
    );
    assert_eq!(
        t.io(b"AT+WSOPEN=?x\r\n"),
        esc(b"AT+WSOPEN=?x\r\nERR CODE:0x01090000\r\n\r\nERROR\r\n")
    );
}

#[test]
fn execute_with_junk_and_comma_quirk() {
    let mut t = T::new();
    t.io(b"ATE0\r\n");
    t.io(b"AT+SYSLOG=1\r\n");
    assert_eq!(t.io(b"AT+GMR \r\n"), esc(b"ERR CODE:0x01090000\r\n\r\nERROR\r\n"));
    let out = t.io(b"AT+GMR,anything\r\n");
    assert!(out.starts_with("AT version:9.9.9(wsat - HOST - "), "{out}");
    // WS commands have no execute handler: such lines are plain ERRORs.
    assert_eq!(t.io(b"AT+WSOPEN,1\r\n"), esc(b"\r\nERROR\r\n"));
}

#[test]
fn unknown_command_and_missing_handler() {
    let mut t = T::new();
    assert_eq!(t.io(b"AT+FOO\r\n"), esc(b"AT+FOO\r\n\r\nERROR\r\n"));
    t.io(b"AT+SYSLOG=1\r\n");
    assert_eq!(
        t.io(b"AT+FOO=1\r\n"),
        esc(b"AT+FOO=1\r\nERR CODE:0x01090000\r\n\r\nERROR\r\n")
    );
    for cmd in [
        &b"AT+WSCFG?\r\n"[..],
        b"AT+WSCFG=?\r\n",
        b"AT+WSCFG\r\n",
        b"AT+WSOPEN=?\r\n",
        b"AT+WSOPEN\r\n",
        b"AT+WSSEND\r\n",
        b"AT+WSHEAD\r\n",
        b"AT+WSHEAD=?\r\n",
        b"AT+WSCLOSE?\r\n",
        b"AT?\r\n",
    ] {
        let expected = [cmd, b"\r\nERROR\r\n"].concat();
        assert_eq!(t.io(cmd), esc(&expected));
    }
}

#[test]
fn parameter_err_codes_only_from_getters_with_syslog() {
    let mut t = T::new();
    assert_eq!(t.io(b"AT+WSSEND=0,abc\r\n"), esc(b"AT+WSSEND=0,abc\r\n\r\nERROR\r\n"));
    t.io(b"AT+SYSLOG=1\r\n");
    assert_eq!(
        t.io(b"AT+WSSEND=0,abc\r\n"),
        esc(b"AT+WSSEND=0,abc\r\nERR CODE:0x01080001\r\n\r\nERROR\r\n")
    );
    assert_eq!(t.io(b"AT+WSSEND=5,4\r\n"), esc(b"AT+WSSEND=5,4\r\n\r\nERROR\r\n"));
    // Overflow fails without a code; a missing index prints one.
    assert_eq!(
        t.io(b"AT+WSSEND=0,4294967296\r\n"),
        esc(b"AT+WSSEND=0,4294967296\r\n\r\nERROR\r\n")
    );
    assert_eq!(
        t.io(b"AT+WSCFG=0,10\r\n"),
        esc(b"AT+WSCFG=0,10\r\nERR CODE:0x01080002\r\n\r\nERROR\r\n")
    );
    assert_eq!(
        t.io(b"AT+WSOPEN=0,ws\r\n"),
        esc(b"AT+WSOPEN=0,ws\r\nERR CODE:0x01080001\r\n\r\nERROR\r\n")
    );
}

#[test]
fn busy_per_chunk_while_waiting_and_syslog_code() {
    let mut t = T::new();
    t.io(b"ATE0\r\n");
    t.out();
    t.io(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    assert_eq!(t.io(b"AT\r\n"), esc(b"\r\nbusy p...\r\n"));
    assert_eq!(t.io(b"A"), esc(b"\r\nbusy p...\r\n"));
    assert_eq!(t.e.port_state(), PortState::Busy);
    let Some(Action::Open { link, .. }) = t.action() else {
        panic!("no open")
    };
    t.e.handle_link_event(link, LinkEvent::Connected);
    t.e.complete(Completion::Open { link, ok: true });
    assert_eq!(t.out(), esc(b"+WS_CONNECTED:0\r\n\r\nOK\r\n"));
    // Partial input of the busy period is gone.
    assert_eq!(t.io(b"AT\r\n"), esc(b"\r\nOK\r\n"));

    t.io(b"AT+SYSLOG=1\r\n");
    t.io(b"AT+WSOPEN=1,\"ws://h\"\r\n");
    assert_eq!(t.io(b"x"), esc(b"ERR CODE:0x010b0000\r\n\r\nbusy p...\r\n"));
}

#[test]
fn forced_restart_while_busy() {
    let mut t = T::new();
    let link0 = t.open(0);
    t.io(b"AT+WSHEAD=3\r\n");
    t.io(b"a:b");
    t.out();
    t.io(b"AT+WSOPEN=1,\"ws://h\"\r\n");
    let Some(Action::Open { link, .. }) = t.action() else {
        panic!("no open")
    };
    assert_eq!(
        t.io(b"xxAT+RST\r\nyy"),
        esc(b"\r\nWill force to restart!!!\r\n\r\nOK\r\n\r\nready\r\n")
    );
    assert_eq!(t.action(), Some(Action::CloseAll));
    assert_eq!(t.action(), None);
    // Stale completion and events are ignored; all state is gone.
    t.e.complete(Completion::Open { link, ok: true });
    t.e.handle_link_event(link0, LinkEvent::Disconnected);
    assert_eq!(t.out(), "");
    assert_eq!(t.e.link_status(0), None);
    assert_eq!(t.io(b"AT+WSHEAD?\r\n"), esc(b"AT+WSHEAD?\r\n\r\nOK\r\n"));
}

#[test]
fn restart_override_in_the_rest_of_a_command_chunk() {
    let mut t = T::new();
    assert_eq!(
        t.io(b"AT+GMR\r\nAT+RST\r\n"),
        esc(b"AT+GMR\r\n\r\nWill force to restart!!!\r\n\r\nOK\r\n\r\nready\r\n")
    );
    assert_eq!(t.action(), Some(Action::CloseAll));
}

#[test]
fn at_rst_resets_ram_state() {
    let mut t = T::new();
    t.io(b"ATE0\r\n");
    t.io(b"AT+SYSLOG=1\r\n");
    t.e.feed(b"AT+RST\r\n");
    assert!(t.out().ends_with(&esc(b"\r\nOK\r\n\r\nready\r\n")));
    assert_eq!(t.action(), Some(Action::CloseAll));
    assert_eq!(t.io(b"AT+SYSLOG?\r\n"), esc(b"AT+SYSLOG?\r\n+SYSLOG:0\r\n\r\nOK\r\n"));
    assert_eq!(t.io(b"AT+RST\r\n"), esc(b"AT+RST\r\n\r\nOK\r\n\r\nready\r\n"));
}

#[test]
fn data_mode_reads_exactly_n_bytes_across_chunks() {
    let mut t = T::new();
    let link = t.open(0);
    assert_eq!(t.io(b"AT+WSSEND=0,8\r\n"), esc(b"AT+WSSEND=0,8\r\n\r\nOK\r\n\r\n>"));
    assert_eq!(t.io(b"AT\r\n"), "");
    assert_eq!(t.e.port_state(), PortState::Data { remaining: 4 });
    assert_eq!(t.io(b"+++"), "");
    assert_eq!(t.io(b"\0"), "");
    assert_eq!(
        t.action(),
        Some(Action::Send {
            link,
            opcode: 1,
            fin: true,
            payload: b"AT\r\n+++\0".to_vec(),
            timeout_ms: 10_000
        })
    );
    assert_eq!(t.io(b"AT\r\n"), esc(b"\r\nbusy p...\r\n"));
    t.e.complete(Completion::Send { link, ok: true });
    assert_eq!(t.out(), esc(b"\r\nSEND OK\r\n"));
}

#[test]
fn data_mode_swallows_at_rst() {
    let mut t = T::new();
    t.open(0);
    t.io(b"AT+WSSEND=0,8\r\n");
    t.out();
    assert_eq!(t.io(b"AT+RST\r\n"), "");
    assert!(matches!(t.action(), Some(Action::Send { .. })));
}

#[test]
fn surplus_gives_one_busy_before_the_result() {
    let mut t = T::new();
    let link = t.open(0);
    t.io(b"AT+WSSEND=0,4\r\n");
    t.out();
    assert_eq!(t.io(b"testXY"), esc(b"\r\nbusy p...\r\n"));
    let Some(Action::Send { payload, .. }) = t.action() else {
        panic!("no send")
    };
    assert_eq!(payload, b"test");
    t.e.complete(Completion::Send { link, ok: true });
    assert_eq!(t.out(), esc(b"\r\nSEND OK\r\n"));
    // The surplus was not kept as command input.
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
}

#[test]
fn bytes_before_the_prompt_are_busy_and_lost() {
    let mut t = T::new();
    t.open(0);
    assert_eq!(
        t.io(b"AT+WSSEND=0,4\r\ntest"),
        esc(b"AT+WSSEND=0,4\r\n\r\nbusy p...\r\n\r\nOK\r\n\r\n>")
    );
    assert_eq!(t.e.port_state(), PortState::Data { remaining: 4 });
}

#[test]
fn urcs_interleave_while_busy_and_in_data_mode() {
    let mut t = T::new();
    let link = t.open(0);
    t.e.feed(b"AT+WSSEND=0,2\r\n");
    t.e.handle_link_event(
        link,
        LinkEvent::Data {
            opcode: 1,
            fin: true,
            payload_len: 2,
            offset: 0,
            chunk: b"hi".to_vec(),
        },
    );
    assert_eq!(t.out(), esc(b"AT+WSSEND=0,2\r\n\r\nOK\r\n\r\n>+WS_DATA:0,2,hi\r\n"));
    t.io(b"yo");
    t.e.handle_link_event(link, LinkEvent::Disconnected);
    t.e.complete(Completion::Send { link, ok: false });
    assert_eq!(t.out(), esc(b"+WS_DISCONNECTED:0\r\n\r\nERROR\r\n"));
    assert_eq!(t.e.link_status(0), Some(LinkStatus::WaitingToReconnect));
}

#[test]
fn each_urc_is_its_own_piece() {
    let mut t = T::new();
    let link = t.open(2);
    t.e.handle_link_event(link, LinkEvent::Disconnected);
    t.e.handle_link_event(link, LinkEvent::Connecting);
    t.e.handle_link_event(link, LinkEvent::Connected);
    assert_eq!(t.e.poll_output(), Some(b"+WS_DISCONNECTED:2\r\n".to_vec()));
    assert_eq!(t.e.poll_output(), Some(b"+WS_CONNECTED:2\r\n".to_vec()));
    assert_eq!(t.e.poll_output(), None);
}

#[test]
fn mismatched_completions_are_ignored() {
    let mut t = T::new();
    let link = t.open(0);
    t.e.complete(Completion::Send { link, ok: true });
    t.e.complete(Completion::Close { link });
    t.e.complete(Completion::Time { unix_seconds: 0 });
    assert_eq!(t.out(), "");
    assert_eq!(t.e.link_status(0), Some(LinkStatus::Connected));
    t.io(b"AT+WSCLOSE=0\r\n");
    t.out();
    let wrong = crate::LinkHandle {
        id: 0,
        generation: link.generation + 7,
    };
    t.e.complete(Completion::Close { link: wrong });
    assert_eq!(t.out(), "");
    assert_eq!(t.e.port_state(), PortState::Busy);
}

#[test]
fn sntp_synced_prints_time_updated_once() {
    let mut t = T::new();
    t.e.complete(Completion::SntpSynced);
    assert_eq!(t.out(), "");
    assert_eq!(t.io(b"AT+CIPSNTPCFG=1,8\r\n"), esc(b"AT+CIPSNTPCFG=1,8\r\n\r\nOK\r\n"));
    assert_eq!(t.action(), Some(Action::SntpSync));
    t.e.complete(Completion::SntpSynced);
    t.e.complete(Completion::SntpSynced);
    assert_eq!(t.out(), esc(b"+TIME_UPDATED\r\n"));
}

#[test]
fn a_new_host_finds_the_port_as_after_boot() {
    let mut t = T::new();
    let link = t.open(0);
    // The old host: echo off, then leaves inside an AT+WSSEND payload.
    t.io(b"ATE0\r\n");
    assert_eq!(t.io(b"AT+WSSEND=0,6\r\n"), esc(b"\r\nOK\r\n\r\n>"));
    t.io(b"abc");
    t.e.attach();
    assert_eq!(t.out(), esc(b"\r\nready\r\n"));
    // Echo is on, the line is empty, and the payload is gone: nothing is sent.
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
    assert!(t.action().is_none(), "the discarded payload must not be sent");
    // The link survived.
    assert_eq!(t.e.link_status(0), Some(LinkStatus::Connected));
    // A half line of the old host is gone too.
    t.io(b"AT+GM");
    t.e.attach();
    t.out();
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
    let _ = link;
}

#[test]
fn a_command_running_when_the_host_left_finishes_silently() {
    let mut t = T::new();
    t.io(b"AT+WSOPEN=1,\"ws://h:1/p\"\r\n");
    let Some(Action::Open { link, .. }) = t.action() else {
        panic!("expected Open");
    };
    t.out();
    t.e.attach();
    assert_eq!(t.out(), esc(b"\r\nready\r\n"));
    // The new host is served at once, not with busy p...
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
    // The open fails later: no ERROR for the new host, and the slot is free again.
    t.e.complete(Completion::Open { link, ok: false });
    assert_eq!(t.out(), "");
    assert_eq!(t.e.link_status(1), None);
}

#[test]
fn a_brown_out_loses_everything_and_prints_only_the_banner() {
    let mut t = T::new();
    t.open(0);
    t.io(b"ATE0\r\n");
    t.e.power_cycle(false);
    assert_eq!(t.out(), esc(b"\r\nready\r\n"));
    assert!(matches!(t.action(), Some(Action::CloseAll)));
    assert_eq!(t.e.link_status(0), None);
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
    t.e.power_cycle(true);
    let out = t.out();
    assert!(
        out.len() > esc(b"\r\nready\r\n").len() && out.ends_with(&esc(b"\r\nready\r\n")),
        "{out}"
    );
}

#[test]
fn a_busy_chip_answers_every_line_with_busy() {
    let mut t = T::new();
    t.e.set_busy(true);
    assert_eq!(
        t.io(b"AT\r\nAT+GMR\r\n"),
        esc(b"AT\r\n\r\nbusy p...\r\nAT+GMR\r\n\r\nbusy p...\r\n")
    );
    t.io(b"AT+SYSLOG=1\r\n");
    t.e.set_busy(false);
    assert_eq!(t.io(b"AT\r\n"), esc(b"AT\r\n\r\nOK\r\n"));
}

#[test]
fn forced_failures_answer_error_the_given_number_of_times() {
    let mut t = T::new();
    t.e.fail_next("AT+WSOPEN", 2).expect("a known command");
    assert!(t.e.fail_next("AT+NOPE", 1).is_err());
    assert_eq!(t.e.forced_failures(), vec![("AT+WSOPEN".to_owned(), 2)]);
    for _ in 0..2 {
        assert_eq!(
            t.io(b"AT+WSOPEN=0,\"ws://h:1/\"\r\n"),
            esc(b"AT+WSOPEN=0,\"ws://h:1/\"\r\n\r\nERROR\r\n")
        );
        assert!(t.action().is_none());
    }
    t.io(b"AT+WSOPEN=0,\"ws://h:1/\"\r\n");
    assert!(matches!(t.action(), Some(Action::Open { .. })));
}

#[test]
fn wifi_down_and_up_print_the_firmware_urcs() {
    let mut t = T::new();
    t.io(b"AT+CWJAP=\"ap\",\"pw\"\r\n");
    t.e.set_wifi(false);
    assert_eq!(t.out(), esc(b"WIFI DISCONNECT\r\n"));
    t.e.set_wifi(false);
    assert_eq!(t.out(), "");
    assert_eq!(t.io(b"AT+CWJAP?\r\n"), esc(b"AT+CWJAP?\r\nNo AP\r\n\r\nOK\r\n"));
    assert_eq!(
        t.io(b"AT+CWJAP=\"ap\",\"pw\"\r\n"),
        esc(b"AT+CWJAP=\"ap\",\"pw\"\r\n+CWJAP:3\r\n\r\nERROR\r\n")
    );
    t.e.set_wifi(true);
    assert_eq!(t.out(), esc(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n"));
    assert!(t.io(b"AT+CWJAP?\r\n").contains("+CWJAP:\\\"ap\\\""));
}
