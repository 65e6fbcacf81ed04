//! The client library's events, awaited with a deadline: a test that waits for an event
//! that never comes fails after [`STEP`] instead of hanging.

use std::time::Duration;

use wsat_client::{Event, Events};

/// How long any single expected event may take before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// The next event, failing the test after [`STEP`] or if the stream ends.
pub async fn next(events: &mut Events) -> Event {
    match tokio::time::timeout(STEP, events.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("event stream ended"),
        Err(_) => panic!("no event within {STEP:?}"),
    }
}

/// Events until one matches `stop` (included), failing after [`STEP`] per event.
pub async fn until(events: &mut Events, stop: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let ev = next(events).await;
        let done = stop(&ev);
        seen.push(ev);
        if done {
            return seen;
        }
    }
}
