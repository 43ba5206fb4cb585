//! [`TlsContext`]: who we are, whom we trust, what we negotiate.
//!
//! One context serves both roles: its certificate (if any) is what a server
//! presents, or what a client presents for mutual TLS; its trust roots and pins
//! (if any) are what a client checks the server against, or what a server checks
//! client certificates against. Everything is checked when the context is built,
//! so a bad file is an error at start-up, not at the first connection.
//!
//! Verification is on by default and cannot be turned off: a client context
//! needs trust roots or a pinned fingerprint, and nothing falls back to plaintext.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::verify::{Pin, PinnedClient, PinnedServer};

/// The SHA-256 fingerprint of a certificate (of its DER bytes), written the way
/// `openssl x509 -noout -fingerprint -sha256` prints it.
///
/// ```
/// use tether::Fingerprint;
///
/// let fp = Fingerprint::of(b"not really a certificate");
/// let text = fp.to_string(); // "3A:0F:..." — 32 bytes, colon-separated
/// assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
/// assert_eq!(fp.to_hex().parse::<Fingerprint>().unwrap(), fp); // plain hex too
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Lowercase hex without separators, for JSON and logs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Pin for Fingerprint {
    fn of(der: &[u8]) -> Fingerprint {
        Fingerprint::of(der)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;

    /// 64 hex digits, with or without colons, either case.
    fn from_str(s: &str) -> Result<Fingerprint, TlsError> {
        let bad = || TlsError::BadFingerprint(s.to_string());
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}

/// Why a [`TlsContext`] could not be built. Each message names the problem and
/// the input it concerns.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    Read {
        /// The file.
        path: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// Not PEM, or PEM that does not hold what it should.
    BadPem {
        /// What was being read ("certificate chain", "private key", "trust roots").
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The certificate chain holds no certificate.
    EmptyChain,
    /// No private key was found.
    NoPrivateKey,
    /// The private key does not belong to the first certificate of the chain.
    KeyMismatch,
    /// A certificate could not be used as a trust root.
    BadRoot(String),
    /// The context can neither serve (no certificate) nor connect (no roots, no pins).
    Empty,
    /// Client certificates were required or allowed without any roots or pins
    /// to check them against.
    NoClientTrust,
    /// Not a SHA-256 fingerprint.
    BadFingerprint(String),
    /// An ALPN protocol name that TLS cannot carry (empty, or over 255 bytes).
    BadAlpn(String),
    /// rustls refused the configuration.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, error } => write!(f, "cannot read {path}: {error}"),
            TlsError::BadPem { what, detail } => write!(f, "not valid PEM in the {what}: {detail}"),
            TlsError::EmptyChain => f.write_str("the certificate chain holds no certificate"),
            TlsError::NoPrivateKey => f.write_str("no private key found in the key PEM"),
            TlsError::KeyMismatch => {
                f.write_str("the private key does not match the certificate's public key")
            }
            TlsError::BadRoot(why) => write!(f, "a trust root was refused: {why}"),
            TlsError::Empty => f.write_str(
                "a TLS context needs a certificate (to serve) or trust roots or pins (to connect)",
            ),
            TlsError::NoClientTrust => {
                f.write_str("client certificates cannot be checked without trust roots or pins")
            }
            TlsError::BadFingerprint(s) => {
                write!(
                    f,
                    "{s:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                )
            }
            TlsError::BadAlpn(p) => write!(
                f,
                "{p:?} is not a valid ALPN protocol name (1 to 255 bytes)"
            ),
            TlsError::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { error, .. } => Some(error),
            TlsError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether a server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientCerts {
    /// Do not ask (the default).
    #[default]
    None,
    /// Ask; a client without one is still served, one with a bad one is not.
    Optional,
    /// A client without a valid certificate is refused in the handshake.
    Required,
}

/// Which TLS versions a context speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsVersions {
    /// TLS 1.3 and 1.2 (the default).
    #[default]
    Both,
    /// TLS 1.3 only.
    Tls13,
    /// TLS 1.2 only, for peers that speak nothing newer.
    Tls12,
}

/// Builds a [`TlsContext`]; see [`TlsContext::builder`].
#[derive(Default)]
pub struct TlsContextBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    pins: Vec<Fingerprint>,
    client_certs: ClientCerts,
    alpn: Vec<Vec<u8>>,
    versions: TlsVersions,
}

impl fmt::Debug for TlsContextBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContextBuilder")
            .field("chain", &self.chain.len())
            .field("key", &self.key.is_some())
            .field("roots", &self.roots.len())
            .field("pins", &self.pins)
            .field("client_certs", &self.client_certs)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.display().to_string(),
        error,
    })
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            detail: e.to_string(),
        })
}

