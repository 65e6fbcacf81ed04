//! wsat-client and `wsat connect` against the seed examples' own Python servers
//! (`ws-server.py`, `wss-server.py` from shared/seeds/001, run by scripts/seed_server.py
//! on websockets 12.0) with the firmware's default PKI from shared/pki.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wsat_client::{Client, ClientConfig, Delivery, Event, OpCode, Reconnect, Verification};
use wsat_testkit::events::{next, until, STEP};
use wsat_testkit::{peer_or_skip, shared_dir, SeedServer};

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn firmware_tls(config: &mut ClientConfig, with_client_cert: bool) {
    let pki = shared_dir().expect("gated").join("pki/esp-at-default");
    config.tls.verification = Verification::ChainOnly;
    config.tls.ca_pem = Some(read(&pki.join("wss_ca_00.crt")));
    if with_client_cert {
        config.tls.client_cert_pem = Some(read(&pki.join("wss_client_00.crt")));
        config.tls.client_key_pem = Some(read(&pki.join("wss_client_00.key")));
    }
}

/// Connects, echoes `payloads` as text, returns the messages and how the session ended.
async fn echo_session(mut config: ClientConfig, payloads: &[String]) -> Result<Vec<Vec<u8>>, String> {
    config.reconnect = Reconnect::Disabled;
    config.delivery = Delivery::messages();
    let (client, mut events) = Client::start(config).map_err(|e| e.to_string())?;
    let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
    if !matches!(seen.last(), Some(Event::Connected(_))) {
        return Err(format!("{seen:?}"));
    }
    let mut got = Vec::new();
    for p in payloads {
        client.send_text(p, STEP).await.map_err(|e| e.to_string())?;
        let seen = until(&mut events, |e| matches!(e, Event::Message(_) | Event::Finish)).await;
        match seen.last() {
            Some(Event::Message(m)) => got.push(m.payload.to_vec()),
            _ => return Err(format!("{seen:?}")),
        }
    }
    client.close(Some(1000), "", STEP).await.map_err(|e| e.to_string())?;
    Ok(got)
}

#[tokio::test]
async fn echo_against_the_seed_ws_server() {
    if !peer_or_skip("echo_against_the_seed_ws_server") {
        return;
    }
    let server = SeedServer::ws();
    let payloads: Vec<String> = (0..5)
        .map(|i| format!("hello {i:04}"))
        .chain([("z".repeat(70_000))])
        .collect();
    let got = echo_session(ClientConfig::new(server.uri()), &payloads)
        .await
        .expect("echo");
    assert_eq!(got, payloads.iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>());
}

#[tokio::test]
async fn chunks_from_the_seed_server_follow_the_buffer_size() {
    if !peer_or_skip("chunks_from_the_seed_server_follow_the_buffer_size") {
        return;
    }
    let server = SeedServer::ws();
    let mut config = ClientConfig::new(server.uri());
    config.reconnect = Reconnect::Disabled;
    let (client, mut events) = Client::start(config).expect("valid");
    until(&mut events, |e| matches!(e, Event::Connected(_))).await;
    client.send(OpCode::TEXT, "q".repeat(2000), STEP).await.expect("sent");
    let mut chunks = Vec::new();
    while chunks.len() < 2 {
        match next(&mut events).await {
            Event::Data(d) => chunks.push((d.offset, d.data.len(), d.payload_len)),
            Event::Finish => panic!("finished early after {chunks:?}"),
            other => eprintln!("{other:?}"),
        }
    }
    assert_eq!(chunks, [(0, 1024, 2000), (1024, 976, 2000)]);
}

#[tokio::test]
async fn mutual_tls_with_the_firmware_pki_against_the_seed_wss_server() {
    if !peer_or_skip("mutual_tls_with_the_firmware_pki_against_the_seed_wss_server") {
        return;
    }
    let server = SeedServer::wss(None);
    let mut config = ClientConfig::new(server.uri());
    firmware_tls(&mut config, true);
    let got = echo_session(config, &["test".into()])
        .await
        .expect("the seed's wss session");
    assert_eq!(got, [b"test".to_vec()]);

    // Without the client certificate the server refuses us.
    let mut config = ClientConfig::new(server.uri());
    firmware_tls(&mut config, false);
    assert!(echo_session(config, &["test".into()]).await.is_err());

    // Full verification refuses the CA:TRUE leaf named "L1 CA" for 127.0.0.1.
    let mut config = ClientConfig::new(server.uri());
    firmware_tls(&mut config, true);
    config.tls.verification = Verification::Full;
    let err = echo_session(config, &["test".into()])
        .await
        .expect_err("full verification");
    assert!(err.contains("CaUsedAsEndEntity"), "{err}");
}

/// Runs `wsat connect` with `args`, feeds `lines`, returns stdout lines and the exit code.
fn wsat_connect(args: &[&str], lines: &[&str]) -> (Vec<String>, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsat"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn wsat");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut got = Vec::new();
    for line in lines {
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
        let mut out = String::new();
        stdout.read_line(&mut out).expect("read");
        got.push(out.trim_end_matches('\n').to_owned());
    }
    drop(stdin);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("wsat connect did not exit after stdin EOF");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (got, code)
}

#[test]
fn wsat_connect_talks_to_the_seed_servers() {
    if !peer_or_skip("wsat_connect_talks_to_the_seed_servers") {
        return;
    }
    let ws = SeedServer::ws();
    let (got, code) = wsat_connect(&[&ws.uri()], &["hello", "world"]);
    assert_eq!((got, code), (vec!["hello".to_owned(), "world".to_owned()], Some(0)));

    let wss = SeedServer::wss(None);
    let pki = shared_dir().expect("gated").join("pki/esp-at-default");
    let path = |f: &str| pki.join(f).display().to_string();
    let (ca, cert, key) = (
        path("wss_ca_00.crt"),
        path("wss_client_00.crt"),
        path("wss_client_00.key"),
    );
    let args = [
        wss.uri(),
        "--ca".into(),
        ca,
        "--cert".into(),
        cert,
        "--key".into(),
        key,
        "--chain-only".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (got, code) = wsat_connect(&args, &["test"]);
    assert_eq!((got, code), (vec!["test".to_owned()], Some(0)));
}
