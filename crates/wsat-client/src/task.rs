//! The task behind a client: connect, run the connection, reconnect; one per client.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use wsat_proto::OpCode;

use crate::config::ClientConfig;
use crate::event::{DisconnectReason, Event, LinkState};
use crate::outlet::EventOutlet;
use crate::session::{End, Session};
use crate::upgrade::{self, Upgraded};
use crate::ClientError;

/// A request from a [`crate::Client`] handle to its task.
pub(crate) enum Command {
    /// Queue frames; answer once they are written to the transport, or with
    /// `SendTimeout` at `deadline` if they are not by then (`None`: no bound).
    Send {
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
        fragment: bool,
        deadline: Option<Instant>,
        reply: oneshot::Sender<Result<usize, ClientError>>,
    },
    /// Drop the connection as if the transport had failed (reconnect follows if enabled).
    Abort,
    /// Start the closing handshake; answer whether the close frame was queued.
    Close {
        code: Option<u16>,
        reason: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// State shared between the task and its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    state: watch::Sender<LinkState>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            state: watch::Sender::new(LinkState::Stopped),
        }
    }

    pub(crate) fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Resolves with the state once `wanted` holds for it (at once if it already does).
    pub(crate) async fn state_when(&self, wanted: impl Fn(LinkState) -> bool) -> LinkState {
        let mut changes = self.state.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let state = changes.wait_for(|s| wanted(*s)).await.map(|s| *s);
        state.unwrap_or_else(|_| self.state())
    }

    pub(crate) fn set(&self, state: LinkState) {
        self.state
            .send_if_modified(|current| std::mem::replace(current, state) != state);
    }
}

/// The task behind a client (see the module documentation).
pub(crate) struct Task {
    pub config: Arc<ClientConfig>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub shared: Arc<Shared>,
    pub commands: mpsc::Receiver<Command>,
    pub stop: watch::Receiver<bool>,
    pub outlet: EventOutlet,
}

impl Task {
    /// Runs until stopped, closed for good, or disconnected without reconnect.
    pub(crate) async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            self.shared.set(LinkState::Connecting);
            self.outlet.push(Event::BeforeConnect {
                uri: self.config.uri.clone(),
            });
            let connected = {
                let config = self.config.clone();
                let tls = self.tls.clone();
                let mut hops = Vec::new();
                let attempt = upgrade::connect(&config, tls.as_ref(), |t| {
                    hops.push(Event::BeforeConnect {
                        uri: upgrade::shown(&t.uri),
                    })
                });
                let outcome = self.while_waiting(attempt).await;
                for hop in hops {
                    self.outlet.push(hop);
                }
                outcome
            };
            let end = match connected {
                None => break,
                Some(Err(err)) => End::Aborted(err, DisconnectReason::ConnectFailed),
                Some(Ok(upgraded)) => {
                    failures = 0;
                    self.session(upgraded).await
                }
            };
            match end {
                End::Stopped => break,
                End::Closed { code, reason } => {
                    self.outlet.push(Event::Closed { code, reason });
                    if !self.config.reconnect_after_close {
                        break;
                    }
                }
                End::Aborted(err, reason) => {
                    tracing::debug!(%err, ?reason, "connection aborted");
                    self.outlet.push(Event::Error(err));
                    self.outlet.push(Event::Disconnected(reason));
                }
            }
            let Some(delay) = self.config.reconnect.delay(failures) else {
                break;
            };
            failures = failures.saturating_add(1);
            self.shared.set(LinkState::WaitingToReconnect);
            if self.while_waiting(tokio::time::sleep(delay)).await.is_none() {
                break;
            }
        }
        self.shared.set(LinkState::Stopped);
        // Sends still queued are answered now: the flush below may wait for the
        // application, and nothing takes commands any more (their callers hold no timer).
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            refuse(cmd);
        }
        self.outlet.push(Event::Finish);
        let stopped = *self.stop.borrow();
        self.outlet.flush(stopped).await;
    }

    /// Runs `work` while not connected: delivers events, refuses sends and closes, and
    /// gives up (`None`) on stop.
    async fn while_waiting<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.changed() => return None,
                _ = self.outlet.deliver_one() => {}
                cmd = self.commands.recv() => match cmd {
                    None => return None,
                    Some(cmd) => refuse(cmd),
                },
                out = &mut work => return Some(out),
            }
        }
    }

    /// Runs a connected session to its end.
    async fn session(&mut self, upgraded: Upgraded) -> End {
        Session::new(
            upgraded,
            &self.config,
            &self.shared,
            &mut self.commands,
            &mut self.outlet,
        )
        .run(self.stop.clone())
        .await
    }
}

/// Answers a command that came while not connected: sends and closes are refused.
pub(crate) fn refuse(cmd: Command) {
    match cmd {
        Command::Send { reply, .. } => {
            let _ = reply.send(Err(ClientError::NotConnected));
        }
        Command::Close { reply, .. } => {
            let _ = reply.send(Err(ClientError::NotConnected));
        }
        Command::Abort => {}
    }
}
