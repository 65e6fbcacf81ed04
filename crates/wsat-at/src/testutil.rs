//! Unit-test helpers: drive an [`Engine`] and compare its output as escaped text, so failures
//! show readable bytes.

use crate::{Action, Completion, Engine, EngineConfig, Firmware, LinkEvent, LinkHandle, Pki};

/// Escapes bytes for assertions (`\r\n` shows as `\r\n`).
pub(crate) fn esc(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// An engine plus helpers that play the glue.
pub(crate) struct T {
    pub e: Engine,
}

impl T {
    /// v5 engine with the firmware's default PKI shape (two of each).
    pub fn new() -> Self {
        Self::with(Firmware::V5)
    }

    /// Master-mode engine.
    pub fn master() -> Self {
        Self::with(Firmware::Master)
    }

    /// Engine for `firmware` with two CAs, certs and keys.
    pub fn with(firmware: Firmware) -> Self {
        let two = |tag: &str| vec![format!("{tag}0").into_bytes(), format!("{tag}1").into_bytes()];
        T {
            e: Engine::new(EngineConfig {
                firmware,
                pki: Pki {
                    cas: two("ca"),
                    client_certs: two("cert"),
                    client_keys: two("key"),
                },
                version: "9.9.9".into(),
                ..EngineConfig::default()
            }),
        }
    }

    /// Feeds one chunk and returns all output so far, escaped.
    pub fn io(&mut self, input: &[u8]) -> String {
        self.e.feed(input);
        self.out()
    }

    /// Drains the output, escaped.
    pub fn out(&mut self) -> String {
        let mut all = Vec::new();
        while let Some(p) = self.e.poll_output() {
            all.extend_from_slice(&p);
        }
        esc(&all)
    }

    /// Next action.
    pub fn action(&mut self) -> Option<Action> {
        self.e.poll_action()
    }

    /// Opens `id` (echo off output is drained) and returns its handle.
    pub fn open(&mut self, id: usize) -> LinkHandle {
        self.e.feed(format!("AT+WSOPEN={id},\"ws://h:1/p\"\r\n").as_bytes());
        let link = match self.action() {
            Some(Action::Open { link, .. }) => link,
            other => panic!("expected Open, got {other:?}"),
        };
        self.e.handle_link_event(link, LinkEvent::Connected);
        self.e.complete(Completion::Open { link, ok: true });
        self.out();
        link
    }
}