impl TlsContextBuilder {
    /// Our certificate chain (leaf first) and its private key, in PEM (PKCS#8,
    /// PKCS#1 or SEC1 keys).
    pub fn certificate_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        self.chain = certificates(chain, "certificate chain")?;
        if self.chain.is_empty() {
            return Err(TlsError::EmptyChain);
        }
        self.key = Some(PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
            e => TlsError::BadPem {
                what: "private key",
                detail: e.to_string(),
            },
        })?);
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

    /// Trust roots (CA certificates) in PEM: whom a client trusts as servers,
    /// whom a server trusts to sign client certificates. May be called again to
    /// add more.
    pub fn roots_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        let roots = certificates(pem, "trust roots")?;
        if roots.is_empty() {
            return Err(TlsError::BadPem {
                what: "trust roots",
                detail: "no CERTIFICATE section found".into(),
            });
        }
        self.roots.extend(roots);
        Ok(self)
    }

    /// [`roots_pem`](Self::roots_pem) from a file.
    pub fn roots_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let pem = read_file(path.as_ref())?;
        self.roots_pem(&pem)
    }

    /// Accept a peer only if its certificate has this fingerprint. With roots,
    /// the chain must verify too; without, the pin alone is the trust (the
    /// handshake signature is still checked against the pinned certificate).
    pub fn pin(mut self, fingerprint: Fingerprint) -> Self {
        self.pins.push(fingerprint);
        self
    }

    /// Whether a server asks clients for certificates.
    pub fn client_certs(mut self, policy: ClientCerts) -> Self {
        self.client_certs = policy;
        self
    }

    /// ALPN protocols, most preferred first (`["h2", "http/1.1"]`).
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: &[P]) -> Result<Self, TlsError> {
        for p in protocols {
            let p = p.as_ref();
            if p.is_empty() || p.len() > 255 {
                return Err(TlsError::BadAlpn(String::from_utf8_lossy(p).into_owned()));
            }
            self.alpn.push(p.to_vec());
        }
        Ok(self)
    }

    /// Which TLS versions to speak.
    pub fn versions(mut self, versions: TlsVersions) -> Self {
        self.versions = versions;
        self
    }

    /// Check everything and build the context.
    pub fn build(self) -> Result<TlsContext, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.versions {
            TlsVersions::Both => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersions::Tls13 => &[&rustls::version::TLS13],
            TlsVersions::Tls12 => &[&rustls::version::TLS12],
        };
        let mut roots = RootCertStore::empty();
        for root in &self.roots {
            roots
                .add(root.clone())
                .map_err(|e| TlsError::BadRoot(e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let trusts = !roots.is_empty() || !self.pins.is_empty();
        if self.key.is_none() && !trusts {
            return Err(TlsError::Empty);
        }
        let identity = match (&self.key, self.chain.first()) {
            (Some(key), Some(leaf)) => {
                // Checks the key against the leaf now, not at the first handshake.
                let certified = rustls::sign::CertifiedKey::from_der(
                    self.chain.clone(),
                    key.clone_key(),
                    &provider,
                )
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
                    e => TlsError::Rustls(e),
                })?;
                Some((Arc::new(certified), Fingerprint::of(leaf)))
            }
            _ => None,
        };
        let server = match &identity {
            Some((certified, _)) => {
                let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(TlsError::Rustls)?;
                let builder = match self.client_certs {
                    ClientCerts::None => builder.with_no_client_auth(),
                    policy => {
                        if !trusts {
                            return Err(TlsError::NoClientTrust);
                        }
                        builder.with_client_cert_verifier(Arc::new(
                            PinnedClient::new(
                                &roots,
                                &self.pins,
                                policy == ClientCerts::Required,
                                &provider,
                            )
                            .map_err(|e| TlsError::BadRoot(e.to_string()))?,
                        ))
                    }
                };
                let mut config = builder.with_cert_resolver(Arc::new(
                    rustls::sign::SingleCertAndKey::from(certified.clone()),
                ));
                config.alpn_protocols = self.alpn.clone();
                Some(Arc::new(config))
            }
            None => None,
        };
        let client = if trusts {
            let verifier = PinnedServer::new(&roots, &self.pins, &provider)
                .map_err(|e| TlsError::BadRoot(e.to_string()))?;
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(TlsError::Rustls)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier));
            let mut config = match (&self.key, self.chain.is_empty()) {
                (Some(key), false) => builder
                    .with_client_auth_cert(self.chain.clone(), key.clone_key())
                    .map_err(TlsError::Rustls)?,
                _ => builder.with_no_client_auth(),
            };
            config.alpn_protocols = self.alpn;
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(TlsContext {
            inner: Arc::new(Inner {
                client,
                server,
                fingerprint: identity.map(|(_, fp)| fp),
            }),
        })
    }
}

/// Certificates, trust and policies for TLS connections; cheap to clone.
///
/// ```
/// # let (chain, key) = (include_bytes!("../../tests/data/cert.pem"), include_bytes!("../../tests/data/key.pem"));
/// use tether::{ClientCerts, TlsContext};
///
/// let server = TlsContext::builder()
///     .certificate_pem(chain, key)?
///     .alpn(&["h2", "http/1.1"])?
///     .build()?;
/// assert!(server.fingerprint().is_some());
///
/// let client = TlsContext::builder().roots_pem(chain)?.build()?;
/// assert!(client.fingerprint().is_none());
///
/// let broken = TlsContext::builder().certificate_pem(b"garbage", key);
/// assert!(broken.is_err());
/// # Ok::<(), tether::TlsError>(())
/// ```
#[derive(Clone)]
pub struct TlsContext {
    inner: Arc<Inner>,
}

struct Inner {
    client: Option<Arc<rustls::ClientConfig>>,
    server: Option<Arc<rustls::ServerConfig>>,
    fingerprint: Option<Fingerprint>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("can_connect", &self.inner.client.is_some())
            .field("can_serve", &self.inner.server.is_some())
            .field("fingerprint", &self.inner.fingerprint)
            .finish()
    }
}

impl TlsContext {
    /// Start building a context.
    pub fn builder() -> TlsContextBuilder {
        TlsContextBuilder::default()
    }

    /// The fingerprint of our own certificate, if we have one.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.inner.fingerprint
    }

    pub(crate) fn client_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.inner.client.as_ref()
    }

    pub(crate) fn server_config(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.inner.server.as_ref()
    }
}
