//! The certificate verifiers of a [`TlsContext`](super::context::TlsContext):
//! a peer's chain checked against the trust roots (if any), then its
//! certificate against the pins (if any).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// What a pinned certificate is known by: the context's `Fingerprint`. The
/// verifiers ask only for this, so they do not depend on the context that
/// builds them.
pub(crate) trait Pin: fmt::Debug + PartialEq + Clone + Send + Sync + 'static {
    /// The pin of a DER-encoded certificate.
    fn of(der: &[u8]) -> Self;
}

fn algorithms(provider: &CryptoProvider) -> WebPkiSupportedAlgorithms {
    provider.signature_verification_algorithms
}

fn pinned<P: Pin>(pins: &[P], cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    if pins.is_empty() || pins.contains(&P::of(cert)) {
        Ok(())
    } else {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }
}

/// Checks a server's certificate: the chain against the roots (if any), then the
/// fingerprint against the pins (if any). Pins are checked inside the handshake
/// so that nothing, not even data queued before it ended, reaches a wrong peer.
#[derive(Debug)]
pub(crate) struct PinnedServer<P> {
    roots: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pins: Vec<P>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<P: Pin> PinnedServer<P> {
    pub(crate) fn new(
        roots: &Arc<RootCertStore>,
        pins: &[P],
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, VerifierBuilderError> {
        let verifier = if roots.is_empty() {
            None
        } else {
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots.clone(),
                    provider.clone(),
                )
                .build()?,
            )
        };
        Ok(PinnedServer {
            roots: verifier,
            pins: pins.to_vec(),
            algorithms: algorithms(provider),
        })
    }
}

impl<P: Pin> ServerCertVerifier for PinnedServer<P> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            roots.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        pinned(&self.pins, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks a client's certificate: against the roots (if any), then the pins.
#[derive(Debug)]
pub(crate) struct PinnedClient<P> {
    roots: Option<Arc<dyn ClientCertVerifier>>,
    pins: Vec<P>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<P: Pin> PinnedClient<P> {
    pub(crate) fn new(
        roots: &Arc<RootCertStore>,
        pins: &[P],
        mandatory: bool,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, VerifierBuilderError> {
        let verifier = if roots.is_empty() {
            None
        } else {
            let builder =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let builder = if mandatory {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            Some(builder.build()?)
        };
        Ok(PinnedClient {
            roots: verifier,
            pins: pins.to_vec(),
            mandatory,
            algorithms: algorithms(provider),
        })
    }
}

impl<P: Pin> ClientCertVerifier for PinnedClient<P> {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.roots.as_ref().map_or(&[], |r| r.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            roots.verify_client_cert(end_entity, intermediates, now)?;
        }
        pinned(&self.pins, end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
