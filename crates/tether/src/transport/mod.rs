//! The transports, the bottom layer of a socket: TCP, Local (Unix-domain
//! streams) and UDP, each a thin layer over a non-blocking socket, and the send
//! queue. Nothing here knows of slots, `Cx`, TLS or framing.
//!
//! TCP and Local sockets behave alike once open, so the layers above see one
//! [`Stream`] and one [`Listener`] type; what differs (how an address is
//! opened and bound) lives in `tcp.rs` and `local.rs`; UDP's in `udp.rs`;
//! host names are resolved off the loop in `resolve.rs`.

pub(crate) mod kind;
pub(crate) mod local;
pub(crate) mod resolve;
pub(crate) mod send_queue;
pub(crate) mod tcp;
pub(crate) mod udp;

pub use kind::Transport;

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use mio::{Interest, Registry, Token};
use socket2::{SockAddr as OsAddr, SockRef};
use tether_proto::SockAddr;

/// A connected (or connecting) stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(mio::net::TcpStream),
    Local(mio::net::UnixStream),
}

/// A listening socket. A Local listener remembers its path so that closing it
/// removes the socket file it made.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(mio::net::TcpListener),
    Local(mio::net::UnixListener, Option<std::path::PathBuf>),
}

impl Stream {
    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => io::Read::read(&mut &*s, buf),
            Stream::Local(s) => io::Read::read(&mut &*s, buf),
        }
    }

    /// Write without ever raising SIGPIPE (socket2 sends with MSG_NOSIGNAL), so a
    /// vanished peer is an error to report, not a signal to die of.
    #[inline]
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(self).send(buf)
    }

    /// Write the pieces of one send, as far as the kernel takes them: gathered
    /// in one system call, so a frame header and its payload need no copy into
    /// one buffer. Returns the bytes written, or those and the error.
    /// Always inlined, with `write_one`: a send of one piece then compiles
    /// to one write where it is called (out of line, since the ring's bulk
    /// path calls it too, the epoll pingpong paid ~40 instructions more a
    /// message).
    #[inline(always)]
    pub(crate) fn write_all_parts(&self, parts: &[&[u8]]) -> Result<usize, (usize, io::Error)> {
        // The common case, one piece: send(2) directly, no iovec to build.
        if let [one] = parts {
            return self.write_one(one);
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = 0;
        while written < total {
            let mut skip = written;
            let mut slices = [io::IoSlice::new(&[]); 4];
            let mut count = 0;
            for part in parts {
                let cut = skip.min(part.len());
                skip -= cut;
                if cut < part.len() && count < slices.len() {
                    slices[count] = io::IoSlice::new(&part[cut..]);
                    count += 1;
                }
            }
            let asked: usize = slices[..count].iter().map(|s| s.len()).sum();
            // One piece goes by send(2): the kernel then has no iovec to copy in.
            let sent = match count {
                1 => self.write(&slices[0]),
                _ => SockRef::from(self).send_vectored(&slices[..count]),
            };
            match sent {
                Ok(n) => {
                    written += n;
                    // A short write means the socket buffer is full (epoll will
                    // say when it is not): asking again would only get EAGAIN.
                    if n < asked {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err((written, e)),
            }
        }
        Ok(written)
    }

    /// One piece, as far as the kernel takes it (see `write_all_parts`).
    #[inline(always)]
    fn write_one(&self, data: &[u8]) -> Result<usize, (usize, io::Error)> {
        let mut written = 0;
        while written < data.len() {
            match self.write(&data[written..]) {
                Ok(n) => {
                    written += n;
                    // Short: the socket buffer is full.
                    if written < data.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err((written, e)),
            }
        }
        Ok(written)
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Local(s) => s.shutdown(Shutdown::Write),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Local(s) => s.take_error(),
        }
    }

    /// True once a non-blocking connect has completed.
    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.peer_addr().is_ok(),
            Stream::Local(s) => s.peer_addr().is_ok(),
        }
    }

    /// Register with the poller for input, and for room to write if
    /// `writable` (else [`reregister`](Stream::reregister) adds it later).
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        writable: bool,
    ) -> io::Result<()> {
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match self {
            Stream::Tcp(s) => registry.register(s, token, interest),
            Stream::Local(s) => registry.register(s, token, interest),
        }
    }

    /// Off the poller (it moves to the io_uring ring).
    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => registry.deregister(s),
            Stream::Local(s) => registry.deregister(s),
        }
    }

    /// Move to another token, or add room to write to what is watched;
    /// readiness the socket has now is reported again under it.
    pub(crate) fn reregister(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => registry.reregister(s, token, interest),
            Stream::Local(s) => registry.reregister(s, token, interest),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Local(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The outcome of one read of a byte stream.
pub(crate) enum Read {
    Data(usize),
    /// The end of the peer's stream (for TLS: after its close_notify).
    Eof,
    /// Nothing now: wait for readiness.
    Empty,
    Failed(crate::Error),
}

/// One read from the socket itself.
#[inline]
pub(crate) fn read(stream: &Stream, buf: &mut [u8]) -> Read {
    loop {
        return match stream.read(buf) {
            Ok(0) => Read::Eof,
            Ok(n) => Read::Data(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::Empty,
            Err(e) => Read::Failed(crate::Error::Io(e)),
        };
    }
}

/// A connection taken from a listener, with its peer's address.
pub(crate) struct Accepted {
    pub(crate) stream: Stream,
    pub(crate) peer: Option<SockAddr>,
}

impl Listener {
    pub(crate) fn kind(&self) -> Transport {
        match self {
            Listener::Tcp(_) => Transport::Tcp,
            Listener::Local(..) => Transport::Local,
        }
    }

    pub(crate) fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, peer)| Accepted {
                stream: Stream::Tcp(s),
                peer: Some(SockAddr::Inet(peer)),
            }),
            Listener::Local(l, _) => l.accept().map(|(s, peer)| Accepted {
                stream: Stream::Local(s),
                peer: peer.as_pathname().map(|p| SockAddr::Unix(p.to_path_buf())),
            }),
        }
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.register(l, token, Interest::READABLE),
            Listener::Local(l, _) => registry.register(l, token, Interest::READABLE),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Local(_, Some(path)) = self {
            local::remove_socket_file(path);
        }
    }
}

