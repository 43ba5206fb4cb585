//! UDP associations: a listening UDP socket's peers, each a socket of its own.
//!
//! `listen` on a bound, unconnected UDP socket makes it a UDP listener. Its
//! one descriptor serves every association: it reads whenever the poller says
//! readable and dispatches each datagram by the address it came from. A
//! datagram from a live association's peer joins that association's queue
//! (at most [`QUEUE_MAX`] datagrams; beyond, dropped and counted as unread),
//! where it waits for the association's recv: an association reads only when
//! asked, from its queue. A datagram from a new peer is offered to the
//! listener's user (`on_incoming`); admitted, it opens an association and is
//! its first datagram; denied, it is dropped, and the next datagram from that
//! peer is offered again (nothing remembers a denial). At the admission limit
//! (`max_connections`) datagrams from new peers are dropped without asking.
//!
//! An association sends through the listener's descriptor, to its peer; what
//! the kernel will not take yet waits in the association's own send queue,
//! written when the listener's socket is writable again. Every end of an
//! association is a discard; the listener's end ends all of them.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;

use tether_proto::{Lifecycle, Op, Reason, Refused, SockAddr};

use crate::engine::datagram::{fits, send_one};
use crate::engine::io::{Association, Inbox, Io, UdpListening, QUEUE_MAX};
use crate::engine::slot::find;
use crate::engine::task::{queue_sent, Task};
use crate::engine::Engine;
use crate::log::Target;
use crate::security::dtls::Session;
use crate::transport::udp;
use crate::{Admission, ApiError, Cx, Error, PeerInfo, SocketId, SocketUser};

