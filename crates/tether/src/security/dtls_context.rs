//! [`DtlsContext`]: who we are and whom we trust on DTLS, and whether the
//! handshake exports SRTP keys.
//!
//! DTLS has two ways to trust a peer. The web's: a certificate chain checked
//! against trust roots and a name, as [`TlsContext`](crate::TlsContext) does.
//! WebRTC's: each side makes itself a self-signed certificate at start, sends
//! its fingerprint over the signalling channel, and accepts the peer whose
//! certificate has the fingerprint it was told ([`DtlsContextBuilder::pin`]).
//! A context without a certificate of its own gets a fresh self-signed one
//! (ECDSA P-256) when it is built, readable by [`DtlsContext::fingerprint`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::RootCertStore;

use super::context::ClientCerts;
use super::fingerprint::Fingerprint;
use super::identity::{certified, identity, read_file, roots};
use super::srtp::SrtpProfile;
use super::tls::tls_error;
use super::tls_error::TlsError;
use super::verify::{PinnedClient, PinnedServer};
use crate::Error;

/// The largest datagram a DTLS context produces unless told otherwise
/// ([`DtlsContextBuilder::mtu`]): what WebRTC uses, safe on paths with
/// tunnels and IPv6.
pub const DEFAULT_DTLS_MTU: usize = 1200;

/// What a DTLS 1.2 record adds to its plaintext at most: the 13-byte header,
/// an 8-byte explicit nonce and a 16-byte AEAD tag (a DTLS 1.3 record adds
/// less).
const RECORD_OVERHEAD: usize = 37;

/// Which DTLS versions a context speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DtlsVersions {
    /// DTLS 1.2 only (the default): what OpenSSL, browsers and SIP phones speak.
    #[default]
    Dtls12,
    /// DTLS 1.3 only.
    Dtls13,
    /// Either: a server answers in the version the ClientHello asks for, a
    /// client offers both and takes the server's choice.
    Both,
}

/// Builds a [`DtlsContext`]; see [`DtlsContext::builder`].
#[derive(Default)]
pub struct DtlsContextBuilder {
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    roots: Vec<CertificateDer<'static>>,
    pins: Vec<Fingerprint>,
    insecure: bool,
    client_certs: ClientCerts,
    srtp: Vec<SrtpProfile>,
    mtu: Option<usize>,
    retransmit: Option<Duration>,
    server_name: Option<String>,
    versions: DtlsVersions,
}

impl fmt::Debug for DtlsContextBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsContextBuilder")
            .field("certificate", &self.identity.is_some())
            .field("roots", &self.roots.len())
            .field("pins", &self.pins)
            .field("insecure", &self.insecure)
            .field("srtp", &self.srtp)
            .finish_non_exhaustive()
    }
}

impl DtlsContextBuilder {
    /// Our certificate chain (leaf first) and private key, in PEM. DTLS signs
    /// with ECDSA only: the key must be P-256 or P-384. Without one, the
    /// context makes itself a self-signed certificate.
    pub fn certificate_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let (chain, key) = identity(chain, key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The key matches the certificate, and it is one DTLS can sign with.
        certified(chain.clone(), &key, &provider)?;
        let signer = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(TlsError::Rustls)?;
        if signer.algorithm() != rustls::SignatureAlgorithm::ECDSA {
            return Err(TlsError::DtlsKey);
        }
        self.identity = Some((chain, key));
        Ok(self)
    }

    /// [`certificate_pem`](Self::certificate_pem) from files.
    pub fn certificate_files(
        self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let chain = read_file(chain.as_ref())?;
        let key = read_file(key.as_ref())?;
        self.certificate_pem(&chain, &key)
    }

