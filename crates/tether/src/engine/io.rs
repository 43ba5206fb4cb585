//! What a socket holds, from created to closed: nothing yet, a bound
//! socket, a stream, a listener (with what its connections inherit), a UDP
//! socket, a UDP listener and its per-peer associations, or the memory of
//! the transport it was.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use socket2::SockRef;
use tether_proto::SockAddr;

use crate::transport::{from_os, Listener, Stream, Transport};
use crate::{SocketId, TlsContext};

/// What a socket holds, from created to closed.
#[derive(Debug, Default)]
pub(crate) enum Io {
    /// Created: no descriptor yet.
    #[default]
    None,
    /// Closed: the descriptor is gone; the transport it was is remembered
    /// (for the last log line).
    Closed(Transport),
    /// Bound, not yet listening or connecting.
    Bound(socket2::Socket, Transport),
    Stream(Stream),
    /// A listener, and what the connections it takes inherit.
    Listener(Box<Listening>),
    /// A UDP socket, and the peer `connect` fixed, if any (boxed: an address
    /// is larger than everything else a socket holds here, and rarely set).
    Udp(mio::net::UdpSocket, Option<Box<std::net::SocketAddr>>),
    /// A UDP socket that listens: it reads for all its associations.
    UdpListener(Box<UdpListening>),
    /// One peer of a UDP listener, served through the listener's socket.
    Association(Box<Association>),
}

impl Io {
    /// Close the descriptor (dropping a socket closes it and takes it off
    /// the poller), remembering which transport it was.
    pub(crate) fn close(&mut self) -> Io {
        let closed = self.kind().map_or(Io::None, Io::Closed);
        std::mem::replace(self, closed)
    }

    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Io::None | Io::Closed(_) => None,
            Io::Bound(s, _) => Some(s.as_fd()),
            Io::Stream(Stream::Tcp(s)) => Some(s.as_fd()),
            Io::Stream(Stream::Local(s)) => Some(s.as_fd()),
            Io::Listener(l) => Some(match &l.listener {
                Listener::Tcp(l) => l.as_fd(),
                Listener::Local(l, _) => l.as_fd(),
            }),
            Io::Udp(u, _) => Some(u.as_fd()),
            Io::UdpListener(l) => Some(l.sock.as_fd()),
            // Its descriptor is its listener's.
            Io::Association(_) => None,
        }
    }

    pub(crate) fn kind(&self) -> Option<Transport> {
        match self {
            Io::None => None,
            Io::Closed(kind) | Io::Bound(_, kind) => Some(*kind),
            Io::Listener(l) => Some(l.listener.kind()),
            Io::Stream(Stream::Tcp(_)) => Some(Transport::Tcp),
            Io::Stream(Stream::Local(_)) => Some(Transport::Local),
            Io::Udp(..) | Io::UdpListener(_) | Io::Association(_) => Some(Transport::Udp),
        }
    }

    /// A UDP socket's descriptor and the peer `connect` fixed, if any (a UDP
    /// listener's own sends go to the addresses they name).
    pub(crate) fn udp(&self) -> Option<(&mio::net::UdpSocket, Option<std::net::SocketAddr>)> {
        match self {
            Io::Udp(sock, peer) => Some((sock, peer.as_deref().copied())),
            Io::UdpListener(l) => Some((&l.sock, None)),
            _ => None,
        }
    }

    pub(crate) fn local_addr(&self) -> Option<SockAddr> {
        from_os(&SockRef::from(&self.fd()?).local_addr().ok()?)
    }

    pub(crate) fn peer_addr(&self) -> Option<SockAddr> {
        if let Io::Association(a) = self {
            return Some(SockAddr::Inet(a.peer));
        }
        from_os(&SockRef::from(&self.fd()?).peer_addr().ok()?)
    }
}

/// A listener and what the connections it takes inherit.
pub(crate) struct Listening {
    pub(crate) listener: Listener,
    /// The TLS every connection speaks, if any.
    pub(crate) tls: Option<TlsContext>,
    /// Admission: at most this many taken connections open at once.
    pub(crate) max: Option<u32>,
    /// Taken connections whose `on_closed` has not returned yet.
    pub(crate) live: u32,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("max", &self.max)
            .field("live", &self.live)
            .finish()
    }
}

impl Listening {
    pub(crate) fn new(listener: Listener) -> Box<Listening> {
        Box::new(Listening {
            listener,
            tls: None,
            max: None,
            live: 0,
        })
    }

    /// At the admission limit: leave connections in the kernel's backlog.
    pub(crate) fn full(&self) -> bool {
        self.max.is_some_and(|max| self.live >= max)
    }
}

/// A listening UDP socket: its descriptor and its associations.
#[derive(Debug)]
pub(crate) struct UdpListening {
    pub(crate) sock: mio::net::UdpSocket,
    /// Each live association, by its peer's address.
    pub(crate) peers: HashMap<SocketAddr, SocketId>,
    /// Admission: at most this many associations open at once.
    pub(crate) max: Option<u32>,
    /// Associations whose `on_closed` has not returned yet.
    pub(crate) live: u32,
    /// Datagrams from new peers dropped at the admission limit.
    pub(crate) refused: u64,
    /// Associations with datagrams waiting for room in the kernel.
    pub(crate) waiting: Vec<SocketId>,
}

impl UdpListening {
    pub(crate) fn full(&self) -> bool {
        self.max.is_some_and(|max| self.live >= max)
    }
}

/// One peer of a UDP listener.
#[derive(Debug)]
pub(crate) struct Association {
    pub(crate) listener: SocketId,
    pub(crate) peer: SocketAddr,
    /// Datagrams received and not yet asked for, oldest first.
    pub(crate) queue: VecDeque<Box<[u8]>>,
    /// Bytes of datagrams dropped because the queue was full.
    pub(crate) dropped: u64,
}

impl Association {
    /// Bytes received for it and never delivered.
    pub(crate) fn unread(&self) -> u64 {
        self.dropped + self.queue.iter().map(|d| d.len() as u64).sum::<u64>()
    }
}
