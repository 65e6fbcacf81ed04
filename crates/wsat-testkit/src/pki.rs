//! Generated test PKI (rcgen): nothing here comes from the shared directory.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

/// Where [`TestPki::write_to`] put one [`Credential`].
#[derive(Clone, Debug)]
pub struct CredentialFiles {
    /// The certificate PEM file.
    pub cert: PathBuf,
    /// The private key PEM file.
    pub key: PathBuf,
}

/// A complete, freshly generated test PKI, for TLS success and failure tests.
///
/// All keys are ECDSA P-256 (ring cannot generate RSA keys). Validity of the good certificates
/// is 2020-01-01 to 2099-12-31. The distinguished names carry `O=wsat test PKI`.
///
/// | field | what | useful for |
/// |---|---|---|
/// | `ca` | root CA "wsat test CA" | trust anchor on both sides |
/// | `server` | leaf for `127.0.0.1` and `localhost` (SANs), serverAuth, signed by `ca` | the happy path |
/// | `client` | leaf "wsat test client", clientAuth, signed by `ca` | mutual TLS |
/// | `other_ca` | unrelated root CA "wsat other CA" | "unknown issuer" |
/// | `other_server` | like `server` but signed by `other_ca` | server not trusted |
/// | `other_client` | like `client` but signed by `other_ca` | client rejected by the server |
/// | `expired_server` | like `server`, valid 2000-01-01 to 2001-01-01 | expired certificate |
/// | `not_yet_valid_server` | like `server`, valid 2090-01-01 to 2099-12-31 | not yet valid |
/// | `wrong_host_server` | like `server` but SAN `wrong.example.invalid` only | host name mismatch |
/// | `firmware_leaf` | CN "L1 CA", basicConstraints CA:TRUE, no SAN, signed by `ca` | the ESP-AT firmware's PKI shape |
///
/// `firmware_leaf` mirrors the firmware's and the seed example's leaves (see
/// `shared/pki/README.md`): mbedTLS and OpenSSL accept such a CA:TRUE leaf, webpki rejects it
/// (`CaUsedAsEndEntity`), and its name matches no host. It has the same key usages as those
/// (digitalSignature, keyEncipherment, keyCertSign, cRLSign) and both serverAuth and clientAuth,
/// so it can stand in for either side.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// Root CA that signs `server`, `client`, the validity variants and `firmware_leaf`.
    pub ca: Credential,
    /// Server leaf for `127.0.0.1` and `localhost`, signed by `ca`.
    pub server: Credential,
    /// Client leaf, signed by `ca`.
    pub client: Credential,
    /// A second root CA, unrelated to `ca`.
    pub other_ca: Credential,
    /// Server leaf for `127.0.0.1`/`localhost` signed by `other_ca`.
    pub other_server: Credential,
    /// Client leaf signed by `other_ca`.
    pub other_client: Credential,
    /// Server leaf signed by `ca`, expired since 2001-01-01.
    pub expired_server: Credential,
    /// Server leaf signed by `ca`, valid only from 2090-01-01.
    pub not_yet_valid_server: Credential,
    /// Server leaf signed by `ca` for `wrong.example.invalid` only.
    pub wrong_host_server: Credential,
    /// Firmware-style leaf: CN "L1 CA", CA:TRUE, no subjectAltName, signed by `ca`.
    pub firmware_leaf: Credential,
}

/// Where [`TestPki::write_to`] put every credential (file names are `<field>.crt`/`<field>.key`).
#[derive(Clone, Debug)]
pub struct PkiFiles {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// See [`TestPki::ca`].
    pub ca: CredentialFiles,
    /// See [`TestPki::server`].
    pub server: CredentialFiles,
    /// See [`TestPki::client`].
    pub client: CredentialFiles,
    /// See [`TestPki::other_ca`].
    pub other_ca: CredentialFiles,
    /// See [`TestPki::other_server`].
    pub other_server: CredentialFiles,
    /// See [`TestPki::other_client`].
    pub other_client: CredentialFiles,
    /// See [`TestPki::expired_server`].
    pub expired_server: CredentialFiles,
    /// See [`TestPki::not_yet_valid_server`].
    pub not_yet_valid_server: CredentialFiles,
    /// See [`TestPki::wrong_host_server`].
    pub wrong_host_server: CredentialFiles,
    /// See [`TestPki::firmware_leaf`].
    pub firmware_leaf: CredentialFiles,
}

impl PkiFiles {
    /// Certificates for a [`crate::SeedServer`] wss peer: serve `server`, and require client
    /// certificates signed by `ca`.
    pub fn seed_wss_certs(&self) -> crate::WssCerts {
        self.wss_certs_with(&self.server)
    }

