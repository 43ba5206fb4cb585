//! Readiness from the poller: a connect completing, input, room to write.

use std::io::{self, ErrorKind};

use tether_proto::{Handshake, Reason};

use crate::engine::dial::ATTEMPT_BIT;
use crate::engine::failure::connect_reason;
use crate::engine::io::Io;
use crate::engine::slot::find;
use crate::engine::task::Task;
use crate::engine::Engine;
use crate::{Cx, Error, SocketId};

impl<S: 'static> Engine<S> {
    /// A stream socket's readiness: a connect completing, an error, input,
    /// the peer's FIN, room to write, a handshake's next step. Returns true
    /// when input waits that someone wants (a recv, a draining close, the
    /// framed handshake): the caller reads it.
    #[inline]
    pub(crate) fn stream_ready(&mut self, s: SocketId, event: &mio::event::Event) -> bool {
        let Some(slot) = find(&mut self.slots, s) else {
            return false;
        };
        if !slot.life.wire_up() {
            if !self.check_connect(s) {
                return false;
            }
            if self.ring.as_deref().is_some_and(|r| r.key(s).is_some()) {
                // Connected and moved to the ring, which reports what comes
                // from now on (a FIN this event saw included).
                return false;
            }
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return false;
        };
        let Io::Stream(stream) = &slot.io else {
            return false;
        };
        if event.is_error() {
            let error = match stream.take_error() {
                Ok(Some(e)) | Err(e) => e,
                Ok(None) => io::Error::from(ErrorKind::ConnectionReset),
            };
            self.fail(s, Reason::Lost, Error::Io(error));
            self.settle(s);
            return false;
        }
        if event.is_readable() || event.is_read_closed() {
            slot.readable = true;
        }
        if event.is_read_closed() {
            // Edge-triggered: told once. The lifecycle keeps it through a
            // handshake still running.
            slot.life.fin_known();
            self.end_if_drained(s);
            self.settle(s);
        }
        if event.is_writable() {
            self.flush(s);
        }
        let Some(slot) = self.slot(s) else {
            return false;
        };
        // Only a layer above the transport has a handshake to drive.
        let layered = slot.extra.tls().is_some() || slot.extra.framed().is_some();
        let handshake = if layered { slot.life.handshake() } else { None };
        if handshake == Some(Handshake::Security) {
            // What came is the handshake's. Once that is over, tls_ready
            // reads for the recv, after on_connected is queued.
            self.drive_tls(s);
            return false;
        }
        slot.readable
            && (slot.want.is_some()
                || slot.life.is_draining()
                || handshake == Some(Handshake::Message))
    }

    /// A connecting socket became ready: connected, failed, or neither yet.
    /// Returns true once connected.
    fn check_connect(&mut self, s: SocketId) -> bool {
        let mux = self.mux_id;
        let Some(slot) = find(&mut self.slots, s) else {
            return false;
        };
        let Io::Stream(stream) = &slot.io else {
            return false;
        };
        match stream.take_error() {
            Ok(None) if stream.is_connected() => {
                io_log!(debug, slot.log_target(), mux, socket = %s, "connected");
                // The transport is up: the lifecycle opens the connection, or
                // the next handshake (TLS, then framing) begins.
                slot.life.connected();
                self.settle(s);
                self.ring_adopt_connected(s);
                self.flush(s);
                true
            }
            Ok(None) => false,
            Ok(Some(e)) | Err(e) => {
                io_log!(debug, slot.log_target(), mux, socket = %s, error = %e, "connect failed");
                self.fail(s, connect_reason(&e), Error::Io(e));
                self.settle(s);
                false
            }
        }
    }
}

impl<S: 'static> Cx<S> {
    pub(crate) fn on_ready(&mut self, s: SocketId, event: &mio::event::Event) {
        if s.idx & ATTEMPT_BIT != 0 {
            // One of the addresses a connect to a name is racing.
            let s = SocketId {
                idx: s.idx & !ATTEMPT_BIT,
                gen: s.gen,
            };
            return self.engine.attempt_ready(s);
        }
        let Some(slot) = self.engine.slot(s) else {
            return;
        };
        match &slot.io {
            Io::Listener(..) => self.pump_accept(s),
            Io::Udp(..) => self.engine.on_udp_ready(s, event),
            Io::UdpListener(..) => self.udp_listener_ready(s, event),
            Io::DtlsClient(..) => self.dtls_client_ready(s, event),
            Io::Stream(_) => {
                // Read now if nothing this readiness caused waits before it
                // (the loop runs each event's tasks before the next event):
                // the same order as through the queue, without the round trip
                // through it.
                let wanted = self.engine.stream_ready(s, event);
                if wanted && self.engine.tasks.is_empty() {
                    self.pump(s);
                } else if wanted {
                    self.engine.tasks.push_back(Task::Read(s));
                }
            }
            _ => {}
        }
    }
}
