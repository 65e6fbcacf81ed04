//! System commands a host driver uses around the WebSocket set (FIRMWARE.md §12): AT, ATE0/ATE1, AT+GMR,
//! AT+RST, AT+CMD?, AT+SYSLOG, AT+SYSMSG, AT+CWMODE, AT+CWJAP, AT+CIPSNTPCFG, AT+CIPSNTPTIME?.

use super::{error, ok, table, Command, Outcome, Pending};
use crate::asctime::timezone_minutes;
use crate::params::{Got, Params};
use crate::state::State;
use crate::types::Action;

/// Build stamp printed by AT+GMR (`Mon dd yyyy hh:mm:ss`, from `build.rs`).
pub const BUILD_STAMP: &str = env!("WSAT_AT_BUILD_STAMP");

/// Default SNTP servers when AT+CIPSNTPCFG=1 names none.
const DEFAULT_SNTP_SERVERS: [&str; 3] = ["cn.ntp.org.cn", "ntp.sjtu.edu.cn", "us.pool.ntp.org"];

/// System commands in registration order.
pub(crate) fn commands() -> Vec<Command> {
    let c = |name, test, query, set, exec| Command {
        name,
        test,
        query,
        set,
        exec,
    };
    vec![
        c("", None, None, None, Some(exec_at as super::Handler)),
        c("E0", None, None, None, Some(exec_echo_off)),
        c("E1", None, None, None, Some(exec_echo_on)),
        c("+RST", None, None, None, Some(exec_rst)),
        c("+GMR", None, None, None, Some(exec_gmr)),
        c("+CMD", None, Some(query_cmd), None, None),
        c("+SYSMSG", None, Some(query_sysmsg), Some(set_sysmsg), None),
        c("+SYSLOG", None, Some(query_syslog), Some(set_syslog), None),
        c("+CWMODE", None, Some(query_cwmode), Some(set_cwmode), None),
        c("+CWJAP", None, Some(query_cwjap), Some(set_cwjap), None),
        c("+CIPSNTPCFG", None, Some(query_sntpcfg), Some(set_sntpcfg), None),
        c("+CIPSNTPTIME", None, Some(query_sntptime), None, None),
    ]
}

fn exec_at(_: &mut State, _: &Params) -> Outcome {
    ok()
}

fn exec_echo_off(st: &mut State, _: &Params) -> Outcome {
    st.echo = false;
    ok()
}

fn exec_echo_on(st: &mut State, _: &Params) -> Outcome {
    st.echo = true;
    ok()
}

fn exec_rst(_: &mut State, _: &Params) -> Outcome {
    Outcome::Restart
}

/// The firmware's four-line layout with wsat's identity: core commit → `wsat`, chip → `HOST`.
fn exec_gmr(st: &mut State, _: &Params) -> Outcome {
    let v = &st.version;
    let text = format!(
        "AT version:{v}(wsat - HOST - {BUILD_STAMP})\r\n\
         SDK version:wsat-at {pkg}\r\n\
         compile time(wsat):{BUILD_STAMP}\r\n\
         Bin version:{v}(HOST)\r\n",
        pkg = env!("CARGO_PKG_VERSION"),
    );
    st.emit(text);
    ok()
}

fn query_cmd(st: &mut State, _: &Params) -> Outcome {
    let flag = |h: Option<super::Handler>| u8::from(h.is_some());
    for (i, c) in table(st.firmware).iter().enumerate() {
        let row = format!(
            "+CMD:{i},\"AT{}\",{},{},{},{}\r\n",
            c.name,
            flag(c.test),
            flag(c.query),
            flag(c.set),
            flag(c.exec)
        );
        st.emit(row);
    }
    ok()
}

fn query_syslog(st: &mut State, _: &Params) -> Outcome {
    let line = format!("+SYSLOG:{}\r\n", u8::from(st.syslog));
    st.emit(line);
    ok()
}

fn set_syslog(st: &mut State, p: &Params) -> Outcome {
    match st.int_in(p, 0, 0..=1) {
        Some(v) if p.count() == 1 => {
            st.syslog = v == 1;
            ok()
        }
        _ => error(),
    }
}

/// Note the missing CR LF: the wire shows `+SYSMSG:0\r\nOK\r\n`.
fn query_sysmsg(st: &mut State, _: &Params) -> Outcome {
    let line = format!("+SYSMSG:{}", st.sysmsg);
    st.emit(line);
    ok()
}

fn set_sysmsg(st: &mut State, p: &Params) -> Outcome {
    match st.int_in(p, 0, 0..=7) {
        Some(v) if p.count() == 1 => {
            st.sysmsg = v;
            ok()
        }
        _ => error(),
    }
}

fn query_cwmode(st: &mut State, _: &Params) -> Outcome {
    let line = format!("+CWMODE:{}\r\n", st.cwmode);
    st.emit(line);
    ok()
}

