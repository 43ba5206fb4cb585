//! What a socket holds, from created to closed: nothing yet, a bound
//! socket, a stream, a listener (with what its connections inherit), a UDP
//! socket, a UDP listener and its per-peer associations, or the memory of
//! the transport it was.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use socket2::SockRef;
use tether_proto::SockAddr;

use crate::security::dtls::Session;
use crate::transport::{from_os, Listener, Stream, Transport};
use crate::{DtlsContext, SocketId, TlsContext};

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
    /// A UDP socket connected to one peer over DTLS.
    DtlsClient(Box<DtlsClient>),
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
            Io::DtlsClient(c) => Some(c.sock.as_fd()),
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
            Io::Udp(..) | Io::UdpListener(_) | Io::Association(_) | Io::DtlsClient(_) => {
                Some(Transport::Udp)
            }
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
        if let Io::DtlsClient(c) = self {
            return Some(SockAddr::Inet(c.peer));
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
    /// HTTP mode for every connection it takes.
    pub(crate) http: Option<crate::HttpOptions>,
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
            http: None,
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
    /// On a DTLS listener: its context, and the handshakes of peers that
    /// have not answered their cookie challenge yet.
    pub(crate) dtls: Option<Box<DtlsGate>>,
}

/// A DTLS listener's context and the peers it challenged.
pub(crate) struct DtlsGate {
    pub(crate) ctx: DtlsContext,
    /// Sessions that sent a HelloVerifyRequest and wait for the ClientHello
    /// with its cookie, by peer; at most [`PENDING_MAX`], the oldest dropped.
    pub(crate) pending: HashMap<SocketAddr, Box<Session>>,
    /// `pending`'s peers, oldest first.
    pub(crate) order: VecDeque<SocketAddr>,
    /// Datagrams from unknown peers that were no ClientHello.
    pub(crate) ignored: u64,
}

impl std::fmt::Debug for DtlsGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsGate")
            .field("pending", &self.pending.len())
            .field("ignored", &self.ignored)
            .finish()
    }
}

/// Cookie challenges a DTLS listener keeps open at once.
pub(crate) const PENDING_MAX: usize = 256;

impl UdpListening {
    pub(crate) fn full(&self) -> bool {
        self.max.is_some_and(|max| self.live >= max)
    }
}

/// One peer of a UDP listener.
pub(crate) struct Association {
    pub(crate) listener: SocketId,
    pub(crate) peer: SocketAddr,
    pub(crate) inbox: Inbox,
    /// Its DTLS session, on a DTLS listener.
    pub(crate) dtls: Option<Box<Session>>,
}

impl std::fmt::Debug for Association {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Association")
            .field("listener", &self.listener)
            .field("peer", &self.peer)
            .field("dtls", &self.dtls.is_some())
            .finish()
    }
}

/// A UDP socket speaking DTLS with the one peer it connected to.
pub(crate) struct DtlsClient {
    pub(crate) sock: mio::net::UdpSocket,
    pub(crate) peer: SocketAddr,
    pub(crate) inbox: Inbox,
    pub(crate) session: Session,
    /// The name the server's certificate is verified against.
    pub(crate) server_name: String,
}

impl std::fmt::Debug for DtlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsClient")
            .field("peer", &self.peer)
            .finish()
    }
}

/// Datagrams received for a socket and not yet asked for, oldest first: at
/// most [`QUEUE_MAX`]; beyond, dropped and counted.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) queue: VecDeque<Box<[u8]>>,
    /// Bytes of datagrams dropped because the queue was full.
    pub(crate) dropped: u64,
}

/// Datagrams an inbox holds for its recv; more are dropped.
pub(crate) const QUEUE_MAX: usize = 64;

impl Inbox {
    /// Keep `data` for a recv; false if the queue was full and it was dropped.
    pub(crate) fn push(&mut self, data: &[u8]) -> bool {
        if self.queue.len() >= QUEUE_MAX {
            self.dropped += data.len() as u64;
            return false;
        }
        self.queue.push_back(Box::from(data));
        true
    }

    /// Bytes received for it and never delivered.
    pub(crate) fn unread(&self) -> u64 {
        self.dropped + self.queue.iter().map(|d| d.len() as u64).sum::<u64>()
    }
}

impl Io {
    /// The inbox and peer of a socket that queues its datagrams (an
    /// association, a DTLS client).
    pub(crate) fn inbox(&mut self) -> Option<(&mut Inbox, SocketAddr)> {
        match self {
            Io::Association(a) => Some((&mut a.inbox, a.peer)),
            Io::DtlsClient(c) => Some((&mut c.inbox, c.peer)),
            _ => None,
        }
    }

    /// The DTLS session, on a DTLS socket.
    pub(crate) fn dtls(&self) -> Option<&Session> {
        match self {
            Io::Association(a) => a.dtls.as_deref(),
            Io::DtlsClient(c) => Some(&c.session),
            _ => None,
        }
    }

    pub(crate) fn dtls_mut(&mut self) -> Option<&mut Session> {
        match self {
            Io::Association(a) => a.dtls.as_deref_mut(),
            Io::DtlsClient(c) => Some(&mut c.session),
            _ => None,
        }
    }
}
