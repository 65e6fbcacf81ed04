//! The WebSocket command set (FIRMWARE.md §4–§9): AT+WSCFG, AT+WSOPEN, AT+WSHEAD, AT+WSSEND,
//! AT+WSDATAFMT (master) and AT+WSCLOSE, with the firmware's validation orders.

use super::{error, ok, Command, DataPurpose, Handler, Outcome, Pending, SendPlan};
use crate::links::OpenLink;
use crate::output::{DataFormat, ResultCode};
use crate::params::{Got, Params};
use crate::state::State;
use crate::types::{Action, Firmware, LinkConfig, LinkStatus, OpenRequest};
use crate::uri::{self, UriCheck};

/// Largest AT+WSHEAD length accepted; stands in for the firmware's heap allocation failure.
pub(crate) const MAX_HEADER_ALLOC: usize = 128 * 1024;

/// Most bytes AT+WSHEAD keeps in total: the sum of the `<req_header_len>` of the stored
/// headers (each `key:value` as given). A header that would go beyond is read after its
/// prompt and then refused with `ERROR`, nothing stored, as on the chip when its heap runs
/// out (FIRMWARE.md §5.1: "no upper bound except memory"). Headers are global, shared by all links.
///
/// Why 4 KiB: the chip sends every stored header in each upgrade request, and that request
/// must fit in 1024 bytes (FIRMWARE.md §11.2), so more than ~900 bytes of headers can never reach a
/// server; 4 KiB leaves a host room to spare while bounding memory and the AT+WSHEAD? answer.
pub const MAX_HEADER_BYTES: usize = 4096;

/// WS commands in registration order (WSDATAFMT only in master, before WSCLOSE).
pub(crate) fn commands(firmware: Firmware) -> Vec<Command> {
    let set_only = |name, set: Handler| Command {
        name,
        test: None,
        query: None,
        set: Some(set),
        exec: None,
    };
    let set_query = |name, query: Handler, set: Handler| Command {
        name,
        test: None,
        query: Some(query),
        set: Some(set),
        exec: None,
    };
    let mut t = vec![
        set_only("+WSCFG", set_wscfg),
        set_query("+WSOPEN", query_wsopen, set_wsopen),
        set_query("+WSHEAD", query_wshead, set_wshead),
        set_only("+WSSEND", set_wssend),
    ];
    if firmware == Firmware::Master {
        t.push(set_only("+WSDATAFMT", set_wsdatafmt));
    }
    t.push(set_only("+WSCLOSE", set_wsclose));
    t
}

/// Largest buffer_size / WSSEND length of the emulated firmware.
fn size_limit(st: &State) -> i64 {
    if st.master() {
        16_384
    } else {
        8_192
    }
}

/// `AT+WSCFG=<id>,<ping>,<pong>[,<buffer_size>][,<auth_mode>,<pki>,<ca>]` (FIRMWARE.md §4.2, in order).
fn set_wscfg(st: &mut State, p: &Params) -> Outcome {
    let Some(id) = st.link_id(p, 0) else {
        return error();
    };
    let Some(ping) = st.int_in(p, 1, 1..=7200) else {
        return error();
    };
    let Some(pong) = st.int_in(p, 2, 1..=7200) else {
        return error();
    };
    let count = p.count();
    let mut buffer_size = 1024;
    let mut auth = 0u8;
    let (mut pki, mut ca) = (0usize, 0usize);
    let mut consumed = 3;
    if count > 3 {
        let limit = size_limit(st);
        let Some(b) = st.int_in(p, 3, 1..=limit) else {
            return error();
        };
        buffer_size = b as usize;
        consumed = 4;
    }
    if count > 4 {
        let Some(a) = st.int_in(p, 4, 0..=3) else {
            return error();
        };
        auth = a as u8;
        consumed = 5;
        if auth != 0 {
            let Some(k) = st.int_in(p, 5, 0..=i64::from(i32::MAX)) else {
                return error();
            };
            let Some(c) = st.int_in(p, 6, 0..=i64::from(i32::MAX)) else {
                return error();
            };
            (pki, ca) = (k as usize, c as usize);
            consumed = 7;
        }
    }
    if count != consumed {
        return error();
    }
    if auth & 1 != 0 {
        if pki >= st.pki.client_certs.len() {
            st.emit(&b"NO CERT FOUND\r\n"[..]);
            return error();
        }
        if pki >= st.pki.client_keys.len() {
            st.emit(&b"NO PRVT_KEY FOUND\r\n"[..]);
            return error();
        }
    }
    if auth & 2 != 0 && ca >= st.pki.cas.len() {
        st.emit(&b"NO CA FOUND\r\n"[..]);
        return error();
    }
    let Some(slot) = st.links.get_mut(id) else {
        return error();
    };
    // Step 8: the old config is freed before the new one is built, so a failed load loses both.
    slot.config = None;
    let load = |list: &[Vec<u8>], i: usize| list.get(i).filter(|pem| !pem.is_empty()).cloned();
    let mut config = LinkConfig {
        ping_interval_s: ping as u32,
        pong_timeout_s: pong as u32,
        buffer_size,
        auth_mode: auth,
        ..LinkConfig::default()
    };
    if auth & 2 != 0 {
        config.ca_pem = load(&st.pki.cas, ca);
        if config.ca_pem.is_none() {
            return error();
        }
    }
    if auth & 1 != 0 {
        config.client_cert_pem = load(&st.pki.client_certs, pki);
        config.client_key_pem = load(&st.pki.client_keys, pki);
        if config.client_cert_pem.is_none() || config.client_key_pem.is_none() {
            return error();
        }
    }
    if let Some(slot) = st.links.get_mut(id) {
        slot.config = Some(config);
    }
    ok()
}

