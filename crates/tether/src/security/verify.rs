//! The certificate verifiers of a [`TlsContext`](super::context::TlsContext):
//! a peer's chain checked against the trust roots (if any), then its
//! certificate against the pins (if any).
//!
//! A peer certificate byte-equal to one of the trust roots is *directly
//! trusted*: it is accepted without a chain (webpki refuses a `CA:TRUE`
//! certificate as a peer's own, and that is what `openssl req -x509` makes),
//! its validity period and (for a server) its names still checked, the
//! handshake signature still verified against it. For such a certificate
//! alone, a CN is taken as its name when it has no subjectAltName.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::cert_error::CertError;

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

/// What a verifier needs to know of a certificate, read from its DER.
struct Facts {
    not_before: i64,
    not_after: i64,
    /// subjectAltName DNS names and IP addresses, as text.
    san: Vec<String>,
    /// The subject's CNs.
    cn: Vec<String>,
    subject: String,
    is_ca: bool,
}

impl Facts {
    fn of(der: &[u8]) -> Option<Facts> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        let mut san = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => san.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                            _ => None,
                        };
                        san.extend(ip.map(|ip| ip.to_string()));
                    }
                    _ => {}
                }
            }
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect();
        Some(Facts {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            san,
            cn,
            subject: cert.subject().to_string(),
            is_ca: cert.is_ca(),
        })
    }

    /// The names a directly trusted certificate is valid for: its
    /// subjectAltName, or its CN when that names nothing.
    fn direct_names(&self) -> &[String] {
        if self.san.is_empty() {
            &self.cn
        } else {
            &self.san
        }
    }
}

fn unix(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs.max(0) as u64))
}

/// Whether `presented` (a DNS name, possibly `*.` wildcarded, or an IP address)
/// names `asked`.
fn name_matches(presented: &str, asked: &ServerName<'_>) -> bool {
    match asked {
        ServerName::IpAddress(ip) => presented
            .parse::<IpAddr>()
            .is_ok_and(|p| p == IpAddr::from(*ip)),
        ServerName::DnsName(d) => {
            let asked = d.as_ref().trim_end_matches('.');
            let presented = presented.trim_end_matches('.');
            if presented.eq_ignore_ascii_case(asked) {
                return true;
            }
            match (presented.strip_prefix("*."), asked.split_once('.')) {
                (Some(rest), Some((label, asked_rest))) => {
                    !label.is_empty() && rest.contains('.') && rest.eq_ignore_ascii_case(asked_rest)
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Check a certificate that is one of the trust roots itself: its validity
/// period and, for a server, its name.
fn check_direct(
    der: &CertificateDer<'_>,
    name: Option<&ServerName<'_>>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let facts = Facts::of(der).ok_or(CertificateError::BadEncoding)?;
    let secs = now.as_secs() as i64;
    if secs < facts.not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: unix(facts.not_before),
        }
        .into());
    }
    if secs > facts.not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: unix(facts.not_after),
        }
        .into());
    }
    if let Some(name) = name {
        let names = facts.direct_names();
        if !names.iter().any(|n| name_matches(n, name)) {
            return Err(CertificateError::NotValidForNameContext {
                expected: name.to_owned(),
                presented: names.to_vec(),
            }
            .into());
        }
    }
    Ok(())
}

/// webpki's error, made to say what the user needs: the names a certificate is
/// valid for as written in it, or that a CA certificate was presented as a
/// peer's own without being trusted.
fn explain(error: rustls::Error, der: &CertificateDer<'_>) -> rustls::Error {
    let Some(facts) = Facts::of(der) else {
        return error;
    };
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            ..
        }) => CertificateError::NotValidForNameContext {
            expected,
            presented: facts.san,
        }
        .into(),
        rustls::Error::InvalidCertificate(CertificateError::Other(_)) if facts.is_ca => {
            CertError::CaNotTrusted {
                subject: facts.subject,
            }
            .into_rustls()
        }
        error => error,
    }
}

/// Whether `cert` is byte-equal to one of `roots`.
fn directly_trusted(roots: &[CertificateDer<'static>], cert: &CertificateDer<'_>) -> bool {
    roots.iter().any(|r| r.as_ref() == cert.as_ref())
}

/// Checks a server's certificate: the chain against the roots (if any), then the
/// fingerprint against the pins (if any). Pins are checked inside the handshake
/// so that nothing, not even data queued before it ended, reaches a wrong peer.
#[derive(Debug)]
pub(crate) struct PinnedServer<P> {
    roots: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// The trust roots given as certificates, for direct trust.
    direct: Vec<CertificateDer<'static>>,
    pins: Vec<P>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<P: Pin> PinnedServer<P> {
    pub(crate) fn new(
        roots: &Arc<RootCertStore>,
        direct: &[CertificateDer<'static>],
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
            direct: direct.to_vec(),
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
        if directly_trusted(&self.direct, end_entity) {
            check_direct(end_entity, Some(server_name), now)?;
        } else if let Some(roots) = &self.roots {
            roots
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| explain(e, end_entity))?;
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
    /// The trust roots given as certificates, for direct trust.
    direct: Vec<CertificateDer<'static>>,
    pins: Vec<P>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<P: Pin> PinnedClient<P> {
    pub(crate) fn new(
        roots: &Arc<RootCertStore>,
        direct: &[CertificateDer<'static>],
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
            direct: direct.to_vec(),
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
        if directly_trusted(&self.direct, end_entity) {
            check_direct(end_entity, None, now)?;
        } else if let Some(roots) = &self.roots {
            roots
                .verify_client_cert(end_entity, intermediates, now)
                .map_err(|e| explain(e, end_entity))?;
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
