//! Credentials never reach the logs: `wsat connect`, `wsat modem` and the client library run at
//! the most verbose level (TRACE) with a URI password, an `Authorization` header and a client
//! certificate's private key, and none of them appears in what is logged. Each session must
//! really connect, so a broken setup cannot pass by logging nothing.
//! (The AT `--trace` file has its own test: tests/modem_ports.rs.)

mod common;

use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use wsat_client::{Client, ClientConfig, Delivery, Event, Reconnect, Verification};
use wsat_testkit::at_host::{OK, PROMPT, STEP};
use wsat_testkit::events::until;
use wsat_testkit::peer::{read_request, redirect, ScriptedPeer};
use wsat_testkit::process::output_within;
use wsat_testkit::{wait_until, TestPki};

/// `Basic` credentials as an `Authorization` value.
fn basic(user_pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(user_pass)
}

/// The base64 lines of a PEM private key (each one alone is already a leak).
fn key_body(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_owned)
        .collect()
}

/// Fails, naming the secret, if any of `secrets` occurs in `log`.
fn assert_no_secrets(what: &str, log: &str, secrets: &[String]) {
    assert!(!secrets.is_empty());
    for secret in secrets {
        assert!(!secret.is_empty(), "an empty secret matches anything");
        assert!(
            !log.contains(secret.as_str()),
            "{what} contains the secret {secret:?}:\n{log}"
        );
    }
}

#[test]
fn wsat_connect_at_trace_level_logs_no_credentials() {
    const PASSWORD: &str = "uri-pass-Zq81";
    let header_value = format!("Basic {}", basic("hdr-user:hdr-pass-Kx47"));
    let pki = TestPki::generate();
    let (_dir, files) = pki.write_tempdir();
    let s = |p: &std::path::Path| p.display().to_string();
    let server_log = files.dir.join("echo-server.log");
    let server_stderr = std::fs::File::create(&server_log).expect("create the server log");
    let (_server, port) = common::echo_server(
        &[
            "-vvv",
            "--cert",
            &s(&files.server.cert),
            "--key",
            &s(&files.server.key),
            "--client-ca",
            &s(&files.ca.cert),
        ],
        Stdio::from(server_stderr),
    );
    let uri = format!("wss://alice:{PASSWORD}@127.0.0.1:{port}/");
    let mut child = common::wsat()
        .args(["-vvv", "connect", &uri, "-H"])
        .arg(format!("Authorization: {header_value}"))
        .args(["-H", "X-Api-Key: connect-api-key-Vb62"])
        .args(["--ca", &s(&files.ca.cert)])
        .args(["--cert", &s(&files.client.cert), "--key", &s(&files.client.key)])
        // -vvv, not RUST_LOG, sets the level here.
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsat connect");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "over mutual TLS").expect("write");
    drop(stdin);
    let (code, out, err) = output_within(&mut child, Duration::from_secs(10));

    // Connected over mutual TLS with the URI's Basic auth and the header, and echoed.
    assert_eq!((code, out.as_str()), (Some(0), "over mutual TLS\n"), "stderr:\n{err}");
    assert!(err.contains(&format!("connected to wss://127.0.0.1:{port}/")), "{err}");
    // The configuration is logged at debug level, its credentials redacted.
    assert!(err.contains("DEBUG") && err.contains("<redacted>"), "{err}");

    let mut secrets = vec![
        PASSWORD.to_owned(),
        header_value.clone(),
        basic(&format!("alice:{PASSWORD}")),
        "connect-api-key-Vb62".to_owned(),
    ];
    secrets.extend(key_body(&pki.client.key_pem));
    assert_no_secrets("wsat connect's stderr", &err, &secrets);
    // The server saw them all (the Authorization headers): it does not log them either.
    secrets.extend(key_body(&pki.server.key_pem));
    let server_err = std::fs::read_to_string(&server_log).expect("the server log");
    assert_no_secrets("wsat echo-server's stderr", &server_err, &secrets);
}

