//! How the accept loop keeps a storm cheap: after a failed accept it backs off instead of
//! spinning (out of descriptors, `accept` fails again at once), and it logs such failures,
//! and what the connection limit made it do, at most once a second with a count of the
//! rest.

use std::io;
use std::time::{Duration, Instant};

/// The accept loop's first pause after a failure that repeats at once (out of
/// descriptors or memory); it doubles with each further failure up to
/// [`ACCEPT_BACKOFF_MAX`] and starts over after a successful accept.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line this often for accept failures, and one for the connection limit.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Logs a failed accept (at most once per [`LOG_INTERVAL`]) and, unless the failure was
/// the connection's own, pauses before the next one: out of descriptors, `accept` would
/// fail again at once, forever, while the pending connection waits in the backlog.
pub(super) async fn after_accept_failure(e: &io::Error, backoff: &mut Backoff, log: &mut LogLimiter) {
    let pause = (!is_connection_error(e)).then(|| backoff.failure());
    if let Some(held_back) = log.admit(Instant::now()) {
        let retry = pause.map_or_else(|| "; retrying".to_owned(), |p| format!("; retrying in {p:?}"));
        tracing::warn!(
            "accept failed: {e}{retry}{}",
            held_back_note(held_back, "more failures")
        );
    }
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
}

/// A failure of the one connection being accepted (it is gone; the next accept may
/// succeed at once), not of the server.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Logs how many events `log` held back, if any, so a storm that ended is accounted for.
pub(super) fn report_held_back(log: &mut LogLimiter, what: &str) {
    let held_back = log.take_held_back();
    if held_back > 0 {
        tracing::warn!("{held_back} {what} not logged since the last report");
    }
}

/// `" (N <what> since the last report)"`, or nothing for 0.
pub(super) fn held_back_note(held_back: u64, what: &str) -> String {
    if held_back == 0 {
        String::new()
    } else {
        format!(" ({held_back} {what} since the last report)")
    }
}

/// The accept loop's pause after each failure in a row: [`ACCEPT_BACKOFF_FIRST`],
/// doubling up to [`ACCEPT_BACKOFF_MAX`], back to the first after a success.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff {
            next: ACCEPT_BACKOFF_FIRST,
        }
    }

    /// The pause after one more failure.
    pub(super) fn failure(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(ACCEPT_BACKOFF_MAX);
        pause
    }

    /// A success: the next failure pauses briefly again.
    pub(super) fn reset(&mut self) {
        self.next = ACCEPT_BACKOFF_FIRST;
    }
}

/// Lets one event in per interval be logged and counts the others, so a storm of them
/// costs a line a second and the next line still says how many there were.
#[derive(Debug)]
pub(super) struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimiter {
    pub(super) fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// For an event at `now`: `Some(n)` to log it, `n` being how many events were held back
    /// since the last logged one; `None` to hold it back (it is counted).
    pub(super) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }

    /// The events held back so far, now counted as reported.
    fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_starts_over_after_a_success() {
        let mut backoff = Backoff::new();
        let pauses: Vec<u128> = (0..6).map(|_| backoff.failure().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.failure(), Duration::from_millis(100));
    }

    #[test]
    fn the_log_limiter_lets_one_event_a_second_through_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut log = LogLimiter::new(Duration::from_secs(1));
        let admitted: Vec<_> = [0, 100, 300, 700, 1000, 1500, 2100, 2200]
            .into_iter()
            .map(|ms| log.admit(t0 + Duration::from_millis(ms)))
            .collect();
        assert_eq!(admitted, [Some(0), None, None, None, Some(3), None, Some(1), None]);
        assert_eq!(log.take_held_back(), 1);
        assert_eq!(log.take_held_back(), 0);
    }

    /// The attack's figures: EMFILE on every accept for 25 s once cost 7.1 M log lines.
    /// Paced and limited, the same 25 s cost 28 accept attempts and as many lines at most.
    #[test]
    fn a_descriptor_storm_costs_about_one_accept_and_one_line_a_second() {
        let t0 = Instant::now();
        let (mut backoff, mut log) = (Backoff::new(), LogLimiter::new(LOG_INTERVAL));
        let (mut at, mut attempts, mut lines) = (Duration::ZERO, 0, 0);
        while at < Duration::from_secs(25) {
            attempts += 1;
            lines += usize::from(log.admit(t0 + at).is_some());
            at += backoff.failure();
        }
        assert_eq!(attempts, 4 + 24, "100 + 200 + 400 + 800 ms, then one a second");
        assert!(lines <= attempts, "{lines} lines");
    }
}
