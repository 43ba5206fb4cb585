//! The security layer in the engine: the handshake's progress, its end
//! (ALPN, `on_tls_ready`, held data let go), and records out.

use tether_proto::{Handshake, Lifecycle, Reason};

use crate::engine::settle::send_fin;
use crate::engine::slot::find;
use crate::engine::task::{queue_sent, Task};
use crate::log::Target;
use crate::security::tls::Flushed;
use crate::transport::Io;
use crate::{Cx, Error, SocketId};

impl<S: 'static> Cx<S> {
    /// Move a handshake on with what the socket holds; once it is over,
    /// announce it.
    pub(crate) fn drive_tls(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.tls.as_mut()) else {
            return;
        };
        // Only while the lifecycle waits for it, and once: a finished
        // handshake waits for its TlsReady task.
        if slot.life.handshake() != Some(Handshake::Security) || !tls.is_handshaking() {
            return;
        }
        let result = tls.handshake(stream, &mut slot.readable);
        // Our next handshake message, or the alert that says why it failed.
        let _ = tls.flush(stream, false);
        match result {
            Err(error) => {
                io_log!(debug, Target::Tls, self.mux_id, socket = %s, %error, "handshake failed");
                self.fail(s, Reason::TlsHandshakeFailed, error);
                self.settle(s);
            }
            Ok(()) if !tls.is_handshaking() => self.tasks.push_back(Task::TlsReady(s)),
            Ok(()) => {}
        }
    }

    /// The handshake is over: let the user refuse the ALPN choice, then tell
    /// the lifecycle (which reports it, and opens the connection or begins the
    /// next handshake), then let the data held during the handshake go.
    pub(crate) fn tls_ready(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Some(tls) = slot.tls.as_ref() else { return };
        if slot.life.handshake() != Some(Handshake::Security) {
            return;
        }
        let info = tls.info();
        io_log!(debug, Target::Tls, self.mux_id, socket = %s, version = %info.version, suite = info.cipher_suite, "handshake done");
        if let Some(protocol) = info.alpn.clone() {
            if self.call(s, |u, cx| u.on_alpn(cx, s, &protocol)) == Some(false) {
                self.fail(s, Reason::TlsHandshakeFailed, Error::AlpnRefused(protocol));
                self.settle(s);
                return;
            }
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.life.closed().is_some() {
            return;
        }
        // What was sent during the handshake goes first, ahead of anything
        // sent from the callbacks that follow.
        if let (Some(tls), Some(held)) = (slot.tls.as_mut(), slot.outq.take()) {
            tls.queue(held.pending(), held.sends());
        }
        // on_tls_ready and a client's on_connected are queued now, ahead of
        // whatever they cause (a recv answered from records already read).
        slot.life.secured();
        self.settle(s);
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.life.closed().is_some() {
            return;
        }
        let framed_handshake = slot.life.handshake() == Some(Handshake::Message);
        if slot.want.is_some() || slot.life.is_draining() || framed_handshake {
            self.tasks.push_back(Task::Read(s));
        }
        self.flush(s);
    }

    /// Write what TLS has for the wire; complete sends whose records went out.
    pub(crate) fn flush_tls(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.tls.as_mut()) else {
            return;
        };
        let handshaking = !secured(&slot.life);
        let (prefix, result) = tls.flush(stream, !handshaking);
        queue_sent(&mut self.tasks, slot.wants_sent, s, prefix.sends);
        slot.life.wrote(prefix.bytes);
        let failure = match result {
            Ok(Flushed::Pending) => None,
            Ok(Flushed::Done { sends, bytes, fin }) => {
                queue_sent(&mut self.tasks, slot.wants_sent, s, sends);
                slot.life.wrote(bytes);
                if bytes > 0 {
                    slot.active = self.now;
                }
                if fin {
                    send_fin(slot, self.mux_id, s);
                }
                None
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failure {
            let reason = if handshaking {
                Reason::TlsHandshakeFailed
            } else {
                Reason::Lost
            };
            self.fail(s, reason, Error::Io(e));
        }
        self.settle(s);
    }
}

/// The security handshake is done (or there is none to wait for): user data
/// goes through the session.
pub(crate) fn secured(life: &Lifecycle) -> bool {
    life.wire_up() && life.handshake() != Some(Handshake::Security)
}
