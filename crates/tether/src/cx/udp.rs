//! UDP on [`Cx`]: datagram sockets, `send_to`, and fixing a peer.

use std::net::SocketAddr;

use tether_proto::{Reason, SockAddr};

use crate::engine::failure::connect_reason;
use crate::engine::slot::find;
use crate::log::Target;
use crate::transport::{udp, Io, Transport};
use crate::{ApiError, Cx, Error, SocketId, SocketUser};

impl<S: 'static> Cx<S> {
    /// A new UDP socket, with `user` for its callbacks. `bind` gives it an
    /// address (port 0: the system picks); `send_to` or `connect` on an unbound
    /// one binds it to every interface of the peer's family first.
    pub fn udp(&mut self, user: impl SocketUser<S> + 'static) -> SocketId {
        self.insert(
            Some(Box::new(user)),
            Io::None,
            tether_proto::Lifecycle::datagram(),
        )
    }

    /// Send one datagram to `to`. It is written at once when the kernel takes
    /// it, else queued and written in order; `on_sent` follows either way. An
    /// error the kernel gives for this datagram alone (say, an unreachable
    /// network) is returned as [`ApiError::NotSent`] and the socket stays open.
    pub fn send_to(&mut self, s: SocketId, data: &[u8], to: SocketAddr) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        if !slot.life.is_datagram() {
            return Err(ApiError::Unsupported {
                op: "send_to",
                transport: slot.io.kind().unwrap_or(Transport::Tcp),
            });
        }
        // Refused before a fresh socket is bound for it: misuse changes nothing.
        let max = udp::max_payload(&to);
        if data.len() > max {
            return Err(ApiError::DatagramTooLarge {
                len: data.len(),
                max,
            });
        }
        if matches!(slot.io, Io::None) && slot.life.closed().is_none() {
            // Like sendto(2) on an unbound socket: take an ephemeral port.
            slot.life.bind()?;
            if let Err((reason, error)) = self.open_udp(s, &udp::any_for(&to)) {
                self.fail(s, reason, error);
                self.settle(s);
                return Ok(());
            }
        }
        self.send_datagram(s, Some(to), data)
    }

    pub(crate) fn bind_udp(&mut self, s: SocketId, addr: &str) -> Result<(), ApiError> {
        self.live(s)?.life.bind()?;
        let opened = SockAddr::parse(addr)
            .map_err(|e| (Reason::AddressInvalid, Error::Address(e)))
            .and_then(|a| self.open_udp(s, &a));
        if let Err((reason, error)) = opened {
            self.fail(s, reason, error);
        }
        self.settle(s);
        Ok(())
    }

    pub(crate) fn connect_udp(&mut self, s: SocketId, addr: &str) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        let unbound = matches!(slot.io, Io::None);
        slot.life.connect()?;
        let peer = match SockAddr::parse(addr) {
            Ok(SockAddr::Inet(peer)) => Ok(peer),
            Ok(_) => Err((
                Reason::AddressInvalid,
                Error::AddressMismatch("a UDP socket needs an ip:port address"),
            )),
            Err(e) => Err((Reason::AddressInvalid, Error::Address(e))),
        };
        let result = peer.and_then(|peer| self.attach_peer(s, peer, unbound));
        if let Err((reason, error)) = result {
            self.fail(s, reason, error);
        }
        self.settle(s);
        Ok(())
    }

    /// Fix the peer of a UDP socket, binding it first if it is not yet.
    fn attach_peer(
        &mut self,
        s: SocketId,
        peer: SocketAddr,
        unbound: bool,
    ) -> Result<(), (Reason, Error)> {
        if unbound {
            self.open_udp(s, &udp::any_for(&peer))?;
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return Ok(());
        };
        if let Io::Udp(sock, fixed) = &mut slot.io {
            sock.connect(peer)
                .map_err(|e| (connect_reason(&e), Error::Io(e)))?;
            *fixed = Some(Box::new(peer));
        }
        io_log!(debug, Target::Udp, self.mux_id, socket = %s, %peer, "connected");
        slot.life.connected();
        Ok(())
    }
}
