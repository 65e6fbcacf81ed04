//! System commands (FIRMWARE.md §12), exact bytes.

use super::BUILD_STAMP;
use crate::testutil::{esc, T};
use crate::{Action, Completion};

fn quiet(mut t: T) -> T {
    t.io(b"ATE0\r\n");
    t
}

fn run(t: &mut T, cmd: &str) -> String {
    t.io(format!("{cmd}\r\n").as_bytes())
}

const OK: &str = "\\r\\nOK\\r\\n";
const ERR: &str = "\\r\\nERROR\\r\\n";

#[test]
fn gmr_keeps_the_four_line_structure() {
    let mut t = quiet(T::new());
    let expected = format!(
        "AT version:9.9.9(wsat - HOST - {BUILD_STAMP})\r\nSDK version:wsat-at {}\r\ncompile time(wsat):{BUILD_STAMP}\r\nBin version:9.9.9(HOST)\r\n\r\nOK\r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(run(&mut t, "AT+GMR"), esc(expected.as_bytes()));
    assert_eq!(BUILD_STAMP.len(), "Nov 17 2025 09:59:18".len());
    assert_eq!(run(&mut t, "AT+GMR?"), ERR);
}

const BASE_ROWS: &str = "+CMD:0,\"AT\",0,0,0,1\r\n\
+CMD:1,\"ATE0\",0,0,0,1\r\n\
+CMD:2,\"ATE1\",0,0,0,1\r\n\
+CMD:3,\"AT+RST\",0,0,0,1\r\n\
+CMD:4,\"AT+GMR\",0,0,0,1\r\n\
+CMD:5,\"AT+CMD\",0,1,0,0\r\n\
+CMD:6,\"AT+SYSMSG\",0,1,1,0\r\n\
+CMD:7,\"AT+SYSLOG\",0,1,1,0\r\n\
+CMD:8,\"AT+CWMODE\",0,1,1,0\r\n\
+CMD:9,\"AT+CWJAP\",0,1,1,0\r\n\
+CMD:10,\"AT+CIPSNTPCFG\",0,1,1,0\r\n\
+CMD:11,\"AT+CIPSNTPTIME\",0,1,0,0\r\n\
+CMD:12,\"AT+WSCFG\",0,0,1,0\r\n\
+CMD:13,\"AT+WSOPEN\",0,1,1,0\r\n\
+CMD:14,\"AT+WSHEAD\",0,1,1,0\r\n\
+CMD:15,\"AT+WSSEND\",0,0,1,0\r\n";

#[test]
fn cmd_query_v5() {
    let mut t = quiet(T::new());
    let expected = format!("{BASE_ROWS}+CMD:16,\"AT+WSCLOSE\",0,0,1,0\r\n\r\nOK\r\n");
    assert_eq!(run(&mut t, "AT+CMD?"), esc(expected.as_bytes()));
}

#[test]
fn cmd_query_master_adds_wsdatafmt_before_wsclose() {
    let mut t = quiet(T::master());
    let expected =
        format!("{BASE_ROWS}+CMD:16,\"AT+WSDATAFMT\",0,0,1,0\r\n+CMD:17,\"AT+WSCLOSE\",0,0,1,0\r\n\r\nOK\r\n");
    assert_eq!(run(&mut t, "AT+CMD?"), esc(expected.as_bytes()));
}

#[test]
fn syslog() {
    let mut t = quiet(T::new());
    assert_eq!(run(&mut t, "AT+SYSLOG?"), esc(b"+SYSLOG:0\r\n\r\nOK\r\n"));
    for cmd in ["AT+SYSLOG=2", "AT+SYSLOG=", "AT+SYSLOG=1,0", "AT+SYSLOG=-1"] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
    assert_eq!(run(&mut t, "AT+SYSLOG=1"), OK);
    assert_eq!(run(&mut t, "AT+SYSLOG?"), esc(b"+SYSLOG:1\r\n\r\nOK\r\n"));
    assert_eq!(run(&mut t, "AT+SYSLOG=0"), OK);
}

#[test]
fn sysmsg_query_has_no_crlf() {
    let mut t = quiet(T::new());
    assert_eq!(run(&mut t, "AT+SYSMSG?"), esc(b"+SYSMSG:0\r\nOK\r\n"));
    assert_eq!(run(&mut t, "AT+SYSMSG=7"), OK);
    assert_eq!(run(&mut t, "AT+SYSMSG?"), esc(b"+SYSMSG:7\r\nOK\r\n"));
    assert_eq!(run(&mut t, "AT+SYSMSG=8"), ERR);
}

#[test]
fn cwmode() {
    let mut t = quiet(T::new());
    assert_eq!(run(&mut t, "AT+CWMODE?"), esc(b"+CWMODE:1\r\n\r\nOK\r\n"));
    assert_eq!(run(&mut t, "AT+CWMODE=3,0"), OK);
    assert_eq!(run(&mut t, "AT+CWMODE?"), esc(b"+CWMODE:3\r\n\r\nOK\r\n"));
    for cmd in ["AT+CWMODE=4", "AT+CWMODE=1,2", "AT+CWMODE=1,1,1", "AT+CWMODE="] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
}

#[test]
fn cwjap_succeeds_with_the_firmware_urcs() {
    let mut t = quiet(T::new());
    assert_eq!(run(&mut t, "AT+CWJAP?"), esc(b"No AP\r\n\r\nOK\r\n"));
    assert_eq!(
        run(&mut t, "AT+CWJAP=\"espressif\",\"1234567890\""),
        esc(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n")
    );
    assert_eq!(
        run(&mut t, "AT+CWJAP?"),
        esc(b"+CWJAP:\"espressif\",\"00:00:00:00:00:00\",1,-40,0,1,3,0,1\r\n\r\nOK\r\n")
    );
    assert_eq!(
        run(&mut t, "AT+CWJAP=\"other\",\"\",,1"),
        esc(b"WIFI DISCONNECT\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n")
    );
    for cmd in ["AT+CWJAP=\"\",\"x\"", "AT+CWJAP=ssid", "AT+CWJAP=\"s\",pwd"] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
    assert_eq!(run(&mut t, "AT+CWMODE=2"), OK);
    assert_eq!(run(&mut t, "AT+CWJAP=\"s\",\"p\""), ERR);
}

#[test]
fn sntpcfg_set_and_query() {
    let mut t = quiet(T::new());
    assert_eq!(run(&mut t, "AT+CIPSNTPCFG?"), esc(b"+CIPSNTPCFG:0,0\r\n\r\nOK\r\n"));
    assert_eq!(
        run(&mut t, "AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\""),
        OK
    );
    assert_eq!(t.action(), Some(Action::SntpSync));
    assert_eq!(
        run(&mut t, "AT+CIPSNTPCFG?"),
        esc(b"+CIPSNTPCFG:1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n\r\nOK\r\n")
    );
    assert_eq!(run(&mut t, "AT+CIPSNTPCFG=1,-330"), OK);
    assert_eq!(
        run(&mut t, "AT+CIPSNTPCFG?"),
        esc(b"+CIPSNTPCFG:1,-330,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\",\"us.pool.ntp.org\"\r\n\r\nOK\r\n")
    );
    for cmd in [
        "AT+CIPSNTPCFG=2",
        "AT+CIPSNTPCFG=1,60",
        "AT+CIPSNTPCFG=1,-1260",
        "AT+CIPSNTPCFG=1,1500",
        "AT+CIPSNTPCFG=1,8,pool",
        "AT+CIPSNTPCFG=1,8,\"a\",\"b\",\"c\",\"d\"",
    ] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
    assert_eq!(run(&mut t, "AT+CIPSNTPCFG=0"), OK);
    assert_eq!(run(&mut t, "AT+CIPSNTPCFG?"), esc(b"+CIPSNTPCFG:0,0\r\n\r\nOK\r\n"));
}

#[test]
fn sntptime_formats_in_the_configured_zone() {
    let mut t = quiet(T::new());
    assert_eq!(run(&mut t, "AT+CIPSNTPCFG=1,8"), OK);
    assert_eq!(t.action(), Some(Action::SntpSync));
    assert_eq!(run(&mut t, "AT+CIPSNTPTIME?"), "");
    assert_eq!(
        t.action(),
        Some(Action::QueryTime {
            utc_offset_minutes: 480
        })
    );
    assert_eq!(t.io(b"AT\r\n"), esc(b"\r\nbusy p...\r\n"));
    // 2024-11-13 09:00:15 UTC = 17:00:15 at UTC+8 (the seed example).
    t.e.complete(Completion::Time {
        unix_seconds: 1_731_488_415,
    });
    assert_eq!(t.out(), esc(b"+CIPSNTPTIME:Wed Nov 13 17:00:15 2024\r\nOK\r\n"));
    assert_eq!(run(&mut t, "AT+CIPSNTPCFG=1,545"), OK);
    run(&mut t, "AT+CIPSNTPTIME?");
    t.e.complete(Completion::Time { unix_seconds: 5 });
    assert_eq!(t.out(), esc(b"+CIPSNTPTIME:Thu Jan  1 05:45:05 1970\r\nOK\r\n"));
}
