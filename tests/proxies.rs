//! Proxies end to end: the client library and `wsat connect` through a real (minimal) HTTP
//! `CONNECT` proxy and a real (minimal) SOCKS5 proxy written here, on loopback, that count
//! their connections and record what they received; ws and wss (SNI and certificate of the
//! target through the tunnel), Basic and RFC 1929 credentials that reach the proxy and
//! never the WebSocket server, refusals with their status or reply code, a proxy that never
//! answers, redirects through the same proxy, the connector hook, the environment as curl
//! reads it, and no password in a TRACE log.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsat_client::{Client, ClientConfig, ClientError, Connecting, Connector, Delivery, Event, ProxyError, Reconnect};
use wsat_testkit::events::{next, until, STEP};
use wsat_testkit::peer::{drain, read_request, redirect, ScriptedPeer};
use wsat_testkit::process::{output_within, Killed};
use wsat_testkit::TestPki;

use common::EchoPeer;

/// How long a proxy waits for a handshake step or an upstream connect.
const PROXY_STEP: Duration = Duration::from_secs(10);

/// What a test proxy saw.
#[derive(Debug, Default)]
struct Seen {
    /// One line per handshake: the `CONNECT` head, or the SOCKS5 exchange described.
    requests: Vec<String>,
    /// The bytes clients sent through tunnels: what the WebSocket servers received.
    tunneled: Vec<u8>,
}

/// How a test proxy behaves.
#[derive(Debug, Clone)]
enum Mode {
    /// HTTP `CONNECT`; with `Some(value)`, `Proxy-Authorization` must be exactly that, or
    /// the answer is 407.
    Http { auth: Option<String> },
    /// SOCKS5; with `Some((user, password))`, RFC 1929 authentication is required.
    Socks5 { auth: Option<(String, String)> },
    /// Accepts and never answers.
    Silent,
}

/// A real, minimal proxy on loopback (its own runtime: usable from sync and async tests).
struct TestProxy {
    peer: ScriptedPeer,
    seen: Arc<Mutex<Seen>>,
}

impl TestProxy {
    fn start(mode: Mode) -> TestProxy {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        let peer = ScriptedPeer::start(move |tcp, _| {
            let (mode, log) = (mode.clone(), log.clone());
            async move {
                match mode {
                    Mode::Http { auth } => http_proxy(tcp, auth, log).await,
                    Mode::Socks5 { auth } => socks5_proxy(tcp, auth, log).await,
                    Mode::Silent => {
                        let mut tcp = tcp;
                        drain(&mut tcp).await
                    }
                }
            }
        });
        TestProxy { peer, seen }
    }

    fn http() -> TestProxy {
        TestProxy::start(Mode::Http { auth: None })
    }

    fn socks5() -> TestProxy {
        TestProxy::start(Mode::Socks5 { auth: None })
    }

    fn addr(&self) -> SocketAddr {
        self.peer.addr()
    }

    /// How many connections it accepted.
    fn connections(&self) -> usize {
        self.peer.accepted()
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("seen").requests.clone()
    }

    fn tunneled(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("seen").tunneled).into_owned()
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr())
    }
}

/// Connects to the target a client asked for: loopback only.
async fn upstream(host: &str, port: u16) -> Option<TcpStream> {
    if !["127.0.0.1", "localhost", "::1"].contains(&host) {
        return None;
    }
    tokio::time::timeout(PROXY_STEP, TcpStream::connect((host, port)))
        .await
        .ok()?
        .ok()
}

