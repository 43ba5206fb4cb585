//! Options of a socket on [`Cx`]: timeouts, idle time, TCP keepalive and
//! user timeout, a listener's admission limit, and SO_REUSEPORT before bind.

use std::time::Duration;

use tether_proto::timeouts::Timeouts;

use crate::{ApiError, Cx, Keepalive, SocketId};

impl<S: 'static> Cx<S> {
    /// Set the socket's timeouts: `connect` (ends with `ConnectTimeout`),
    /// `handshake` for TLS and framed connections (`HandshakeTimeout`), `idle`
    /// with no data either way (`IdleTimeout`: reset, or for UDP a discard). On
    /// a listener they apply to every connection it takes, from its accept: a
    /// handshake timeout there is what evicts a client that connects and
    /// dribbles.
    pub fn set_timeouts(&mut self, s: SocketId, timeouts: Timeouts) -> Result<(), ApiError> {
        self.engine.set_timeouts(s, timeouts)
    }

    /// How long since data last moved either way on the socket (or since it
    /// was made, if none has).
    pub fn idle_for(&self, s: SocketId) -> Option<Duration> {
        self.engine.idle_for(s)
    }

    /// TCP keepalive (`None`: off), so a peer that vanished is found even when
    /// nothing is being sent. On a listener, the connections it takes inherit
    /// it. Needs the socket's descriptor: set it after `bind`, `listen` or
    /// `connect`.
    pub fn set_keepalive(
        &mut self,
        s: SocketId,
        keepalive: Option<Keepalive>,
    ) -> Result<(), ApiError> {
        self.engine.set_keepalive(s, keepalive)
    }

    /// TCP_USER_TIMEOUT (`None`: the system's default): how long sent data may
    /// stay unacknowledged before the connection is given up as `Lost`
    /// (ETIMEDOUT). This bounds how long a peer can vanish with data in
    /// flight. On a listener, the connections it takes inherit it.
    ///
    /// Linux applies it to a peer that keeps its receive window shut too (its
    /// zero-window probes): a live reader that falls behind for longer than
    /// this is ended as well. Keep it above how long a slow reader may
    /// stall, or set it only when the peer should be answering (the torture
    /// suite's `faults` scenario sets it at the cut for this reason).
    pub fn set_user_timeout(
        &mut self,
        s: SocketId,
        timeout: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.engine.set_user_timeout(s, timeout)
    }

    /// Admission: at most `max` connections taken by this listener open at
    /// once (`None`: no limit). At the limit the listener takes no more: they
    /// wait in the kernel's backlog, not accepted and dropped, until one of its
    /// connections has closed and its `on_closed` has returned, so the
    /// application reacts to each end before the next connection starts.
    /// Raising the limit takes the waiting connections once the current
    /// callback returns (never inside this call).
    ///
    /// On a UDP listener it bounds its live associations: at the limit,
    /// datagrams from new peers are dropped (counted and logged), not kept.
    pub fn max_connections(&mut self, s: SocketId, max: Option<u32>) -> Result<(), ApiError> {
        self.engine.max_connections(s, max)
    }

    /// SO_REUSEPORT on a TCP socket, set before its bind: several listeners,
    /// each with it set, in one process or several of the same user, may
    /// then bind the same address and port, and the kernel spreads incoming
    /// connections among them (by a hash of the connection's addresses and
    /// ports). This is how one loop per core shares one port: each [`IoMux`]
    /// on its own thread with its own listener. Without it, the second bind
    /// of a port ends with `Reason::BindFailed` (EADDRINUSE).
    ///
    /// It applies to the socket's bind: its own [`bind`](Self::bind), or the
    /// one [`listen`](Self::listen) makes for an unbound socket; a socket that
    /// connects without binding makes no use of it. So it is set on a fresh
    /// stream socket, after [`stream`](Self::stream) and before anything
    /// else: once the socket has a descriptor (bound, listening, connecting)
    /// or has closed it is [`ApiError::Refused`] (`Op::SetOption`). It is a
    /// TCP option: on a UDP socket it is [`ApiError::Unsupported`], and so is
    /// a later `bind` of the socket to a Local (`unix:`) address, which
    /// leaves the socket as it was.
    ///
    /// A connection waiting in one listener's backlog is that listener's: if
    /// it closes, those connections are reset, not handed to the others.
    ///
    /// ```no_run
    /// use tether::{Admission, Closed, Cx, IoMux, PeerInfo, SocketId, SocketUser};
    ///
    /// struct Server;
    /// impl SocketUser for Server {
    ///     fn on_incoming(&mut self, _: &mut Cx, _: SocketId, _: &PeerInfo) -> Admission {
    ///         Admission::Deny // a real server admits its connections here
    ///     }
    ///     fn on_closed(&mut self, _: &mut Cx, _: SocketId, _: &Closed) {}
    /// }
    ///
    /// // On each of several threads, one loop with its own listener on one port:
    /// let mut mux = IoMux::new(())?;
    /// let s = mux.stream(Server);
    /// mux.set_reuse_port(s, true)?;
    /// mux.bind(s, "0.0.0.0:7000")?;
    /// mux.listen(s)?;
    /// mux.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`IoMux`]: crate::IoMux
    pub fn set_reuse_port(&mut self, s: SocketId, on: bool) -> Result<(), ApiError> {
        self.engine.set_reuse_port(s, on)
    }
}
