//! The security layer in the engine: the handshake's progress, its end
//! (ALPN, `on_tls_ready`, held data let go), and records out.

use tether_proto::{Reason, State};

use crate::engine::slot::find;
use crate::engine::task::Task;
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
        if tls.ready || !tls.tcp_up || slot.life.closed().is_some() {
            return;
        }
        let result = tls.handshake(stream, &mut slot.readable);
        // Our next handshake message, or the alert that says why it failed.
        let _ = tls.flush(stream);
        match result {
            Err(error) => {
                io_log!(debug, Target::Tls, self.mux_id, socket = %s, %error, "handshake failed");
                self.fail(s, Reason::TlsHandshakeFailed, error);
                self.settle(s);
            }
            Ok(()) if !tls.is_handshaking() => {
                tls.ready = true;
                self.tasks.push_back(Task::TlsReady(s));
            }
            Ok(()) => {}
        }
    }

    /// The handshake is over: let the user refuse the ALPN choice, report it,
    /// then let the data held during the handshake go.
    pub(crate) fn tls_ready(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Some(tls) = slot.tls.as_ref() else { return };
        if slot.life.closed().is_some() {
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
        let framed = slot.framed.as_ref().map(|f| f.handshaking());
        if slot.life.state() == State::Connecting && framed.is_none() {
            slot.life.connected();
            // The peer's FIN may have come with the handshake's last records.
            if slot.tls.as_ref().is_some_and(|t| t.peer_fin) {
                slot.life.fin_known();
            }
        }
        // A client's on_connected is queued now, ahead of whatever
        // on_tls_ready causes (a recv answered from records already read).
        self.settle(s);
        if self
            .slot(s)
            .is_some_and(|slot| slot.life.closed().is_none())
        {
            self.call(s, |u, cx| u.on_tls_ready(cx, s, &info));
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.life.closed().is_some() {
            return;
        }
        if slot.want.is_some() || slot.life.is_draining() || framed == Some(true) {
            self.tasks.push_back(Task::Read(s));
        }
        // With no recv pending, the peer's end is seen now or never: the
        // poller will not say it again.
        self.end_if_drained(s);
        self.settle(s);
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
        let handshaking = !tls.ready;
        let (prefix, result) = tls.flush(stream);
        for _ in 0..prefix.sends {
            self.tasks.push_back(Task::Sent(s));
        }
        slot.life.wrote(prefix.bytes);
        let failure = match result {
            Ok(Flushed::Pending) => None,
            Ok(Flushed::Done { sends, bytes, fin }) => {
                for _ in 0..sends {
                    self.tasks.push_back(Task::Sent(s));
                }
                slot.life.wrote(bytes);
                if bytes > 0 {
                    slot.active = self.now;
                }
                if fin {
                    stream.shutdown_write().err()
                } else {
                    None
                }
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
