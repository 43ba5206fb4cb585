//! TLS on rustls, layered on a stream transport.
//!
//! The session sits between the socket and the user: ciphertext moves between
//! the socket and rustls here; plaintext moves between rustls and the user's
//! sends and recvs in the driver, through the same paths as a plain stream.

use std::io::{self, ErrorKind, Read as _, Write as _};

use rustls::pki_types::ServerName;
use tether_proto::Reason;

use crate::security::cert_error::CertError;
use crate::security::context::TlsContext;
use crate::security::fingerprint::Fingerprint;
use crate::security::info::{TlsInfo, TlsVersion};
use crate::transport::send_queue::SendQueue;
use crate::transport::{Read, Stream};
use crate::Error;

/// One TLS session.
pub(crate) struct Tls {
    conn: rustls::Connection,
    /// Plaintext sent before a StartTLS, still to go out ahead of the handshake.
    prefix: Option<Box<SendQueue>>,
    /// Sends handed to rustls whose bytes are not all written yet.
    pending_sends: usize,
    pending_bytes: usize,
    /// close_notify is queued: the FIN follows once it is written.
    fin: bool,
}

/// What a flush achieved.
pub(crate) enum Flushed {
    /// More to write, or the handshake is not over.
    Pending,
    /// Everything handed over so far is on the wire.
    Done {
        /// Sends completed, for their `on_sent`.
        sends: usize,
        /// Their bytes, for the lifecycle's accounting.
        bytes: usize,
        /// close_notify went out: send the FIN.
        fin: bool,
    },
}

/// Plaintext from before a StartTLS that a flush wrote.
#[derive(Default)]
pub(crate) struct Prefix {
    /// Sends completed.
    pub(crate) sends: usize,
    /// Bytes written.
    pub(crate) bytes: usize,
}

/// Adapts a stream to the `Read`/`Write` rustls expects; the flag records a
/// short write, after which the socket buffer is full.
struct Wire<'a>(&'a Stream, bool);