/// Relays both ways, recording what the client sends.
async fn relay(client: TcpStream, server: TcpStream, log: Arc<Mutex<Seen>>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = cr.read(&mut buf).await {
            {
                let mut seen = log.lock().expect("seen");
                if seen.tunneled.len() < 1 << 20 {
                    seen.tunneled.extend_from_slice(&buf[..n]);
                }
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// The value of header `name` in a request head.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn http_proxy(mut client: TcpStream, auth: Option<String>, log: Arc<Mutex<Seen>>) {
    let Ok(Some(request)) = tokio::time::timeout(PROXY_STEP, read_request(&mut client)).await else {
        return;
    };
    assert!(request.after.is_empty(), "the client sent data before the 200");
    let head = request.head_text();
    log.lock().expect("seen").requests.push(head.clone());
    let answer = |status: &str| format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    if auth.is_some() && header(&head, "Proxy-Authorization") != auth.as_deref() {
        let refusal = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\
                       Content-Length: 0\r\n\r\n";
        let _ = client.write_all(refusal.as_bytes()).await;
        return;
    }
    let target = head
        .split("\r\n")
        .next()
        .and_then(|line| line.strip_prefix("CONNECT "))
        .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(host, port)| Some((host.trim_matches(['[', ']']).to_owned(), port.parse::<u16>().ok()?)));
    let Some((host, port)) = target else {
        let _ = client.write_all(answer("400 Bad Request").as_bytes()).await;
        return;
    };
    let Some(server) = upstream(&host, port).await else {
        let _ = client.write_all(answer("502 Bad Gateway").as_bytes()).await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        relay(client, server, log).await;
    }
}

async fn socks5_proxy(mut client: TcpStream, auth: Option<(String, String)>, log: Arc<Mutex<Seen>>) {
    let handshake = async {
        let mut said = String::new();
        let mut head = [0u8; 2];
        client.read_exact(&mut head).await.ok()?;
        let mut methods = vec![0u8; usize::from(head[1])];
        client.read_exact(&mut methods).await.ok()?;
        said.push_str(&format!("version={} methods={methods:?}", head[0]));
        let method = if auth.is_some() { 2 } else { 0 };
        if head[0] != 5 || !methods.contains(&method) {
            let _ = client.write_all(&[5, 0xFF]).await;
            return Some((said, None));
        }
        client.write_all(&[5, method]).await.ok()?;
        if let Some((user, password)) = &auth {
            let mut len = [0u8; 2];
            client.read_exact(&mut len).await.ok()?;
            let mut u = vec![0u8; usize::from(len[1])];
            client.read_exact(&mut u).await.ok()?;
            client.read_exact(&mut len[..1]).await.ok()?;
            let mut p = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut p).await.ok()?;
            let ok = u == user.as_bytes() && p == password.as_bytes();
            said.push_str(&format!(" user={}", String::from_utf8_lossy(&u)));
            client.write_all(&[1, if ok { 0 } else { 1 }]).await.ok()?;
            if !ok {
                return Some((said, None));
            }
        }
        let mut req = [0u8; 4];
        client.read_exact(&mut req).await.ok()?;
        let host = match req[3] {
            1 => {
                let mut a = [0u8; 4];
                client.read_exact(&mut a).await.ok()?;
                std::net::Ipv4Addr::from(a).to_string()
            }
            4 => {
                let mut a = [0u8; 16];
                client.read_exact(&mut a).await.ok()?;
                std::net::Ipv6Addr::from(a).to_string()
            }
            3 => {
                let mut len = [0u8; 1];
                client.read_exact(&mut len).await.ok()?;
                let mut name = vec![0u8; usize::from(len[0])];
                client.read_exact(&mut name).await.ok()?;
                String::from_utf8_lossy(&name).into_owned()
            }
            _ => return None,
        };
        let mut port = [0u8; 2];
        client.read_exact(&mut port).await.ok()?;
        let port = u16::from_be_bytes(port);
        said.push_str(&format!(" command={} atyp={} host={host} port={port}", req[1], req[3]));
        Some((said, Some((host, port))))
    };
    let Ok(Some((said, target))) = tokio::time::timeout(PROXY_STEP, handshake).await else {
        return;
    };
    log.lock().expect("seen").requests.push(said);
    let Some((host, port)) = target else { return };
    let Some(server) = upstream(&host, port).await else {
        let _ = client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return;
    };
    let bound = [5, 0, 0, 1, 127, 0, 0, 1, 0, 0];
    if client.write_all(&bound).await.is_ok() {
        relay(client, server, log).await;
    }
}

/// wsat's echo server on the test's runtime (an async test cannot start an [`EchoPeer`],
/// which blocks on a runtime of its own).
struct Echo {
    port: u16,
    tls: bool,
}

impl Echo {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Echo {
        let is_tls = tls.is_some();
        let server = wsat::echo_server::EchoServer::bind("127.0.0.1:0", tls)
            .await
            .expect("bind the echo server");
        let port = server.local_addr().expect("bound").port();
        server.spawn();
        Echo { port, tls: is_tls }
    }

    async fn ws() -> Echo {
        Echo::start(None).await
    }

