//! UDP on [`Cx`]: datagram sockets, `send_to`, and fixing a peer.

use std::net::SocketAddr;

use crate::{ApiError, Cx, SocketId, SocketUser};

impl<S: 'static> Cx<S> {
    /// A new UDP socket, with `user` for its callbacks. `bind` gives it an
    /// address (port 0: the system picks); `send_to` or `connect` on an unbound
    /// one binds it to every interface of the peer's family first.
    pub fn udp(&mut self, user: impl SocketUser<S> + 'static) -> SocketId {
        self.engine.udp(user)
    }

    /// Send one datagram to `to`. It is written at once when the kernel takes
    /// it, else queued and written in order; `on_sent` follows either way. An
    /// error the kernel gives for this datagram alone (say, an unreachable
    /// network) is returned as [`ApiError::NotSent`] and the socket stays open.
    pub fn send_to(&mut self, s: SocketId, data: &[u8], to: SocketAddr) -> Result<(), ApiError> {
        self.engine.send_to(s, data, to)
    }
}
