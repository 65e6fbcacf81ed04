//! The generated [`TestPki`] and the shared firmware PKI, checked against a real TLS stack:
//! the seed's `wss-server.py` (Python `ssl`, i.e. OpenSSL) as server and a Python `websockets`
//! client, so every variant fails (or succeeds) for the reason its name says.

use std::path::Path;
use std::process::Command;

use wsat_testkit::{peer_or_skip, python, PkiFiles, SeedServer, TestPki};

/// Connect to `uri` with Python `websockets` + `ssl`, send "test", return the echo or the error.
fn python_wss_echo(
    uri: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    check_hostname: bool,
) -> Result<String, String> {
    const CLIENT: &str = r#"
import asyncio, ssl, sys, websockets
uri, ca, check, cert, key = sys.argv[1:6]
async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check == "1"
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    async with websockets.connect(uri, ssl=ctx, open_timeout=10, close_timeout=2) as ws:
        await ws.send("test")
        return await asyncio.wait_for(ws.recv(), 10)
try:
    print("OK", asyncio.run(main()))
except Exception as e:
    print("ERR", type(e).__name__, e)
"#;
    let py = python().expect("gated by peer_or_skip");
    let (cert, key) = client.map_or((String::new(), String::new()), |(c, k)| {
        (c.display().to_string(), k.display().to_string())
    });
    let out = Command::new(py)
        .args(["-c", CLIENT, uri])
        .arg(ca)
        .arg(if check_hostname { "1" } else { "0" })
        .args([cert, key])
        .output()
        .expect("the peers venv python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match stdout.strip_prefix("OK ") {
        Some(echo) => Ok(echo.to_string()),
        None => Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr).trim())),
    }
}

fn client(files: &PkiFiles) -> Option<(&Path, &Path)> {
    Some((&files.client.cert, &files.client.key))
}

#[test]
fn generated_server_and_client_complete_mutual_tls() {
    if !peer_or_skip("generated_server_and_client_complete_mutual_tls") {
        return;
    }
    let (_dir, files) = TestPki::generate().write_tempdir();
    let server = SeedServer::wss(Some(&files.seed_wss_certs()));
    // check_hostname on: the SAN 127.0.0.1 must match.
    let echo = python_wss_echo(&server.uri(), &files.ca.cert, client(&files), true);
    assert_eq!(echo.as_deref(), Ok("test"), "{}", server.output());
}

#[test]
fn server_requires_a_client_certificate_from_its_ca() {
    if !peer_or_skip("server_requires_a_client_certificate_from_its_ca") {
        return;
    }
    let (_dir, files) = TestPki::generate().write_tempdir();
    let server = SeedServer::wss(Some(&files.seed_wss_certs()));
    let none = python_wss_echo(&server.uri(), &files.ca.cert, None, true);
    assert!(none.is_err(), "no client cert accepted: {none:?}");
    let other = Some((files.other_client.cert.as_path(), files.other_client.key.as_path()));
    let foreign = python_wss_echo(&server.uri(), &files.ca.cert, other, true);
    assert!(foreign.is_err(), "foreign client cert accepted: {foreign:?}");
}

#[test]
fn failure_variants_fail_for_their_reason() {
    if !peer_or_skip("failure_variants_fail_for_their_reason") {
        return;
    }
    let (_dir, files) = TestPki::generate().write_tempdir();
    let cases = [
        (&files.other_server, "unable to get local issuer certificate"),
        (&files.expired_server, "certificate has expired"),
        (&files.not_yet_valid_server, "certificate is not yet valid"),
        // Connecting to 127.0.0.1, OpenSSL reports a name mismatch as an IP mismatch.
        (&files.wrong_host_server, "IP address mismatch"),
        (&files.firmware_leaf, "IP address mismatch"),
    ];
    for (cred, reason) in cases {
        let server = SeedServer::wss(Some(&files.wss_certs_with(cred)));
        let got = python_wss_echo(&server.uri(), &files.ca.cert, client(&files), true);
        match got {
            Err(e) => assert!(e.contains(reason), "{cred:?}: want {reason:?}, got {e}"),
            Ok(echo) => panic!("{cred:?}: connected (echo {echo:?}), want {reason:?}"),
        }
    }
}

#[test]
fn firmware_style_leaf_is_accepted_by_openssl_without_host_check() {
    if !peer_or_skip("firmware_style_leaf_is_accepted_by_openssl_without_host_check") {
        return;
    }
    let (_dir, files) = TestPki::generate().write_tempdir();
    let server = SeedServer::wss(Some(&files.wss_certs_with(&files.firmware_leaf)));
    let echo = python_wss_echo(&server.uri(), &files.ca.cert, client(&files), false);
    assert_eq!(echo.as_deref(), Ok("test"), "{}", server.output());
}

/// The seed example exactly as shared/pki/README.md describes it: the seed's own server PKI,
/// the firmware's default client certificate `wss_client_00` and CA `wss_ca_00`, no host check.
#[test]
fn seed_wss_server_accepts_the_firmware_default_pki() {
    if !peer_or_skip("seed_wss_server_accepts_the_firmware_default_pki") {
        return;
    }
    let fw = wsat_testkit::shared_dir()
        .expect("gated")
        .join("pki")
        .join("esp-at-default");
    let server = SeedServer::wss(None);
    let echo = python_wss_echo(
        &server.uri(),
        &fw.join("wss_ca_00.crt"),
        Some((&fw.join("wss_client_00.crt"), &fw.join("wss_client_00.key"))),
        false,
    );
    assert_eq!(echo.as_deref(), Ok("test"), "{}", server.output());
    // The second firmware client certificate is not signed by the seed's server_ca. With TLS 1.3
    // the server's rejection arrives after the client's handshake has completed, so the client
    // sees it on its first read (here: no HTTP response), not as a handshake error.
    let other = python_wss_echo(
        &server.uri(),
        &fw.join("wss_ca_00.crt"),
        Some((&fw.join("wss_client_01.crt"), &fw.join("wss_client_01.key"))),
        false,
    );
    assert!(other.is_err(), "wss_client_01 accepted: {other:?}");
}

#[test]
fn seed_ws_server_echoes() {
    if !peer_or_skip("seed_ws_server_echoes") {
        return;
    }
    let server = SeedServer::ws();
    const CLIENT: &str = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], open_timeout=10) as ws:
        await ws.send("test")
        print(await asyncio.wait_for(ws.recv(), 10))
asyncio.run(main())
"#;
    let out = Command::new(python().expect("gated"))
        .args(["-c", CLIENT, &server.uri()])
        .output()
        .expect("the peers venv python runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "test",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.output()
    );
}
