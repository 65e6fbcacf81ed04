//! The engine: owns the port state machine (IDLE / BUSY / DATA, FIRMWARE.md §1.1), runs commands from
//! the table, and turns completions and link events into result codes and URCs. One ordered
//! output queue, so a URC never lands inside another piece.

use crate::asctime::asctime;
use crate::commands::{self, ws, Command, DataPurpose, Outcome, Pending};
use crate::faults::{table_name, Faults, UnknownCommand};
use crate::line::{contains_force_restart, LineAssembler};
use crate::output::{self, code, DataFormat, ReceivedChunk, ResultCode};
use crate::params::Params;
use crate::parser::{self, Kind, ParsedLine};
use crate::state::State;
use crate::types::{Action, Completion, EngineConfig, LinkEvent, LinkHandle, LinkStatus, PortState};

/// Port state of the receive task.
#[derive(Debug)]
enum Port {
    /// Assembling command lines.
    Idle,
    /// A command executes; input is answered with `busy p...`.
    Busy,
    /// Reading exactly `need` payload bytes for `purpose`.
    Data {
        need: usize,
        buf: Vec<u8>,
        purpose: DataPurpose,
    },
}

/// The sans-IO AT command engine: feed port bytes, pull port output and link actions, report
/// completions and link events. Never blocks, never panics on input.
pub struct Engine {
    st: State,
    port: Port,
    line: LineAssembler,
    pending: Option<Pending>,
    /// A command whose host left before its result ([`Engine::attach`]): its completion
    /// still updates the links, silently.
    orphan: Option<Pending>,
    faults: Faults,
    commands: Vec<Command>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("port", &self.port_state())
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A powered-on device in IDLE with echo on; call [`Engine::boot`] to print the banner.
    pub fn new(config: EngineConfig) -> Self {
        let commands = commands::table(config.firmware);
        Engine {
            st: State::new(config),
            port: Port::Idle,
            line: LineAssembler::default(),
            pending: None,
            orphan: None,
            faults: Faults::default(),
            commands,
        }
    }

    /// Queues the boot banner `\r\nready\r\n` (at start on a port that stays, such as a UART).
    pub fn boot(&mut self) {
        self.st.emit(output::READY);
    }

    /// A new host took the port (a new TCP client: a new cable). The port starts as after
    /// boot, so that the banner it gets tells the truth: echo on, IDLE, an empty line; a
    /// pending `AT+WSSEND` or `AT+WSHEAD` payload is discarded (nothing is sent), and a
    /// running command finishes without printing its result to the new host. Links,
    /// `AT+WSCFG` and `AT+WSHEAD` state, Wi-Fi and SNTP settings survive, and so do the
    /// queued output's URCs already produced (they were the old host's and are dropped).
    pub fn attach(&mut self) {
        self.st.out.clear();
        if let Some(pending) = self.pending.take() {
            self.orphan = Some(pending);
        }
        self.st.echo = true;
        self.port = Port::Idle;
        self.line.clear();
        self.st.emit(output::READY);
    }

    /// A brown-out: every link dropped without a URC, all RAM state lost (as after
    /// AT+RST), then the banner, optionally after the garbage a chip's boot ROM leaves on a
    /// line at the wrong baud rate. Wi-Fi stays as it was, and so do the bench's own faults
    /// (`busy`, forced failures): they are the test's setup, not the chip's state.
    pub fn power_cycle(&mut self, noise: bool) {
        self.st.out.clear();
        self.orphan = None;
        if noise {
            self.st.emit(output::BOOT_NOISE);
        }
        self.restart();
    }

    /// Wi-Fi lost (`false`: `WIFI DISCONNECT`) or back (`true`: `WIFI CONNECTED`, `WIFI GOT
    /// IP`). The glue drops the links and fails their connects while it is down.
    pub fn set_wifi(&mut self, up: bool) {
        if self.st.wifi_up == up {
            return;
        }
        self.st.wifi_up = up;
        if up {
            self.st.emit(&b"WIFI CONNECTED\r\n"[..]);
            self.st.emit(&b"WIFI GOT IP\r\n"[..]);
        } else {
            self.st.emit(&b"WIFI DISCONNECT\r\n"[..]);
        }
    }

