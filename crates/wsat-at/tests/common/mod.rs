//! A test-only fake glue: services the engine's actions the way `wsat modem` would (without
//! sockets or timers), records every byte written to the port, and lets a test play the server.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

use wsat_at::{Action, Completion, Engine, EngineConfig, Firmware, LinkEvent, LinkHandle, Pki};

/// Escaped bytes, for readable assertion failures.
pub fn esc(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// One link as the fake sees it.
#[derive(Debug, Clone)]
pub struct FakeLink {
    /// Engine handle.
    pub handle: LinkHandle,
    /// buffer_size from the Open request.
    pub buffer_size: usize,
    /// Whether the "server" is reachable (sends succeed).
    pub connected: bool,
}

/// A frame the fake put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Link id.
    pub id: usize,
    /// Opcode.
    pub opcode: u8,
    /// FIN of the last fragment.
    pub fin: bool,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The fake glue.
pub struct Glue {
    /// The engine under test.
    pub engine: Engine,
    /// Port bytes not yet taken by [`Glue::device`].
    wire: Vec<u8>,
    /// Every piece written, in order.
    pub pieces: Vec<Vec<u8>>,
    /// Open links by id.
    pub links: HashMap<usize, FakeLink>,
    /// URIs whose open fails (Disconnected, then Completion::Open{ok:false}).
    pub refuse: HashSet<String>,
    /// Echo server: every text/binary message sent comes back as +WS_DATA after SEND OK.
    pub echo: bool,
    /// Messages sent.
    pub sent: Vec<Sent>,
    /// What Completion::Time answers.
    pub now: i64,
    /// When false, actions are left for the test to take with [`Glue::take_action`].
    pub auto: bool,
    /// Actions not serviced automatically.
    pub held: Vec<Action>,
}

impl Glue {
    /// v5 engine, default PKI shape (two of each), echo server on.
    pub fn new() -> Self {
        Self::with(Firmware::V5)
    }

    /// Engine for `firmware`, banner drained.
    pub fn with(firmware: Firmware) -> Self {
        let two = |tag: &str| vec![format!("{tag}0").into_bytes(), format!("{tag}1").into_bytes()];
        let engine = Engine::new(EngineConfig {
            firmware,
            pki: Pki {
                cas: two("ca"),
                client_certs: two("cert"),
                client_keys: two("key"),
            },
            version: "0.1.0".into(),
            ..EngineConfig::default()
        });
        Glue {
            engine,
            wire: Vec::new(),
            pieces: Vec::new(),
            links: HashMap::new(),
            refuse: HashSet::new(),
            echo: true,
            sent: Vec::new(),
            now: 0,
            auto: true,
            held: Vec::new(),
        }
    }

    /// Host writes `bytes` (one chunk); actions are serviced.
    pub fn host(&mut self, bytes: &[u8]) {
        self.engine.feed(bytes);
        self.service();
    }

    /// Everything the device wrote since the last call, escaped.
    pub fn device(&mut self) -> String {
        self.collect();
        esc(&std::mem::take(&mut self.wire))
    }

    fn collect(&mut self) {
        while let Some(p) = self.engine.poll_output() {
            self.wire.extend_from_slice(&p);
            self.pieces.push(p);
        }
    }

    /// Next action left unserviced (`auto == false`).
    pub fn take_action(&mut self) -> Option<Action> {
        self.collect();
        if self.held.is_empty() {
            return None;
        }
        Some(self.held.remove(0))
    }

    /// Services every pending action like the real glue would (minus timing).
    pub fn service(&mut self) {
        self.collect();
        while let Some(action) = self.engine.poll_action() {
            if !self.auto {
                self.held.push(action);
                continue;
            }
            self.perform(action);
            self.collect();
        }
    }

    /// Carries out one action.
    pub fn perform(&mut self, action: Action) {
        match action {
            Action::Open { link, request } => {
                if self.refuse.contains(&request.uri) {
                    self.engine.handle_link_event(link, LinkEvent::Disconnected);
                    self.engine.complete(Completion::Open { link, ok: false });
                } else {
                    self.links.insert(
                        link.id,
                        FakeLink {
                            handle: link,
                            buffer_size: request.config.buffer_size,
                            connected: true,
                        },
                    );
                    self.engine.handle_link_event(link, LinkEvent::Connected);
                    self.engine.complete(Completion::Open { link, ok: true });
                }
            }
            Action::Send {
                link,
                opcode,
                fin,
                payload,
                ..
            } => {
                let up = self
                    .links
                    .get(&link.id)
                    .is_some_and(|l| l.handle == link && l.connected);
                if up {
                    self.sent.push(Sent {
                        id: link.id,
                        opcode,
                        fin,
                        payload: payload.clone(),
                    });
                }
                self.engine.complete(Completion::Send { link, ok: up });
                if up && self.echo && (opcode == 1 || opcode == 2) && fin {
                    self.receive(link.id, opcode, &payload);
                }
            }
            Action::Close { link } => {
                self.links.remove(&link.id);
                self.engine.complete(Completion::Close { link });
            }
            Action::CloseAll => self.links.clear(),
            Action::SntpSync => self.engine.complete(Completion::SntpSynced),
            Action::QueryTime { .. } => self.engine.complete(Completion::Time { unix_seconds: self.now }),
        }
    }

    /// The server sends one frame on link `id`: delivered in chunks of the link's buffer_size.
    pub fn receive(&mut self, id: usize, opcode: u8, payload: &[u8]) {
        let Some(link) = self.links.get(&id).cloned() else {
            return;
        };
        let size = link.buffer_size.max(1);
        let total = payload.len() as u64;
        if payload.is_empty() {
            self.engine.handle_link_event(
                link.handle,
                LinkEvent::Data {
                    opcode,
                    fin: true,
                    payload_len: 0,
                    offset: 0,
                    chunk: Vec::new(),
                },
            );
        }
        for (i, chunk) in payload.chunks(size).enumerate() {
            self.engine.handle_link_event(
                link.handle,
                LinkEvent::Data {
                    opcode,
                    fin: true,
                    payload_len: total,
                    offset: (i * size) as u64,
                    chunk: chunk.to_vec(),
                },
            );
        }
        self.collect();
    }

    /// The server vanishes: link drops to state 3 (`+WS_DISCONNECTED`).
    pub fn drop_link(&mut self, id: usize) {
        if let Some(link) = self.links.get_mut(&id) {
            link.connected = false;
            let handle = link.handle;
            self.engine.handle_link_event(handle, LinkEvent::Disconnected);
        }
        self.collect();
    }

    /// A reconnect attempt of link `id` starts (state 1) and ends (`ok` ⇒ `+WS_CONNECTED`).
    pub fn reconnect(&mut self, id: usize, ok: bool) {
        if let Some(link) = self.links.get_mut(&id) {
            let handle = link.handle;
            link.connected = ok;
            self.engine.handle_link_event(handle, LinkEvent::Connecting);
            let event = if ok {
                LinkEvent::Connected
            } else {
                LinkEvent::Disconnected
            };
            self.engine.handle_link_event(handle, event);
        }
        self.collect();
    }

    /// The server sends a close frame: `+WS_CLOSED`, link gone.
    pub fn server_close(&mut self, id: usize) {
        if let Some(link) = self.links.remove(&id) {
            self.engine.handle_link_event(link.handle, LinkEvent::Closed);
        }
        self.collect();
    }
}
