//! [`TlsContext`]: who we are, whom we trust, what we negotiate.
//!
//! One context serves both roles: its certificate (if any) is what a server
//! presents, or what a client presents for mutual TLS; its trust roots and pins
//! (if any) are what a client checks the server against, or what a server checks
//! client certificates against. Everything is checked when the context is built,
//! so a bad file is an error at start-up, not at the first connection.
//!
//! Verification is on by default: a client context needs trust roots or a
//! pinned fingerprint, and nothing falls back to plaintext. Only the explicit,
//! debugging-only `insecure_no_verification` turns it off.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor};
use rustls::RootCertStore;

use super::fingerprint::Fingerprint;
use super::identity::{
    certified, current, identity, read_file, roots, ClientCert, ServerCert, Slot,
};
use super::tls_error::TlsError;
use super::verify::{PinnedClient, PinnedServer};

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

/// What a context presents when a server asks it, as a client, for a
/// certificate.
#[derive(Default)]
enum ClientIdentity {
    /// The context's own certificate, if it has one.
    #[default]
    Same,
    /// A certificate of its own.
    Own(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    /// None.
    Nothing,
}

/// Builds a [`TlsContext`]; see [`TlsContext::builder`].
#[derive(Default)]
pub struct TlsContextBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    client_identity: ClientIdentity,
    roots: Vec<CertificateDer<'static>>,
    /// Trust anchors that come without a certificate (the platform's store).
    anchors: Vec<TrustAnchor<'static>>,
    pins: Vec<Fingerprint>,
    client_certs: ClientCerts,
    alpn: Vec<Vec<u8>>,
    versions: TlsVersions,
    /// A client that accepts any server certificate.
    insecure: bool,
}

