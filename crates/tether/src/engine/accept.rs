//! Taking connections from a listener: admission, then a socket for each.

use std::io::{self, ErrorKind};
use std::time::Duration;

use tether_proto::{Lifecycle, Reason};

use crate::engine::io::Io;
use crate::engine::slot::{find, Deadlines};
use crate::engine::task::Task;
use crate::engine::Engine;
use crate::log::Target;
use crate::message::framed::Framed;
use crate::security::tls::Tls;
use crate::transport::{Accepted, Stream, Transport};
use crate::{sys, Admission, Cx, Error, PeerInfo, SocketId, SocketUser};

/// After the process ran out of descriptors, how long a listener waits before
/// it tries to accept again (the waiting connections stay in the backlog).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections taken from one listener in a turn. The rest wait for the next
/// turn, after the other sockets ready in this one were served and what the
/// taken ones set off (their `on_accepted`, their first reads) has run: a
/// burst of thousands of connects neither starves the open connections nor
/// grows the queue of deferred callbacks to its size.
pub(crate) const ACCEPTS_PER_TURN: usize = 64;

impl<S: 'static> Engine<S> {
    /// A socket for a connection just taken. TLS and framed connections stay
    /// `Connecting` until their handshakes are over.
    pub(crate) fn open_accepted(
        &mut self,
        listener: SocketId,
        user: Option<Box<dyn SocketUser<S>>>,
        mut stream: Stream,
        tls: Option<&crate::TlsContext>,
        framed: Option<Framed>,
    ) {
        let life = Lifecycle::accepted_with(tls.is_some(), framed.is_some());
        let inherited = self
            .slot(listener)
            .and_then(|l| l.extra.timeouts())
            .map(|d| d.config);
        let s = self.insert(user, Io::None, life);
        // It holds one of its listener's admissions until its on_closed returns.
        if let Some(Io::Listener(l)) = find(&mut self.slots, listener).map(|slot| &mut slot.io) {
            l.live += 1;
        }
        if let Some(slot) = find(&mut self.slots, s) {
            slot.origin = Some(listener);
            if let Some(config) = inherited {
                slot.extra.make().timeouts = Some(Box::new(Deadlines {
                    config,
                    since: self.now,
                    // Unknown: the first settle starts the stage and arms it.
                    stage: None,
                }));
            }
        }
        // A TLS session writes from places of its own: its socket keeps
        // watching for room to write from the start.
        let watch_writable = tls.is_some();
        let http = match self.slot(listener).map(|l| &l.io) {
            Some(Io::Listener(l)) => l.http,
            _ => None,
        };
        // On the ring, if the loop has one, unless a layer reads the socket
        // itself (TLS, the message layer's framing).
        let plain = tls.is_none() && framed.is_none();
        let registered = if plain && self.ring_adopt(s, &stream) {
            Ok(())
        } else {
            stream.register(&self.registry, s.token(), watch_writable)
        };
        match registered {
            Ok(()) => {
                if let Some(slot) = find(&mut self.slots, s) {
                    slot.watch_writable = watch_writable;
                    slot.io = Io::Stream(stream);
                    if tls.is_some() || framed.is_some() {
                        let parts = slot.extra.make();
                        parts.tls = tls.and_then(|ctx| Tls::server(ctx).ok()).map(Box::new);
                        parts.framed = framed.map(Box::new);
                    }
                    io_log!(debug, slot.log_target(), self.mux_id, socket = %s, %listener, "accepted");
                }
                self.settle(s);
                self.ring_regulate(s);
                if let Some(opts) = http {
                    // A client speaks first, and its request is often in
                    // already: read at once rather than after a wake-up for
                    // the edge (a read that finds nothing waits for it).
                    if let Some(slot) = find(&mut self.slots, s) {
                        slot.readable = true;
                    }
                    self.start_http(s, opts);
                }
            }
            Err(e) => {
                self.fail(s, Reason::AcceptFailed, Error::Io(e));
                self.settle(s);
            }
        }
    }
}

