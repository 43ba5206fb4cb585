//! Options of a socket on [`Cx`]: timeouts, idle time, TCP keepalive and
//! user timeout, and a listener's admission limit.

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
    pub fn max_connections(&mut self, s: SocketId, max: Option<u32>) -> Result<(), ApiError> {
        self.engine.max_connections(s, max)
    }
}
