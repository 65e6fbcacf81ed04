//! The byte budget of events handed to the application but not yet taken: a peer that
//! sends faster than the application reads fills the event channel in bytes, not items, so
//! the channel's item capacity alone would let 64 whole messages of 64 MiB wait in memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Payload bytes in the event channel, shared by the client task and [`crate::Events`].
#[derive(Debug)]
pub(crate) struct EventBudget {
    max: usize,
    held: AtomicUsize,
    taken: Notify,
    /// Set while a closing handshake is under way (see [`EventBudget::set_closing`]).
    closing: AtomicBool,
}

impl EventBudget {
    /// A budget of `max` payload bytes (see `ClientConfig::max_event_bytes`).
    pub(crate) fn new(max: usize) -> Self {
        EventBudget {
            max,
            held: AtomicUsize::new(0),
            taken: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// While a closing handshake is under way the budget admits everything (the event
    /// channel's item capacity still applies): `Client::close` waits for the handshake,
    /// and an application waiting there reads no events, so holding the server's last
    /// messages back would hold back its close frame too. The close timeout bounds that
    /// time.
    pub(crate) fn set_closing(&self, closing: bool) {
        self.closing.store(closing, Ordering::Release);
    }

    /// Whether an event of `size` payload bytes may be handed over now. Events without
    /// payload always may, and so may any event while the channel holds no payload: a
    /// message larger than the budget still arrives, alone.
    pub(crate) fn admits(&self, size: usize) -> bool {
        let held = self.held.load(Ordering::Acquire);
        size == 0 || held == 0 || held.saturating_add(size) <= self.max || self.closing.load(Ordering::Acquire)
    }

    /// Counts an event of `size` bytes in; call before it enters the channel, so that the
    /// application can never take it out first.
    pub(crate) fn hand_over(&self, size: usize) {
        self.held.fetch_add(size, Ordering::AcqRel);
    }

    /// Counts an event of `size` bytes out, once the application took it.
    pub(crate) fn taken(&self, size: usize) {
        if size > 0 {
            self.held.fetch_sub(size, Ordering::AcqRel);
            self.taken.notify_one();
        }
    }

    /// Resolves after the application took an event with payload (at once if it did so
    /// since the last call).
    pub(crate) async fn wait_taken(&self) {
        self.taken.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_always_fits_and_the_rest_within_the_budget() {
        let b = EventBudget::new(100);
        assert!(b.admits(1_000), "alone, even an event larger than the budget");
        b.hand_over(1_000);
        assert!(!b.admits(1), "nothing with payload joins it");
        assert!(b.admits(0), "events without payload are never held up");
        b.taken(1_000);
        b.hand_over(60);
        assert!(b.admits(40) && !b.admits(41));
        b.set_closing(true);
        assert!(b.admits(1_000), "a closing handshake is not held up");
    }

    #[tokio::test]
    async fn a_take_wakes_the_waiting_task_even_if_it_came_first() {
        let b = EventBudget::new(10);
        b.hand_over(5);
        b.taken(5);
        tokio::time::timeout(std::time::Duration::from_secs(1), b.wait_taken())
            .await
            .expect("the take was remembered");
    }
}
