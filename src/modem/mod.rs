//! `wsat modem`: the sans-IO AT engine wired to a port and to real WebSocket links, with the
//! faults a driver test bench injects.
//!
//! One loop owns the engine, the port's writer and the [`wire::Wire`] between them, so
//! responses and URCs leave in the engine's order: a URC never lands inside another
//! response. The loop also serves fault requests ([`ModemHandle`], `--control`,
//! `--faults`). A Rust test can run the whole modem in its own process on an in-memory
//! stream: [`in_memory`].

pub mod control;
pub mod faults;
pub mod link;
pub mod pki;
pub mod port;
pub mod radio;
pub mod secrets;
pub mod trace;
pub mod wire;

use std::collections::HashMap;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use wsat_at::{Action, Completion, Engine, LinkHandle};

pub use faults::{Fault, FaultError, LinkSlot, Request, Status};
pub use link::LinkProfile;
pub use wsat_at::{EngineConfig, Firmware, LinkStatus, PortState};
pub use wsat_client::ChunkPolicy;

use link::{LinkCmd, LinkMsg};
use port::{PortEvent, PortEvents, PortWriter};
use radio::Radio;
use trace::Trace;
use wire::Wire;

/// Everything the modem is besides its port.
#[derive(Debug)]
pub struct ModemOptions {
    /// The engine's configuration (links, firmware, PKI, version).
    pub engine: EngineConfig,
    /// What the links do that no AT parameter sets (timing, chunking).
    pub link: LinkProfile,
    /// Every host that attaches finds the port as after boot and gets the banner (TCP, an
    /// in-process stream); otherwise the banner is printed once at start (a UART, a pty).
    pub banner_per_attach: bool,
    /// End when the port detaches (stdio).
    pub exit_on_detach: bool,
    /// Record the AT bytes here.
    pub trace: Option<Trace>,
    /// Run the port at this baud rate (8N1) in both directions, as a UART would.
    pub pace_baud: Option<u32>,
}

impl Default for ModemOptions {
    /// The firmware's defaults, a banner for every host, no pacing.
    fn default() -> Self {
        ModemOptions {
            engine: EngineConfig::default(),
            link: LinkProfile::default(),
            banner_per_attach: true,
            exit_on_detach: false,
            trace: None,
            pace_baud: None,
        }
    }
}

/// A fault request on its way to the modem loop, with where the answer goes.
#[derive(Debug)]
struct ControlRequest {
    request: Request,
    reply: oneshot::Sender<Result<Option<Status>, FaultError>>,
}

/// Asks a running modem for faults and its status; cheap to clone. The methods are the
/// control protocol's commands (`drop`, `wifi`, `reset`, …), see [`Fault`].
#[derive(Debug, Clone)]
pub struct ModemHandle {
    requests: mpsc::Sender<ControlRequest>,
}

