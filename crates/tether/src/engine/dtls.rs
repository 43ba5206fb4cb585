//! The DTLS layer in the engine: sessions fed the datagrams their peer sends
//! and the loop's time, their records written to the peer, their plaintext
//! queued for recv, and a listener's cookie challenge before anything else.
//!
//! A DTLS client is a connected UDP socket ([`Io::DtlsClient`]); a DTLS
//! listener's peers are associations whose security layer is a session. The
//! lifecycle is the datagram one with a security handshake: `Connecting`
//! until the handshake is over and the peer's certificate verified, then
//! open; `close` sends close_notify and ends `Normal`, the peer's
//! close_notify ends it `ByPeer` once what came before it was delivered.
//!
//! A record the kernel will not take (its buffer is full) is dropped as a
//! datagram lost on the way would be, and its bytes stay counted as unsent.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Instant;

use tether_proto::{Destination, Handshake, Reason, SockAddr};

use crate::engine::datagram::{fits, send_one};
use crate::engine::io::{DtlsClient, DtlsGate, Inbox, Io, UdpListening, PENDING_MAX};
use crate::engine::slot::find;
use crate::engine::task::{queue_sent, Task};
use crate::engine::Engine;
use crate::log::Target;
use crate::security::dtls::{is_client_hello, is_hello_verify, Out, Session};
use crate::security::srtp::SrtpKeys;
use crate::{Admission, ApiError, Cx, DtlsContext, Error, PeerInfo, SocketId};

/// Records a session produced, waiting to be written; reused, so a message
/// costs no allocation.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// What sessions are polled into (grown on the library's request).
    poll: Vec<u8>,
}

impl Wire {
    /// Everything `session` has: its records onto the wire, its plaintext
    /// into `inbox` (none: dropped). True if a datagram was queued.
    fn take(&mut self, session: &mut Session, mut inbox: Option<&mut Inbox>) -> bool {
        let Wire { bytes, ends, poll } = self;
        let mut queued = false;
        session.drain(poll, |out| match out {
            Out::Packet(p) => {
                bytes.extend_from_slice(p);
                ends.push(bytes.len());
            }
            Out::Data(d) => {
                if let Some(inbox) = inbox.as_deref_mut() {
                    queued |= inbox.push(d);
                }
            }
        });
        queued
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter())
            .map(|(a, &b)| &self.bytes[a..b])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

impl<S: 'static> Engine<S> {
    /// `listen` on a bound UDP socket, and speak DTLS with every peer.
    pub(crate) fn listen_dtls(&mut self, s: SocketId, ctx: &DtlsContext) -> Result<(), ApiError> {
        self.listen_udp(s)?;
        if let Some(Io::UdpListener(l)) = find(&mut self.slots, s).map(|slot| &mut slot.io) {
            l.dtls = Some(Box::new(DtlsGate {
                ctx: ctx.clone(),
                pending: Default::default(),
                order: Default::default(),
                ignored: 0,
            }));
        }
        Ok(())
    }

    /// Connect a UDP socket to `addr` and run a DTLS handshake with it.
    pub(crate) fn connect_dtls(
        &mut self,
        s: SocketId,
        addr: &str,
        ctx: &DtlsContext,
    ) -> Result<(), ApiError> {
        if !ctx.can_connect() {
            return Err(ApiError::TlsRole(
                "this DTLS context cannot connect: it has no trust roots or pins",
            ));
        }
        let slot = self.live(s)?;
        if !slot.life.is_datagram() {
            return Err(ApiError::Unsupported {
                op: "connect_dtls",
                transport: slot.io.kind().unwrap_or(crate::Transport::Tcp),
            });
        }
        slot.life.set_security()?;
        let server_name = match (ctx.server_name(), Destination::parse(addr)) {
            (Some(name), _) => name.to_string(),
            (None, Ok(Destination::Addr(SockAddr::Inet(a)))) => a.ip().to_string(),
            (None, Ok(Destination::Name { host, .. })) => host,
            _ => String::new(),
        };
        self.connect_udp(s, addr)?;
        let now = self.now;
        let Some(slot) = find(&mut self.slots, s) else {
            return Ok(());
        };
        if slot.life.handshake() != Some(Handshake::Security) {
            return Ok(());
        }
        let Io::Udp(sock, Some(peer)) = std::mem::take(&mut slot.io) else {
            return Ok(());
        };
        slot.io = Io::DtlsClient(Box::new(DtlsClient {
            sock,
            peer: *peer,
            inbox: Inbox::default(),
            session: Session::new(ctx, true, now),
            server_name,
        }));
        io_log!(debug, Target::Tls, self.mux_id, socket = %s, peer = %peer, "DTLS handshake");
        let started = slot.io.dtls_mut().map(|d| d.tick(now));
        self.dtls_after(s, started.unwrap_or(Ok(())));
        Ok(())
    }