/// Our address type from the kernel's; `None` for an unnamed Unix socket.
pub(crate) fn from_os(addr: &OsAddr) -> Option<SockAddr> {
    if let Some(inet) = addr.as_socket() {
        return Some(SockAddr::Inet(inet));
    }
    if let Some(path) = addr.as_pathname() {
        return Some(SockAddr::Unix(path.to_path_buf()));
    }
    addr.as_abstract_namespace()
        .map(|name| SockAddr::Abstract(name.to_vec()))
}

/// Open and bind a socket for `addr`, choosing the transport from it.
/// `reuse_port` (SO_REUSEPORT) is for TCP only: the layer above never asks it
/// of a Local address.
pub(crate) fn bind(addr: &SockAddr, reuse_port: bool) -> Result<socket2::Socket, OpenError> {
    match Transport::of(addr) {
        Transport::Local => local::bind(addr),
        _ => tcp::bind(addr, reuse_port),
    }
}

/// Start a non-blocking connect to `addr`, from `bound` if the caller bound first.
pub(crate) fn connect(
    addr: &SockAddr,
    bound: Option<socket2::Socket>,
) -> Result<Stream, OpenError> {
    match Transport::of(addr) {
        Transport::Local => local::connect(addr, bound),
        _ => tcp::connect(addr, bound),
    }
}

/// Turn a bound socket into a listener.
pub(crate) fn listen(sock: socket2::Socket, kind: Transport) -> io::Result<Listener> {
    // Deep enough for a burst of connects; the kernel caps it at somaxconn.
    sock.listen(1024)?;
    match kind {
        Transport::Local => {
            let path = sock.local_addr()?.as_pathname().map(|p| p.to_path_buf());
            Ok(Listener::Local(
                mio::net::UnixListener::from_std(sock.into()),
                path,
            ))
        }
        _ => Ok(Listener::Tcp(mio::net::TcpListener::from_std(sock.into()))),
    }
}

/// Which step of opening a socket failed: each maps to its own close reason.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// socket(2) failed.
    Open(io::Error),
    /// bind(2) failed (or a Local path may not be taken).
    Bind(io::Error),
    /// connect(2) failed at once.
    Connect(io::Error),
    /// The address does not fit the bound socket's transport or family.
    Mismatch(&'static str),
}

pub(crate) fn new_socket(
    domain: socket2::Domain,
    protocol: Option<socket2::Protocol>,
) -> Result<socket2::Socket, OpenError> {
    let sock =
        socket2::Socket::new(domain, socket2::Type::STREAM, protocol).map_err(OpenError::Open)?;
    sock.set_nonblocking(true).map_err(OpenError::Open)?;
    Ok(sock)
}

/// Connect a socket that is already non-blocking; in progress counts as success.
pub(crate) fn start_connect(sock: &socket2::Socket, addr: &OsAddr) -> Result<(), OpenError> {
    match sock.connect(addr) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(OpenError::Connect(e)),
    }
}
