//! What the application implements ([`SocketUser`]) and what it is told.

use std::net::SocketAddr;

use tether_proto::{Reason, SockAddr, State};

use crate::security::info::TlsInfo;
use crate::{Cx, Error, SocketId};

/// The callbacks of one socket. Every method but [`on_closed`](Self::on_closed)
/// has a default that does nothing, so a user implements only what it needs.
///
/// Callbacks never run inside an operation: whatever `cx.send`, `cx.close` and
/// the like cause is queued and runs after the current callback returns, so a
/// callback never re-enters the same user.
///
/// ```
/// use tether::{Closed, Cx, RecvMode, SocketId, SocketUser};
///
/// /// Echoes whatever arrives, and says goodbye when the peer does.
/// struct Echo;
///
/// impl SocketUser for Echo {
///     fn on_accepted(&mut self, cx: &mut Cx, s: SocketId) {
///         cx.recv(s, 4096, RecvMode::Partial).unwrap();
///     }
///     fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
///         cx.send(s, data).unwrap();
///         cx.recv(s, 4096, RecvMode::Partial).unwrap();
///     }
///     fn on_peer_shutdown(&mut self, cx: &mut Cx, s: SocketId, _farewell: Option<&[u8]>) {
///         cx.shutdown(s).unwrap(); // our FIN follows the last echoed byte
///     }
///     fn on_closed(&mut self, _cx: &mut Cx, _s: SocketId, closed: &Closed) {
///         println!("closed: {}", closed.reason);
///     }
/// }
/// ```
#[allow(unused_variables)]
pub trait SocketUser<S = ()> {
    /// A connect to a host name (`localhost:7000`) resolved: `addrs` are its
    /// addresses in the order they are tried (Happy Eyeballs: IPv6 first, the
    /// families alternating, the next one started if the last did not connect
    /// within [`CONNECTION_ATTEMPT_DELAY`](crate::CONNECTION_ATTEMPT_DELAY)).
    /// `on_connected` or `on_closed` follows, once, for the socket as a whole.
    /// Not called for a literal address.
    fn on_resolved(&mut self, cx: &mut Cx<S>, s: SocketId, addrs: &[SocketAddr]) {}

    /// A connect completed.
    fn on_connected(&mut self, cx: &mut Cx<S>, s: SocketId) {}

    /// The socket is bound; `local` has the port the system picked for port 0.
    fn on_bound(&mut self, cx: &mut Cx<S>, s: SocketId, local: &SockAddr) {}

    /// A peer connected to this listener. Decide before any byte is read or any
    /// user exists for the connection: [`Admission::Deny`] resets it at once.
    fn on_incoming(&mut self, cx: &mut Cx<S>, listener: SocketId, peer: &PeerInfo) -> Admission<S> {
        Admission::Deny
    }

    /// An incoming connection was admitted; `s` is the new socket, whose user is
    /// the one [`Admission::Accept`] gave.
    fn on_accepted(&mut self, cx: &mut Cx<S>, s: SocketId) {}

    /// The bytes of one `send` reached the kernel.
    fn on_sent(&mut self, cx: &mut Cx<S>, s: SocketId) {}

    /// Whether this user wants [`on_sent`](Self::on_sent). Asked once, when
    /// the user is given to its socket (at creation, admission or
    /// [`Cx::set_user`]). A user that answers false is never called for a
    /// send, and its sends cost no deferred callback: worth it on a busy
    /// connection whose user does not pace itself by `on_sent`.
    fn wants_on_sent(&self) -> bool {
        true
    }

    /// The answer to one `recv`. `data` is lent from a buffer the loop reuses:
    /// copy what must outlive the call.
    fn on_received(&mut self, cx: &mut Cx<S>, s: SocketId, data: &[u8]) {}

    /// One datagram on an unconnected UDP socket, answering one recv, with the
    /// address it came from.
    fn on_received_from(&mut self, cx: &mut Cx<S>, s: SocketId, data: &[u8], from: SocketAddr) {}

    /// A datagram longer than the recv asked for, instead of `on_received` /
    /// `on_received_from`: `data` holds its first bytes (as many as asked for),
    /// `len` its whole length. The rest is counted in `Closed::unread`. By
    /// default the datagram is dropped whole (all of it counted in
    /// `Closed::unread`) with a warning under `tether::udp`, so a cut datagram
    /// is never taken for a whole one, and the recv waits on for the next one.
    fn on_truncated(
        &mut self,
        cx: &mut Cx<S>,
        s: SocketId,
        data: &[u8],
        len: usize,
        from: SocketAddr,
    ) {
        io_log!(warn, crate::log::Target::Udp, cx.engine.mux_id, socket = %s, len, kept = data.len(), %from, "datagram longer than the recv: dropped");
        cx.engine.drop_truncated(s, data.len());
    }

    /// The peer finished sending, after its last byte was delivered. `farewell`
    /// is the peer's disconnect data on transports that carry it, else `None`.
    fn on_peer_shutdown(&mut self, cx: &mut Cx<S>, s: SocketId, farewell: Option<&[u8]>) {}

    /// The socket's state changed (`state(s)` shows `to` from now on). Every
    /// change is reported once, in order, from the first (out of
    /// `NotConnected`) to the last (into `NotConnected`, just before
    /// `on_closed`).
    fn on_state(&mut self, cx: &mut Cx<S>, s: SocketId, from: State, to: State) {}

