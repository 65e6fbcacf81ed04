//! The connection limit's bookkeeping: a permit per live connection, and for each one still
//! in its handshake a signal that closes it, so that at the limit a newcomer takes the slot
//! of the oldest handshake rather than be refused while idle peers hold every slot.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// How long a new connection waits for the slot of the handshake closed to make room.
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// The connection limit: a permit per live connection, and, in accept order, a way to
/// close each connection that is still in its handshake.
#[derive(Debug)]
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    /// One sender per connection accepted, oldest first; a connection drops its receiver
    /// when its handshake ends, so the senders that can still be sent on are the
    /// connections that are still in their handshake.
    handshaking: VecDeque<oneshot::Sender<()>>,
    /// The length of `handshaking` at which the senders of finished handshakes are dropped:
    /// twice what was left last time, so pruning costs O(1) per connection.
    prune_at: usize,
}

/// What a connection holds while it lives: its share of the limit, and the signal that
/// closes it during its handshake to make room for a newer connection.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) evict: oneshot::Receiver<()>,
}

/// The smallest [`Slots::prune_at`].
const MIN_PRUNE_AT: usize = 64;

/// The outcome of [`Slots::claim`].
#[derive(Debug)]
pub(super) enum Claim {
    /// A slot nobody held.
    Free(Slot),
    /// The slot of the oldest connection still in its handshake, which was told to close.
    MadeRoom(Slot),
    /// None: every slot holds an upgraded connection.
    Full,
}

impl Slots {
    pub(super) fn new(limit: usize) -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
            handshaking: VecDeque::new(),
            prune_at: MIN_PRUNE_AT,
        }
    }

    /// A slot for a new connection: a free one, else the oldest handshake's (that
    /// connection is closed for it), else none.
    pub(super) async fn claim(&mut self) -> Claim {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Claim::Free(self.track(permit));
        }
        match self.evict_oldest_handshake().await {
            Some(permit) => Claim::MadeRoom(self.track(permit)),
            None => Claim::Full,
        }
    }

    /// A slot for `permit`, remembered as in its handshake until it drops its receiver.
    fn track(&mut self, permit: OwnedSemaphorePermit) -> Slot {
        if self.handshaking.len() >= self.prune_at {
            self.handshaking.retain(|h| !h.is_closed());
            self.prune_at = (2 * self.handshaking.len()).max(MIN_PRUNE_AT);
        }
        let (tx, evict) = oneshot::channel();
        self.handshaking.push_back(tx);
        Slot { permit, evict }
    }

    async fn evict_oldest_handshake(&mut self) -> Option<OwnedSemaphorePermit> {
        while let Some(oldest) = self.handshaking.pop_front() {
            if oldest.send(()).is_ok() {
                // The closed connection's task drops its permit as it ends; should it have
                // finished its handshake at that very moment, the wait times out instead.
                let freed = tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned());
                return freed.await.ok()?.ok();
            }
        }
        None
    }
}

/// Completes when the accept loop closes this connection for a newer one; never without
/// that signal (a sender dropped with the server is no eviction).
pub(super) async fn evicted(evict: Option<oneshot::Receiver<()>>) {
    let told = match evict {
        Some(rx) => rx.await.is_ok(),
        None => false,
    };
    if !told {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_limit_the_oldest_handshake_makes_room_but_upgraded_connections_stay() {
        let mut slots = Slots::new(2);
        let (Claim::Free(a), Claim::Free(b)) = (slots.claim().await, slots.claim().await) else {
            panic!("two free slots");
        };
        // Like a connection task: it ends, freeing its permit, when told to make room.
        let a_task = tokio::spawn(async move {
            let Slot { permit, evict } = a;
            let told = evict.await.is_ok();
            drop(permit);
            told
        });
        let Claim::MadeRoom(c) = slots.claim().await else {
            panic!("the oldest handshake makes room");
        };
        assert!(a_task.await.expect("join"), "the oldest handshake was told to close");

        // b and c complete their upgrades: no one may be closed for a newcomer now.
        let Slot { permit: b_permit, .. } = b;
        let Slot { permit: _c_permit, .. } = c;
        assert!(matches!(slots.claim().await, Claim::Full));
        drop(b_permit);
        assert!(
            matches!(slots.claim().await, Claim::Free(_)),
            "a freed slot is taken again"
        );
    }

    /// Connections past their handshake are forgotten: with no limit to speak of, a long
    /// run of them does not grow the list of handshakes that could be closed.
    #[tokio::test]
    async fn finished_handshakes_are_forgotten() {
        let mut slots = Slots::new(usize::MAX);
        for _ in 0..10_000 {
            let Claim::Free(slot) = slots.claim().await else {
                panic!("a free slot");
            };
            drop(slot);
        }
        assert!(slots.handshaking.len() <= MIN_PRUNE_AT, "{}", slots.handshaking.len());
    }
}