impl<S: 'static> Engine<S> {
    /// `listen` on a UDP socket: it must be bound and not connected.
    pub(crate) fn listen_udp(&mut self, s: SocketId) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        if !matches!(slot.io, Io::Udp(_, None)) || slot.life.closed().is_some() {
            return Err(ApiError::Refused(Refused {
                op: Op::Listen,
                state: slot.life.state(),
            }));
        }
        let Io::Udp(sock, _) = std::mem::take(&mut slot.io) else {
            return Ok(());
        };
        slot.io = Io::UdpListener(Box::new(UdpListening {
            sock,
            peers: HashMap::new(),
            max: None,
            live: 0,
            refused: 0,
            waiting: Vec::new(),
            dtls: None,
        }));
        io_log!(debug, Target::Udp, self.mux_id, socket = %s, "listening");
        Ok(())
    }

    /// The association the listener admitted for `peer`, holding the datagram
    /// that opened it; `on_accepted` follows.
    pub(crate) fn open_association(
        &mut self,
        listener: SocketId,
        peer: SocketAddr,
        user: Box<dyn SocketUser<S>>,
        first: Result<&[u8], Box<Session>>,
    ) -> Option<SocketId> {
        let open = self
            .slot(listener)
            .is_some_and(|l| l.life.closed().is_none() && matches!(l.io, Io::UdpListener(_)));
        if !open || self.stopping {
            return None;
        }
        // Open at once (the listener's bind is its bind), or handshaking.
        let life = Lifecycle::datagram_accepted(first.is_err());
        let (inbox, dtls) = match first {
            Ok(first) => (
                Inbox {
                    queue: VecDeque::from([Box::from(first)]),
                    dropped: 0,
                },
                None,
            ),
            Err(session) => (Inbox::default(), Some(session)),
        };
        let io = Io::Association(Box::new(Association {
            listener,
            peer,
            inbox,
            dtls,
        }));
        let s = self.insert(Some(user), io, life);
        if let Some(slot) = find(&mut self.slots, s) {
            slot.origin = Some(listener);
            slot.readable = true;
        }
        if let Some(Io::UdpListener(l)) = find(&mut self.slots, listener).map(|slot| &mut slot.io) {
            l.peers.insert(peer, s);
            l.live += 1;
        }
        io_log!(debug, Target::Udp, self.mux_id, socket = %s, %listener, %peer, "association");
        self.settle(s);
        Some(s)
    }

    /// A datagram from an association's peer: queued for its recv.
    pub(crate) fn queue_for(&mut self, s: SocketId, data: &[u8]) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Some((inbox, _)) = slot.io.inbox() else {
            return;
        };
        if !inbox.push(data) {
            io_log!(debug, Target::Udp, self.mux_id, socket = %s, len = data.len(), max = QUEUE_MAX, "queue full: datagram dropped");
            return;
        }
        slot.active = self.stamp;
        slot.readable = true;
        if slot.want.is_some() {
            self.tasks.push_back(Task::Read(s));
        }
    }

    /// One datagram to an association's peer, through its listener's socket.
    pub(crate) fn send_association(
        &mut self,
        s: SocketId,
        to: Option<SocketAddr>,
        data: &[u8],
    ) -> Result<(), ApiError> {
        let Some(slot) = find(&mut self.slots, s) else {
            return Err(ApiError::StaleSocket(s));
        };
        slot.life.check_send()?;
        let Io::Association(a) = &slot.io else {
            return Err(ApiError::NoPeer);
        };
        let (listener, peer) = (a.listener, a.peer);
        if to.is_some_and(|to| to != peer) {
            return Err(ApiError::Unsupported {
                op: "send_to another peer on a UDP association",
                transport: crate::transport::Transport::Udp,
            });
        }
        fits(data, udp::max_payload(&peer))?;
        slot.life.send(data.len())?;
        let queued = slot.extra.has_outq();
        if !queued {
            let sent = match self.slot(listener).map(|l| &l.io) {
                Some(Io::UdpListener(l)) => send_one(&l.sock, Some(peer), data),
                _ => Err(ErrorKind::NotConnected.into()),
            };
            let Some(slot) = find(&mut self.slots, s) else {
                return Ok(());
            };
            match sent {
                Ok(()) => {
                    slot.life.wrote(data.len());
                    slot.active = self.stamp;
                    queue_sent(&mut self.tasks, slot.wants_sent, s, 1);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => {
                    slot.life.wrote(data.len());
                    return Err(ApiError::NotSent(e.raw_os_error().unwrap_or(0)));
                }
            }
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return Ok(());
        };
        slot.extra.outq().push_datagram(Some(peer), data);
        if !queued {
            if let Some(Io::UdpListener(l)) = find(&mut self.slots, listener).map(|l| &mut l.io) {
                l.waiting.push(s);
            }
        }
        Ok(())
    }

    /// The listener's socket is writable: write what its associations queued.
    pub(crate) fn flush_associations(&mut self, listener: SocketId) {
        let waiting = match find(&mut self.slots, listener).map(|l| &mut l.io) {
            Some(Io::UdpListener(l)) => std::mem::take(&mut l.waiting),
            _ => return,
        };
        for s in waiting {
            self.flush_association(listener, s);
        }
    }

    fn flush_association(&mut self, listener: SocketId, s: SocketId) {
        let Some(mut q) = find(&mut self.slots, s).and_then(|slot| slot.extra.take_outq()) else {
            return;
        };
        let mut written = Vec::new();
        if let Some(Io::UdpListener(l)) = self.slot(listener).map(|l| &l.io) {
            while let Some((to, data)) = q.front_datagram() {
                match send_one(&l.sock, to, data) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        io_log!(warn, Target::Udp, self.mux_id, socket = %s, error = %e, to = ?to, len = data.len(), "queued datagram refused by the kernel");
                    }
                }
                written.push(q.pop_datagram());
            }
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        for len in written {
            slot.life.wrote(len);
            slot.active = self.stamp;
            queue_sent(&mut self.tasks, slot.wants_sent, s, 1);
        }
        if !q.is_empty() {
            slot.extra.make().outq = Some(q);
            if let Some(Io::UdpListener(l)) = find(&mut self.slots, listener).map(|l| &mut l.io) {
                l.waiting.push(s);
            }
        }
        self.settle(s);
    }

    /// A socket of a UDP listener has ended (its lifecycle is closed, its
    /// descriptor not yet): an association leaves its listener's map, a
    /// listener's end discards every association.
    pub(crate) fn unlink_udp(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.life.closed().is_none() {
            return;
        }
        match &mut slot.io {
            Io::Association(a) => {
                let (listener, peer) = (a.listener, a.peer);
                if let Some(Io::UdpListener(l)) = find(&mut self.slots, listener).map(|l| &mut l.io)
                {
                    if l.peers.get(&peer) == Some(&s) {
                        l.peers.remove(&peer);
                    }
                }
            }
            Io::UdpListener(l) => {
                let ended: Vec<SocketId> = l.peers.drain().map(|(_, a)| a).collect();
                for a in ended {
                    if let Some(slot) = find(&mut self.slots, a) {
                        let _ = slot.life.discard();
                    }
                    self.settle(a);
                }
            }
            _ => {}
        }
    }

    /// Admission: at most `max` associations of a UDP listener open at once.
    pub(crate) fn max_associations(&mut self, s: SocketId, max: Option<u32>) -> bool {
        match find(&mut self.slots, s).map(|slot| &mut slot.io) {
            Some(Io::UdpListener(l)) => {
                l.max = max;
                true
            }
            _ => false,
        }
    }

    /// An association has closed and its `on_closed` returned: one more may open.
    pub(crate) fn release_association(&mut self, listener: SocketId) -> bool {
        match find(&mut self.slots, listener).map(|slot| &mut slot.io) {
            Some(Io::UdpListener(l)) => {
                l.live = l.live.saturating_sub(1);
                true
            }
            _ => false,
        }
    }
}

