//! TLS in `wsat modem`: the auth modes of AT+WSCFG (FIRMWARE.md §4.2, §4.4) against wss echo servers
//! with generated certificates, and the `--pki` folder by the firmware's file names (which item
//! is missing, or no folder at all). The AT answers alone are in crates/wsat-at/tests.

mod common;

use std::path::Path;

use common::{modem_tcp, wss_echo, FAST};
use wsat_testkit::at_host::OK;
use wsat_testkit::modem_process::Modem;
use wsat_testkit::TestPki;

fn tls_modem(pki_dir: &Path) -> Modem {
    let mut args = FAST.to_vec();
    args.extend(["--pki", pki_dir.to_str().expect("UTF-8 path")]);
    modem_tcp(&args)
}

#[test]
fn wscfg_names_the_missing_pki_item() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two CAs, two client certificates, but only one client key.
    for (name, pem) in [
        ("wss_ca_00.crt", &pki.ca.cert_pem),
        ("wss_ca_01.crt", &pki.other_ca.cert_pem),
        ("wss_client_00.crt", &pki.client.cert_pem),
        ("wss_client_00.key", &pki.client.key_pem),
        ("wss_client_01.crt", &pki.other_client.cert_pem),
    ] {
        std::fs::write(dir.path().join(name), pem).expect("write");
    }
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();
    // FIRMWARE.md §4.2 step 7: the lines have no leading CR LF.
    at.at("AT+WSCFG=0,30,60,4096,3,5,0", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,30,60,4096,1,2,0", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,30,60,4096,1,1,0", b"NO PRVT_KEY FOUND\r\n\r\nERROR\r\n");
    // FIRMWARE.md §13.4: only CA #0 and #1 stored.
    at.at("AT+WSCFG=0,10,120,1024,2,0,5", b"NO CA FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,10,120,1024,2,0,2", b"NO CA FOUND\r\n\r\nERROR\r\n");
    // The certificate is checked before the CA (mode 3 with both missing).
    at.at("AT+WSCFG=0,10,120,1024,3,7,7", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    // Mode 2 ignores pki_number, mode 1 ignores ca_number.
    at.at("AT+WSCFG=0,10,120,1024,2,9,1", OK);
    at.at("AT+WSCFG=0,10,120,1024,1,0,9", OK);
    at.at("AT+WSCFG=0,10,120,1024,3,0,1", OK);
}

#[test]
fn wscfg_without_any_pki_finds_no_certificate() {
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.at("AT+WSCFG=0,10,120,1024,1,0,0", b"NO CERT FOUND\r\n\r\nERROR\r\n");
    at.at("AT+WSCFG=0,10,120,1024,2,0,0", b"NO CA FOUND\r\n\r\nERROR\r\n");
}

#[test]
fn tls_mode_2_verifies_the_chain_but_not_the_host_name() {
    let pki = TestPki::generate();
    let dir = pki.firmware_pki_dir();
    // A firmware-shaped leaf: CN "L1 CA", CA:TRUE, no subjectAltName, signed by `ca` (CA #1).
    let server = wss_echo(&pki.firmware_leaf, None);
    let expired = wss_echo(&pki.expired_server, None);
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();

    // CA #0 did not sign the server: the handshake fails (FIRMWARE.md §6.1 failure path).
    at.at("AT+WSCFG=0,30,60,1024,2,0,0", OK);
    at.open_fails(0, &server.uri());
    at.at("AT+WSOPEN?", OK);

    // CA #1 did: connects although 127.0.0.1 is not the certificate's name.
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    at.open(0, &server.uri());
    at.send_and_echo(0, b"verified");
    at.at("AT+WSCLOSE=0", OK);

    // The right CA but an expired certificate: validity is checked.
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    at.open_fails(0, &expired.uri());
}

#[test]
fn tls_mode_0_connects_without_verification() {
    let pki = TestPki::generate();
    let dir = pki.firmware_pki_dir();
    let server = wss_echo(&pki.other_server, None);
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();

    // Mode 2 with CA #1 rejects a server signed by the other CA ...
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    at.open_fails(0, &server.uri());
    // ... mode 0 does not verify at all (FIRMWARE.md §4.4) ...
    at.at("AT+WSCFG=0,30,60,1024,0", OK);
    at.open(0, &server.uri());
    at.send_and_echo(0, b"insecure");
    at.at("AT+WSCLOSE=0", OK);
    // ... and neither does the default configuration (FIRMWARE.md §4.3).
    at.open(1, &server.uri());
    at.send_and_echo(1, b"default");
    at.at("AT+WSCLOSE=1", OK);
}

#[test]
fn tls_without_a_client_certificate_fails_where_one_is_required() {
    let pki = TestPki::generate();
    let dir = pki.firmware_pki_dir();
    let server = wss_echo(&pki.firmware_leaf, Some(&pki.ca));
    let modem = tls_modem(dir.path());
    let mut at = modem.connect();

    // Mode 2: the server is verified but the modem presents no certificate.
    at.at("AT+WSCFG=0,30,60,1024,2,0,1", OK);
    at.open_fails(0, &server.uri());
    // Mode 3 with client #1 (signed by the other CA): the server rejects it.
    at.at("AT+WSCFG=0,30,60,1024,3,1,1", OK);
    at.open_fails(0, &server.uri());
    // Mode 3 with client #0: mutual TLS works.
    at.at("AT+WSCFG=0,30,60,1024,3,0,1", OK);
    at.open(0, &server.uri());
    at.send_and_echo(0, b"mutual");
    at.at("AT+WSCLOSE=0", OK);
    // Mode 1: client certificate, no server verification.
    at.at("AT+WSCFG=0,30,60,1024,1,0,0", OK);
    at.open(0, &server.uri());
    at.send_and_echo(0, b"client only");
    at.at("AT+WSCLOSE=0", OK);
}