    /// Like [`PkiFiles::seed_wss_certs`] but serving `server_cred` (e.g. `&files.expired_server`
    /// or `&files.firmware_leaf`); client certificates must still be signed by `ca`.
    pub fn wss_certs_with(&self, server_cred: &CredentialFiles) -> crate::WssCerts {
        crate::WssCerts {
            ca: self.ca.cert.clone(),
            cert: server_cred.cert.clone(),
            key: server_cred.key.clone(),
        }
    }
}

/// Distinguished name `O=wsat test PKI, CN=<cn>`.
fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "wsat test PKI");
    dn.push(DnType::CommonName, cn);
    dn
}

fn new_key() -> KeyPair {
    KeyPair::generate().expect("rcgen: generating an ECDSA P-256 key pair failed")
}

fn credential(cert: &rcgen::Certificate, key: &KeyPair) -> Credential {
    Credential {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A self-signed root CA; returns its credential and the issuer that signs with it.
fn root_ca(cn: &str) -> (Credential, Issuer<'static, KeyPair>) {
    let key = new_key();
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2099, 12, 31);
    let cert = params
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("rcgen: self-signing CA {cn:?} failed: {e}"));
    let cred = credential(&cert, &key);
    (cred, Issuer::new(params, key))
}

/// Parameters of an end-entity leaf with the given SANs and extended key usage.
fn leaf_params(cn: &str, sans: &[&str], eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params =
        CertificateParams::new(sans).unwrap_or_else(|e| panic!("rcgen: invalid subjectAltName for {cn:?}: {e}"));
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2099, 12, 31);
    params
}

fn sign(params: &CertificateParams, issuer: &Issuer<'_, KeyPair>, what: &str) -> Credential {
    let key = new_key();
    let cert = params
        .signed_by(&key, issuer)
        .unwrap_or_else(|e| panic!("rcgen: signing the {what} certificate failed: {e}"));
    credential(&cert, &key)
}

const LOCAL_SANS: &[&str] = &["127.0.0.1", "localhost"];

