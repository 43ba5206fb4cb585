//! Our identity: a certificate chain and key read from PEM and checked against
//! each other, kept where it can be replaced while connections use it.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::tls_error::TlsError;

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.display().to_string(),
        error,
    })
}

pub(super) fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            detail: e.to_string(),
        })
}

/// Trust roots from PEM: at least one certificate.
pub(super) fn roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let roots = certificates(pem, "trust roots")?;
    if roots.is_empty() {
        return Err(TlsError::BadPem {
            what: "trust roots",
            detail: "no CERTIFICATE section found".into(),
        });
    }
    Ok(roots)
}

/// A chain and key from PEM.
pub(super) fn identity(
    chain: &[u8],
    key: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(chain, "certificate chain")?;
    if chain.is_empty() {
        return Err(TlsError::EmptyChain);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        e => TlsError::BadPem {
            what: "private key",
            detail: e.to_string(),
        },
    })?;
    Ok((chain, key))
}

/// A chain and key checked against each other (now, not at the first handshake).
pub(super) fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    CertifiedKey::from_der(chain, key.clone_key(), provider)
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
            e => TlsError::Rustls(e),
        })
}

/// A certificate that can be replaced while connections use it: each handshake
/// takes the one current when it starts.
pub(super) type Slot = Arc<RwLock<Arc<CertifiedKey>>>;

pub(super) fn current(slot: &Slot) -> Arc<CertifiedKey> {
    // A panic while holding the lock cannot leave a half-written Arc.
    slot.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The server's certificate, from its slot.
#[derive(Debug)]
pub(super) struct ServerCert(pub(super) Slot);

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(current(&self.0))
    }
}

/// The client's certificate for mutual TLS, from its slot, or none.
#[derive(Debug)]
pub(super) struct ClientCert(pub(super) Option<Slot>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.as_ref().map(current)
    }

    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}
