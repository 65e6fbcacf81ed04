//! What the end-to-end tests need from the `wsat` package itself, on top of the test kit
//! (`wsat_testkit`, which holds everything else): the `wsat` binary (only this package's tests
//! can name it), `wsat modem` and `wsat echo-server` started from it, and the library's echo
//! server in process.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use wsat_testkit::modem_process::{Modem, ModemCommand};
use wsat_testkit::process::Killed;

/// The `wsat` binary under test, without the proxy variables a CI machine may set (`wsat
/// connect` honours them as curl does; tests/proxies.rs sets them on purpose).
pub fn wsat() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsat"));
    for var in PROXY_VARIABLES {
        command.env_remove(var);
    }
    command
}

/// Every variable `wsat connect` reads a proxy from, in both cases.
pub const PROXY_VARIABLES: &[&str] = &[
    "wss_proxy",
    "WSS_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "ws_proxy",
    "WS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Starts `wsat echo-server EXTRA…` on a free port (its stderr to `stderr`) and returns it
/// once it listens.
pub fn echo_server(extra: &[&str], stderr: Stdio) -> (Killed, u16) {
    let port = wsat_testkit::free_port();
    let child = wsat()
        .args(["echo-server", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stderr(stderr)
        .spawn()
        .expect("spawn echo-server");
    let child = Killed(child);
    wsat_testkit::wait_until("echo-server to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (child, port)
}

/// Short firmware timings so that failure paths and reconnects take milliseconds, not seconds.
pub const FAST: &[&str] = &[
    "--reconnect-delay-ms",
    "300",
    "--open-error-delay-ms",
    "200",
    "--network-timeout-ms",
    "2000",
];

/// `wsat modem` from this build, logging at `RUST_LOG=debug` (shown if the test fails).
pub fn modem_command() -> ModemCommand {
    ModemCommand::new(env!("CARGO_BIN_EXE_wsat")).rust_log("debug")
}

/// `wsat modem --tcp 127.0.0.1:0 ARGS…`, once it listens.
pub fn modem_tcp(args: &[&str]) -> Modem {
    modem_command().tcp().args(args).start()
}

/// `wsat modem --pty --link LINK ARGS…`, once the pty exists.
pub fn modem_pty(link: &Path, args: &[&str]) -> Modem {
    modem_command().pty(link).args(args).start()
}

/// wsat's in-process echo server (ws, or wss with a TLS configuration) on its own tokio
/// runtime, stopped on drop.
pub struct EchoPeer {
    addr: SocketAddr,
    tls: bool,
    rt: Option<tokio::runtime::Runtime>,
}

impl EchoPeer {
    /// A ws echo server.
    pub fn ws() -> EchoPeer {
        Self::start(None)
    }

    /// A wss echo server with `config`.
    pub fn wss(config: Arc<rustls::ServerConfig>) -> EchoPeer {
        Self::start(Some(config))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> EchoPeer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let is_tls = tls.is_some();
        let addr = rt.block_on(async {
            let server = wsat::echo_server::EchoServer::bind("127.0.0.1:0", tls)
                .await
                .expect("bind the echo server");
            let addr = server.local_addr().expect("bound");
            server.spawn();
            addr
        });
        EchoPeer {
            addr,
            tls: is_tls,
            rt: Some(rt),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://127.0.0.1:PORT` or `wss://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A wss echo server presenting `cert`; with `client_ca`, a client certificate is required.
pub fn wss_echo(cert: &wsat_testkit::Credential, client_ca: Option<&wsat_testkit::Credential>) -> EchoPeer {
    let config = wsat::tls_server::server_config(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        client_ca.map(|c| c.cert_pem.as_bytes()),
    )
    .expect("server TLS config");
    EchoPeer::wss(config)
}