impl<S: 'static> Cx<S> {
    /// Take waiting connections, asking the listener's user about each.
    pub(crate) fn pump_accept(&mut self, listener: SocketId) {
        if self.pump_accept_ring(listener) {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(slot) = self.engine.slot(listener) else {
                return;
            };
            let Io::Listener(l) = &slot.io else {
                return;
            };
            if l.full() {
                // The kernel's backlog holds the rest until one closes.
                return;
            }
            let tls = l.tls.clone();
            let kind = l.listener.kind();
            let framed = slot.extra.framed().map(|f| f.max_payload());
            match l.listener.accept() {
                Ok(accepted) => self.take_in(listener, accepted, framed, kind, tls.as_ref()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => {
                    io_log!(debug, Target::from(kind), self.engine.mux_id, socket = %listener, error = %e, "accept");
                }
                Err(e) if is_exhaustion(&e) => {
                    io_log!(warn, Target::from(kind), self.engine.mux_id, socket = %listener, error = %e, "accept paused");
                    self.pause_accept(listener);
                    return;
                }
                Err(e) => {
                    self.engine
                        .fail(listener, Reason::AcceptFailed, Error::Io(e));
                    self.engine.settle(listener);
                    return;
                }
            }
        }
        // More may wait, and edge-triggered readiness will not say so again:
        // come back next turn.
        self.engine.next_turn.push(Task::Accept(listener));
    }

    /// Out of descriptors: try again after `ACCEPT_BACKOFF` (the waiting
    /// connections stay in the backlog).
    pub(crate) fn pause_accept(&mut self, listener: SocketId) {
        let at = self.engine.now + ACCEPT_BACKOFF;
        if let Some(slot) = find(&mut self.engine.slots, listener) {
            self.engine
                .timers
                .arm_socket(&mut slot.extra.make().timer, listener, at);
        }
    }

    /// One connection taken from `listener`: offered to its user (a framed
    /// listener's, on its HELLO).
    pub(crate) fn take_in(
        &mut self,
        listener: SocketId,
        accepted: Accepted,
        framed: Option<usize>,
        kind: Transport,
        tls: Option<&crate::TlsContext>,
    ) {
        let Some(max_payload) = framed else {
            let info = PeerInfo {
                peer: accepted.peer,
                hello: None,
            };
            let admission = self.call(listener, |u, cx| u.on_incoming(cx, listener, &info));
            self.admit(listener, admission, accepted.stream, kind, tls);
            return;
        };
        // A framed connection is admitted on its HELLO: until then it has no
        // user.
        let pending = Framed::new(&[], max_payload);
        self.engine
            .open_accepted(listener, None, accepted.stream, tls, Some(pending));
    }

    /// Carry out a plain listener's decision on a connection it was offered.
    fn admit(
        &mut self,
        listener: SocketId,
        admission: Option<Admission<S>>,
        stream: Stream,
        kind: Transport,
        tls: Option<&crate::TlsContext>,
    ) {
        match admission {
            Some(Admission::Accept(user)) => {
                self.engine
                    .open_accepted(listener, Some(user), stream, tls, None)
            }
            Some(Admission::AcceptWith(user, data)) => {
                io_log!(
                    warn,
                    Target::from(kind),
                    self.engine.mux_id,
                    socket = %listener,
                    len = data.len(),
                    "accept data needs a framed listener: not sent"
                );
                self.engine
                    .open_accepted(listener, Some(user), stream, tls, None)
            }
            Some(Admission::Reject(data)) => {
                io_log!(
                    warn,
                    Target::from(kind),
                    self.engine.mux_id,
                    socket = %listener,
                    len = data.len(),
                    "reject data needs a framed listener: reset instead"
                );
                self.engine.deny(listener, &stream, kind);
            }
            _ => self.engine.deny(listener, &stream, kind),
        }
    }
}

impl<S: 'static> Engine<S> {
    /// Refuse a connection: RST, so the client sees a refusal (a Unix socket
    /// has none: its client sees the stream end).
    fn deny(&self, listener: SocketId, stream: &Stream, kind: Transport) {
        io_log!(debug, Target::from(kind), self.mux_id, socket = %listener, "denied");
        if kind == Transport::Tcp {
            let _ = sys::set_abortive(stream);
        }
    }
}

/// Errors that concern one would-be connection, not the listener.
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM)
    )
}

/// The process or system is out of something; accepting may work again later.
pub(crate) fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl<S: 'static> Cx<S> {
    /// A connection this listener took has closed and its `on_closed` has
    /// returned: one more may be taken.
    pub(crate) fn release_admission(&mut self, listener: SocketId) {
        if self.engine.release_association(listener) {
            return;
        }
        let Some(slot) = find(&mut self.engine.slots, listener) else {
            return;
        };
        let Io::Listener(listening) = &mut slot.io else {
            return;
        };
        let was_full = listening.full();
        listening.live = listening.live.saturating_sub(1);
        if was_full && !listening.full() {
            // The backlog's connections raised no new readiness: take them now.
            self.pump_accept(listener);
        }
    }
}
