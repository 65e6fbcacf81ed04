//! Memory stays flat across 10,000 reconnects: under 2 MiB of growth, so a leak of 200 bytes
//! per reconnect (the ESP client has one of about 250, esp-protocols #1104) fails it. It has
//! its own test binary, so that the process's resident set belongs to this test alone.

use std::time::{Duration, Instant};

use wsat_client::{Client, ClientConfig, Event, Reconnect};
use wsat_testkit::peer::{accept_upgrade, ScriptedPeer};
use wsat_testkit::process::rss_kib;

fn own_rss_kib() -> u64 {
    rss_kib(std::process::id())
}

/// Receives events until `target` connections in all have been made.
async fn count_until(target: u32, connects: &mut u32, events: &mut wsat_client::Events) {
    while *connects < target {
        match tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("progress")
        {
            Some(Event::Connected(_)) => *connects += 1,
            Some(Event::Finish) | None => panic!("the client stopped"),
            Some(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_flat_across_10000_reconnects() {
    // Every connection is upgraded and dropped at once: the client reconnects at once.
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
    });
    let mut config = ClientConfig::new(peer.uri());
    config.reconnect = Reconnect::Fixed(Duration::ZERO);
    let (client, mut events) = Client::start(config).expect("valid");
    let mut connects = 0u32;
    count_until(1_000, &mut connects, &mut events).await;
    let before = own_rss_kib();
    let started = Instant::now();
    count_until(11_000, &mut connects, &mut events).await;
    let after = own_rss_kib();
    eprintln!(
        "10,000 reconnects in {:.1} s: RSS {before} KiB before, {after} KiB after ({:+} KiB)",
        started.elapsed().as_secs_f64(),
        after as i64 - before as i64
    );
    assert!(
        after < before + 2 * 1024,
        "memory grew from {before} to {after} KiB over 10,000 reconnects"
    );
    client.stop(Duration::from_secs(2)).await;
}
