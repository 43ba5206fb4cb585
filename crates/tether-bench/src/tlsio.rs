//! Certificates, rustls configurations, and the non-blocking socket (with or
//! without TLS) that the mio server and the load generator share.
#![forbid(unsafe_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// One certificate authority and one ECDSA P-256 server certificate for
/// `localhost` / 127.0.0.1, made fresh each run, and every configuration built
/// from them.
pub(crate) struct Pki {
    /// For the mio and tokio servers: what tether's `TlsContext` builds — ring,
    /// TLS 1.3 and 1.2, no client certificates, rustls' default session cache.
    pub(crate) server: Arc<rustls::ServerConfig>,
    /// For the load generator: TLS 1.3 only, no resumption (every handshake full).
    pub(crate) client: Arc<rustls::ClientConfig>,
    /// tether's server context from the same certificate and key.
    pub(crate) tether: tether::TlsContext,
    /// The CA in PEM, for the idle-memory client process.
    pub(crate) ca_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tether-bench CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");

        let tether = tether::TlsContext::builder()
            .certificate_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .and_then(|b| b.build())
            .expect("tether TLS context");
        let ca_pem = ca_cert.pem();
        let client = client_config(ca_cert.der().clone());

        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        Pki {
            server: Arc::new(server),
            client,
            tether,
            ca_pem,
        }
    }
}

/// The load generator's client configuration, trusting `ca`.
pub(crate) fn client_config(ca: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA as a root");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// The client configuration from the CA in PEM (for the idle-memory child).
pub(crate) fn client_config_pem(pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::from_pem_slice(pem.as_bytes()).expect("CA PEM");
    client_config(ca)
}

pub(crate) fn client_session(config: &Arc<rustls::ClientConfig>) -> rustls::Connection {
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(config.clone(), name).expect("client session");
    conn.set_buffer_limit(None);
    conn.into()
}

pub(crate) fn server_session(config: &Arc<rustls::ServerConfig>) -> rustls::Connection {
    let mut conn = rustls::ServerConnection::new(config.clone()).expect("server session");
    // As tether does: the application bounds what it sends, not rustls.
    conn.set_buffer_limit(None);
    conn.into()
}

/// A non-blocking stream socket.
#[derive(Debug)]
pub(crate) enum Sock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Sock {
    /// Has a non-blocking connect finished? `Ok(false)`: not yet.
    pub(crate) fn connected(&self) -> io::Result<bool> {
        let (err, peer) = match self {
            Sock::Tcp(s) => (s.take_error()?, s.peer_addr().is_ok()),
            Sock::Unix(s) => (s.take_error()?, s.peer_addr().is_ok()),
        };
        match err {
            Some(e) => Err(e),
            None => Ok(peer),
        }
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for &Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).read(buf),
            Sock::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).write_vectored(bufs),
            Sock::Unix(s) => (&*s).write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for Sock {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.register(r, t, i),
            Sock::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.reregister(r, t, i),
            Sock::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.deregister(r),
            Sock::Unix(s) => s.deregister(r),
        }
    }
}

/// A socket, with a TLS session on it or not, read and written without blocking.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) sock: Sock,
    tls: Option<Box<rustls::Connection>>,
}

impl Wire {
    pub(crate) fn new(sock: Sock, tls: Option<rustls::Connection>) -> Wire {
        Wire {
            sock,
            tls: tls.map(Box::new),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Bytes of the stream (plaintext, on TLS): `Ok(0)` at its end (on TLS,
    /// after close_notify), `WouldBlock` when nothing more is there now.
    /// On TLS this also moves the handshake on and answers what needs answers.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return (&self.sock).read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut &self.sock)? == 0 {
                // The socket ended: a clean end only after close_notify.
                return match tls.reader().read(buf) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        Err(ErrorKind::UnexpectedEof.into())
                    }
                    other => other,
                };
            }
            if let Err(e) = tls.process_new_packets() {
                let _ = flush_tls(tls, &self.sock);
                return Err(io::Error::other(e));
            }
            if tls.wants_write() {
                flush_tls(tls, &self.sock)?;
            }
        }
    }

    /// Plain: one write, as far as the kernel takes it (the caller queues the
    /// rest). TLS: everything goes to the session, which writes what the kernel
    /// takes and holds the rest for [`flush`](Self::flush).
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return (&self.sock).write(buf);
        };
        tls.writer().write_all(buf)?;
        flush_tls(tls, &self.sock)?;
        Ok(buf.len())
    }

    /// Write what the TLS session holds; true once nothing is left.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(tls, &self.sock),
            None => Ok(true),
        }
    }

    /// True while the TLS session holds records to write.
    pub(crate) fn holds_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Queue close_notify (TLS) and write what can be written; the caller
    /// sends the FIN (`sock.shutdown_write`) once [`flush`](Self::flush) is done.
    pub(crate) fn close_notify(&mut self) -> io::Result<bool> {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
        }
        self.flush()
    }
}

fn flush_tls(tls: &mut rustls::Connection, sock: &Sock) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut &*sock) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
