//! Where a client's events go: the application's channel, with its lockstep demand and
//! byte budget, and the events not handed over yet, in order.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use crate::budget::EventBudget;
use crate::event::Event;

/// The events on their way to [`crate::Events`].
pub(crate) struct EventOutlet {
    /// The application's channel.
    pub events: mpsc::Sender<Event>,
    /// In lockstep delivery, one permit per outstanding `Events::recv` call.
    pub demand: Option<Arc<Semaphore>>,
    /// Payload bytes handed over and not yet taken (`ClientConfig::max_event_bytes`).
    pub budget: Arc<EventBudget>,
    /// Events not yet accepted by the channel, delivered in order.
    pending: VecDeque<Event>,
}

impl EventOutlet {
    /// An outlet with nothing pending.
    pub(crate) fn new(events: mpsc::Sender<Event>, demand: Option<Arc<Semaphore>>, budget: Arc<EventBudget>) -> Self {
        EventOutlet {
            events,
            demand,
            budget,
            pending: VecDeque::new(),
        }
    }

    /// Queues `event` behind the pending ones.
    pub(crate) fn push(&mut self, event: Event) {
        self.pending.push_back(event);
    }

    /// Nothing waits to be handed over.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the next received message may be decoded: every event is handed over and,
    /// in lockstep, the application asked for one. Replies to what the application just
    /// saw then leave before later input is decoded.
    pub(crate) fn may_decode(&self) -> bool {
        self.pending.is_empty() && self.demand.as_ref().is_none_or(|d| d.available_permits() > 0)
    }

    /// Hands pending events over while the channel has room and the event budget allows,
    /// without waiting: each would otherwise take a round through a select loop. Not in
    /// lockstep, where an event also needs an outstanding `recv`.
    pub(crate) fn deliver_ready(&mut self) {
        if self.demand.is_some() {
            return;
        }
        while self.front_fits() {
            match self.events.try_reserve() {
                Ok(permit) => hand_over(&mut self.pending, &self.budget, Some(permit)),
                Err(mpsc::error::TrySendError::Full(())) => return,
                Err(mpsc::error::TrySendError::Closed(())) => hand_over(&mut self.pending, &self.budget, None),
            }
        }
    }

    /// Waits until the first pending event may go (channel room, the application's demand
    /// in lockstep, the byte budget) and hands it over; never resolves while nothing is
    /// pending. Cancel-safe: an event leaves the queue only when it is handed over.
    pub(crate) async fn deliver_one(&mut self) {
        if self.pending.is_empty() {
            return std::future::pending().await;
        }
        while !self.front_fits() {
            self.budget.wait_taken().await;
        }
        let permit = delivery(&self.events, self.demand.as_deref()).await;
        hand_over(&mut self.pending, &self.budget, permit);
    }

    /// In lockstep, resolves once the application asks for an event (decoding may go on);
    /// otherwise never (decoding is not gated). Owned, so that it can be awaited beside
    /// [`EventOutlet::deliver_one`].
    pub(crate) fn demanded(&self) -> impl std::future::Future<Output = ()> + use<> {
        let demand = self.demand.clone();
        async move {
            match demand.as_deref() {
                Some(d) if d.available_permits() == 0 => {
                    let _ = d.acquire().await;
                }
                _ => std::future::pending().await,
            }
        }
    }

    /// After the client stopped: hands everything left over, without waiting for a slow
    /// reader if `stopped`. The budget no longer holds anything up: nothing is read any more.
    pub(crate) async fn flush(&mut self, stopped: bool) {
        while let Some(ev) = self.pending.pop_front() {
            self.budget.hand_over(ev.payload_len());
            let sent = if stopped {
                self.events.try_send(ev).is_ok()
            } else {
                self.events.send(ev).await.is_ok()
            };
            if !sent {
                break;
            }
        }
    }

    /// Whether an event is pending and the event budget lets it go now.
    fn front_fits(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|ev| self.budget.admits(ev.payload_len()))
    }
}

/// Hands the first of `pending` over through `permit`, counting it into `budget`; with no
/// permit nobody listens any more: the events are dropped, the client keeps running.
fn hand_over(pending: &mut VecDeque<Event>, budget: &EventBudget, permit: Option<mpsc::Permit<'_, Event>>) {
    match (permit, pending.pop_front()) {
        (Some(permit), Some(ev)) => {
            budget.hand_over(ev.payload_len());
            permit.send(ev);
        }
        _ => pending.clear(),
    }
}

/// Waits until an event may be handed over: channel room, and in lockstep an outstanding
/// `recv` (whose permit is consumed only together with the channel slot).
async fn delivery<'a>(events: &'a mpsc::Sender<Event>, demand: Option<&Semaphore>) -> Option<mpsc::Permit<'a, Event>> {
    let asked = match demand {
        Some(d) => Some(d.acquire().await.ok()?),
        None => None,
    };
    let slot = events.reserve().await.ok()?;
    if let Some(p) = asked {
        p.forget();
    }
    Some(slot)
}