impl fmt::Debug for TlsContextBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContextBuilder")
            .field("chain", &self.chain.len())
            .field("key", &self.key.is_some())
            .field("roots", &(self.roots.len() + self.anchors.len()))
            .field("pins", &self.pins)
            .field("client_certs", &self.client_certs)
            .field("versions", &self.versions)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl TlsContextBuilder {
    /// Our certificate chain (leaf first) and its private key, in PEM (PKCS#8,
    /// PKCS#1 or SEC1 keys): what a server presents, and what a client presents
    /// for mutual TLS unless [`client_certificate_pem`](Self::client_certificate_pem)
    /// or [`no_client_certificate`](Self::no_client_certificate) says otherwise.
    pub fn certificate_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let (chain, key) = identity(chain, key)?;
        self.chain = chain;
        self.key = Some(key);
        Ok(self)
    }

    /// The certificate chain and key a client presents for mutual TLS, when it
    /// is not the one the context serves with: one context can then serve as
    /// one identity and connect as another.
    ///
    /// ```
    /// # let (chain, key) = (include_bytes!("../../tests/data/cert.pem"), include_bytes!("../../tests/data/key.pem"));
    /// # let (client_chain, client_key) = (chain, key);
    /// use tether::TlsContext;
    ///
    /// let ctx = TlsContext::builder()
    ///     .certificate_pem(chain, key)? // what it serves with
    ///     .client_certificate_pem(client_chain, client_key)? // what it connects with
    ///     .roots_pem(chain)?
    ///     .build()?;
    /// # Ok::<(), tether::TlsError>(())
    /// ```
    pub fn client_certificate_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let (chain, key) = identity(chain, key)?;
        self.client_identity = ClientIdentity::Own(chain, key);
        Ok(self)
    }

    /// [`client_certificate_pem`](Self::client_certificate_pem) from files.
    ///
    /// ```no_run
    /// use tether::TlsContext;
    ///
    /// let ctx = TlsContext::builder()
    ///     .roots_file("ca.pem")?
    ///     .client_certificate_files("client.pem", "client.key")?
    ///     .build()?;
    /// # Ok::<(), tether::TlsError>(())
    /// ```
    pub fn client_certificate_files(
        self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let chain = read_file(chain.as_ref())?;
        let key = read_file(key.as_ref())?;
        self.client_certificate_pem(&chain, &key)
    }

    /// Present no certificate as a client, even when the context has one to
    /// serve with: a server that asks for one gets none (and refuses the
    /// connection if it requires one).
    ///
    /// ```
    /// # let (chain, key) = (include_bytes!("../../tests/data/cert.pem"), include_bytes!("../../tests/data/key.pem"));
    /// use tether::TlsContext;
    ///
    /// let ctx = TlsContext::builder()
    ///     .certificate_pem(chain, key)?
    ///     .roots_pem(chain)?
    ///     .no_client_certificate()
    ///     .build()?;
    /// # Ok::<(), tether::TlsError>(())
    /// ```
    pub fn no_client_certificate(mut self) -> Self {
        self.client_identity = ClientIdentity::Nothing;
        self
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
        self.roots.extend(roots(pem)?);
        Ok(self)
    }

    /// [`roots_pem`](Self::roots_pem) from a file.
    pub fn roots_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let pem = read_file(path.as_ref())?;
        self.roots_pem(&pem)
    }

    /// The platform's trust roots, as a browser or curl uses them: the
    /// system's store (on Linux, the CA bundle under `/etc/ssl`; `SSL_CERT_FILE`
    /// and `SSL_CERT_DIR` override it), or, when that is empty or cannot be
    /// read, the Mozilla roots built into tether. May be combined with
    /// [`roots_pem`](Self::roots_pem).
    ///
    /// ```
    /// use tether::TlsContext;
    ///
    /// let ctx = TlsContext::builder().system_roots().build()?;
    /// assert!(ctx.root_count() > 0);
    /// # Ok::<(), tether::TlsError>(())
    /// ```
    pub fn system_roots(mut self) -> Self {
        let mut store = RootCertStore::empty();
        let (added, _unparsable) =
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if added == 0 {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        self.anchors.extend(store.roots);
        self
    }

    /// Accept a peer only if its certificate has this fingerprint. With roots,
    /// the chain must verify too; without, the pin alone is the trust (the
    /// handshake signature is still checked against the pinned certificate).
    pub fn pin(mut self, fingerprint: Fingerprint) -> Self {
        self.pins.push(fingerprint);
        self
    }

    /// **For debugging only**: as a client, accept any server certificate,
    /// whoever signed it, for whatever name, however expired; trust roots and
    /// pins are ignored. The handshake signature is still checked against the
    /// certificate presented, but nothing says whose it is, so anyone in the
    /// path can read and change the connection. This is curl's `-k`.
    ///
    /// ```
    /// use tether::TlsContext;
    ///
    /// // No roots, no pins: without this, `TlsError::Empty`.
    /// assert!(TlsContext::builder().build().is_err());
    /// let ctx = TlsContext::builder().insecure_no_verification().build()?;
    /// assert_eq!(ctx.root_count(), 0);
    /// # Ok::<(), tether::TlsError>(())
    /// ```
    pub fn insecure_no_verification(mut self) -> Self {
        self.insecure = true;
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
        roots.extend(self.anchors.iter().cloned());
        let roots = Arc::new(roots);
        let trusts = !roots.is_empty() || !self.pins.is_empty();
        if self.key.is_none() && !trusts && !self.insecure {
            return Err(TlsError::Empty);
        }
        let identity: Option<Slot> = match &self.key {
            Some(key) if !self.chain.is_empty() => Some(Arc::new(RwLock::new(certified(
                self.chain.clone(),
                key,
                &provider,
            )?))),
            _ => None,
        };
        let server = match &identity {
            Some(slot) => {
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
                                &self.roots,
                                &self.pins,
                                policy == ClientCerts::Required,
                                &provider,
                            )
                            .map_err(|e| TlsError::BadRoot(e.to_string()))?,
                        ))
                    }
                };
                let mut config = builder.with_cert_resolver(Arc::new(ServerCert(slot.clone())));
                config.alpn_protocols = self.alpn.clone();
                Some(Arc::new(config))
            }
            None => None,
        };
        let client = if trusts || self.insecure {
            // Insecure: no roots and no pins, so any certificate is accepted;
            // the handshake signature is still verified against it.
            let verifier = if self.insecure {
                PinnedServer::new(&Arc::new(RootCertStore::empty()), &[], &[], &provider)
            } else {
                PinnedServer::new(&roots, &self.roots, &self.pins, &provider)
            }
            .map_err(|e| TlsError::BadRoot(e.to_string()))?;
            let presented = match &self.client_identity {
                ClientIdentity::Same => identity.clone(),
                ClientIdentity::Own(chain, key) => Some(Arc::new(RwLock::new(certified(
                    chain.clone(),
                    key,
                    &provider,
                )?))),
                ClientIdentity::Nothing => None,
            };
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(TlsError::Rustls)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_client_cert_resolver(Arc::new(ClientCert(presented)));
            config.alpn_protocols = self.alpn;
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(TlsContext {
            inner: Arc::new(Inner {
                client,
                server,
                identity,
                provider,
                root_count: roots.len(),
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
    /// What the server presents (and the client, unless it has its own).
    identity: Option<Slot>,
    provider: Arc<CryptoProvider>,
    root_count: usize,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("can_connect", &self.inner.client.is_some())
            .field("can_serve", &self.inner.server.is_some())
            .field("fingerprint", &self.fingerprint())
            .field("roots", &self.inner.root_count)
            .finish()
    }
}

impl TlsContext {
    /// Start building a context.
    pub fn builder() -> TlsContextBuilder {
        TlsContextBuilder::default()
    }

    /// The fingerprint of our own certificate (the one a server presents now),
    /// if we have one.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        let slot = self.inner.identity.as_ref()?;
        current(slot).cert.first().map(|leaf| Fingerprint::of(leaf))
    }

    /// How many trust roots the context checks peers against (certificates
    /// given with [`roots_pem`](TlsContextBuilder::roots_pem) and the
    /// platform's, from [`system_roots`](TlsContextBuilder::system_roots)).
    ///
    /// ```
    /// # let chain = include_bytes!("../../tests/data/cert.pem");
    /// use tether::TlsContext;
    ///
    /// let ctx = TlsContext::builder().roots_pem(chain)?.build()?;
    /// assert_eq!(ctx.root_count(), 1);
    /// # Ok::<(), tether::TlsError>(())
    /// ```
    pub fn root_count(&self) -> usize {
        self.inner.root_count
    }

    /// Replace the certificate the context serves with (and presents as a
    /// client, unless it was built with a client certificate of its own or
    /// none), while it is in use: handshakes that start afterwards present the
    /// new one; connections already made keep theirs, and so does a client that
    /// resumes a session made before (resumption sends no certificate). The new
    /// chain and key are checked as at build time; on an error nothing changes.
    ///
    /// ```
    /// # let (chain, key) = (include_bytes!("../../tests/data/cert.pem"), include_bytes!("../../tests/data/key.pem"));
    /// # let (renewed_chain, renewed_key) = (chain, key);
    /// use tether::{TlsContext, TlsError};
    ///
    /// let ctx = TlsContext::builder().certificate_pem(chain, key)?.build()?;
    /// ctx.set_certificate(renewed_chain, renewed_key)?;
    /// assert!(matches!(ctx.set_certificate(b"garbage", key), Err(TlsError::EmptyChain)));
    /// # Ok::<(), tether::TlsError>(())
    /// ```
    pub fn set_certificate(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let slot = self
            .inner
            .identity
            .as_ref()
            .ok_or(TlsError::NoCertificate)?;
        let (chain, key) = identity(chain_pem, key_pem)?;
        let new = certified(chain, &key, &self.inner.provider)?;
        *slot.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    pub(crate) fn client_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.inner.client.as_ref()
    }

    pub(crate) fn server_config(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.inner.server.as_ref()
    }
}
