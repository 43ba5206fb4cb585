//! Bytes out: written at once when the kernel takes them, else queued and
//! written in order as it does.

use std::io::ErrorKind;

use tether_proto::Reason;

use crate::engine::io::Io;
use crate::engine::slot::find;
use crate::engine::task::queue_sent;
use crate::engine::tls::secured;
use crate::engine::Engine;
use crate::{ApiError, Error, SocketId};

impl<S: 'static> Engine<S> {
    /// Write what is queued, for as long as the kernel takes it.
    #[inline]
    pub(crate) fn flush(&mut self, s: SocketId) {
        // Nothing waits (the common case on a writable edge), or nothing may
        // be written yet: the transport is not up.
        if let Some(slot) = self.slot(s) {
            if (slot.extra.has_outq() || slot.extra.tls().is_some()) && slot.life.wire_up() {
                self.flush_queued(s);
            }
        }
    }

    #[inline(never)]
    fn flush_queued(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.extra.tls().is_some() {
            self.flush_tls(s);
            return;
        }
        let wanted = slot.wants_sent;
        let (Io::Stream(stream), Some(q)) = (&slot.io, slot.extra.outq_mut()) else {
            return;
        };
        let mut failed = None;
        while !q.pending().is_empty() {
            let asked = q.pending().len();
            match stream.write(q.pending()) {
                Ok(n) => {
                    queue_sent(&mut self.tasks, wanted, s, q.advance(n));
                    slot.life.wrote(n);
                    slot.active = self.stamp;
                    // Full: the next writable edge comes when there is room.
                    if n < asked {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Sends of zero bytes complete when everything before them has.
        queue_sent(&mut self.tasks, wanted, s, q.advance(0));
        if q.is_empty() {
            slot.extra.take_outq();
        } else if !slot.watch_writable {
            self.watch_writable(s);
        }
        if let Some(e) = failed {
            self.fail(s, Reason::Lost, Error::Io(e));
        }
        self.settle(s);
    }

    /// The kernel refused a write on a socket not yet watched for room to
    /// write: from now the poller says when there is. Its readiness now is
    /// reported anew, so room that came since the refusal is not missed.
    #[cold]
    fn watch_writable(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Io::Stream(stream) = &mut slot.io else {
            return;
        };
        match stream.reregister(&self.registry, s.token()) {
            Ok(()) => slot.watch_writable = true,
            Err(e) => self.fail(s, Reason::Lost, Error::Io(e)),
        }
    }
}

impl<S: 'static> Engine<S> {
    /// Bytes onto the stream, as one send: written at once if the connection
    /// is up and nothing waits before them, else queued in order. A `marked`
    /// send is the user's and gets its `on_sent`; an unmarked one is the
    /// framing's own (HELLO, WELCOME, REJECT, FAREWELL).
    #[inline]
    pub(crate) fn send_parts(
        &mut self,
        s: SocketId,
        parts: &[&[u8]],
        marked: bool,
    ) -> Result<(), ApiError> {
        let slot = find(&mut self.slots, s).ok_or(ApiError::StaleSocket(s))?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        slot.life.send(total)?;
        if let Some(tls) = slot.extra.tls_mut() {
            // Held until the handshake is over, so that nothing reaches a peer
            // whose ALPN choice is still to be accepted.
            if secured(&slot.life) {
                for part in parts {
                    tls.queue(part, 0);
                }
                tls.queue(&[], usize::from(marked));
                self.flush(s);
            } else {
                slot.extra.outq().push_parts(parts, 0, marked);
            }
            return Ok(());
        }
        if self.ring.is_some() && self.ring_send(s, parts, marked) {
            return Ok(());
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return Ok(());
        };
        let mut written = 0;
        if !slot.extra.has_outq() && slot.life.wire_up() {
            if let Io::Stream(stream) = &slot.io {
                match stream.write_all_parts(parts) {
                    Ok(n) => {
                        written = n;
                        slot.active = self.stamp;
                    }
                    Err((n, e)) => {
                        slot.life.wrote(n);
                        self.fail(s, Reason::Lost, Error::Io(e));
                        self.settle(s);
                        return Ok(());
                    }
                }
            }
        }
        slot.life.wrote(written);
        if written == total {
            queue_sent(&mut self.tasks, slot.wants_sent, s, usize::from(marked));
        } else if self.ring.is_some() && self.ring_queue(s, parts, written, marked) {
            // A bulk send on the ring: the rest waits in a ring send.
        } else {
            let Some(slot) = find(&mut self.slots, s) else {
                return Ok(());
            };
            slot.extra.outq().push_parts(parts, written, marked);
            if !slot.watch_writable {
                self.watch_writable(s);
                self.settle(s);
            }
        }
        Ok(())
    }
}
