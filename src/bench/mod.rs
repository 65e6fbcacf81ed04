//! `wsat bench`: the same echo workloads through wsat-client, tokio-tungstenite,
//! fastwebsockets and plain TCP against one echo server, each measurement in a fresh client
//! process, server and client pinned to different cores (see BENCHMARKS.md); with
//! `--modem`, the figures of `wsat modem` driven through its TCP and pty AT ports instead.
//!
//! The pure parts (workloads, statistics, the table) are always built and tested; the load
//! client, the server and the chart need the `bench` feature (on by default), which brings
//! the peer crates in as dependencies of the tool only, never of the libraries.

pub mod at_host;
pub mod report;
pub mod stats;
pub mod workload;

#[cfg(feature = "bench")]
pub mod chart;
#[cfg(feature = "bench")]
pub mod load;
#[cfg(feature = "bench")]
pub mod modem;
#[cfg(feature = "bench")]
pub mod orchestrate;
#[cfg(feature = "bench")]
pub mod server;
#[cfg(feature = "bench")]
pub mod sys;
