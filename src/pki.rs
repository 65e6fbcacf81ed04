//! A throw-away PKI generated at run time (rcgen), so the demo needs no files: a CA, a
//! server certificate for 127.0.0.1 and localhost, and a client certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// PEM certificate and key.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A CA with one server and one client certificate signed by it.
#[derive(Debug, Clone)]
pub struct DemoPki {
    /// The CA (trust anchor on both sides).
    pub ca: Pem,
    /// Server certificate for `127.0.0.1` and `localhost`.
    pub server: Pem,
    /// Client certificate for mutual TLS.
    pub client: Pem,
}

impl DemoPki {
    /// Generates fresh ECDSA P-256 keys and certificates.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "wsat demo CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Pem {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        };
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| -> Result<Pem, rcgen::Error> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer)?;
            Ok(Pem {
                cert: cert.pem(),
                key: key.serialize_pem(),
            })
        };
        Ok(DemoPki {
            server: leaf(
                vec!["127.0.0.1".into(), "localhost".into()],
                "wsat demo server",
                ExtendedKeyUsagePurpose::ServerAuth,
            )?,
            client: leaf(Vec::new(), "wsat demo client", ExtendedKeyUsagePurpose::ClientAuth)?,
            ca,
        })
    }
}
