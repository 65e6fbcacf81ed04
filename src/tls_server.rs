//! Server-side TLS for wsat's own servers: certificate and key from PEM, optionally
//! requiring a client certificate signed by a given CA.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, Error as RustlsError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use wsat_client::tls::{
    certs_from_pem, is_ca_used_as_end_entity, key_from_pem, provider, verify_ca_leaf, TlsConfigError,
};

/// A rustls server configuration from PEM. With `client_ca_pem`, clients must present a
/// certificate that chains to it; a `CA:TRUE` client leaf signed directly by that CA is
/// accepted as OpenSSL accepts it (the firmware's client certificates are such leaves).
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let provider = provider();
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let anchors = certs_from_pem(pem, "client CA")?;
            let mut roots = RootCertStore::empty();
            for cert in &anchors {
                roots.add(cert.clone()).map_err(TlsConfigError::Anchor)?;
            }
            let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsConfigError::Rustls(RustlsError::General(e.to_string())))?;
            builder.with_client_cert_verifier(Arc::new(LenientClientVerifier { webpki, anchors }))
        }
    };
    let config = builder.with_single_cert(certs_from_pem(cert_pem, "server certificate")?, key_from_pem(key_pem)?)?;
    Ok(Arc::new(config))
}

/// webpki's client verification, plus the `CA:TRUE` leaf that OpenSSL accepts.
#[derive(Debug)]
struct LenientClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    anchors: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for LenientClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, RustlsError> {
        match self.webpki.verify_client_cert(end_entity, intermediates, now) {
            Err(e) if is_ca_used_as_end_entity(&e) => {
                verify_ca_leaf(end_entity, &self.anchors, now).map(|_| ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