    async fn wss(cert: &wsat_testkit::Credential) -> Echo {
        let config = wsat::tls_server::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes(), None)
            .expect("server TLS config");
        Echo::start(Some(config)).await
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn uri(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "wss" } else { "ws" }, self.port)
    }
}

fn basic(user_pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass))
}

fn config(uri: &str, proxy: &str) -> ClientConfig {
    let mut c = ClientConfig::new(uri);
    c.reconnect = Reconnect::Disabled;
    c.delivery = Delivery::messages();
    c.proxy = Some(proxy.parse().expect("valid proxy URL"));
    c
}

/// Connects, sends a text, expects it back and closes.
async fn echo_through(config: ClientConfig) {
    let (client, mut events) = Client::start(config).expect("valid config");
    let seen = until(&mut events, |e| {
        matches!(e, Event::Connected(_) | Event::Disconnected(_))
    })
    .await;
    assert!(matches!(seen.last(), Some(Event::Connected(_))), "{seen:?}");
    client.send_text("through the proxy", STEP).await.expect("sent");
    match next(&mut events).await {
        Event::Message(m) => assert_eq!(&m.payload[..], b"through the proxy"),
        other => panic!("expected the echo, got {other:?}"),
    }
    client.close(Some(1000), "", STEP).await.expect("closed");
}

