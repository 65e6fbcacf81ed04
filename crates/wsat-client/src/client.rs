//! The client handle: start, send, close, stop, state.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use wsat_proto::OpCode;

use crate::budget::EventBudget;
use crate::config::ClientConfig;
use crate::event::{Event, LinkState};
use crate::outlet::EventOutlet;
use crate::task::{Command, Shared, Task};
use crate::ClientError;

/// A running WebSocket client: one background task that connects, delivers events and
/// reconnects, as the ESP client's task does. Cheap to clone; every clone controls the
/// same connection. Dropping every clone stops the task.
///
/// The other shape is [`crate::WebSocket`]: driven in your own task, `Stream`/`Sink`, no
/// reconnect. `examples/esp_example.rs` is the ESP-IDF example app on a `Client`
/// (`examples/esp_example_stream.rs` the same on a `WebSocket`).
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    stop: Arc<watch::Sender<bool>>,
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// The event stream of a [`Client`]. Keep receiving: while events wait, the client
/// stops reading from the server (backpressure).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
    demand: Option<Arc<Semaphore>>,
    budget: Arc<EventBudget>,
}

impl Events {
    /// The next event; `None` after [`Event::Finish`] was delivered and the task ended.
    pub async fn recv(&mut self) -> Option<Event> {
        if let Some(demand) = &self.demand {
            if self.rx.is_empty() {
                demand.add_permits(1);
            }
        }
        let event = self.rx.recv().await;
        if let Some(ev) = &event {
            self.budget.taken(ev.payload_len());
        }
        event
    }
}

/// How [`Client::stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The task ended on its own within the bound.
    Stopped,
    /// The bound ran out and the task was aborted.
    Aborted,
    /// The task had already ended.
    AlreadyStopped,
}

