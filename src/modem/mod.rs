//! `wsat modem`: the sans-IO AT engine wired to a port and to real WebSocket links.
//!
//! One loop owns the engine and the port's writer, so responses and URCs leave in the
//! engine's order, each piece in one write: a URC never lands inside another response.

pub mod link;
pub mod pki;
pub mod port;
pub mod secrets;
pub mod trace;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use wsat_at::{Action, Completion, Engine, EngineConfig, LinkHandle};

use link::{LinkCmd, LinkMsg, LinkTiming};
use port::{PortEvent, PortEvents, PortWriter};
use trace::Trace;

/// What the modem loop needs besides the engine.
#[derive(Debug)]
pub struct ModemOptions {
    /// The engine's configuration (links, firmware, PKI, version).
    pub engine: EngineConfig,
    /// Firmware timing.
    pub timing: LinkTiming,
    /// Print the boot banner on every attach (TCP) rather than once at start.
    pub banner_per_attach: bool,
    /// End when the port detaches (stdio).
    pub exit_on_detach: bool,
    /// Record the AT bytes here.
    pub trace: Option<Trace>,
}

struct RunningLink {
    handle: LinkHandle,
    commands: mpsc::UnboundedSender<LinkCmd>,
    task: tokio::task::JoinHandle<()>,
}

/// The modem: engine, links, port writer.
pub struct Modem {
    engine: Engine,
    options: ModemOptions,
    links: HashMap<usize, RunningLink>,
    link_tx: mpsc::Sender<LinkMsg>,
    link_rx: mpsc::Receiver<LinkMsg>,
    writer: Option<PortWriter>,
}

impl Modem {
    /// A modem with nothing attached yet.
    pub fn new(mut options: ModemOptions) -> Self {
        let engine = Engine::new(std::mem::take(&mut options.engine));
        // Bounded, so that a slow AT port pushes back on the links (see link::run).
        let (link_tx, link_rx) = mpsc::channel(64);
        Modem {
            engine,
            options,
            links: HashMap::new(),
            link_tx,
            link_rx,
            writer: None,
        }
    }

    /// Serves the port until it detaches for good (stdio) or `shutdown` resolves. The next
    /// port event is taken only once the output of the previous one is written, so a
    /// transport's bounded [`port::channel`] makes a host that does not read wait.
    pub async fn run(mut self, port: impl Into<PortEvents>, shutdown: impl std::future::Future<Output = ()>) {
        let mut port = port.into();
        tokio::pin!(shutdown);
        if !self.options.banner_per_attach {
            self.engine.boot();
        }
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                ev = port.recv() => match ev {
                    None => break,
                    Some(PortEvent::Attached(writer)) => {
                        self.writer = Some(writer);
                        if self.options.banner_per_attach {
                            self.engine.boot();
                        }
                    }
                    Some(PortEvent::Data(bytes)) => {
                        self.engine.feed(&bytes);
                        if let Some(t) = self.options.trace.as_mut() {
                            t.record_in(&bytes, self.engine.port_state());
                        }
                    }
                    Some(PortEvent::Detached) => {
                        self.writer = None;
                        if self.options.exit_on_detach {
                            self.drive().await;
                            break;
                        }
                    }
                },
                Some(msg) = self.link_rx.recv() => match msg {
                    LinkMsg::Event(handle, event) => self.engine.handle_link_event(handle, event),
                    LinkMsg::Done(completion) => {
                        if let Completion::Close { link } = &completion {
                            self.forget(*link);
                        }
                        self.engine.complete(completion);
                    }
                },
            }
            if !self.drive().await && self.options.exit_on_detach {
                break;
            }
        }
        for (_, link) in self.links.drain() {
            link.task.abort();
        }
    }

    /// Carries out the engine's actions and writes its output, until it has none; `false`
    /// when the port failed a write meanwhile, which counts as the host detaching.
    async fn drive(&mut self) -> bool {
        let mut attached = true;
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
                if let Some(w) = self.writer.as_mut() {
                    if let Err(e) = w.write(&piece).await {
                        tracing::info!("AT port write failed: {e}; detached");
                        self.writer = None;
                        attached = false;
                    }
                }
            }
            if !progressed {
                if let Some(t) = self.options.trace.as_mut() {
                    t.end_round();
                }
                return attached;
            }
        }
    }

    fn dispatch(&mut self, action: Action) {
        match action {
            Action::Open { link, request } => {
                if let Some(old) = self.links.remove(&link.id) {
                    old.task.abort();
                }
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(link::run(link, request, self.options.timing, self.link_tx.clone(), rx));
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