/// `AT+WSHEAD=<n>`: 0 clears the list; n > 0 prompts for exactly n bytes (FIRMWARE.md §5.1).
fn set_wshead(st: &mut State, p: &Params) -> Outcome {
    let n = match st.int(p, 0) {
        Got::Ok(n) => n,
        _ => return error(),
    };
    if n < 0 || p.count() != 1 {
        return error();
    }
    let n = n as usize;
    if n == 0 {
        st.headers.clear();
        return ok();
    }
    if n > MAX_HEADER_ALLOC {
        return error();
    }
    Outcome::Prompt {
        len: n,
        purpose: DataPurpose::Header,
    }
}

/// AT+WSHEAD payload: no NUL, no trailing CR LF, a `:` required, room within
/// [`MAX_HEADER_BYTES`]; split at the first `:`, newest first.
pub(crate) fn finish_header(st: &mut State, data: Vec<u8>) -> Outcome {
    if data.contains(&0) || data.ends_with(b"\r\n") {
        return error();
    }
    let Some(colon) = data.iter().position(|&b| b == b':') else {
        return error();
    };
    if header_bytes(st) + data.len() > MAX_HEADER_BYTES {
        return error();
    }
    let key = data[..colon].to_vec();
    let value = data[colon + 1..].to_vec();
    st.headers.insert(0, (key, value));
    ok()
}

/// Bytes the stored headers count against [`MAX_HEADER_BYTES`]: `key:value` each.
fn header_bytes(st: &State) -> usize {
    st.headers.iter().map(|(k, v)| k.len() + 1 + v.len()).sum()
}

/// `+WSHEAD:<i>,"<key>:<value>"` per header, newest = 0.
fn query_wshead(st: &mut State, _: &Params) -> Outcome {
    let lines: Vec<Vec<u8>> = st
        .headers
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let mut l = format!("+WSHEAD:{i},\"").into_bytes();
            l.extend_from_slice(k);
            l.push(b':');
            l.extend_from_slice(v);
            l.extend_from_slice(b"\"\r\n");
            l
        })
        .collect();
    for l in lines {
        st.emit(l);
    }
    ok()
}