    /// Whether Wi-Fi is up (see [`Engine::set_wifi`]).
    pub fn wifi_up(&self) -> bool {
        self.st.wifi_up
    }

    /// While `busy`, every command line is answered `busy p...` instead of being run, as a
    /// chip that is still working on something the host cannot see.
    pub fn set_busy(&mut self, busy: bool) {
        self.faults.busy = busy;
    }

    /// Whether command lines are answered `busy p...` (see [`Engine::set_busy`]).
    pub fn is_busy(&self) -> bool {
        self.faults.busy
    }

    /// The next `count` runs of `command` (`AT+WSOPEN`, `+WSSEND`, `ATE0`, `AT`) answer
    /// `ERROR` without doing anything; 0 cancels.
    pub fn fail_next(&mut self, command: &str, count: u32) -> Result<(), UnknownCommand> {
        let name = table_name(command);
        let Some(cmd) = commands::lookup(&self.commands, &name) else {
            return Err(UnknownCommand(command.trim().to_owned()));
        };
        if count == 0 {
            self.faults.failures.remove(cmd.name);
        } else {
            self.faults.failures.insert(cmd.name, count);
        }
        Ok(())
    }

    /// Whether this firmware has `command` (written as for [`Engine::fail_next`]).
    pub fn knows_command(&self, command: &str) -> bool {
        commands::lookup(&self.commands, &table_name(command)).is_some()
    }

    /// Forced failures still to come, by command (`AT+WSOPEN`) with their counts.
    pub fn forced_failures(&self) -> Vec<(String, u32)> {
        self.faults
            .failures
            .iter()
            .map(|(name, count)| (format!("AT{name}"), *count))
            .collect()
    }

    /// Number of link slots (ids `0..link_count()`).
    pub fn link_count(&self) -> usize {
        self.st.links.len()
    }