    /// A datagram from a DTLS socket's peer.
    pub(crate) fn dtls_input(&mut self, s: SocketId, data: &[u8]) {
        let now = self.now;
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        slot.active = self.stamp;
        let Some(session) = slot.io.dtls_mut() else {
            return;
        };
        let fed = session.feed(now, data);
        self.dtls_after(s, fed);
    }

    /// The session's retransmission deadline came: tick it.
    pub(crate) fn dtls_tick(&mut self, s: SocketId, now: Instant) {
        let Some(session) = find(&mut self.slots, s).and_then(|slot| slot.io.dtls_mut()) else {
            return;
        };
        if session.deadline().is_some_and(|at| at <= now) {
            let ticked = session.tick(now);
            self.dtls_after(s, ticked);
        }
    }

    /// After the session took input or time: end it if it failed, else write
    /// its records, queue its plaintext, and report what it settled.
    fn dtls_after(&mut self, s: SocketId, result: Result<(), (Reason, Error)>) {
        if let Err((reason, error)) = result {
            io_log!(debug, Target::Tls, self.mux_id, socket = %s, %reason, %error, "DTLS failed");
            self.fail(s, reason, error);
            self.settle(s);
            return;
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let wire = &mut self.wire;
        let mut delivered = false;
        let (connected, peer_closed) = match &mut slot.io {
            Io::Association(a) => match a.dtls.as_deref_mut() {
                Some(session) => drain(session, wire, &mut a.inbox, &mut delivered),
                None => return,
            },
            Io::DtlsClient(c) => drain(&mut c.session, wire, &mut c.inbox, &mut delivered),
            _ => return,
        };
        if delivered && slot.want.is_some() && slot.life.handshake().is_none() {
            slot.readable = true;
            self.tasks.push_back(Task::Read(s));
        }
        if peer_closed && !slot.life.fin_seen() {
            io_log!(debug, Target::Tls, self.mux_id, socket = %s, "close_notify received");
            slot.life.fin_known();
        }
        self.write_wire(s);
        if connected {
            // At once (it runs no callback), so on_tls_ready is queued ahead
            // of any recv's delivery that a callback queued meanwhile.
            self.dtls_ready(s);
        }
        self.end_if_told(s);
        self.arm(s);
        self.settle(s);
    }

    /// Write the records in `self.wire` to the peer of `s`.
    fn write_wire(&mut self, s: SocketId) {
        let Some(slot) = self.slot(s) else {
            self.wire.clear();
            return;
        };
        let (sock, to) = match &slot.io {
            Io::DtlsClient(c) => (&c.sock, None),
            Io::Association(a) => match self.slot(a.listener).map(|l| &l.io) {
                Some(Io::UdpListener(l)) => (&l.sock, Some(a.peer)),
                _ => {
                    self.wire.clear();
                    return;
                }
            },
            _ => {
                self.wire.clear();
                return;
            }
        };
        for record in self.wire.records() {
            match send_one(sock, to, record) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    io_log!(debug, Target::Tls, self.mux_id, socket = %s, len = record.len(), "socket buffer full: DTLS record dropped");
                }
                Err(e) => {
                    io_log!(debug, Target::Tls, self.mux_id, socket = %s, error = %e, "DTLS record not sent");
                }
            }
        }
        self.wire.clear();
    }

    /// Once the peer's close_notify came and everything before it was
    /// delivered, the peer's end is reported (rule 2).
    pub(crate) fn end_if_told(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let told = slot.io.dtls().is_some_and(Session::peer_closed);
        let empty = slot.io.inbox().is_some_and(|(i, _)| i.queue.is_empty());
        if told && empty && slot.life.fin_seen() {
            slot.life.eof();
            self.settle(s);
        }
    }

    /// One datagram of plaintext to a DTLS socket's peer: held until the
    /// handshake is over, then one record.
    pub(crate) fn send_dtls(
        &mut self,
        s: SocketId,
        to: Option<SocketAddr>,
        data: &[u8],
    ) -> Result<(), ApiError> {
        let Some(slot) = find(&mut self.slots, s) else {
            return Err(ApiError::StaleSocket(s));
        };
        slot.life.check_send()?;
        let (Some(session), Some(SockAddr::Inet(peer))) = (slot.io.dtls(), slot.io.peer_addr())
        else {
            return Err(ApiError::NoPeer);
        };
        if to.is_some_and(|to| to != peer) {
            return Err(ApiError::Unsupported {
                op: "send_to another peer on a DTLS socket",
                transport: crate::Transport::Udp,
            });
        }
        fits(data, session.context().max_record())?;
        slot.life.send(data.len())?;
        if slot.life.holds_output() {
            slot.extra.outq().push_datagram(None, data);
            return Ok(());
        }
        self.seal(s, data);
        self.write_wire(s);
        Ok(())
    }

    /// Encrypt one datagram into `self.wire` and count it written.
    fn seal(&mut self, s: SocketId, data: &[u8]) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Some(session) = slot.io.dtls_mut() else {
            return;
        };
        if let Err(e) = session.send(data) {
            io_log!(debug, Target::Tls, self.mux_id, socket = %s, error = %e, "DTLS record refused");
            return;
        }
        self.wire.take(session, None);
        slot.life.wrote(data.len());
        slot.active = self.stamp;
        queue_sent(&mut self.tasks, slot.wants_sent, s, 1);
    }

    /// The handshake is over: check the peer's certificate (and the SRTP
    /// profile), then open, and let the held datagrams go.
    fn dtls_ready(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.life.handshake() != Some(Handshake::Security) {
            return;
        }
        let checked = match &slot.io {
            Io::DtlsClient(c) => c.session.verify(Some(&c.server_name)),
            Io::Association(a) => a.dtls.as_ref().map_or(Ok(()), |d| d.verify(None)),
            _ => return,
        };
        if let Err(error) = checked {
            io_log!(debug, Target::Tls, self.mux_id, socket = %s, %error, "DTLS peer refused");
            self.fail(s, Reason::TlsHandshakeFailed, error);
            self.settle(s);
            return;
        }
        io_log!(debug, Target::Tls, self.mux_id, socket = %s, "DTLS handshake done");
        slot.life.secured();
        let held = slot.extra.take_outq();
        // on_tls_ready (queued by settle) comes first; then the records that
        // came with the handshake's last flight.
        self.settle(s);
        if let Some(slot) = find(&mut self.slots, s) {
            let arrived = slot.io.inbox().is_some_and(|(i, _)| !i.queue.is_empty());
            if arrived && slot.want.is_some() {
                self.tasks.push_back(Task::Read(s));
            }
        }
        if let Some(mut q) = held {
            while let Some((_, data)) = q.front_datagram() {
                let data = data.to_vec();
                q.pop_datagram();
                self.seal(s, &data);
            }
            self.write_wire(s);
        }
        self.arm(s);
        self.settle(s);
    }

    /// `close` of a secured DTLS socket: its close_notify is its FIN.
    pub(crate) fn dtls_close_notify(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Some(session) = slot.io.dtls_mut() else {
            return;
        };
        session.close();
        self.wire.take(session, None);
        self.write_wire(s);
        if let Some(slot) = find(&mut self.slots, s) {
            slot.life.fin_sent();
        }
        self.settle(s);
    }

    pub(crate) fn dtls_pending(&self, s: SocketId) -> usize {
        match self.slot(s).map(|slot| &slot.io) {
            Some(Io::UdpListener(l)) => l.dtls.as_ref().map_or(0, |g| g.pending.len()),
            _ => 0,
        }
    }

    /// The SRTP keys a DTLS-SRTP handshake exported.
    pub(crate) fn srtp_keying_material(&self, s: SocketId) -> Option<SrtpKeys> {
        self.slot(s)?.io.dtls()?.srtp_keys().cloned()
    }
}