    /// The TLS handshake finished: what it settled. A client gets this before
    /// `on_connected`; a server's accepted socket after `on_accepted`; a StartTLS
    /// upgrade when the upgrade is done. Data sent before it went out only now.
    fn on_tls_ready(&mut self, cx: &mut Cx<S>, s: SocketId, info: &TlsInfo) {}

    /// The ALPN protocol the handshake selected, before `on_tls_ready`. Returning
    /// false ends the connection with `Reason::TlsHandshakeFailed` and
    /// `Error::AlpnRefused`, before any application data is exchanged.
    fn on_alpn(&mut self, cx: &mut Cx<S>, s: SocketId, protocol: &[u8]) -> bool {
        true
    }

    /// HTTP mode: a request came. Answer it with
    /// [`Cx::respond`](crate::Cx::respond), now or later; the next request of
    /// the connection comes only after this one's response. By default the
    /// answer is `404 Not Found`.
    fn on_request(&mut self, cx: &mut Cx<S>, s: SocketId, request: &crate::Request)
    where
        S: 'static,
    {
        let _ = cx.respond(s, crate::Response::new(404));
    }

    /// HTTP mode: the next part of a request body longer than
    /// [`HttpOptions::buffer`](crate::HttpOptions::buffer), one per
    /// [`Cx::recv_body`](crate::Cx::recv_body); `last` with the end of the
    /// body. A body the application does not want need not be read: once the
    /// response is out, what is left is thrown away.
    fn on_request_body(&mut self, cx: &mut Cx<S>, s: SocketId, data: &[u8], last: bool) {}

    /// Exactly once per socket, last of all its callbacks. The id is stale from
    /// now on.
    fn on_closed(&mut self, cx: &mut Cx<S>, s: SocketId, closed: &Closed);
}

/// A listener's answer to an incoming connection.
#[non_exhaustive]
pub enum Admission<S = ()> {
    /// Take the connection, with this user for its callbacks.
    Accept(Box<dyn SocketUser<S>>),
    /// Take the connection, with this user, and send this accept data in the
    /// WELCOME (framed listeners only; elsewhere it cannot be carried and is
    /// dropped with a warning).
    AcceptWith(Box<dyn SocketUser<S>>, Vec<u8>),
    /// Refuse it: the connection is reset before any byte is read, so the client
    /// sees a refusal rather than a connection that goes quiet. (A Unix-domain
    /// socket has no reset: its client sees the stream end at once.)
    Deny,
    /// Refuse a framed client with reason data: it gets REJECT(data) and its
    /// `on_closed` says `ConnectRejected` with the data in `Closed::farewell`.
    /// (A plain listener cannot carry the data and denies instead.)
    Reject(Vec<u8>),
}

impl<S> std::fmt::Debug for Admission<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Admission::Accept(_) => f.write_str("Accept(..)"),
            Admission::AcceptWith(_, data) => write!(f, "AcceptWith(.., {} bytes)", data.len()),
            Admission::Deny => f.write_str("Deny"),
            Admission::Reject(data) => write!(f, "Reject({} bytes)", data.len()),
        }
    }
}

/// Who is knocking, as `on_incoming` sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's address; `None` for an unnamed Unix-domain client (the usual
    /// case: clients rarely bind).
    pub peer: Option<SockAddr>,
    /// On a framed listener: the client's connect data (its HELLO).
    pub hello: Option<Vec<u8>>,
}

/// How a `recv` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvMode {
    /// Exactly `n` bytes, however many reads that takes. If the peer ends first,
    /// the bytes gathered are counted in [`Closed::unread`], never delivered short.
    Exact,
    /// Whatever is there, 1 to `n` bytes, as soon as something is.
    Partial,
}

/// How a [`discard`](Cx::discard) was carried out: the peer should not be told,
/// but only TCP with CAP_NET_ADMIN can keep that promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscardMethod {
    /// TCP_REPAIR: nothing was sent; the peer learns nothing.
    Silent,
    /// TCP without the privilege for TCP_REPAIR: an RST was sent, so the peer
    /// cannot mistake the end for a graceful one.
    Reset,
    /// A Local socket, which has no silent close: the peer sees the end of the
    /// stream (or ECONNRESET if it had sent bytes we never read).
    Close,
}

/// How a socket ended, given to [`SocketUser::on_closed`].
///
/// Nothing is dropped silently: bytes accepted by `send` that did not reach the
/// peer and received bytes that were never delivered are counted here.
#[derive(Debug)]
#[non_exhaustive]
pub struct Closed {
    /// Why it closed.
    pub reason: Reason,
    /// Bytes accepted for sending that may not have reached the peer: still in
    /// tether's queue, plus, for a TCP connection that was aborted, the bytes the
    /// peer had not acknowledged (an upper bound: some may have arrived while
    /// their acknowledgement had not). Zero after a graceful end.
    pub unsent: u64,
    /// Bytes received and thrown away: drained by `close`, left in the kernel by
    /// an abort, or gathered for an Exact recv the peer never completed.
    pub unread: u64,
    /// The error underneath a failure reason (`Lost`, `ConnectFailed`, ...).
    pub error: Option<Error>,
    /// For [`Reason::Discarded`], how the discard was done.
    pub discard: Option<DiscardMethod>,
    /// On a framed socket: the peer's disconnect data (its FAREWELL), or the
    /// reason data of the REJECT that refused us.
    pub farewell: Option<Vec<u8>>,
}