    /// One arrival from the AT port (one "UART notification": `busy p...` is per call).
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        // Walk the chunk by offset: copying the rest after every failed line made a chunk of
        // many bad lines cost quadratic time (256 KiB of CR LF took over a second).
        let mut at = 0;
        while let Some(used) = self.feed_once(&chunk[at..]) {
            at += used;
        }
    }

    /// Next output piece for the port, in order; write each with one write call.
    pub fn poll_output(&mut self) -> Option<Vec<u8>> {
        self.st.out.pop_front()
    }

    /// Next action the glue must perform.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.st.actions.pop_front()
    }

    /// Reports the result of an earlier action. Completions that do not match the action the
    /// port waits for (stale after AT+RST, wrong handle) are ignored, except `SntpSynced`.
    pub fn complete(&mut self, completion: Completion) {
        if self.orphan.is_some() && self.settle_orphan(&completion) {
            return;
        }
        match completion {
            Completion::SntpSynced => {
                if self.st.sntp.awaiting_sync {
                    self.st.sntp.awaiting_sync = false;
                    self.st.emit(&b"+TIME_UPDATED\r\n"[..]);
                }
            }
            Completion::Open { link, ok } => {
                if self.pending == Some(Pending::Open(link)) {
                    self.pending = None;
                    if ok {
                        self.finish(ResultCode::Ok);
                    } else {
                        if self.st.links.is_live(link) {
                            self.st.links.clean(link.id);
                        }
                        self.finish(ResultCode::Error);
                    }
                }
            }
            Completion::Send { link, ok } => {
                if let Some(Pending::Send { link: l, force_error }) = self.pending {
                    if l == link {
                        self.pending = None;
                        let code = if ok && !force_error {
                            ResultCode::SendOk
                        } else {
                            ResultCode::Error
                        };
                        self.finish(code);
                    }
                }
            }
            Completion::Close { link } => {
                if self.pending == Some(Pending::Close(link)) {
                    self.pending = None;
                    if self.st.links.is_live(link) {
                        self.st.links.clean(link.id);
                    }
                    self.finish(ResultCode::Ok);
                }
            }
            Completion::Time { unix_seconds } => {
                if let Some(Pending::Time { offset_minutes }) = self.pending {
                    self.pending = None;
                    let local = unix_seconds.saturating_add(i64::from(offset_minutes) * 60);
                    let line = format!("+CIPSNTPTIME:{}", asctime(local));
                    self.st.emit(line);
                    self.finish(ResultCode::Ok);
                }
            }
        }
    }

    /// Applies the completion of a command whose host has left, if it is that one's: the
    /// links change as the command decided, and nothing is printed.
    fn settle_orphan(&mut self, completion: &Completion) -> bool {
        let link = match (&self.orphan, completion) {
            (Some(Pending::Open(l)), Completion::Open { link, ok }) if l == link => (!ok).then_some(*link),
            (Some(Pending::Close(l)), Completion::Close { link }) if l == link => Some(*link),
            (Some(Pending::Send { link: l, .. }), Completion::Send { link, .. }) if l == link => None,
            (Some(Pending::Time { .. }), Completion::Time { .. }) => None,
            _ => return false,
        };
        self.orphan = None;
        if let Some(link) = link.filter(|l| self.st.links.is_live(*l)) {
            self.st.links.clean(link.id);
        }
        true
    }

    /// A running link's event: prints its URC at once and updates the state mirror. Events whose
    /// handle is not the link currently in the slot are ignored.
    pub fn handle_link_event(&mut self, link: LinkHandle, event: LinkEvent) {
        let id = link.id;
        let format = if self.st.master() {
            self.st.links.get(id).map(|s| s.format).unwrap_or_default()
        } else {
            DataFormat::default()
        };
        let Some(open) = self.st.links.live_mut(link) else {
            return;
        };
        match event {
            LinkEvent::Connecting => open.status = LinkStatus::Connecting,
            LinkEvent::Connected => {
                open.status = LinkStatus::Connected;
                self.st.emit(output::ws_connected(id));
            }
            LinkEvent::Disconnected => {
                open.status = LinkStatus::WaitingToReconnect;
                self.st.emit(output::ws_disconnected(id));
            }
            LinkEvent::Closed => {
                self.st.links.clean(id);
                self.st.emit(output::ws_closed(id));
            }
            LinkEvent::Data {
                opcode,
                fin,
                payload_len,
                offset,
                chunk,
            } => {
                let piece = output::ws_data(
                    id,
                    format,
                    ReceivedChunk {
                        opcode,
                        fin,
                        payload_len,
                        offset,
                        data: &chunk,
                    },
                );
                if let Some(piece) = piece {
                    self.st.emit(piece);
                }
            }
        }
    }

    /// Link `id`'s state as AT+WSOPEN? shows it, `None` if not open.
    pub fn link_status(&self, id: usize) -> Option<LinkStatus> {
        self.st.links.get(id).and_then(|s| s.link.as_ref()).map(|l| l.status)
    }

    /// Where input currently goes (addition to the brief's API; see [`PortState`]).
    pub fn port_state(&self) -> PortState {
        match &self.port {
            Port::Idle => PortState::Idle {
                buffered: self.line.buffered(),
            },
            Port::Busy => PortState::Busy,
            Port::Data { need, buf, .. } => PortState::Data {
                remaining: need.saturating_sub(buf.len()),
            },
        }
    }

    /// Processes one arrival in the current state; returns how many bytes it used when the rest
    /// must be processed next in the new state (only after an IDLE parse failure, which leaves
    /// the port IDLE).
    fn feed_once(&mut self, bytes: &[u8]) -> Option<usize> {
        match &mut self.port {
            Port::Busy => {
                self.busy_chunk(bytes);
                None
            }
            Port::Data { need, buf, .. } => {
                let take = (*need - buf.len()).min(bytes.len());
                buf.extend_from_slice(&bytes[..take]);
                if buf.len() < *need {
                    return None;
                }
                let Port::Data { buf, purpose, .. } = std::mem::replace(&mut self.port, Port::Busy) else {
                    return None;
                };
                let surplus = &bytes[take..];
                if !surplus.is_empty() && self.busy_chunk(surplus) {
                    return None;
                }
                let outcome = match purpose {
                    DataPurpose::Header => ws::finish_header(&mut self.st, buf),
                    DataPurpose::Send(plan) => ws::finish_send(&mut self.st, plan, buf),
                };
                self.apply(outcome);
                None
            }
            Port::Idle => {
                let scan = self.line.push(bytes);
                if self.st.echo && !scan.echo.is_empty() {
                    self.st.emit(scan.echo);
                }
                let line = scan.line?;
                let rest = scan.rest;
                if self.faults.busy {
                    self.st.err_code(code::PROCESSING);
                    self.st.emit(output::BUSY);
                    return (!rest.is_empty()).then(|| bytes.len() - rest.len());
                }
                match parser::parse(&line) {
                    Err(e) => {
                        self.st.err_code(e.code());
                        self.st.emit(output::ERROR);
                        (!rest.is_empty()).then(|| bytes.len() - rest.len())
                    }
                    Ok(parsed) => {
                        self.port = Port::Busy;
                        if !rest.is_empty() && self.busy_chunk(rest) {
                            return None;
                        }
                        self.execute(parsed);
                        None
                    }
                }
            }
        }
    }

    /// Input while BUSY: `busy p...` (after `ERR CODE:0x010b0000` with SYSLOG), or the forced
    /// restart if the chunk contains `AT+RST\r\n`. Returns true if the device restarted.
    fn busy_chunk(&mut self, bytes: &[u8]) -> bool {
        if contains_force_restart(bytes) {
            self.st.emit(output::FORCE_RESTART);
            self.st.emit(output::OK);
            self.restart();
            return true;
        }
        self.st.err_code(code::PROCESSING);
        self.st.emit(output::BUSY);
        false
    }

    /// Looks the command up and runs the handler for the requested type.
    fn execute(&mut self, parsed: ParsedLine) {
        let ParsedLine { name, kind } = parsed;
        let Some(cmd) = commands::lookup(&self.commands, &name) else {
            self.st.err_code(code::UNSUPPORTED);
            self.finish(ResultCode::Error);
            return;
        };
        if self.faults.take_failure(cmd.name) {
            self.finish(ResultCode::Error);
            return;
        }
        let empty = Params::default();
        let (handler, params) = match &kind {
            Kind::Execute => (cmd.exec, &empty),
            Kind::Query => (cmd.query, &empty),
            Kind::Test => (cmd.test, &empty),
            Kind::Set(p) => (cmd.set, p),
        };
        match handler {
            // No handler for this type: ERROR without ERR CODE.
            None => self.finish(ResultCode::Error),
            Some(h) => {
                let outcome = h(&mut self.st, params);
                self.apply(outcome);
            }
        }
    }

    /// Carries out a handler's decision.
    fn apply(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Done(code) => self.finish(code),
            Outcome::Prompt { len, purpose } => {
                self.port = Port::Data {
                    need: len,
                    buf: Vec::new(),
                    purpose,
                };
                self.st.emit(output::PROMPT);
            }
            Outcome::Await { action, until } => {
                self.st.actions.push_back(action);
                self.port = Port::Busy;
                self.pending = Some(until);
            }
            Outcome::Restart => {
                self.st.emit(output::OK);
                self.restart();
            }
        }
    }

    /// Command finished: port back to IDLE (partial input discarded), then the result.
    fn finish(&mut self, code: ResultCode) {
        self.port = Port::Idle;
        self.line.clear();
        self.st.emit(code.bytes());
    }

    /// Reboot: drop every link, forget RAM state, print the banner.
    fn restart(&mut self) {
        self.st.reset();
        self.st.actions.push_back(Action::CloseAll);
        self.port = Port::Idle;
        self.line.clear();
        self.pending = None;
        self.st.emit(output::READY);
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
