//! The seed examples' two Python servers as child processes (via `scripts/seed_server.py`).

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

/// How long a seed server may take to accept TCP connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to retry on a free-port race ("address already in use").
const PORT_ATTEMPTS: usize = 3;

/// Which of the seed document's servers to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedKind {
    /// `ws-server.py`: plain TCP echo server (`from websockets.server import serve`).
    Ws,
    /// `wss-server.py`: mutual-TLS echo server; requires a client certificate.
    Wss,
}

impl SeedKind {
    /// The `seed_server.py` argument and URI scheme: `"ws"` or `"wss"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeedKind::Ws => "ws",
            SeedKind::Wss => "wss",
        }
    }
}

/// Certificate files for the wss seed server (the seed's `server_ca`, `server_cert`,
/// `server_key` variables).
#[derive(Clone, Debug)]
pub struct WssCerts {
    /// CA bundle the server verifies client certificates with (`server_ca`).
    pub ca: PathBuf,
    /// Server certificate (chain) PEM (`server_cert`).
    pub cert: PathBuf,
    /// Server private key PEM (`server_key`).
    pub key: PathBuf,
}

/// A running seed example server on 127.0.0.1, killed and reaped on drop.
///
/// Started with the peers venv's Python ([`crate::python`]) running `scripts/seed_server.py`,
/// which executes the seed document's own code with only host, port and certificate paths
/// substituted. Gate the test with [`crate::peer_or_skip`] first: starting without the venv or
/// the shared directory panics.
#[derive(Debug)]
pub struct SeedServer {
    child: Child,
    kind: SeedKind,
    port: u16,
    stdout: NamedTempFile,
    stderr: NamedTempFile,
}

impl SeedServer {
    /// Start the seed's `ws-server.py` (plain WebSocket echo) on a free port.
    ///
    /// Panics with the server's output if it does not accept connections within ~10 s.
    pub fn ws() -> SeedServer {
        Self::start(SeedKind::Ws, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start the seed's `wss-server.py` (mutual TLS echo) on a free port.
    ///
    /// `certs: None` uses the seed's own PKI from `shared/pki/seed-example-server` (its
    /// `server.crt` is a CA:TRUE leaf named "L1 CA", signed by the firmware's `wss_ca_00.crt`; it
    /// accepts the firmware's `wss_client_00.crt`). Pass generated certificates (e.g.
    /// [`crate::PkiFiles::seed_wss_certs`]) to test other cases.
    ///
    /// Panics with the server's output if it does not accept connections within ~10 s.
    pub fn wss(certs: Option<&WssCerts>) -> SeedServer {
        Self::start(SeedKind::Wss, certs).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start a seed server, returning a descriptive error (including the child's stderr) on
    /// failure instead of panicking. Retries on a free-port race.
    pub fn start(kind: SeedKind, certs: Option<&WssCerts>) -> Result<SeedServer, String> {
        let mut last_err = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::start_once(kind, certs, crate::free_port()) {
                Ok(server) => return Ok(server),
                Err((err, port_race)) => {
                    last_err = err;
                    if !port_race {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    /// One attempt; the error's bool says "the port was taken, try another".
    fn start_once(kind: SeedKind, certs: Option<&WssCerts>, port: u16) -> Result<SeedServer, (String, bool)> {
        let python = crate::python().ok_or_else(|| {
            (
                "seed server: no peers venv python (WSAT_PYTHON unset and .venv absent); \
                 run scripts/test.sh or scripts/venv.sh"
                    .to_string(),
                false,
            )
        })?;
        let script = crate::workspace_root().join("scripts").join("seed_server.py");
        let tmp = |what: &str| {
            tempfile::Builder::new()
                .prefix(&format!("wsat-seed-{}-{what}-", kind.as_str()))
                .tempfile()
                .map_err(|e| (format!("seed server: cannot create a temp file: {e}"), false))
        };
        let (stdout, stderr) = (tmp("stdout")?, tmp("stderr")?);
        let reopen = |f: &NamedTempFile| {
            f.reopen()
                .map_err(|e| (format!("seed server: cannot reopen a temp file: {e}"), false))
        };

        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg(kind.as_str())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        if let Some(shared) = crate::shared_dir() {
            cmd.arg("--shared").arg(shared);
        }
        if let Some(c) = certs {
            if kind == SeedKind::Ws {
                return Err(("seed server: certificates given for ws".to_string(), false));
            }
            cmd.arg("--ca").arg(&c.ca);
            cmd.arg("--cert").arg(&c.cert);
            cmd.arg("--key").arg(&c.key);
        }
        cmd.env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(reopen(&stdout)?))
            .stderr(Stdio::from(reopen(&stderr)?));
        let child = cmd.spawn().map_err(|e| {
            (
                format!("seed server: cannot run {} {}: {e}", python.display(), script.display()),
                false,
            )
        })?;
        let mut server = SeedServer {
            child,
            kind,
            port,
            stdout,
            stderr,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let err = server.output();
                let port_race = err.contains("Address already in use") || err.contains("Errno 98");
                return Err((
                    format!(
                        "seed server {} on port {port} exited early ({status}):\n{err}",
                        kind.as_str()
                    ),
                    port_race,
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err((
                    format!(
                        "seed server {} did not accept connections on 127.0.0.1:{port} within {:?}:\n{}",
                        kind.as_str(),
                        START_TIMEOUT,
                        server.output()
                    ),
                    false,
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Which seed server this is.
    pub fn kind(&self) -> SeedKind {
        self.kind
    }

    /// The TCP port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URI to connect to: `ws://127.0.0.1:PORT` or `wss://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("{}://127.0.0.1:{}", self.kind.as_str(), self.port)
    }

    /// What the server printed so far (stdout, then stderr), for assertion messages.
    pub fn output(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"));
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read(self.stdout.path()),
            read(self.stderr.path())
        )
    }

    /// Stop the server now (also done on drop).
    pub fn stop(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.child.wait().map(drop)
    }
}

impl Drop for SeedServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn ws_seed_server_accepts_a_handshake() {
        if !crate::peer_or_skip("ws_seed_server_accepts_a_handshake") {
            return;
        }
        let server = SeedServer::ws();
        assert!(server.uri().starts_with("ws://127.0.0.1:"));
        let mut s = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.port()
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("handshake response");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}\n{}", server.output());
        // RFC 6455 section 1.3's example key and accept value.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        assert!(server.output().contains("Server started at ws://127.0.0.1:"));
    }

    #[test]
    fn wss_seed_server_starts_with_its_own_pki() {
        if !crate::peer_or_skip("wss_seed_server_starts_with_its_own_pki") {
            return;
        }
        let server = SeedServer::wss(None);
        TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        assert!(server.uri().starts_with("wss://127.0.0.1:"));
    }

    #[test]
    fn bad_certificates_fail_with_the_servers_stderr() {
        if !crate::peer_or_skip("bad_certificates_fail_with_the_servers_stderr") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        fs::write(&junk, "not a certificate").unwrap();
        let certs = WssCerts {
            ca: junk.clone(),
            cert: junk.clone(),
            key: junk,
        };
        let err = SeedServer::start(SeedKind::Wss, Some(&certs)).expect_err("junk certs");
        assert!(err.contains("exited early"), "{err}");
        assert!(err.contains("ssl") || err.contains("SSL"), "{err}");
    }

    #[test]
    fn stop_reaps_the_child() {
        if !crate::peer_or_skip("stop_reaps_the_child") {
            return;
        }
        let mut server = SeedServer::ws();
        let port = server.port();
        server.stop().expect("stop");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