    /// Trust roots in PEM: whom a client trusts as servers, whom a server
    /// trusts to sign client certificates. The DTLS library hands over the
    /// peer's certificate alone, without its chain, so the peer's certificate
    /// must be signed by a root directly (or be one).
    pub fn roots_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        self.roots.extend(roots(pem)?);
        Ok(self)
    }

    /// [`roots_pem`](Self::roots_pem) from a file.
    pub fn roots_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let pem = read_file(path.as_ref())?;
        self.roots_pem(&pem)
    }

    /// Accept a peer only if its certificate has this SHA-256 fingerprint (the
    /// WebRTC way: the fingerprint came over the signalling channel). With
    /// roots, the chain must verify too.
    pub fn pin(mut self, fingerprint: Fingerprint) -> Self {
        self.pins.push(fingerprint);
        self
    }

    /// **For debugging only**: as a client, accept any server certificate.
    /// The handshake signature is still checked against it, but nothing says
    /// whose it is.
    pub fn insecure_no_verification(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Whether a server asks clients for a certificate. The DTLS library asks
    /// only when it requires one, so [`ClientCerts::Optional`] is taken as
    /// [`ClientCerts::Required`].
    pub fn client_certs(mut self, policy: ClientCerts) -> Self {
        self.client_certs = policy;
        self
    }

    /// DTLS-SRTP: the SRTP profiles this side accepts. After the handshake
    /// [`TlsInfo::srtp_profile`](crate::TlsInfo::srtp_profile) names the one
    /// negotiated and [`Cx::srtp_keying_material`](crate::Cx::srtp_keying_material)
    /// returns its keys; a handshake that settles on none of these fails. The
    /// DTLS library offers and answers every profile it knows, so the list is
    /// checked against the result rather than sent.
    pub fn srtp(mut self, profiles: &[SrtpProfile]) -> Self {
        self.srtp = profiles.to_vec();
        self
    }

    /// The largest datagram to produce ([`DEFAULT_DTLS_MTU`] by default): the
    /// handshake fragments its messages to fit, and `send` refuses plaintext
    /// whose record would not fit.
    pub fn mtu(mut self, mtu: usize) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// How long a handshake flight waits for an answer before it is sent
    /// again (1 s by default; doubled at each retry).
    pub fn retransmit(mut self, first: Duration) -> Self {
        self.retransmit = Some(first);
        self
    }

    /// Which DTLS versions to speak ([`DtlsVersions::Dtls12`] by default).
    pub fn versions(mut self, versions: DtlsVersions) -> Self {
        self.versions = versions;
        self
    }

    /// The name a client verifies the server's certificate against with
    /// trust roots (by default the host or IP address it connects to).
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_string());
        self
    }

    /// Check everything and build the context.
    pub fn build(self) -> Result<DtlsContext, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let generated = self.identity.is_none();
        let (certificate, private_key) = match self.identity {
            Some((chain, key)) => (chain[0].to_vec(), key.secret_der().to_vec()),
            None => self_signed()?,
        };
        let mut roots = RootCertStore::empty();
        for root in &self.roots {
            roots
                .add(root.clone())
                .map_err(|e| TlsError::BadRoot(e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let trusts = !roots.is_empty() || !self.pins.is_empty();
        let server_check = if self.insecure {
            Some(PinnedServer::new(
                &Arc::new(RootCertStore::empty()),
                &[],
                &[],
                &provider,
            ))
        } else if trusts {
            Some(PinnedServer::new(
                &roots,
                &self.roots,
                &self.pins,
                &provider,
            ))
        } else {
            None
        }
        .transpose()
        .map_err(|e| TlsError::BadRoot(e.to_string()))?;
        let client_check = match self.client_certs {
            ClientCerts::None => None,
            _ if !trusts => return Err(TlsError::NoClientTrust),
            _ => Some(
                PinnedClient::new(&roots, &self.roots, &self.pins, true, &provider)
                    .map_err(|e| TlsError::BadRoot(e.to_string()))?,
            ),
        };
        let mtu = self.mtu.unwrap_or(DEFAULT_DTLS_MTU);
        let mut config = dimpl::Config::builder()
            .mtu(mtu)
            .require_client_certificate(client_check.is_some());
        if let Some(rto) = self.retransmit {
            config = config.flight_start_rto(rto);
        }
        let config = config.build().map_err(|e| TlsError::Dtls(e.to_string()))?;
        Ok(DtlsContext {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                fingerprint: Fingerprint::of(&certificate),
                certificate: dimpl::DtlsCertificate {
                    certificate,
                    private_key,
                },
                generated,
                server_check,
                client_check,
                srtp: self.srtp,
                max_record: mtu.saturating_sub(RECORD_OVERHEAD),
                server_name: self.server_name,
                versions: self.versions,
            }),
        })
    }
}