impl io::Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl io::Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 |= n < buf.len();
        Ok(n)
    }

    /// rustls hands over every queued record at once: one system call for
    /// all of them, not one per record.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if let [one] = bufs {
            return self.write(one);
        }
        let n = socket2::SockRef::from(self.0).send_vectored(bufs)?;
        self.1 |= n < bufs.iter().map(|b| b.len()).sum();
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Tls {
    fn new(mut conn: rustls::Connection) -> Tls {
        // tether's own contract is that send accepts everything (memory is the
        // caller's to bound), so rustls must not refuse bytes either.
        conn.set_buffer_limit(None);
        Tls {
            conn,
            prefix: None,
            pending_sends: 0,
            pending_bytes: 0,
            fin: false,
        }
    }

    /// A client session; `server_name` is sent as SNI and verified against the
    /// server's certificate (a DNS name or an IP address).
    pub(crate) fn client(ctx: &TlsContext, server_name: &str) -> Result<Tls, Error> {
        let config = ctx.client_config().ok_or(Error::TlsRole(
            "this TLS context cannot connect: it has no trust roots or pins",
        ))?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| Error::ServerName(server_name.to_string()))?;
        let conn = rustls::ClientConnection::new(config.clone(), name).map_err(tls_error)?;
        Ok(Tls::new(conn.into()))
    }

    /// A server session.
    pub(crate) fn server(ctx: &TlsContext) -> Result<Tls, Error> {
        let config = ctx.server_config().ok_or(Error::TlsRole(
            "this TLS context cannot serve: it has no certificate",
        ))?;
        let conn = rustls::ServerConnection::new(config.clone()).map_err(tls_error)?;
        Ok(Tls::new(conn.into()))
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Plaintext queued on the socket before a StartTLS goes out first.
    pub(crate) fn set_prefix(&mut self, prefix: Option<Box<SendQueue>>) {
        self.prefix = prefix;
    }

    /// Bytes the application read ahead of the handshake (StartTLS): they are
    /// the start of the peer's handshake and go to rustls first.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            self.conn.read_tls(&mut data).map_err(Error::Io)?;
            self.conn.process_new_packets().map_err(tls_error)?;
        }
        Ok(())
    }

    /// Hand user bytes to rustls; `sends` is how many `send` calls they are.
    pub(crate) fn queue(&mut self, data: &[u8], sends: usize) {
        // Cannot fail: the buffer limit is off and the writer only buffers.
        let _ = self.conn.writer().write_all(data);
        self.pending_sends += sends;
        self.pending_bytes += data.len();
    }

    /// Queue close_notify; the FIN follows once it is written.
    pub(crate) fn close_notify(&mut self) {
        self.conn.send_close_notify();
        self.fin = true;
    }

    /// Write what is ready for the wire: plaintext from before a StartTLS, then
    /// records. Returns what of the plaintext prefix went out alongside the
    /// result. Until the handshake is `secured` (its end accepted by the
    /// driver), the records written are the handshake's and no send completes.
    /// The caller flushes only once the transport is up.
    pub(crate) fn flush(
        &mut self,
        stream: &Stream,
        secured: bool,
    ) -> (Prefix, io::Result<Flushed>) {
        let mut prefix_sent = Prefix::default();
        if let Some(q) = self.prefix.as_mut() {
            while !q.pending().is_empty() {
                let asked = q.pending().len();
                match stream.write(q.pending()) {
                    Ok(n) => {
                        prefix_sent.sends += q.advance(n);
                        prefix_sent.bytes += n;
                        if n < asked {
                            return (prefix_sent, Ok(Flushed::Pending));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        return (prefix_sent, Ok(Flushed::Pending))
                    }
                    Err(e) => return (prefix_sent, Err(e)),
                }
            }
            prefix_sent.sends += q.advance(0);
            self.prefix = None;
        }
        let mut wire = Wire(stream, false);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut wire) {
                // Full: the next writable edge comes when there is room.
                Ok(_) if wire.1 => return (prefix_sent, Ok(Flushed::Pending)),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return (prefix_sent, Ok(Flushed::Pending))
                }
                Err(e) => return (prefix_sent, Err(e)),
            }
        }
        if !secured {
            return (prefix_sent, Ok(Flushed::Pending));
        }
        let done = Flushed::Done {
            sends: std::mem::take(&mut self.pending_sends),
            bytes: std::mem::take(&mut self.pending_bytes),
            fin: std::mem::take(&mut self.fin),
        };
        (prefix_sent, Ok(done))
    }

    /// Move the handshake on with whatever the socket has. Returns an error if
    /// the handshake failed (its alert, if any, is queued for `flush`).
    pub(crate) fn handshake(&mut self, stream: &Stream, readable: &mut bool) -> Result<(), Error> {
        while self.conn.is_handshaking() && *readable {
            match self.conn.read_tls(&mut Wire(stream, false)) {
                Ok(0) => {
                    return Err(Error::Io(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    )))
                }
                Ok(_) => {
                    self.conn.process_new_packets().map_err(tls_error)?;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => *readable = false,
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(())
    }

    /// Read plaintext for the user, pulling records from the socket as needed.
    /// The end of the stream is clean only after the peer's close_notify: a FIN
    /// without one is a truncation, reported as a failure.
    pub(crate) fn read(&mut self, stream: &Stream, readable: &mut bool, out: &mut [u8]) -> Read {
        loop {
            match self.conn.reader().read(out) {
                Ok(0) => return Read::Eof,
                Ok(n) => return Read::Data(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Read::Failed(Error::Io(e)),
            }
            if !*readable {
                return Read::Empty;
            }
            match self.conn.read_tls(&mut Wire(stream, false)) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    *readable = false;
                    return Read::Empty;
                }
                Err(e) => return Read::Failed(Error::Io(e)),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Read::Failed(tls_error(e));
            }
        }
    }

    /// Read records without a recv, until one carries plaintext (which then
    /// waits for a recv) or the socket has no more. Used once the peer's FIN is
    /// known, so that its close_notify is seen without a recv.
    pub(crate) fn pull(&mut self, stream: &Stream, readable: &mut bool) -> Result<(), Error> {
        while *readable && self.buffered_plaintext() == 0 {
            match self.conn.read_tls(&mut Wire(stream, false)) {
                Ok(0) => break,
                Ok(_) => {
                    self.conn.process_new_packets().map_err(tls_error)?;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => *readable = false,
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(())
    }

    /// True when rustls has records to write (alerts, tickets, key updates).
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Decrypted bytes the user has not taken.
    pub(crate) fn buffered_plaintext(&mut self) -> usize {
        self.conn
            .process_new_packets()
            .map_or(0, |state| state.plaintext_bytes_to_read())
    }

    /// Whether the peer's close_notify has arrived.
    pub(crate) fn peer_closed(&mut self) -> bool {
        self.conn
            .process_new_packets()
            .is_ok_and(|state| state.peer_has_closed())
    }

    /// What the handshake settled.
    pub(crate) fn info(&self) -> TlsInfo {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
            _ => TlsVersion::Tls13,
        };
        let server_name = match &self.conn {
            rustls::Connection::Server(s) => s.server_name().map(str::to_string),
            rustls::Connection::Client(_) => None,
        };
        TlsInfo {
            version,
            cipher_suite: self
                .conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown"),
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            peer_fingerprint: self
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Fingerprint::of(leaf)),
            server_name,
            srtp_profile: None,
        }
    }
}

/// The reason a stream ends when reading it failed. A fatal alert that only a
/// handshake can cause is the handshake's failure even when it comes after our
/// side of the handshake was over: in TLS 1.3 a client has finished (and had
/// `on_tls_ready`) before the server has judged its certificate, and hears of a
/// refusal only as the alert that follows. Anything else is `Lost`.
pub(crate) fn read_failure(error: &Error) -> Reason {
    use rustls::AlertDescription as A;
    match error {
        Error::Tls(rustls::Error::AlertReceived(
            A::HandshakeFailure
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::NoApplicationProtocol,
        )) => Reason::TlsHandshakeFailed,
        _ => Reason::Lost,
    }
}

/// A rustls error as the crate reports it: a refused certificate as
/// [`Error::Certificate`], in words; anything else as it is.
pub(crate) fn tls_error(e: rustls::Error) -> Error {
    match CertError::from_rustls(&e) {
        Some(cert) => Error::Certificate(cert),
        None => Error::Tls(e),
    }
}

/// The error of a peer that ended without close_notify.
pub(crate) fn truncated() -> Error {
    Error::Io(io::Error::new(
        ErrorKind::UnexpectedEof,
        "the peer closed the connection without sending TLS close_notify",
    ))
}
