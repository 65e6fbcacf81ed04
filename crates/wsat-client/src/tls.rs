//! TLS client configuration: roots, a CA file, a client certificate, and three levels of
//! server verification.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, Error as RustlsError, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Chain to a trusted root, validity dates and the host name: the default.
    #[default]
    Full,
    /// Chain and validity only, no host name, and a leaf marked `CA:TRUE` is accepted as
    /// mbedTLS accepts it: the ESP-AT firmware's auth modes 2 and 3.
    ChainOnly,
    /// Nothing is checked (the firmware's auth modes 0 and 1). Insecure: explicit only.
    None,
}

/// Which trust anchors verify the server. Its `Debug` output never shows the private key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The verification level.
    pub verification: Verification,
    /// CA certificates (PEM, one or more) to trust. When set, only these are trusted
    /// unless `webpki_roots` or `native_roots` adds more.
    pub ca_pem: Option<Vec<u8>>,
    /// Trust Mozilla's roots compiled into the binary. Defaults to on when no CA is given.
    pub webpki_roots: bool,
    /// Trust the operating system's root store.
    pub native_roots: bool,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key (PEM: PKCS#1, PKCS#8 or SEC1, unencrypted).
    pub client_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map(|b| format!("<{} bytes>", b.len()));
        f.debug_struct("TlsConfig")
            .field("verification", &self.verification)
            .field("ca_pem", &len(&self.ca_pem))
            .field("webpki_roots", &self.webpki_roots)
            .field("native_roots", &self.native_roots)
            .field("client_cert_pem", &len(&self.client_cert_pem))
            .field("client_key_pem", &self.client_key_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("invalid {what} PEM: {detail}")]
    Pem {
        /// Which input (CA, client certificate, client key).
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// A certificate in the PEM was refused as a trust anchor.
    #[error("CA certificate refused: {0}")]
    Anchor(RustlsError),
    /// A client certificate without a key, or the other way round.
    #[error("a client certificate needs its private key, and a key needs its certificate")]
    IncompleteIdentity,
    /// rustls refused the combination.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] RustlsError),
    /// No trust anchor at all for a verifying mode.
    #[error("no trusted root certificates: give a CA or enable webpki or native roots")]
    NoRoots,
}

/// The crypto provider everywhere in wsat: rustls with `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in a PEM buffer.
pub fn certs_from_pem(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsConfigError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Pem {
            what,
            detail: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Parses a private key from PEM.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsConfigError::Pem {
        what: "private key",
        detail: e.to_string(),
    })
}

impl TlsConfig {
    /// Builds the rustls client configuration (TLS 1.2 and 1.3, ALPN none).
    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
        let provider = provider();
        let builder =
            rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.verification {
            Verification::None => Arc::new(RelaxedVerifier {
                chain: None,
                provider: provider.clone(),
            }),
            level => {
                let (roots, anchors) = self.roots()?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsConfigError::Rustls(RustlsError::General(e.to_string())))?;
                if level == Verification::Full {
                    webpki
                } else {
                    Arc::new(RelaxedVerifier {
                        chain: Some((webpki, anchors)),
                        provider: provider.clone(),
                    })
                }
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => {
                builder.with_client_auth_cert(certs_from_pem(cert, "client certificate")?, key_from_pem(key)?)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsConfigError::IncompleteIdentity),
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsConfigError> {
        let mut roots = RootCertStore::empty();
        let mut anchors = Vec::new();
        if let Some(pem) = &self.ca_pem {
            for cert in certs_from_pem(pem, "CA")? {
                roots.add(cert.clone()).map_err(TlsConfigError::Anchor)?;
                anchors.push(cert);
            }
        }
        if self.webpki_roots || (self.ca_pem.is_none() && !self.native_roots) {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!("skipping a native root: {err}");
            }
            roots.add_parsable_certificates(found.certs);
        }
        if roots.is_empty() {
            return Err(TlsConfigError::NoRoots);
        }
        Ok((roots, anchors))
    }
}

/// The two relaxed policies: chain and validity without the host name, accepting a
/// `CA:TRUE` leaf signed directly by a configured CA (what mbedTLS does with the firmware's
/// PKI); or no certificate check at all. Either way the handshake signatures are checked,
/// so the key exchange stays bound to the presented certificate.
#[derive(Debug)]
struct RelaxedVerifier {
    /// `None`: accept any certificate.
    chain: Option<(Arc<WebPkiServerVerifier>, Vec<CertificateDer<'static>>)>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for RelaxedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        let Some((webpki, anchors)) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(v) => Ok(v),
            // The chain was verified before the name was compared: only the name is wrong.
            Err(RustlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) if is_ca_used_as_end_entity(&e) => verify_ca_leaf(end_entity, anchors, now),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks a `CA:TRUE` leaf by hand, as mbedTLS and OpenSSL accept one: within its
/// validity period and signed by one of `anchors` (matched by subject name). webpki
/// refuses such leaves outright; the firmware's PKI is made of them.
pub fn verify_ca_leaf(
    leaf: &CertificateDer<'_>,
    anchors: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<ServerCertVerified, RustlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let bad = |e: CertificateError| RustlsError::InvalidCertificate(e);
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|_| bad(CertificateError::BadEncoding))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(bad(CertificateError::NotValidYet));
    }
    if now > validity.not_after.timestamp() {
        return Err(bad(CertificateError::Expired));
    }
    for anchor in anchors {
        let Ok((_, ca)) = X509Certificate::from_der(anchor) else {
            continue;
        };
        if ca.subject() == cert.issuer() && cert.verify_signature(Some(ca.public_key())).is_ok() {
            return Ok(ServerCertVerified::assertion());
        }
    }
    Err(bad(CertificateError::UnknownIssuer))
}

/// Whether webpki refused a certificate only because it is a CA used as a leaf.
pub fn is_ca_used_as_end_entity(err: &RustlsError) -> bool {
    match err {
        RustlsError::InvalidCertificate(CertificateError::Other(other)) => {
            matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            )
        }
        _ => false,
    }
}