/// `AT+WSOPEN=<id>,"<uri>"[,"<subprotocol>"][,<timeout_ms>][,"<auth>"]` (FIRMWARE.md §6.1).
fn set_wsopen(st: &mut State, p: &Params) -> Outcome {
    let Some(id) = st.link_id(p, 0) else {
        return error();
    };
    let uri = match st.string(p, 1) {
        Got::Ok(u) => u,
        _ => return error(),
    };
    let count = p.count();
    let mut subprotocol = None;
    if count > 2 {
        match st.string(p, 2) {
            Got::Ok(s) => subprotocol = Some(s),
            Got::Omitted => {}
            Got::Fail => return error(),
        }
    }
    let mut timeout_ms = 15_000;
    if count > 3 {
        let Some(t) = st.int_in(p, 3, 1..=180_000) else {
            return error();
        };
        timeout_ms = t as u32;
    }
    let mut authorization = None;
    if count > 4 {
        match st.string(p, 4) {
            Got::Ok(a) if a.len() > 2 && a.ends_with(b"\r\n") => return error(),
            Got::Ok(a) => authorization = Some(a),
            Got::Omitted => {}
            Got::Fail => return error(),
        }
    }
    if count > 5 {
        return error();
    }
    let Some(slot) = st.links.get_mut(id) else {
        return error();
    };
    if slot.link.is_some() {
        return error();
    }
    let config = slot.config.get_or_insert_with(LinkConfig::default).clone();
    match uri::check(&uri) {
        UriCheck::Ok => {}
        UriCheck::Unparsable => return error(),
        UriCheck::BadScheme => {
            st.links.clean(id);
            return error();
        }
    }
    let Some(handle) = st.links.next_handle(id) else {
        return error();
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let request = OpenRequest {
        uri: text(&uri),
        subprotocol: subprotocol.as_deref().map(text),
        timeout_ms,
        authorization: authorization.as_deref().map(text),
        headers: st.headers.iter().map(|(k, v)| (text(k), text(v))).collect(),
        config,
    };
    if let Some(slot) = st.links.get_mut(id) {
        slot.link = Some(OpenLink {
            handle,
            uri,
            status: LinkStatus::Connecting,
        });
    }
    Outcome::Await {
        action: Action::Open { link: handle, request },
        until: Pending::Open(handle),
    }
}

/// `+WSOPEN:<id>,<state>,"<uri>"` for each open link.
fn query_wsopen(st: &mut State, _: &Params) -> Outcome {
    let lines: Vec<Vec<u8>> = st
        .links
        .iter()
        .filter_map(|(id, slot)| slot.link.as_ref().map(|l| (id, l)))
        .map(|(id, l)| {
            let mut line = format!("+WSOPEN:{id},{},\"", l.status.code()).into_bytes();
            line.extend_from_slice(&l.uri);
            line.extend_from_slice(b"\"\r\n");
            line
        })
        .collect();
    for l in lines {
        st.emit(l);
    }
    ok()
}

/// `AT+WSSEND=<id>,<len>[,<opcode>][,<timeout_ms>]` (+ `[,<fin>]` in master), FIRMWARE.md §7.2/§9.1.
fn set_wssend(st: &mut State, p: &Params) -> Outcome {
    let Some(id) = st.link_id(p, 0) else {
        return error();
    };
    let limit = size_limit(st);
    let Some(len) = st.int_in(p, 1, 0..=limit) else {
        return error();
    };
    let count = p.count();
    let mut opcode = 1u8;
    if count > 2 {
        let Some(op) = st.int_in(p, 2, 0..=15) else {
            return error();
        };
        opcode = op as u8;
    }
    let mut timeout_ms = 10_000u32;
    if count > 3 {
        let Some(t) = st.int_in(p, 3, 0..=60_000) else {
            return error();
        };
        timeout_ms = t as u32;
    }
    let mut fin = true;
    let max_count = if st.master() { 5 } else { 4 };
    if st.master() && count > 4 {
        let Some(f) = st.int_in(p, 4, 0..=1) else {
            return error();
        };
        fin = f == 1;
    }
    if count > max_count {
        return error();
    }
    let Some(handle) = st.links.get(id).and_then(|s| s.link.as_ref()).map(|l| l.handle) else {
        return error();
    };
    let plan = SendPlan {
        link: handle,
        len: len as usize,
        opcode,
        fin,
        timeout_ms,
    };
    if len == 0 {
        // v5: malloc(0) fails ⇒ ERROR without prompt. Master: send at once, no prompt.
        return if st.master() {
            finish_send(st, plan, Vec::new())
        } else {
            error()
        };
    }
    Outcome::Prompt {
        len: plan.len,
        purpose: DataPurpose::Send(plan),
    }
}

/// Dispatches a WSSEND payload (after the prompt, or at once for master length 0).
pub(crate) fn finish_send(st: &mut State, plan: SendPlan, payload: Vec<u8>) -> Outcome {
    if !st.links.is_live(plan.link) {
        return error();
    }
    let (opcode, fin, payload, force_error) = if !st.master() {
        (plan.opcode, true, payload, false)
    } else {
        match (plan.opcode, plan.fin) {
            // Firmware quirk: an empty CONT+FIN frame is sent, the payload ignored, and the
            // result is SEND OK only when the announced length was 0.
            (0, true) => (0, true, Vec::new(), plan.len != 0),
            (0..=2, false) => (plan.opcode, false, payload, false),
            (_, true) => (plan.opcode, true, payload, false),
            (_, false) => return error(),
        }
    };
    Outcome::Await {
        action: Action::Send {
            link: plan.link,
            opcode,
            fin,
            payload,
            timeout_ms: plan.timeout_ms,
        },
        until: Pending::Send {
            link: plan.link,
            force_error,
        },
    }
}

/// Master `AT+WSDATAFMT=<id>[,<level>][,<mask>]`: exactly three parameters (FIRMWARE.md §9.2).
fn set_wsdatafmt(st: &mut State, p: &Params) -> Outcome {
    let Some(id) = st.link_id(p, 0) else {
        return error();
    };
    let level = match st.int(p, 1) {
        Got::Ok(v) if (0..=2).contains(&v) => v as u8,
        Got::Omitted => 0,
        _ => return error(),
    };
    let mask = match st.int(p, 2) {
        Got::Ok(v) if (1..=63).contains(&v) => v as u8,
        Got::Omitted => 48,
        _ => return error(),
    };
    if p.count() != 3 {
        return error();
    }
    match st.links.get_mut(id) {
        Some(slot) => {
            slot.format = DataFormat { level, mask };
            ok()
        }
        None => error(),
    }
}

/// `AT+WSCLOSE=<id>`: drop the link (no close frame, no URC) and free its config; OK even if
/// not open.
fn set_wsclose(st: &mut State, p: &Params) -> Outcome {
    let Some(id) = st.link_id(p, 0) else {
        return error();
    };
    if p.count() != 1 {
        return error();
    }
    let handle = st.links.get(id).and_then(|s| s.link.as_ref()).map(|l| l.handle);
    match handle {
        Some(link) => Outcome::Await {
            action: Action::Close { link },
            until: Pending::Close(link),
        },
        None => {
            st.links.clean(id);
            Outcome::Done(ResultCode::Ok)
        }
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