impl TestPki {
    /// Generate a fresh PKI (about a dozen ECDSA keys; a few milliseconds).
    ///
    /// Panics with a clear message if rcgen fails, which would be a bug or a broken crypto
    /// backend, not a test failure.
    pub fn generate() -> TestPki {
        let (ca, ca_issuer) = root_ca("wsat test CA");
        let (other_ca, other_issuer) = root_ca("wsat other CA");

        let server_params = leaf_params("localhost", LOCAL_SANS, ExtendedKeyUsagePurpose::ServerAuth);
        let client_params = leaf_params("wsat test client", &[], ExtendedKeyUsagePurpose::ClientAuth);

        let mut expired = server_params.clone();
        expired.not_before = date_time_ymd(2000, 1, 1);
        expired.not_after = date_time_ymd(2001, 1, 1);

        let mut not_yet_valid = server_params.clone();
        not_yet_valid.not_before = date_time_ymd(2090, 1, 1);
        not_yet_valid.not_after = date_time_ymd(2099, 12, 31);

        let wrong_host = leaf_params(
            "wrong.example.invalid",
            &["wrong.example.invalid"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );

        let mut firmware = CertificateParams::default();
        let mut fw_dn = DistinguishedName::new();
        fw_dn.push(DnType::CountryName, "CN");
        fw_dn.push(DnType::OrganizationName, "wsat test PKI");
        fw_dn.push(DnType::CommonName, "L1 CA");
        firmware.distinguished_name = fw_dn;
        firmware.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        firmware.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        firmware.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        firmware.use_authority_key_identifier_extension = true;
        firmware.not_before = date_time_ymd(2020, 1, 1);
        firmware.not_after = date_time_ymd(2099, 12, 31);

        TestPki {
            server: sign(&server_params, &ca_issuer, "server"),
            client: sign(&client_params, &ca_issuer, "client"),
            other_server: sign(&server_params, &other_issuer, "other_server"),
            other_client: sign(&client_params, &other_issuer, "other_client"),
            expired_server: sign(&expired, &ca_issuer, "expired_server"),
            not_yet_valid_server: sign(&not_yet_valid, &ca_issuer, "not_yet_valid_server"),
            wrong_host_server: sign(&wrong_host, &ca_issuer, "wrong_host_server"),
            firmware_leaf: sign(&firmware, &ca_issuer, "firmware_leaf"),
            ca,
            other_ca,
        }
    }

    /// Every credential with its file stem, in a fixed order.
    fn named(&self) -> [(&'static str, &Credential); 10] {
        [
            ("ca", &self.ca),
            ("server", &self.server),
            ("client", &self.client),
            ("other_ca", &self.other_ca),
            ("other_server", &self.other_server),
            ("other_client", &self.other_client),
            ("expired_server", &self.expired_server),
            ("not_yet_valid_server", &self.not_yet_valid_server),
            ("wrong_host_server", &self.wrong_host_server),
            ("firmware_leaf", &self.firmware_leaf),
        ]
    }

    /// Write every credential as `<dir>/<field>.crt` and `<dir>/<field>.key` and return the
    /// paths. `dir` must exist. Panics with the path on an I/O error.
    pub fn write_to(&self, dir: &Path) -> PkiFiles {
        let write = |stem: &str, cred: &Credential| {
            let files = CredentialFiles {
                cert: dir.join(format!("{stem}.crt")),
                key: dir.join(format!("{stem}.key")),
            };
            for (path, pem) in [(&files.cert, &cred.cert_pem), (&files.key, &cred.key_pem)] {
                fs::write(path, pem).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            }
            files
        };
        let [ca, server, client, other_ca, other_server, other_client, expired_server, not_yet_valid_server, wrong_host_server, firmware_leaf] =
            self.named().map(|(stem, cred)| write(stem, cred));
        PkiFiles {
            dir: dir.to_path_buf(),
            ca,
            server,
            client,
            other_ca,
            other_server,
            other_client,
            expired_server,
            not_yet_valid_server,
            wrong_host_server,
            firmware_leaf,
        }
    }

    /// Write the PKI into a new temporary directory (removed when the returned guard drops).
    pub fn write_tempdir(&self) -> (tempfile::TempDir, PkiFiles) {
        let dir = tempfile::Builder::new()
            .prefix("wsat-test-pki-")
            .tempdir()
            .expect("cannot create a temporary directory for the test PKI");
        let files = self.write_to(dir.path());
        (dir, files)
    }

    /// A `wsat modem --pki` folder by the firmware's file names, in a new temporary
    /// directory (removed when the guard drops): CA #0 = `other_ca` (signs nothing the
    /// servers use), CA #1 = `ca`, client #0 = `client` (signed by `ca`), client #1 =
    /// `other_client` (signed by `other_ca`).
    pub fn firmware_pki_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("wsat-test-firmware-pki-")
            .tempdir()
            .expect("cannot create a temporary directory for the firmware PKI");
        let files = [
            ("wss_ca_00.crt", &self.other_ca.cert_pem),
            ("wss_ca_01.crt", &self.ca.cert_pem),
            ("wss_client_00.crt", &self.client.cert_pem),
            ("wss_client_00.key", &self.client.key_pem),
            ("wss_client_01.crt", &self.other_client.cert_pem),
            ("wss_client_01.key", &self.other_client.key_pem),
        ];
        for (name, pem) in files {
            let path = dir.path().join(name);
            fs::write(&path, pem).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_blocks(pem: &str, label: &str) -> usize {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        assert_eq!(pem.matches(&begin).count(), pem.matches(&end).count());
        pem.matches(&begin).count()
    }

    #[test]
    fn every_credential_is_one_cert_and_one_parseable_key() {
        let pki = TestPki::generate();
        for (name, cred) in pki.named() {
            assert_eq!(pem_blocks(&cred.cert_pem, "CERTIFICATE"), 1, "{name}");
            assert_eq!(pem_blocks(&cred.key_pem, "PRIVATE KEY"), 1, "{name}");
            KeyPair::from_pem(&cred.key_pem).unwrap_or_else(|e| panic!("{name}: key does not parse back: {e}"));
        }
        // Fresh keys for every credential.
        let keys: std::collections::HashSet<_> = pki.named().iter().map(|(_, c)| c.key_pem.clone()).collect();
        assert_eq!(keys.len(), 10);
    }

    #[test]
    fn write_tempdir_writes_every_file() {
        let pki = TestPki::generate();
        let (dir, files) = pki.write_tempdir();
        assert_eq!(files.dir, dir.path());
        for cf in [&files.ca, &files.server, &files.firmware_leaf, &files.other_client] {
            assert!(cf.cert.is_file() && cf.key.is_file(), "{cf:?}");
        }
        let server = fs::read_to_string(&files.server.cert).expect("server.crt is readable");
        assert_eq!(server, pki.server.cert_pem);
        let certs = files.seed_wss_certs();
        assert_eq!(certs.ca, files.ca.cert);
        assert_eq!(certs.cert, files.server.cert);
    }
}