#[test]
fn wsat_modem_at_trace_level_logs_no_credentials() {
    const PASSWORD: &str = "modem-uri-pass-Wd93";
    const TOKEN: &str = "modem-open-token-Hv25";
    const API_KEY: &str = "modem-api-key-Qs17";
    let header = format!("Authorization: Basic {}", basic("head-user:head-pass-Lp66"));
    // Any custom header's value is a secret to the logs, not only the well-known ones.
    let api_key = format!("X-Api-Key: {API_KEY}");
    let pki = TestPki::generate();
    let pki_dir = pki.firmware_pki_dir();
    let server = common::wss_echo(&pki.server, Some(&pki.ca));
    let modem = common::modem_command()
        .rust_log("trace")
        .tcp()
        .args(common::FAST)
        .args(["--pki", pki_dir.path().to_str().expect("UTF-8 path")])
        .start();
    let mut at = modem.connect();

    // Mutual TLS: client certificate #0 and its key, the chain checked against CA #1 (FIRMWARE.md §4.4).
    at.at("AT+WSCFG=0,30,60,1024,3,0,1", OK);
    at.at(&format!("AT+WSHEAD={}", header.len()), PROMPT);
    at.send(&header);
    at.expect(OK);
    at.at(&format!("AT+WSHEAD={}", api_key.len()), PROMPT);
    at.send(&api_key);
    at.expect(OK);
    // The password again in the query: hidden there too, as the --trace file does.
    let uri = format!(
        "wss://modem-user:{PASSWORD}@127.0.0.1:{}/?token={PASSWORD}",
        server.port()
    );
    at.at(
        &format!("AT+WSOPEN=0,\"{uri}\",,5000,\"Bearer {TOKEN}\""),
        "+WS_CONNECTED:0\r\n\r\nOK\r\n",
    );
    at.at("AT+WSCLOSE=0", OK);

    // The link's configuration is logged at debug level, its credentials redacted.
    wait_until("the link's debug line", STEP, || modem.stderr().contains("opening"));
    let log = modem.stderr();
    assert!(log.contains("<redacted>"), "{log}");
    let mut secrets = vec![
        PASSWORD.to_owned(),
        TOKEN.to_owned(),
        API_KEY.to_owned(),
        header["Authorization: ".len()..].to_owned(),
        basic(&format!("modem-user:{PASSWORD}")),
    ];
    secrets.extend(key_body(&pki.client.key_pem));
    assert_no_secrets("wsat modem's stderr", &log, &secrets);
}

/// Everything logged in this test binary, at TRACE, through a global subscriber (the client's
/// tasks may run on any runtime thread).
fn captured_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        log
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library_at_trace_level_logs_no_credentials() {
    const PASSWORD: &str = "lib-uri-pass-Tr52";
    let header_value = format!("Basic {}", basic("lib-user:lib-hdr-pass-Mn08"));
    let log = captured_log();
    let pki = TestPki::generate();
    let tls = wsat::tls_server::server_config(
        pki.server.cert_pem.as_bytes(),
        pki.server.key_pem.as_bytes(),
        Some(pki.ca.cert_pem.as_bytes()),
    )
    .expect("server TLS config");
    let echo = wsat::echo_server::EchoServer::bind("127.0.0.1:0", Some(tls.clone()))
        .await
        .expect("bind the echo server");
    let echo_port = echo.local_addr().expect("bound").port();
    let _echo = echo.spawn();
    // A wss hop first: the client logs the redirect it follows, so something is logged.
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let redirector = ScriptedPeer::start(move |tcp, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            if read_request(&mut tls).await.is_some() {
                redirect(&mut tls, &format!("wss://127.0.0.1:{echo_port}/echo")).await;
                let _ = tls.shutdown().await;
            }
        }
    });

    let mut config = ClientConfig::new(format!("wss://lib-user:{PASSWORD}@{}/start", redirector.addr()));
    config.headers.push(("Authorization".into(), header_value.clone()));
    config.delivery = Delivery::Messages { max_size: 1 << 20 };
    config.reconnect = Reconnect::Disabled;
    config.tls.verification = Verification::Full;
    config.tls.ca_pem = Some(pki.ca.cert_pem.clone().into_bytes());
    config.tls.client_cert_pem = Some(pki.client.cert_pem.clone().into_bytes());
    config.tls.client_key_pem = Some(pki.client.key_pem.clone().into_bytes());
    let (client, mut events) = Client::start(config).expect("a valid configuration");
    let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
    match seen.last() {
        Some(Event::Connected(info)) => assert_eq!(info.uri, format!("wss://127.0.0.1:{echo_port}/echo")),
        other => panic!("not connected: {other:?} after {seen:?}"),
    }
    client
        .send_text("over mutual TLS", Duration::from_secs(5))
        .await
        .expect("send");
    let seen = until(&mut events, |e| matches!(e, Event::Message(_) | Event::Finish)).await;
    assert!(
        matches!(seen.last(), Some(Event::Message(m)) if &m.payload[..] == b"over mutual TLS"),
        "{seen:?}"
    );
    client
        .close(Some(1000), "", Duration::from_secs(5))
        .await
        .expect("close");
    until(&mut events, |e| matches!(e, Event::Finish)).await;

    let text = String::from_utf8_lossy(&log.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        text.contains("following redirect"),
        "nothing captured at TRACE:\n{text}"
    );
    let mut secrets = vec![
        PASSWORD.to_owned(),
        header_value,
        basic(&format!("lib-user:{PASSWORD}")),
    ];
    secrets.extend(key_body(&pki.client.key_pem));
    secrets.extend(key_body(&pki.server.key_pem));
    assert_no_secrets("the client library's log", &text, &secrets);
}