impl Client {
    /// Validates `config` and starts the client task on the current tokio runtime. Fails
    /// at once for a bad URI or TLS configuration; connecting happens in the background.
    pub fn start(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let target = config.target()?;
        let tls = if target.tls() { Some(config.tls.build()?) } else { None };
        let (cmd_tx, cmd_rx) = mpsc::channel(32);
        let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
        // Capacity 0: hand over one event per `recv` call (see ClientConfig::event_capacity).
        let demand = (config.event_capacity == 0).then(|| Arc::new(Semaphore::new(0)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new());
        let budget = Arc::new(EventBudget::new(config.max_event_bytes));
        let task = Task {
            config: Arc::new(config),
            tls,
            shared: shared.clone(),
            commands: cmd_rx,
            stop: stop_rx,
            outlet: EventOutlet::new(ev_tx, demand.clone(), budget.clone()),
        };
        let handle = tokio::spawn(task.run());
        let client = Client {
            commands: cmd_tx,
            stop: Arc::new(stop_tx),
            shared,
            task: Arc::new(Mutex::new(Some(handle))),
        };
        Ok((
            client,
            Events {
                rx: ev_rx,
                demand,
                budget,
            },
        ))
    }

    /// The firmware's link state (0..4).
    pub fn state(&self) -> LinkState {
        self.shared.state()
    }

    /// Waits until the link's state satisfies `wanted` and returns that state (at once if it
    /// already does): e.g. until a connect attempt in progress has ended. Bound it with a
    /// timeout; a stopped client stays [`LinkState::Stopped`].
    pub async fn wait_for_state(&self, wanted: impl Fn(LinkState) -> bool) -> LinkState {
        self.shared.state_when(wanted).await
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.state() == LinkState::Connected
    }

    /// Sends one message the ESP client's way: split into frames of at most `buffer_size`
    /// bytes, `opcode` first, continuations after, FIN on the last. Any opcode goes,
    /// reserved ones included. Returns the payload length once written to the transport.
    ///
    /// Ordering guarantee (every send method): the reply is handed over before the client
    /// reads anything more from the socket, so it is ready before the event of any answer
    /// the server sent after receiving these frames (the modem's `SEND OK` before the
    /// echo's `+WS_DATA` rests on it).
    pub async fn send(
        &self,
        opcode: OpCode,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<usize, ClientError> {
        self.command_send(opcode, payload.into(), true, true, timeout).await
    }

    /// A text message.
    pub async fn send_text(&self, text: &str, timeout: Duration) -> Result<usize, ClientError> {
        self.send(OpCode::TEXT, Bytes::copy_from_slice(text.as_bytes()), timeout)
            .await
    }

    /// A binary message.
    pub async fn send_binary(&self, data: impl Into<Bytes>, timeout: Duration) -> Result<usize, ClientError> {
        self.send(OpCode::BINARY, data, timeout).await
    }

    /// Part of a fragmented message: `opcode` is TEXT/BINARY for the first part and
    /// CONTINUATION after; `fin` ends the message. Split by `buffer_size` like [`Client::send`].
    pub async fn send_part(
        &self,
        opcode: OpCode,
        payload: impl Into<Bytes>,
        fin: bool,
        timeout: Duration,
    ) -> Result<usize, ClientError> {
        self.command_send(opcode, payload.into(), fin, true, timeout).await
    }

    /// Ends a fragmented message with an empty continuation frame carrying FIN.
    pub async fn send_fin(&self, timeout: Duration) -> Result<usize, ClientError> {
        self.command_send(OpCode::CONTINUATION, Bytes::new(), true, true, timeout)
            .await
    }

    /// Exactly one frame with this opcode and FIN, however long: no fragmentation, nothing
    /// checked.
    pub async fn send_frame(
        &self,
        opcode: OpCode,
        fin: bool,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<usize, ClientError> {
        self.command_send(opcode, payload.into(), fin, false, timeout).await
    }

    async fn command_send(
        &self,
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
        fragment: bool,
        timeout: Duration,
    ) -> Result<usize, ClientError> {
        if !self.is_connected() {
            return Err(ClientError::NotConnected);
        }
        // The bound is kept by the task, which answers a send still unwritten at its
        // deadline with `SendTimeout` (one timer for all its sends, rather than one
        // registered and cancelled per send here). Only a hand-over that waits for room in
        // the command queue is bounded here.
        let deadline = Instant::now().checked_add(timeout);
        let (reply, done) = oneshot::channel();
        let command = Command::Send {
            opcode,
            payload,
            fin,
            fragment,
            deadline,
            reply,
        };
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Err(ClientError::Stopped),
            Err(TrySendError::Full(command)) => {
                let queued = self.commands.send(command);
                match deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), queued)
                        .await
                        .map_err(|_| ClientError::SendTimeout)?,
                    None => queued.await,
                }
                .map_err(|_| ClientError::Stopped)?;
            }
        }
        done.await.map_err(|_| ClientError::NotConnected)?
    }

    /// Closes cleanly: sends a close frame with `code` (none sends an empty one) and
    /// `reason`, then waits up to `timeout` for the closing handshake and the task to end.
    /// If the bound runs out, the client is stopped hard and `Err(CloseTimeout)` returned.
    /// With reconnect-after-close, returns once the close frame is queued.
    pub async fn close(&self, code: Option<u16>, reason: &str, timeout: Duration) -> Result<(), ClientError> {
        let (reply, done) = oneshot::channel();
        let queued = async {
            self.commands
                .send(Command::Close {
                    code,
                    reason: reason.to_owned(),
                    reply,
                })
                .await
                .map_err(|_| ClientError::Stopped)?;
            done.await.map_err(|_| ClientError::Stopped)?
        };
        tokio::time::timeout(timeout, queued)
            .await
            .map_err(|_| ClientError::CloseTimeout)??;
        let Some(handle) = self.take_task() else { return Ok(()) };
        let abort = handle.abort_handle();
        match tokio::time::timeout(timeout, handle).await {
            Ok(_) => Ok(()),
            Err(_) => {
                abort.abort();
                Err(ClientError::CloseTimeout)
            }
        }
    }

    /// Drops the connection without a close frame, as a transport failure would: the
    /// client reports `Disconnected(Aborted)` and reconnects if its policy says so. What
    /// the ESP client does when a send times out (esp-protocols #942); wsat's own sends
    /// keep the link, so callers that want the firmware's behaviour call this.
    pub async fn abort(&self) {
        let _ = self.commands.send(Command::Abort).await;
    }

    /// Stops at once without a close frame, returning within `bound` whatever the task is
    /// doing (connecting, TLS, waiting to reconnect): past the bound the task is aborted.
    pub async fn stop(&self, bound: Duration) -> StopOutcome {
        let _ = self.stop.send(true);
        let Some(handle) = self.take_task() else {
            return StopOutcome::AlreadyStopped;
        };
        let abort = handle.abort_handle();
        match tokio::time::timeout(bound, handle).await {
            Ok(_) => StopOutcome::Stopped,
            Err(_) => {
                abort.abort();
                StopOutcome::Aborted
            }
        }
    }

    /// Waits until the task has ended (after [`Event::Finish`]).
    pub async fn finished(&self) {
        if let Some(handle) = self.take_task() {
            let _ = handle.await;
        }
    }

    fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task.lock().ok().and_then(|mut t| t.take())
    }
}
