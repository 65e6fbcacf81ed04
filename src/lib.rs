//! The `wsat` tool's library: the pieces the command line, the demo and the end-to-end
//! tests share (the echo server and its TLS setup).
#![forbid(unsafe_code)]

pub mod echo_server;
pub mod modem;
pub mod pki;
pub mod tls_server;
