//! The UDP side of [`Cx`]: datagrams in and out, one `recv` per datagram.
//!
//! A UDP socket shares the loop's machinery with streams (the deferred
//! callbacks, the send queue with one `on_sent` per send, the lifecycle), but
//! has no connection: it is open once bound, `connect` only fixes its peer, and
//! every way of ending it is a discard.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use mio::Interest;
use tether_proto::{Reason, SockAddr};

use crate::engine::failure::{connect_reason, open_failure};
use crate::engine::io::Io;
use crate::engine::slot::{find, Want};
use crate::engine::task::{queue_sent, Task};
use crate::engine::Engine;
use crate::log::Target;
use crate::transport::{udp, Transport};
use crate::{ApiError, Cx, Error, RecvMode, SocketId, SocketUser};

impl<S: 'static> Engine<S> {
    /// Bind a UDP socket and register it; `on_bound` follows.
    pub(crate) fn open_udp(&mut self, s: SocketId, addr: &SockAddr) -> Result<(), (Reason, Error)> {
        let mut sock = udp::bind(addr).map_err(open_failure)?;
        self.registry
            .register(
                &mut sock,
                s.token(),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| (Reason::OpenFailed, Error::Io(e)))?;
        io_log!(debug, Target::Udp, self.mux_id, socket = %s, addr = %addr, "bound");
        if let Some(slot) = find(&mut self.slots, s) {
            slot.io = Io::Udp(sock, None);
        }
        // Open from now: an idle timeout set before the bind starts to run.
        self.tasks.push_back(Task::Bound(s));
        Ok(())
    }

    /// One datagram to `to`, or to the connected peer.
    pub(crate) fn send_datagram(
        &mut self,
        s: SocketId,
        to: Option<SocketAddr>,
        data: &[u8],
    ) -> Result<(), ApiError> {
        let Some(slot) = find(&mut self.slots, s) else {
            return Err(ApiError::StaleSocket(s));
        };
        if slot.io.dtls().is_some() {
            return self.send_dtls(s, to, data);
        }
        if matches!(slot.io, Io::Association(_)) {
            return self.send_association(s, to, data);
        }
        slot.life.check_send()?;
        let Some((sock, peer)) = slot.io.udp() else {
            return Err(ApiError::NoPeer);
        };
        let connected = peer.is_some();
        let dest = match (to, peer) {
            (Some(to), _) => to,
            (None, Some(peer)) => peer,
            (None, None) => return Err(ApiError::NoPeer),
        };
        fits(data, udp::max_payload(&dest))?;
        slot.life.send(data.len())?;
        if !slot.extra.has_outq() {
            match send_one(sock, to, data) {
                Ok(()) => {
                    slot.life.wrote(data.len());
                    slot.active = self.stamp;
                    queue_sent(&mut self.tasks, slot.wants_sent, s, 1);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if connected => {
                    // The one peer is unreachable: the socket has nobody to talk to.
                    self.fail(s, Reason::Lost, Error::Io(e));
                    self.settle(s);
                    return Ok(());
                }
                Err(e) => {
                    slot.life.wrote(data.len());
                    return Err(ApiError::NotSent(e.raw_os_error().unwrap_or(0)));
                }
            }
        }
        slot.extra.outq().push_datagram(to, data);
        Ok(())
    }

    /// Write queued datagrams, in order, for as long as the kernel takes them.
    pub(crate) fn flush_datagrams(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Some((sock, peer)), Some(q)) = (slot.io.udp(), slot.extra.outq_mut()) else {
            return;
        };
        let mut lost = None;
        while let Some((to, data)) = q.front_datagram() {
            match send_one(sock, to, data) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if peer.is_some() => {
                    lost = Some(e);
                    break;
                }
                Err(e) => {
                    io_log!(warn, Target::Udp, self.mux_id, socket = %s, error = %e, to = ?to, len = data.len(), "queued datagram refused by the kernel");
                }
            }
            slot.life.wrote(q.pop_datagram());
            slot.active = self.stamp;
            queue_sent(&mut self.tasks, slot.wants_sent, s, 1);
        }
        if q.is_empty() {
            slot.extra.take_outq();
        }
        if let Some(e) = lost {
            self.fail(s, Reason::Lost, Error::Io(e));
        }
        self.settle(s);
    }

    pub(crate) fn on_udp_ready(&mut self, s: SocketId, event: &mio::event::Event) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Io::Udp(sock, peer) = &slot.io else {
            return;
        };
        if event.is_error() {
            // An ICMP error (port unreachable, ...). Linux reports it only on a
            // connected socket, whose one peer it concerns.
            if let Ok(Some(e)) | Err(e) = sock.take_error() {
                if peer.is_some() {
                    self.fail(s, Reason::Lost, Error::Io(e));
                    self.settle(s);
                    return;
                }
                io_log!(debug, Target::Udp, self.mux_id, socket = %s, error = %e, "ICMP error ignored");
            }
        }
        if event.is_readable() {
            slot.readable = true;
            if slot.want.is_some() {
                self.tasks.push_back(Task::Read(s));
            }
        }
        if event.is_writable() {
            self.flush_datagrams(s);
        }
    }
}