/// Everything the session has: records into `wire`, plaintext into `inbox`.
/// Returns whether the handshake just completed and whether the peer's
/// close_notify came.
fn drain(
    session: &mut Session,
    wire: &mut Wire,
    inbox: &mut Inbox,
    delivered: &mut bool,
) -> (bool, bool) {
    *delivered |= wire.take(session, Some(inbox));
    (session.take_connected(), session.peer_closed())
}

/// Keep a peer's handshake until its next datagram, dropping the oldest kept
/// beyond [`PENDING_MAX`].
fn park(gate: &mut DtlsGate, from: SocketAddr, session: Box<Session>) {
    gate.pending.insert(from, session);
    gate.order.push_back(from);
    while gate.order.len() > PENDING_MAX {
        if let Some(oldest) = gate.order.pop_front() {
            gate.pending.remove(&oldest);
        }
    }
}

impl<S: 'static> Cx<S> {
    /// A datagram from a peer a DTLS listener has no association with. Only
    /// a ClientHello is looked at. Its first one is answered with a cookie
    /// challenge (HelloVerifyRequest); once it comes back with the cookie,
    /// proving the peer owns its address, `on_incoming` decides, and an
    /// admitted peer's association takes over the handshake.
    pub(crate) fn dtls_hello(&mut self, listener: SocketId, from: SocketAddr, data: &[u8]) {
        let now = self.engine.now;
        let Some(Io::UdpListener(l)) =
            find(&mut self.engine.slots, listener).map(|slot| &mut slot.io)
        else {
            return;
        };
        if l.full() {
            // At the admission limit nothing is looked at, so a peer's
            // handshake stays where it was: its next ClientHello (a
            // retransmission) is taken once there is room.
            l.refused += 1;
            io_log!(debug, Target::Udp, self.engine.mux_id, socket = %listener, peer = %from, "at max_connections: DTLS datagram dropped");
            return;
        }
        let UdpListening { sock, dtls, .. } = &mut **l;
        let Some(gate) = dtls.as_deref_mut() else {
            return;
        };
        let known = gate.pending.contains_key(&from);
        if !known && !is_client_hello(data) {
            gate.ignored += 1;
            return;
        }
        let mut session = match gate.pending.remove(&from) {
            Some(session) => session,
            None => Box::new(Session::new(&gate.ctx, false, now)),
        };
        gate.order.retain(|p| *p != from);
        if session.feed(now, data).is_err() {
            return;
        }
        let wire = &mut self.engine.wire;
        // Nothing but handshake records before the handshake's end.
        wire.take(&mut session, None);
        let silent = wire.records().next().is_none();
        if silent && !known {
            // Not a ClientHello after all (the library dropped it as noise):
            // nothing is kept.
            gate.ignored += 1;
            return;
        }
        if silent || wire.records().next().is_some_and(is_hello_verify) {
            for record in wire.records() {
                let _ = send_one(sock, Some(from), record);
            }
            wire.clear();
            park(gate, from, session);
            return;
        }
        // The cookie came back: the peer is at its address.
        let info = PeerInfo {
            peer: Some(SockAddr::Inet(from)),
            hello: None,
        };
        let admission = self.call(listener, |u, cx| u.on_incoming(cx, listener, &info));
        let user = match admission {
            Some(Admission::Accept(user)) | Some(Admission::AcceptWith(user, _)) => user,
            _ => {
                self.engine.wire.clear();
                io_log!(debug, Target::Udp, self.engine.mux_id, socket = %listener, peer = %from, "DTLS peer denied");
                return;
            }
        };
        match self
            .engine
            .open_association(listener, from, user, Err(session))
        {
            Some(s) => {
                self.engine.write_wire(s);
                self.engine.arm(s);
            }
            None => self.engine.wire.clear(),
        }
    }

    /// A DTLS client's socket is readable: every datagram goes through the
    /// session now (the handshake needs them, and plaintext waits in the
    /// inbox for recv).
    pub(crate) fn dtls_client_ready(&mut self, s: SocketId, event: &mio::event::Event) {
        if event.is_error() {
            if let Some(Io::DtlsClient(c)) = self.engine.slot(s).map(|slot| &slot.io) {
                if let Ok(Some(e)) | Err(e) = c.sock.take_error() {
                    self.engine.fail(s, Reason::Lost, Error::Io(e));
                    self.engine.settle(s);
                    return;
                }
            }
        }
        if !event.is_readable() {
            return;
        }
        let mut buf = std::mem::take(&mut self.engine.rbuf);
        while let Some(Io::DtlsClient(c)) = self.engine.slot(s).map(|slot| &slot.io) {
            match c.sock.recv(&mut buf) {
                Ok(len) => self.engine.dtls_input(s, &buf[..len]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
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