impl<S: 'static> Cx<S> {
    /// A UDP listener's readiness: room to write, datagrams to dispatch.
    pub(crate) fn udp_listener_ready(&mut self, s: SocketId, event: &mio::event::Event) {
        if event.is_error() {
            // Unconnected: an ICMP error concerns no peer in particular.
            if let Some(Io::UdpListener(l)) = self.engine.slot(s).map(|slot| &slot.io) {
                if let Ok(Some(e)) | Err(e) = l.sock.take_error() {
                    io_log!(debug, Target::Udp, self.engine.mux_id, socket = %s, error = %e, "ICMP error ignored");
                }
            }
        }
        if event.is_writable() {
            self.engine.flush_datagrams(s);
            self.engine.flush_associations(s);
        }
        if event.is_readable() {
            self.pump_udp_listener(s);
        }
    }

    /// Read every datagram waiting and hand each to its association, or offer
    /// it to the listener's user as a new peer's.
    fn pump_udp_listener(&mut self, listener: SocketId) {
        let mut buf = std::mem::take(&mut self.engine.rbuf);
        while let Some(slot) = self.engine.slot_mut(listener) {
            if slot.life.closed().is_some() {
                break;
            }
            let Io::UdpListener(l) = &mut slot.io else {
                break;
            };
            let (len, from) = match l.sock.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.engine.fail(listener, Reason::Lost, Error::Io(e));
                    self.engine.settle(listener);
                    break;
                }
            };
            if let Some(&a) = l.peers.get(&from) {
                if l.dtls.is_some() {
                    self.engine.dtls_input(a, &buf[..len]);
                } else {
                    self.engine.queue_for(a, &buf[..len]);
                }
                continue;
            }
            if l.dtls.is_some() {
                self.dtls_hello(listener, from, &buf[..len]);
                continue;
            }
            if l.full() {
                l.refused += 1;
                let refused = l.refused;
                io_log!(warn, Target::Udp, self.engine.mux_id, socket = %listener, peer = %from, refused, "at max_connections: datagram from a new peer dropped");
                continue;
            }
            let info = PeerInfo {
                peer: Some(SockAddr::Inet(from)),
                hello: None,
            };
            let admission = self.call(listener, |u, cx| u.on_incoming(cx, listener, &info));
            match admission {
                Some(Admission::Accept(user)) => {
                    self.engine
                        .open_association(listener, from, user, Ok(&buf[..len]));
                }
                Some(Admission::AcceptWith(user, data)) => {
                    io_log!(warn, Target::Udp, self.engine.mux_id, socket = %listener, len = data.len(), "accept data needs a framed listener: not sent");
                    self.engine
                        .open_association(listener, from, user, Ok(&buf[..len]));
                }
                _ => {
                    io_log!(debug, Target::Udp, self.engine.mux_id, socket = %listener, peer = %from, "denied: datagram dropped");
                }
            }
        }
        self.engine.rbuf = buf;
    }

    /// Answer the pending recv of a socket that queues its datagrams (an
    /// association, a DTLS client) with its oldest one. Once a DTLS peer's
    /// close_notify came, the last delivery ends the socket.
    pub(crate) fn pump_association(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return;
        };
        let Some(want) = slot.want else { return };
        if slot.life.handshake().is_some() {
            // A DTLS peer's records wait for the handshake's end (on_tls_ready).
            return;
        }
        let Some((inbox, from)) = slot.io.inbox() else {
            return;
        };
        let Some(data) = inbox.queue.pop_front() else {
            slot.readable = false;
            return;
        };
        slot.readable = !inbox.queue.is_empty();
        slot.want = None;
        slot.active = self.engine.stamp;
        let len = data.len();
        slot.life.read(len);
        let kept = len.min(want.n());
        slot.life.delivered(kept);
        slot.life.drop_held();
        self.call(s, |u, cx| {
            if len > kept {
                u.on_truncated(cx, s, &data[..kept], len, from)
            } else {
                u.on_received(cx, s, &data)
            }
        });
        self.engine.end_if_told(s);
    }
}