/// The error a connect attempt failed with.
async fn connect_error(config: ClientConfig) -> ClientError {
    let (_client, mut events) = Client::start(config).expect("valid config");
    let seen = until(&mut events, |e| {
        matches!(e, Event::Connected(_) | Event::Disconnected(_))
    })
    .await;
    seen.into_iter()
        .find_map(|e| match e {
            Event::Error(err) => Some(err),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error event"))
}

#[tokio::test]
async fn a_client_reaches_a_ws_server_through_http_connect() {
    let echo = Echo::ws().await;
    let proxy = TestProxy::http();
    echo_through(config(&echo.uri(), &proxy.url("http"))).await;
    assert_eq!(proxy.connections(), 1);
    let requests = proxy.requests();
    let target = format!("127.0.0.1:{}", echo.port());
    assert!(
        requests[0].starts_with(&format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n")),
        "{requests:?}"
    );
    let tunneled = proxy.tunneled();
    assert!(
        tunneled.starts_with("GET / HTTP/1.1\r\n") && tunneled.contains(&format!("\r\nHost: {target}\r\n")),
        "the upgrade went through the tunnel: {tunneled}"
    );
}

/// TLS runs through the tunnel to the target: its name as SNI, its certificate verified
/// with the host name (the proxy sees only ciphertext).
#[tokio::test]
async fn a_client_reaches_a_wss_server_through_http_connect() {
    let pki = TestPki::generate();
    let echo = Echo::wss(&pki.server).await;
    let proxy = TestProxy::http();
    let mut c = config(&format!("wss://localhost:{}/", echo.port()), &proxy.url("http"));
    c.tls.ca_pem = Some(pki.ca.cert_pem.clone().into_bytes());
    echo_through(c).await;
    assert_eq!(proxy.connections(), 1);
    let requests = proxy.requests();
    assert!(
        requests[0].starts_with(&format!("CONNECT localhost:{} HTTP/1.1\r\n", echo.port())),
        "{requests:?}"
    );
    let tunneled = proxy.tunneled();
    assert!(
        tunneled.as_bytes()[0] == 0x16 && tunneled.contains("localhost"),
        "a TLS ClientHello with SNI localhost: {tunneled:?}"
    );
    assert!(!tunneled.contains("GET /"), "the upgrade is encrypted");
}

/// Basic credentials from the proxy URL (percent-decoded) go in the CONNECT only: the
/// upgrade request the WebSocket server receives has no `Proxy-Authorization`.
#[tokio::test]
async fn proxy_credentials_go_to_the_proxy_and_never_to_the_server() {
    let echo = Echo::ws().await;
    let proxy = TestProxy::start(Mode::Http {
        auth: Some(basic("alice:pw@Qz71")),
    });
    let url = format!("http://alice:pw%40Qz71@{}", proxy.addr());
    let c = config(&echo.uri(), &url);
    let shown = format!("{c:?}");
    assert!(!shown.contains("pw@Qz71") && !shown.contains("pw%40Qz71"), "{shown}");
    echo_through(c).await;
    let requests = proxy.requests();
    assert_eq!(
        header(&requests[0], "Proxy-Authorization"),
        Some(basic("alice:pw@Qz71").as_str())
    );
    let tunneled = proxy.tunneled();
    assert!(tunneled.starts_with("GET / HTTP/1.1\r\n"), "{tunneled}");
    assert!(
        !tunneled.to_ascii_lowercase().contains("proxy-authorization") && !tunneled.contains(&basic("alice:pw@Qz71")),
        "the server saw the proxy's credentials: {tunneled}"
    );
}

#[tokio::test]
async fn a_refused_connect_is_a_clear_error_with_its_status() {
    let echo = Echo::ws().await;
    let proxy = TestProxy::start(Mode::Http {
        auth: Some(basic("alice:right")),
    });
    let without = connect_error(config(&echo.uri(), &proxy.url("http"))).await;
    assert_eq!(
        without.to_string(),
        "proxy refused CONNECT: 407 Proxy Authentication Required"
    );
    assert!(
        matches!(&without, ClientError::Proxy(p @ ProxyError::Refused { .. }) if p.status() == Some(407)),
        "{without:?}"
    );
    let wrong = connect_error(config(&echo.uri(), &format!("http://alice:wr0ng-Pw@{}", proxy.addr()))).await;
    let shown = format!("{wrong} {wrong:?}");
    assert!(shown.contains("407") && !shown.contains("wr0ng-Pw"), "{shown}");
    assert_eq!(proxy.connections(), 2);
}

/// socks5:// sends host names to the proxy (socks5h semantics), addresses as addresses.
#[tokio::test]
async fn socks5_without_authentication() {
    let echo = Echo::ws().await;
    let proxy = TestProxy::socks5();
    echo_through(config(&format!("ws://localhost:{}", echo.port()), &proxy.url("socks5"))).await;
    echo_through(config(&echo.uri(), &proxy.url("socks5h"))).await;
    let port = echo.port();
    assert_eq!(
        proxy.requests(),
        [
            format!("version=5 methods=[0] command=1 atyp=3 host=localhost port={port}"),
            format!("version=5 methods=[0] command=1 atyp=1 host=127.0.0.1 port={port}"),
        ]
    );
    assert!(proxy.tunneled().contains("GET / HTTP/1.1"), "{}", proxy.tunneled());
}

#[tokio::test]
async fn socks5_with_user_name_and_password() {
    let echo = Echo::ws().await;
    let proxy = TestProxy::start(Mode::Socks5 {
        auth: Some(("bob".into(), "s0cks-Pw".into())),
    });
    echo_through(config(&echo.uri(), &format!("socks5://bob:s0cks-Pw@{}", proxy.addr()))).await;
    assert!(
        proxy.requests()[0].starts_with("version=5 methods=[0, 2] user=bob command=1 atyp=1"),
        "{:?}",
        proxy.requests()
    );
    assert!(!proxy.tunneled().contains("s0cks-Pw"));

    let wrong = connect_error(config(&echo.uri(), &format!("socks5://bob:nope@{}", proxy.addr()))).await;
    assert_eq!(
        wrong.to_string(),
        "SOCKS5 proxy rejected the user name and password (status 1)"
    );
    let none = connect_error(config(&echo.uri(), &proxy.url("socks5"))).await;
    assert!(
        none.to_string()
            .contains("accepts none of the offered authentication methods"),
        "{none}"
    );
}

#[tokio::test]
async fn a_socks5_failure_names_the_reply_code() {
    let proxy = TestProxy::socks5();
    let closed = wsat_testkit::free_port();
    let err = connect_error(config(&format!("ws://127.0.0.1:{closed}"), &proxy.url("socks5"))).await;
    assert_eq!(
        err.to_string(),
        "SOCKS5 proxy refused the connection: reply 5 (connection refused)"
    );
}

/// A proxy that accepts and never answers, or drips its answer a byte at a time, costs one
/// network timeout per attempt.
#[tokio::test]
async fn a_proxy_that_never_answers_or_drips_times_out() {
    let silent = TestProxy::start(Mode::Silent);
    let dripping = ScriptedPeer::start(|mut tcp, _| async move {
        let _ = read_request(&mut tcp).await;
        for byte in b"HTTP/1.1 200 Connection established\r\n".iter().cycle() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if tcp.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
    });
    let dripping = format!("http://{}", dripping.addr());
    for (url, step) in [
        (silent.url("http"), "proxy CONNECT"),
        (silent.url("socks5"), "SOCKS5 handshake"),
        (dripping, "proxy CONNECT"),
    ] {
        let mut c = config("ws://127.0.0.1:9/", &url);
        c.network_timeout = Duration::from_millis(400);
        let started = Instant::now();
        let err = connect_error(c).await;
        assert_eq!(err.to_string(), format!("{step} timed out"), "{url}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}

/// A proxy that never ends its CONNECT answer is cut at the head limit.
#[tokio::test]
async fn an_endless_connect_answer_stops_at_the_head_limit() {
    let proxy = ScriptedPeer::start(|mut tcp, _| async move {
        let _ = read_request(&mut tcp).await;
        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
        while tcp.write_all(line.as_bytes()).await.is_ok() {}
    });
    let mut c = config("ws://127.0.0.1:9/", &format!("http://{}", proxy.addr()));
    c.max_response_head = 8192;
    let err = connect_error(c).await;
    assert_eq!(err.to_string(), "proxy CONNECT response head exceeds 8192 bytes");
}

/// A redirect to another host is followed through the same proxy.
#[tokio::test]
async fn redirects_go_through_the_same_proxy() {
    let echo = Echo::ws().await;
    let location = format!("ws://localhost:{}/there", echo.port());
    let redirector = ScriptedPeer::start(move |mut tcp, _| {
        let location = location.clone();
        async move {
            let _ = read_request(&mut tcp).await;
            redirect(&mut tcp, &location).await;
        }
    });
    let proxy = TestProxy::http();
    let c = config(&redirector.uri(), &proxy.url("http"));
    let (client, mut events) = Client::start(c).expect("valid");
    let seen = until(&mut events, |e| {
        matches!(e, Event::Connected(_) | Event::Disconnected(_))
    })
    .await;
    match seen.last() {
        Some(Event::Connected(info)) => assert_eq!(info.uri, format!("ws://localhost:{}/there", echo.port())),
        other => panic!("{seen:?} {other:?}"),
    }
    let targets: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| r.lines().next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        targets,
        [
            format!("CONNECT 127.0.0.1:{} HTTP/1.1", redirector.port()),
            format!("CONNECT localhost:{} HTTP/1.1", echo.port()),
        ]
    );
    client.stop(STEP).await;
}

/// The connector hook still opens the TCP connection: to the proxy.
#[tokio::test]
async fn the_connector_opens_the_connection_to_the_proxy() {
    struct Recording(Arc<Mutex<Vec<String>>>);
    impl Connector for Recording {
        fn connect(&self, host: &str, port: u16) -> Connecting {
            self.0.lock().expect("calls").push(format!("{host}:{port}"));
            Box::pin(TcpStream::connect((host.to_owned(), port)))
        }
    }
    let echo = Echo::ws().await;
    let proxy = TestProxy::http();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut c = config(&echo.uri(), &proxy.url("http"));
    c.connector = Some(Arc::new(Recording(calls.clone())));
    echo_through(c).await;
    assert_eq!(*calls.lock().expect("calls"), [proxy.addr().to_string()]);
    assert_eq!(proxy.connections(), 1);
}

/// Runs `wsat ARGS` with `env` (on the child only, after removing every proxy variable),
/// sends one line and closes stdin; returns the exit code, stdout and stderr.
fn wsat_connect(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    // common::wsat() has removed every proxy variable already.
    let mut cmd = common::wsat();
    cmd.args(args);
    cmd.env_remove("RUST_LOG");
    cmd.envs(env.iter().copied());
    let mut child = Killed(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsat connect"),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "hello through the proxy").expect("write stdin");
    drop(stdin);
    output_within(&mut child, Duration::from_secs(30))
}

fn assert_echoed(run: &(Option<i32>, String, String)) {
    let (code, out, err) = run;
    assert_eq!(
        (*code, out.as_str()),
        (Some(0), "hello through the proxy\n"),
        "stderr: {err}"
    );
}

#[test]
fn wsat_connect_through_an_http_proxy() {
    let echo = EchoPeer::ws();
    let proxy = TestProxy::http();
    let run = wsat_connect(&["connect", "--proxy", &proxy.url("http"), &echo.uri()], &[]);
    assert_echoed(&run);
    assert_eq!(proxy.connections(), 1);
    assert!(
        proxy.requests()[0].starts_with(&format!("CONNECT 127.0.0.1:{} ", echo.port())),
        "{:?}",
        proxy.requests()
    );
    // --proxy '' ignores the environment.
    let run = wsat_connect(
        &["connect", "--proxy", "", &echo.uri()],
        &[("http_proxy", &proxy.url("http"))],
    );
    assert_echoed(&run);
    assert_eq!(proxy.connections(), 1);
}

/// Without --proxy, the environment as curl reads it.
#[test]
fn wsat_connect_takes_the_proxy_from_the_environment() {
    let pki = TestPki::generate();
    let (_dir, files) = pki.write_tempdir();
    let ca = files.ca.cert.display().to_string();
    let wss = common::wss_echo(&pki.server, None);
    let ws = EchoPeer::ws();
    let http = TestProxy::http();
    let socks = TestProxy::socks5();
    let wss_uri = format!("wss://localhost:{}", wss.port());

    assert_echoed(&wsat_connect(
        &["connect", "--ca", &ca, &wss_uri],
        &[("HTTPS_PROXY", &http.url("http"))],
    ));
    assert_eq!(http.connections(), 1, "HTTPS_PROXY for wss://");
    assert_echoed(&wsat_connect(
        &["connect", &ws.uri()],
        &[("http_proxy", &http.url("http"))],
    ));
    assert_eq!(http.connections(), 2, "http_proxy for ws://");
    assert_echoed(&wsat_connect(
        &["connect", &ws.uri()],
        &[("ALL_PROXY", &socks.url("socks5"))],
    ));
    assert_eq!(socks.connections(), 1, "ALL_PROXY for ws://");
    assert_echoed(&wsat_connect(
        &["connect", "--ca", &ca, &wss_uri],
        &[("all_proxy", &socks.url("socks5h"))],
    ));
    assert_eq!(socks.connections(), 2, "all_proxy for wss://");
    let requests = socks.requests();
    assert!(
        requests[1].ends_with(&format!("atyp=3 host=localhost port={}", wss.port())),
        "{requests:?}"
    );

    // HTTP_PROXY is not read (curl's rule); NO_PROXY bypasses, whatever the port.
    assert_echoed(&wsat_connect(
        &["connect", &ws.uri()],
        &[("HTTP_PROXY", &http.url("http"))],
    ));
    assert_echoed(&wsat_connect(
        &["connect", &ws.uri()],
        &[
            ("http_proxy", &http.url("http")),
            ("NO_PROXY", "example.com, 127.0.0.1"),
        ],
    ));
    assert_echoed(&wsat_connect(
        &["connect", "--ca", &ca, &wss_uri],
        &[("https_proxy", &http.url("http")), ("no_proxy", ".localhost")],
    ));
    assert_eq!(http.connections(), 2, "no proxy for HTTP_PROXY or a NO_PROXY host");

    // A bad proxy variable fails clearly, naming the variable.
    let (code, _, err) = wsat_connect(&["connect", &ws.uri()], &[("all_proxy", "ftp://u:Secr3t@h:1")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("all_proxy") && !err.contains("Secr3t"), "{err}");
}

/// At TRACE level, neither the proxy's password nor its Basic token appears on stderr,
/// whether the proxy came from --proxy or from the environment.
#[test]
fn wsat_connect_logs_no_proxy_password() {
    const PASSWORD: &str = "Prx-pass-Wd93";
    let echo = EchoPeer::ws();
    let proxy = TestProxy::start(Mode::Http {
        auth: Some(basic(&format!("carol:{PASSWORD}"))),
    });
    let url = format!("http://carol:{PASSWORD}@{}", proxy.addr());
    let token = basic(&format!("carol:{PASSWORD}"));
    let token = token.trim_start_matches("Basic ");
    for (args, env) in [
        (vec!["-vvv", "connect", "--proxy", url.as_str()], vec![]),
        (vec!["-vvv", "connect"], vec![("http_proxy", url.as_str())]),
    ] {
        let mut args = args.clone();
        let uri = echo.uri();
        args.push(&uri);
        let run = wsat_connect(&args, &env);
        assert_echoed(&run);
        let err = &run.2;
        assert!(err.contains("TRACE") || err.contains("DEBUG"), "logged at trace: {err}");
        assert!(err.contains("carol"), "the user name may show: {err}");
        assert!(
            !err.contains(PASSWORD) && !err.contains(token),
            "the proxy password leaked: {err}"
        );
    }
    assert_eq!(proxy.connections(), 2);
}
