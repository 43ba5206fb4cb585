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

use crate::engine::failure::open_failure;
use crate::engine::slot::{find, Want};
use crate::engine::task::{queue_sent, Task};
use crate::log::Target;
use crate::transport::send_queue::SendQueue;
use crate::transport::{udp, Io};
use crate::{ApiError, Cx, Error, RecvMode, SocketId};

impl<S: 'static> Cx<S> {
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
        slot.life.check_send()?;
        let Io::Udp(sock, peer) = &slot.io else {
            return Err(ApiError::NoPeer);
        };
        let connected = peer.is_some();
        let dest = match (to, peer.as_deref().copied()) {
            (Some(to), _) => to,
            (None, Some(peer)) => peer,
            (None, None) => return Err(ApiError::NoPeer),
        };
        let max = udp::max_payload(&dest);
        if data.len() > max {
            return Err(ApiError::DatagramTooLarge {
                len: data.len(),
                max,
            });
        }
        slot.life.send(data.len())?;
        if slot.outq.is_none() {
            match send_one(sock, to, data) {
                Ok(()) => {
                    slot.life.wrote(data.len());
                    slot.active = self.now;
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
        slot.outq
            .get_or_insert_with(Box::<SendQueue>::default)
            .push_datagram(to, data);
        Ok(())
    }

    /// Write queued datagrams, in order, for as long as the kernel takes them.
    pub(crate) fn flush_datagrams(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Io::Udp(sock, peer), Some(q)) = (&slot.io, slot.outq.as_mut()) else {
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
            slot.active = self.now;
            queue_sent(&mut self.tasks, slot.wants_sent, s, 1);
        }
        if q.is_empty() {
            slot.outq = None;
        }
        if let Some(e) = lost {
            self.fail(s, Reason::Lost, Error::Io(e));
        }
        self.settle(s);
    }

    /// Answer the pending recv with the next datagram.
    pub(crate) fn pump_datagram(&mut self, s: SocketId) {
        let mut buf = std::mem::take(&mut self.rbuf);
        while let Some(slot) = find(&mut self.slots, s) {
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
                    slot.active = self.now;
                    slot.life.read(len);
                    let kept = len.min(want.n);
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
                    self.fail(s, Reason::Lost, Error::Io(e));
                    self.settle(s);
                    break;
                }
            }
        }
        self.rbuf = buf;
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

impl<S> Cx<S> {
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
            slot.want = Some(Want {
                n: kept,
                mode: RecvMode::Partial,
            });
            if slot.readable {
                self.tasks.push_back(Task::Read(s));
            }
        }
    }
}

fn send_one(sock: &mio::net::UdpSocket, to: Option<SocketAddr>, data: &[u8]) -> io::Result<()> {
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
