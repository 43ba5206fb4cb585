//! The errors of the API: misuse returned at the call, failures carried by
//! `Closed`.

use std::fmt;
use std::io;

use tether_proto::{AddrError, Refused};

use crate::id::SocketId;
use crate::transport::kind::Transport;

/// An operation the caller may not ask for now: a bug in the calling code, made
/// visible where it happens. The socket is left exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// The id names a socket that is closed (its `on_closed` has run) or never
    /// existed in this loop.
    StaleSocket(SocketId),
    /// The socket's state does not allow the operation (send after shutdown,
    /// recv on a listener, bind twice, ...).
    Refused(Refused),
    /// A recv is already waiting for data; one `on_received` answers one recv.
    RecvPending,
    /// A recv of zero bytes can never be answered.
    ZeroLengthRecv,
    /// An Exact recv larger than [`MAX_EXACT_RECV`](crate::MAX_EXACT_RECV): the
    /// bytes would have to be held in memory all at once.
    RecvTooLarge(usize),
    /// The operation has no meaning on this transport (shutdown or listen on
    /// UDP, an Exact recv of datagrams, send_to on a stream).
    Unsupported {
        /// What was asked.
        op: &'static str,
        /// The socket's transport.
        transport: Transport,
    },
    /// `send` on a UDP socket whose peer was never fixed by `connect`.
    NoPeer,
    /// A datagram longer than the largest UDP payload to that address family
    /// (65,507 bytes for IPv4, 65,527 for IPv6).
    DatagramTooLarge {
        /// The datagram's length.
        len: usize,
        /// The largest possible.
        max: usize,
    },
    /// The TLS context cannot take this role: connecting needs trust roots or
    /// pins, serving needs a certificate.
    TlsRole(&'static str),
    /// Not a DNS name or IP address that TLS can verify a certificate against.
    BadServerName(String),
    /// The socket already speaks TLS.
    TlsActive,
    /// A message (or connect or disconnect data) longer than the framed
    /// socket's limit.
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The system refused a socket option (an out-of-range value); the value
    /// is the OS error number.
    SocketOption(i32),
    /// HTTP mode refused the operation; the message says why (the layer owns
    /// the end and the reading, no request waits for a response, ...).
    Http(&'static str),
    /// The kernel refused this one datagram (an unreachable destination, a
    /// broadcast address without permission, ...). The socket stays open; the
    /// value is the OS error number.
    NotSent(i32),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::StaleSocket(id) => write!(f, "socket {id} is closed or unknown"),
            ApiError::Refused(r) => r.fmt(f),
            ApiError::RecvPending => f.write_str("a recv is already pending on this socket"),
            ApiError::ZeroLengthRecv => f.write_str("cannot recv zero bytes"),
            ApiError::Unsupported { op, transport } => {
                write!(f, "{op} is not supported on a {transport} socket")
            }
            ApiError::TlsRole(why) => f.write_str(why),
            ApiError::BadServerName(name) => {
                write!(
                    f,
                    "{name:?} is not a DNS name or IP address to verify a server against"
                )
            }
            ApiError::TlsActive => f.write_str("the socket already speaks TLS"),
            ApiError::Http(why) => f.write_str(why),
            ApiError::MessageTooLarge { len, max } => {
                write!(
                    f,
                    "a message of {len} bytes is over the limit of {max} bytes"
                )
            }
            ApiError::SocketOption(code) => write!(
                f,
                "the system refused the socket option: {}",
                io::Error::from_raw_os_error(*code)
            ),
            ApiError::NoPeer => {
                f.write_str("this UDP socket has no peer: connect it, or use send_to")
            }
            ApiError::DatagramTooLarge { len, max } => {
                write!(
                    f,
                    "a datagram of {len} bytes is over the largest possible, {max} bytes"
                )
            }
            ApiError::NotSent(code) => write!(
                f,
                "the datagram was not sent: {}",
                io::Error::from_raw_os_error(*code)
            ),
            ApiError::RecvTooLarge(n) => write!(
                f,
                "an exact recv of {n} bytes is over the limit of {} bytes",
                crate::MAX_EXACT_RECV
            ),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::Refused(r)
    }
}

/// What went wrong underneath a close reason, in `Closed::error`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's error.
    Io(io::Error),
    /// The address string could not be used.
    Address(AddrError),
    /// The TLS library's error: a handshake or record-layer failure.
    Tls(rustls::Error),
    /// The DTLS library's error: a handshake that failed or timed out, a
    /// record it could not process; or a peer without the certificate the
    /// context requires.
    Dtls(String),
    /// The peer's certificate was refused in the handshake: expired, not for
    /// the name asked, from an unknown issuer... (what was a
    /// `rustls::Error::InvalidCertificate` is reported as this instead).
    Certificate(crate::CertError),
    /// The TLS context cannot take the role asked of it.
    TlsRole(&'static str),
    /// The server name cannot be used for SNI and verification.
    ServerName(String),
    /// `on_alpn` refused the negotiated protocol.
    AlpnRefused(Vec<u8>),
    /// The peer broke the framed protocol; the message names the rule.
    Frame(tether_proto::frame::FrameError),
    /// The address parsed but does not fit the socket (a unix: address on a
    /// TCP-bound socket, mixed IP families).
    AddressMismatch(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::Address(e) => e.fmt(f),
            Error::AddressMismatch(why) => f.write_str(why),
            Error::Tls(e) => write!(f, "TLS: {e}"),
            Error::Certificate(e) => write!(f, "TLS: {e}"),
            Error::Dtls(why) => write!(f, "DTLS: {why}"),
            Error::TlsRole(why) => f.write_str(why),
            Error::ServerName(name) => write!(f, "{name:?} is not a valid TLS server name"),
            Error::Frame(e) => write!(f, "protocol error: {e}"),
            Error::AlpnRefused(p) => {
                write!(
                    f,
                    "the ALPN protocol {:?} was refused",
                    String::from_utf8_lossy(p)
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Address(e) => Some(e),
            Error::Tls(e) => Some(e),
            Error::Certificate(e) => Some(e),
            Error::Frame(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The OS error number, when the failure came from the operating system.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }
}