impl<S: 'static> Cx<S> {
    /// Answer the pending recv with the next datagram.
    pub(crate) fn pump_datagram(&mut self, s: SocketId) {
        let mut buf = std::mem::take(&mut self.engine.rbuf);
        while let Some(slot) = find(&mut self.engine.slots, s) {
            if matches!(slot.io, Io::Association(_) | Io::DtlsClient(_)) {
                self.pump_association(s);
                break;
            }
            let (Io::Udp(sock, peer), Some(want)) = (&slot.io, slot.want) else {
                break;
            };
            if !slot.readable {
                break;
            }
            // The shared buffer holds the largest datagram whole, so `len` is
            // always the datagram's true length.
            match sock.recv_from(&mut buf) {
                Ok((len, from)) => {
                    let connected = peer.is_some();
                    slot.want = None;
                    slot.active = self.engine.stamp;
                    slot.life.read(len);
                    let kept = len.min(want.n());
                    slot.life.delivered(kept);
                    slot.life.drop_held();
                    let data = &buf[..kept];
                    self.call(s, |u, cx| {
                        if len > kept {
                            u.on_truncated(cx, s, data, len, from)
                        } else if connected {
                            u.on_received(cx, s, data)
                        } else {
                            u.on_received_from(cx, s, data, from)
                        }
                    });
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    slot.readable = false;
                    break;
                }
                Err(e) => {
                    self.engine.fail(s, Reason::Lost, Error::Io(e));
                    self.engine.settle(s);
                    break;
                }
            }
        }
        self.engine.rbuf = buf;
    }
}

impl<S> Engine<S> {
    /// What the default `on_truncated` does beside its warning: the datagram is
    /// dropped whole, so its kept bytes count as unread too, and the recv it
    /// answered is asked again, so the next datagram answers it as if the cut
    /// one had never come.
    pub(crate) fn drop_truncated(&mut self, s: SocketId, kept: usize) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        slot.life.read(kept);
        slot.life.drop_held();
        if slot.want.is_none() && slot.life.check_recv().is_ok() {
            slot.want = Some(Want::new(kept, RecvMode::Partial));
            if slot.readable {
                self.tasks.push_back(Task::Read(s));
            }
        }
    }
}

/// One datagram is sent whole or not at all: longer than `max`, it is
/// refused at the call.
#[inline]
pub(crate) fn fits(data: &[u8], max: usize) -> Result<(), ApiError> {
    if data.len() > max {
        return Err(ApiError::DatagramTooLarge {
            len: data.len(),
            max,
        });
    }
    Ok(())
}

pub(crate) fn send_one(
    sock: &mio::net::UdpSocket,
    to: Option<SocketAddr>,
    data: &[u8],
) -> io::Result<()> {
    loop {
        let sent = match to {
            Some(to) => sock.send_to(data, to),
            None => sock.send(data),
        };
        match sent {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A datagram goes whole or not at all.
            other => return other.map(drop),
        }
    }
}

impl<S: 'static> Engine<S> {
    /// A new UDP socket, with `user` for its callbacks. `bind` gives it an
    /// address (port 0: the system picks); `send_to` or `connect` on an unbound
    /// one binds it to every interface of the peer's family first.
    pub(crate) fn udp(&mut self, user: impl SocketUser<S> + 'static) -> SocketId {
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
    pub(crate) fn send_to(
        &mut self,
        s: SocketId,
        data: &[u8],
        to: SocketAddr,
    ) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        if !slot.life.is_datagram() {
            return Err(ApiError::Unsupported {
                op: "send_to",
                transport: slot.io.kind().unwrap_or(Transport::Tcp),
            });
        }
        // Refused before a fresh socket is bound for it: misuse changes nothing.
        fits(data, udp::max_payload(&to))?;
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
        if matches!(slot.io, Io::UdpListener(_) | Io::Association(_)) {
            // A listener's peers are its associations'; an association's is fixed.
            return Err(ApiError::Refused(tether_proto::Refused {
                op: tether_proto::Op::Connect,
                state: slot.life.state(),
            }));
        }
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