fn set_cwmode(st: &mut State, p: &Params) -> Outcome {
    let Some(mode) = st.int_in(p, 0, 0..=3) else {
        return error();
    };
    if p.count() >= 2 && st.int_in(p, 1, 0..=1).is_none() {
        return error();
    }
    if p.count() > 2 {
        return error();
    }
    st.cwmode = mode;
    if mode != 1 && mode != 3 {
        st.wifi_ssid = None;
    }
    ok()
}

/// Joined: a plausible v5 `+CWJAP:` line (fixed BSSID/channel/RSSI); never joined, or the
/// access point gone (a Wi-Fi fault): `No AP`.
fn query_cwjap(st: &mut State, _: &Params) -> Outcome {
    let line = match &st.wifi_ssid {
        Some(ssid) if st.wifi_up => {
            let mut l = b"+CWJAP:\"".to_vec();
            l.extend_from_slice(ssid);
            l.extend_from_slice(b"\",\"00:00:00:00:00:00\",1,-40,0,1,3,0,1\r\n");
            l
        }
        _ => b"No AP\r\n".to_vec(),
    };
    st.emit(line);
    ok()
}

/// Succeeds at once (the host network is already up): the firmware's success URCs, then
/// OK; while a Wi-Fi fault holds the access point down, `+CWJAP:3` (no AP found) and ERROR.
fn set_cwjap(st: &mut State, p: &Params) -> Outcome {
    if st.cwmode != 1 && st.cwmode != 3 {
        return error();
    }
    let ssid = match st.string(p, 0) {
        Got::Ok(s) if !s.is_empty() => s,
        _ => return error(),
    };
    if p.count() >= 2 && matches!(st.string(p, 1), Got::Fail) {
        return error();
    }
    if p.count() > 11 {
        return error();
    }
    if !st.wifi_up {
        st.emit(&b"+CWJAP:3\r\n"[..]);
        return error();
    }
    if st.wifi_ssid.is_some() {
        st.emit(&b"WIFI DISCONNECT\r\n"[..]);
    }
    st.emit(&b"WIFI CONNECTED\r\n"[..]);
    st.emit(&b"WIFI GOT IP\r\n"[..]);
    st.wifi_ssid = Some(ssid);
    ok()
}

fn query_sntpcfg(st: &mut State, _: &Params) -> Outcome {
    let mut line = format!("+CIPSNTPCFG:{},{}", u8::from(st.sntp.enabled), st.sntp.timezone).into_bytes();
    if st.sntp.enabled {
        for s in &st.sntp.servers {
            line.extend_from_slice(b",\"");
            line.extend_from_slice(s);
            line.push(b'"');
        }
    }
    line.extend_from_slice(b"\r\n");
    st.emit(line);
    ok()
}

/// `AT+CIPSNTPCFG=<en>[,<tz>][,"s1"][,"s2"][,"s3"]`; enabling queues a sync whose completion
/// prints `+TIME_UPDATED` once.
fn set_sntpcfg(st: &mut State, p: &Params) -> Outcome {
    let Some(enable) = st.int_in(p, 0, 0..=1) else {
        return error();
    };
    let mut timezone = 0;
    if p.count() >= 2 {
        match st.int(p, 1) {
            Got::Ok(tz) if timezone_minutes(tz).is_some() => timezone = tz,
            Got::Omitted => {}
            _ => return error(),
        }
    }
    let mut servers = Vec::new();
    for i in 2..p.count().min(5) {
        match st.string(p, i) {
            Got::Ok(s) if !s.is_empty() => servers.push(s),
            Got::Ok(_) | Got::Omitted => {}
            Got::Fail => return error(),
        }
    }
    if p.count() > 5 {
        return error();
    }
    if servers.is_empty() {
        servers = DEFAULT_SNTP_SERVERS.iter().map(|s| s.as_bytes().to_vec()).collect();
    }
    st.sntp.enabled = enable == 1;
    st.sntp.timezone = timezone;
    st.sntp.servers = servers;
    st.sntp.awaiting_sync = st.sntp.enabled;
    if st.sntp.enabled {
        st.actions.push_back(Action::SntpSync);
    }
    ok()
}

/// Asks the glue for the time; the engine formats `+CIPSNTPTIME:<asctime>` (no CR LF) + OK.
fn query_sntptime(st: &mut State, _: &Params) -> Outcome {
    let offset_minutes = timezone_minutes(st.sntp.timezone).unwrap_or(0);
    Outcome::Await {
        action: Action::QueryTime {
            utc_offset_minutes: offset_minutes,
        },
        until: Pending::Time { offset_minutes },
    }
}

#[cfg(test)]
#[path = "system_tests.rs"]
mod tests;