impl ModemHandle {
    /// Carries out a control request: `Ok(Some(status))` for [`Request::Status`].
    pub async fn request(&self, request: Request) -> Result<Option<Status>, FaultError> {
        let gone = || FaultError("the modem has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(ControlRequest { request, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Applies one fault.
    pub async fn apply(&self, fault: Fault) -> Result<(), FaultError> {
        self.request(Request::Fault(fault)).await.map(drop)
    }

    /// Link `link`'s TCP connection is lost: `+WS_DISCONNECTED`, then the usual reconnect.
    pub async fn drop_link(&self, link: usize) -> Result<(), FaultError> {
        self.apply(Fault::Drop { link }).await
    }

    /// Wi-Fi goes down (every link disconnected, reconnects fail) or comes back.
    pub async fn wifi(&self, up: bool) -> Result<(), FaultError> {
        self.apply(Fault::Wifi { up }).await
    }

    /// A brown-out: links dropped without URCs, all state lost, then the banner (after
    /// boot-ROM garbage with `noise`).
    pub async fn reset(&self, noise: bool) -> Result<(), FaultError> {
        self.apply(Fault::Reset { noise }).await
    }

    /// Every command line gets `busy p...` for `duration`.
    pub async fn busy(&self, duration: Duration) -> Result<(), FaultError> {
        self.apply(Fault::Busy { duration }).await
    }

    /// Every response and URC leaves `delay` later, order kept.
    pub async fn latency(&self, delay: Duration) -> Result<(), FaultError> {
        self.apply(Fault::Latency { delay }).await
    }

    /// Each byte to the host is dropped or flipped with probability `rate` (0 ends it).
    pub async fn noise(&self, rate: f64, seed: u64) -> Result<(), FaultError> {
        self.apply(Fault::Noise { rate, seed }).await
    }

    /// The next `count` runs of `command` (`AT+WSOPEN`) answer `ERROR`.
    pub async fn fail(&self, command: &str, count: u32) -> Result<(), FaultError> {
        self.apply(Fault::Fail {
            command: command.to_owned(),
            count,
        })
        .await
    }

    /// What the modem is doing and which faults are active.
    pub async fn status(&self) -> Result<Status, FaultError> {
        match self.request(Request::Status).await? {
            Some(status) => Ok(status),
            None => Err(FaultError("no status".to_owned())),
        }
    }
}

/// Starts a modem in this process whose AT port is `io` (any byte stream): the host at the
/// other end gets `ready` and talks AT as to the chip. The modem ends when `io` ends.
pub async fn spawn_on<S>(io: S, options: ModemOptions) -> io::Result<ModemHandle>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (tx, rx) = port::channel();
    let modem = Modem::new(options);
    let handle = modem.handle();
    tokio::spawn(modem.run(rx, std::future::pending()));
    port::stream(io, tx).await?;
    Ok(handle)
}

/// A modem in this process on an in-memory pipe: the returned stream is the host's end of
/// the AT port (write `AT\r\n`, read `\r\nOK\r\n`), the handle injects faults.
pub async fn in_memory(options: ModemOptions) -> io::Result<(ModemHandle, DuplexStream)> {
    let (host, modem_end) = tokio::io::duplex(64 * 1024);
    let handle = spawn_on(modem_end, options).await?;
    Ok((handle, host))
}

struct RunningLink {
    handle: LinkHandle,
    commands: mpsc::UnboundedSender<LinkCmd>,
    task: tokio::task::JoinHandle<()>,
}

/// The modem: engine, links, port writer, wire and faults.
pub struct Modem {
    engine: Engine,
    options: ModemOptions,
    links: HashMap<usize, RunningLink>,
    link_tx: mpsc::Sender<LinkMsg>,
    link_rx: mpsc::Receiver<LinkMsg>,
    requests_tx: mpsc::Sender<ControlRequest>,
    requests_rx: mpsc::Receiver<ControlRequest>,
    writer: Option<PortWriter>,
    wire: Wire,
    radio: Radio,
    busy_until: Option<Instant>,
    /// A port has been attached once (the banner of a port that stays was printed).
    booted: bool,
}

/// Fault requests waiting for the modem loop.
const REQUEST_QUEUE: usize = 16;

impl Modem {
    /// A modem with nothing attached yet.
    pub fn new(mut options: ModemOptions) -> Self {
        let engine = Engine::new(std::mem::take(&mut options.engine));
        // Bounded, so that a slow AT port pushes back on the links (see link::run).
        let (link_tx, link_rx) = mpsc::channel(64);
        let (requests_tx, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let wire = Wire::new(options.pace_baud);
        Modem {
            engine,
            options,
            links: HashMap::new(),
            link_tx,
            link_rx,
            requests_tx,
            requests_rx,
            writer: None,
            wire,
            radio: Radio::default(),
            busy_until: None,
            booted: false,
        }
    }

    /// A handle for faults and status, valid while the modem runs.
    pub fn handle(&self) -> ModemHandle {
        ModemHandle {
            requests: self.requests_tx.clone(),
        }
    }

    /// Serves the port until it ends (stdio, an in-process stream) or `shutdown` resolves.
    /// Input is taken only while the output waiting for the host is under
    /// [`wire::OUTPUT_BOUND`], so a transport's bounded [`port::channel`] makes a host that
    /// does not read wait; a write waiting for such a host never holds up anything else.
    pub async fn run(mut self, port: impl Into<PortEvents>, shutdown: impl std::future::Future<Output = ()>) {
        let mut port = port.into();
        tokio::pin!(shutdown);
        // The port ended (stdio): what is left to write goes out, then the modem ends.
        let mut ending = false;
        loop {
            self.pump();
            if ending && (self.writer.is_none() || !self.wire.has_output()) {
                break;
            }
            let take_input = !ending && self.wire.has_room() && !self.wire.input_pending();
            let next_input_at = self.wire.next_input_at();
            let busy_until = self.busy_until;
            tokio::select! {
                _ = &mut shutdown => break,
                written = write_next(&self.wire, self.writer.as_mut()), if self.writer.is_some() && self.wire.has_output() => match written {
                    Ok(n) => self.wire.sent(n, Instant::now()),
                    Err(e) => {
                        tracing::info!("AT port write failed: {e}; detached");
                        self.detach();
                        if self.options.exit_on_detach {
                            break;
                        }
                    }
                },
                ev = port.recv(), if take_input => match ev {
                    None if self.options.exit_on_detach => ending = true,
                    None => break,
                    Some(PortEvent::Attached(writer)) => self.attach(writer),
                    Some(PortEvent::Data(bytes)) => {
                        if let Some(now) = self.wire.receive(bytes, Instant::now()) {
                            self.feed(&now);
                        }
                    }
                    Some(PortEvent::Detached) if self.options.exit_on_detach => ending = true,
                    Some(PortEvent::Detached) => self.detach(),
                },
                _ = sleep_until(next_input_at), if next_input_at.is_some() => {
                    if let Some(slice) = self.wire.take_input() {
                        self.feed(&slice);
                    }
                }
                Some(msg) = self.link_rx.recv(), if self.wire.has_room() => match msg {
                    LinkMsg::Event(handle, event) => self.engine.handle_link_event(handle, event),
                    LinkMsg::Done(completion) => {
                        if let Completion::Close { link } = &completion {
                            self.forget(*link);
                        }
                        self.engine.complete(completion);
                    }
                },
                Some(request) = self.requests_rx.recv() => {
                    let answer = self.serve(request.request);
                    let _ = request.reply.send(answer);
                }
                _ = sleep_until(busy_until), if busy_until.is_some() => {
                    self.busy_until = None;
                    self.engine.set_busy(false);
                }
            }
        }
        for (_, link) in self.links.drain() {
            link.task.abort();
        }
    }

    /// A host attached: when hosts come and go (TCP) each finds the port as after boot;
    /// a port that stays (a UART, a pty) gets the banner once, when it is first there.
    fn attach(&mut self, writer: PortWriter) {
        let first = !std::mem::replace(&mut self.booted, true);
        self.writer = Some(writer);
        self.wire.clear();
        if self.options.banner_per_attach {
            self.engine.attach();
        } else if first {
            self.engine.boot();
        }
    }

    /// The host is gone: what waited for it is dropped.
    fn detach(&mut self) {
        self.writer = None;
        self.wire.clear();
    }

    /// Bytes from the host, as the engine receives them.
    fn feed(&mut self, bytes: &[u8]) {
        self.engine.feed(bytes);
        if let Some(t) = self.options.trace.as_mut() {
            t.record_in(bytes, self.engine.port_state());
        }
    }

    /// Carries out the engine's actions and moves its output onto the wire, until it has
    /// none. Output with no host attached is dropped, as a UART's with no cable.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.engine.poll_action() {
                progressed = true;
                self.dispatch(action);
            }
            while let Some(piece) = self.engine.poll_output() {
                progressed = true;
                if let Some(t) = self.options.trace.as_mut() {
                    t.record_out(&piece);
                }
                if self.writer.is_some() {
                    self.wire.push(piece, Instant::now());
                }
            }
            if !progressed {
                if let Some(t) = self.options.trace.as_mut() {
                    t.end_round();
                }
                return;
            }
        }
    }

    /// Whether `request` makes sense for this modem at all, whatever its state: a link id
    /// it has, a command its firmware has, a rate between 0 and 1. (`--faults` checks its
    /// whole schedule with this at start.)
    pub fn check(&self, request: &Request) -> Result<(), FaultError> {
        match request {
            Request::Fault(Fault::Drop { link }) if *link >= self.engine.link_count() => Err(FaultError(format!(
                "no link {link} (links are 0..{})",
                self.engine.link_count()
            ))),
            Request::Fault(Fault::Fail { command, .. }) if !self.engine.knows_command(command) => {
                Err(FaultError(format!("no such AT command: {command}")))
            }
            Request::Fault(Fault::Noise { rate, .. }) if !(0.0..=1.0).contains(rate) => {
                Err(FaultError(format!("not a rate between 0 and 1: {rate}")))
            }
            _ => Ok(()),
        }
    }

    /// Applies a fault, or reports the status.
    fn serve(&mut self, request: Request) -> Result<Option<Status>, FaultError> {
        self.check(&request)?;
        let fault = match request {
            Request::Status => return Ok(Some(self.status())),
            Request::Fault(fault) => fault,
        };
        tracing::info!(?fault, "fault");
        match fault {
            Fault::Drop { link } => {
                if self.engine.link_status(link) != Some(LinkStatus::Connected) {
                    return Err(FaultError(format!("link {link} is not connected")));
                }
                self.command_link(link, LinkCmd::Drop);
            }
            Fault::Wifi { up } => {
                self.radio.set(up);
                self.engine.set_wifi(up);
                if !up {
                    let ids: Vec<usize> = self.links.keys().copied().collect();
                    for id in ids {
                        self.command_link(id, LinkCmd::Drop);
                    }
                }
            }
            Fault::Reset { noise } => {
                // What the UART held is lost with the chip's state; the bench's own faults
                // (a running `busy`, latency, noise, forced failures) stay.
                self.wire.clear();
                self.engine.power_cycle(noise);
            }
            Fault::Busy { duration } => {
                let on = !duration.is_zero();
                self.busy_until = on.then(|| Instant::now() + duration);
                self.engine.set_busy(on);
            }
            Fault::Latency { delay } => self.wire.set_latency(delay),
            Fault::Noise { rate, seed } => self.wire.set_noise(rate, seed),
            Fault::Fail { command, count } => self
                .engine
                .fail_next(&command, count)
                .map_err(|e| FaultError(e.to_string()))?,
        }
        Ok(None)
    }

    /// The modem as `status` reports it.
    fn status(&self) -> Status {
        Status {
            host_attached: self.writer.is_some(),
            port: self.engine.port_state(),
            wifi_up: self.engine.wifi_up(),
            links: (0..self.engine.link_count())
                .map(|id| LinkSlot {
                    id,
                    state: self.engine.link_status(id),
                })
                .collect(),
            busy_left: self.busy_until.map(|t| t.saturating_duration_since(Instant::now())),
            latency: self.wire.latency(),
            noise: self.wire.noise(),
            failures: self.engine.forced_failures(),
            pace_baud: self.wire.baud(),
        }
    }

    fn command_link(&self, id: usize, command: LinkCmd) {
        if let Some(link) = self.links.get(&id) {
            let _ = link.commands.send(command);
        }
    }

    fn dispatch(&mut self, action: Action) {
        match action {
            Action::Open { link, request } => {
                if let Some(old) = self.links.remove(&link.id) {
                    old.task.abort();
                }
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(link::run(
                    link,
                    request,
                    self.options.link,
                    self.radio.clone(),
                    self.link_tx.clone(),
                    rx,
                ));
                self.links.insert(
                    link.id,
                    RunningLink {
                        handle: link,
                        commands: tx,
                        task,
                    },
                );
            }
            Action::Send {
                link,
                opcode,
                fin,
                payload,
                timeout_ms,
            } => {
                let sent = self.links.get(&link.id).filter(|l| l.handle == link).is_some_and(|l| {
                    l.commands
                        .send(LinkCmd::Send {
                            opcode,
                            fin,
                            payload,
                            timeout_ms,
                        })
                        .is_ok()
                });
                if !sent {
                    self.engine.complete(Completion::Send { link, ok: false });
                }
            }
            Action::Close { link } => {
                let asked = self
                    .links
                    .get(&link.id)
                    .filter(|l| l.handle == link)
                    .is_some_and(|l| l.commands.send(LinkCmd::Close).is_ok());
                if !asked {
                    self.forget(link);
                    self.engine.complete(Completion::Close { link });
                }
            }
            Action::CloseAll => {
                for (_, l) in self.links.drain() {
                    l.task.abort();
                }
            }
            Action::SntpSync => {
                // The host clock is the time source: "synchronised" at once.
                let tx = self.link_tx.clone();
                tokio::spawn(async move { tx.send(LinkMsg::Done(Completion::SntpSynced)).await });
            }
            Action::QueryTime { .. } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                self.engine.complete(Completion::Time {
                    unix_seconds: i64::try_from(now).unwrap_or(i64::MAX),
                });
            }
        }
    }

    fn forget(&mut self, link: LinkHandle) {
        if self.links.get(&link.id).is_some_and(|l| l.handle == link) {
            self.links.remove(&link.id);
        }
    }
}

/// Writes the wire's next slice once it may leave; how many bytes the port took.
async fn write_next(wire: &Wire, writer: Option<&mut PortWriter>) -> io::Result<usize> {
    let (Some((at, slice)), Some(writer)) = (wire.next_slice(), writer) else {
        return std::future::pending().await;
    };
    tokio::time::sleep_until(at).await;
    writer.write_some(slice).await
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