/// A fresh self-signed ECDSA P-256 certificate, as WebRTC endpoints make.
fn self_signed() -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Dtls(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec!["tether".to_string()])
        .map_err(|e| TlsError::Dtls(e.to_string()))?;
    // Unique serials: browsers refuse two certificates of one issuer and serial.
    let serial = ring::rand::generate::<[u8; 16]>(&ring::rand::SystemRandom::new())
        .map_err(|_| TlsError::Dtls("no randomness for a serial number".into()))?
        .expose();
    params.serial_number = Some(serial.to_vec().into());
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Dtls(e.to_string()))?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// Certificates, trust and SRTP policy for DTLS; cheap to clone.
///
/// ```
/// use tether::{DtlsContext, SrtpProfile};
///
/// // A WebRTC-style endpoint: a fresh certificate, the peer known by its
/// // fingerprint (here, a peer that is ourselves).
/// let ours = DtlsContext::builder().build()?;
/// let peer = DtlsContext::builder()
///     .pin(ours.fingerprint())
///     .srtp(&[SrtpProfile::Aes128CmSha1_80, SrtpProfile::AeadAes128Gcm])
///     .build()?;
/// assert!(ours.is_self_signed() && peer.can_connect() && !ours.can_connect());
/// # Ok::<(), tether::TlsError>(())
/// ```
#[derive(Clone)]
pub struct DtlsContext {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<dimpl::Config>,
    certificate: dimpl::DtlsCertificate,
    fingerprint: Fingerprint,
    generated: bool,
    /// How a client checks the server; `None`: it cannot connect.
    server_check: Option<PinnedServer<Fingerprint>>,
    /// How a server checks clients; `None`: it does not ask.
    client_check: Option<PinnedClient<Fingerprint>>,
    srtp: Vec<SrtpProfile>,
    max_record: usize,
    server_name: Option<String>,
    versions: DtlsVersions,
}

impl fmt::Debug for DtlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsContext")
            .field("fingerprint", &self.inner.fingerprint)
            .field("self_signed", &self.inner.generated)
            .field("can_connect", &self.can_connect())
            .field("srtp", &self.inner.srtp)
            .finish_non_exhaustive()
    }
}

impl DtlsContext {
    /// A builder: with nothing set, a server context with a fresh self-signed
    /// certificate that asks clients for none.
    pub fn builder() -> DtlsContextBuilder {
        DtlsContextBuilder::default()
    }

    /// The SHA-256 fingerprint of our certificate: what a WebRTC peer is told
    /// (in SDP's `a=fingerprint`) so it can pin it.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// True when the certificate was generated by [`build`](DtlsContextBuilder::build).
    pub fn is_self_signed(&self) -> bool {
        self.inner.generated
    }

    /// True when it can verify a server (it has roots or pins, or verification
    /// is off): only then can it connect.
    pub fn can_connect(&self) -> bool {
        self.inner.server_check.is_some()
    }

    /// The largest plaintext one `send` may carry: one record in one datagram
    /// of the context's MTU.
    pub fn max_record(&self) -> usize {
        self.inner.max_record
    }

    /// The SRTP profiles accepted (empty: SRTP keys are not wanted).
    pub fn srtp_profiles(&self) -> &[SrtpProfile] {
        &self.inner.srtp
    }

    pub(crate) fn session(&self, client: bool, now: std::time::Instant) -> dimpl::Dtls {
        let (config, cert) = (self.inner.config.clone(), self.inner.certificate.clone());
        let mut dtls = match self.inner.versions {
            DtlsVersions::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersions::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersions::Both => dimpl::Dtls::new_auto(config, cert, now),
        };
        dtls.set_active(client);
        dtls
    }

    /// The name a client verifies the server as, unless the address gives one.
    pub(crate) fn server_name(&self) -> Option<&str> {
        self.inner.server_name.as_deref()
    }

    /// Check the peer's certificate (DER) as a client (`server_name` is the
    /// name asked for) or as a server (`None`).
    pub(crate) fn verify(
        &self,
        der: Option<&[u8]>,
        server_name: Option<&str>,
    ) -> Result<(), Error> {
        let now = UnixTime::since_unix_epoch(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        match server_name {
            Some(name) => {
                let Some(check) = &self.inner.server_check else {
                    return Err(Error::TlsRole("this DTLS context cannot verify a server"));
                };
                let der = der.ok_or(Error::Dtls("the server sent no certificate".into()))?;
                let name = ServerName::try_from(name.to_string())
                    .map_err(|_| Error::ServerName(name.to_string()))?;
                check
                    .verify_server_cert(&CertificateDer::from(der), &[], &name, &[], now)
                    .map(drop)
                    .map_err(tls_error)
            }
            None => match (&self.inner.client_check, der) {
                (None, _) => Ok(()),
                (Some(_), None) => Err(Error::Dtls("the client sent no certificate".into())),
                (Some(check), Some(der)) => check
                    .verify_client_cert(&CertificateDer::from(der), &[], now)
                    .map(drop)
                    .map_err(tls_error),
            },
        }
    }
}
