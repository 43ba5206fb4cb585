//! Sockets on the io_uring backend: TCP listeners and the plain TCP streams
//! they accept or connect (HTTP mode's too). What the ring completes (a
//! receive, a send, an accept) comes here and enters the same lifecycle the
//! readiness path feeds: received bytes are lent to the pending recv from
//! the ring's buffers or wait in the socket's read-ahead, from which
//! `pump_read` reads as it reads a socket; small sends are queued and
//! submitted once per turn.

use std::os::fd::AsRawFd;

use tether_proto::{Reason, SockAddr};

use crate::engine::accept::{is_exhaustion, is_transient_accept_error, ACCEPTS_PER_TURN};
use crate::engine::io::Io;
use crate::engine::slot::find;
use crate::engine::task::{queue_sent, Task};
use crate::engine::Engine;
use crate::log::Target;
use crate::transport::{Accepted, Listener, Read, Stream, Transport};
use crate::uring::{Completion, Op, RingSock, STASH_HIGH};
use crate::{ApiError, Cx, Error, SocketId};

/// Sends from this size on an idle ring socket are written at once (by the
/// epoll path's write) rather than in the turn's submission. A bulk send costs its copy either way;
/// written at once it needs no completion to say so, and a producer that
/// sends while `unsent` is 0 fills the socket in one turn, as on epoll,
/// instead of one chunk a turn. Small sends (the ones batching pays for)
/// stay in the batch.
const WRITE_AT_ONCE_FROM: usize = 16 * 1024;

impl<S: 'static> Engine<S> {
    /// Put a plain TCP listener on the ring (its multishot accept). False
    /// when the loop has no ring.
    pub(crate) fn ring_listen(&mut self, s: SocketId) -> bool {
        let Some(ring) = self.ring.as_deref_mut() else {
            return false;
        };
        let Some(slot) = find(&mut self.slots, s) else {
            return false;
        };
        let Io::Listener(l) = &slot.io else {
            return false;
        };
        let Listener::Tcp(tcp) = &l.listener else {
            return false;
        };
        let key = ring.adopt(s, tcp.as_raw_fd());
        ring.arm_accept(key);
        // In the kernel now, not at the next turn: a program that waits on
        // the loop's descriptor sees the first connection.
        let _ = ring.submit_now();
        true
    }

    /// Put an accepted plain TCP stream on the ring (its multishot receive).
    pub(crate) fn ring_adopt(&mut self, s: SocketId, stream: &Stream) -> bool {
        let (Some(ring), Stream::Tcp(tcp)) = (self.ring.as_deref_mut(), stream) else {
            return false;
        };
        ring.adopt(s, tcp.as_raw_fd());
        true
    }

    /// A plain TCP stream that connected moves from the poller to the ring,
    /// with what was sent while it connected.
    pub(crate) fn ring_adopt_connected(&mut self, s: SocketId) {
        if self.ring.is_none() {
            return;
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.extra.tls().is_some() || slot.extra.framed().is_some() {
            return;
        }
        let Io::Stream(stream @ Stream::Tcp(_)) = &mut slot.io else {
            return;
        };
        if stream.deregister(&self.registry).is_err() {
            return;
        }
        let Some(ring) = self.ring.as_deref_mut() else {
            return;
        };
        let key = ring.adopt(s, stream.as_raw_fd());
        slot.watch_writable = false;
        if let (Some(q), Some(f)) = (slot.extra.take_outq(), ring.flow(key)) {
            f.out.append(&q);
            ring.want_send(key);
        }
        self.ring_regulate(s);
    }

    /// Take a stream off the ring onto readiness (a StartTLS: the TLS layer
    /// reads and writes the socket itself). What the ring had not sent
    /// becomes the socket's send queue; what it received and nobody read is
    /// returned, for the TLS session to take first. Nothing to do for a
    /// socket not on the ring.
    pub(crate) fn ring_detach(&mut self, s: SocketId) -> Result<Vec<u8>, ApiError> {
        let Some(ring) = self.ring.as_deref_mut() else {
            return Ok(Vec::new());
        };
        if ring.key(s).is_none() {
            return Ok(Vec::new());
        }
        let Some(left) = ring.detach(s) else {
            // A request of it would not end: the ring still uses the socket.
            return Err(ApiError::Unsupported {
                op: "start_tls while the ring cannot let go of the socket",
                transport: Transport::Tcp,
            });
        };
        let Some(slot) = find(&mut self.slots, s) else {
            return Ok(Vec::new());
        };
        queue_sent(&mut self.tasks, true, s, left.sends);
        slot.life.wrote(left.sent);
        if !left.out.is_empty() {
            slot.extra.make().outq = Some(Box::new(left.out));
        }
        if let Some(e) = left.error {
            self.fail(s, Reason::Lost, Error::Io(e));
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return Ok(left.stash);
        };
        if let Io::Stream(stream) = &mut slot.io {
            // TLS writes from places of its own: it watches for room.
            if let Err(e) = stream.register(&self.registry, s.token(), true) {
                self.fail(s, Reason::Lost, Error::Io(e));
            } else {
                slot.watch_writable = true;
            }
        }
        Ok(left.stash)
    }

    /// The socket's slot releases a plain TCP stream on the ring: its
    /// descriptor goes to the ring, which cancels the socket's requests and
    /// closes it with the turn's submission. Anything else (not on the
    /// ring, or not a stream) is closed here, its requests cancelled first.
    pub(crate) fn ring_release(ring: Option<&mut crate::uring::Ring>, s: SocketId, io: &mut Io) {
        let Some(ring) = ring else {
            drop(io.close());
            return;
        };
        if ring.key(s).is_none() {
            drop(io.close());
            return;
        }
        match io.close() {
            Io::Stream(Stream::Tcp(tcp)) => ring.release(s, std::os::fd::OwnedFd::from(tcp)),
            other => {
                ring.retire(s);
                drop(other);
            }
        }
    }

    /// The socket's slot lets go of its descriptor: its requests are
    /// cancelled first. Returns the bytes it had received and nobody read.
    pub(crate) fn ring_retire(ring: Option<&mut crate::uring::Ring>, s: SocketId) -> u64 {
        let Some(ring) = ring else { return 0 };
        let stashed = ring.sock(s).map_or(0, |rs| rs.stashed() as u64);
        ring.retire(s);
        stashed
    }

    /// Keep the socket's multishot receive armed while its input is wanted
    /// and its stash is not full; cancel it when the stash is full and no
    /// recv is pending (backpressure: the kernel's window then fills).
    pub(crate) fn ring_regulate(&mut self, s: SocketId) {
        let Some(ring) = self.ring.as_deref_mut() else {
            return;
        };
        let Some(key) = ring.key(s) else { return };
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let pending = slot.want.is_some() || slot.life.is_draining();
        let wants_input = slot.life.wants_input();
        let Some(rs) = ring.by_key(key) else { return };
        let full = rs.stashed() >= STASH_HIGH;
        if rs.recv_armed {
            if full && !pending {
                ring.cancel(key, Op::Recv);
            }
        } else if !rs.eof && rs.error.is_none() && wants_input && !full {
            ring.arm_recv(key);
        }
    }

    /// Bytes onto a ring socket: queued, sent with the turn's submission.
    /// False if the socket is not on the ring, or if the send is bulk (16
    /// KiB or more) and nothing waits before it: the caller then writes it
    /// at once, as on epoll, and `ring_queue`s what the kernel would not
    /// take. Kept out of line: the epoll send path that calls it stays small
    /// enough to inline its write.
    #[inline(never)]
    pub(crate) fn ring_send(&mut self, s: SocketId, parts: &[&[u8]], marked: bool) -> bool {
        let Some(rs) = self.ring.as_deref_mut().and_then(|r| r.sock(s)) else {
            return false;
        };
        let idle = rs.all_sent();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if idle && total >= WRITE_AT_ONCE_FROM {
            return false;
        }
        if total == 0 && idle {
            // Nothing before it: an empty send is done at once.
            let wanted = self.slot(s).is_some_and(|slot| slot.wants_sent);
            queue_sent(&mut self.tasks, wanted, s, usize::from(marked));
            return true;
        }
        self.ring_queue(s, parts, 0, marked)
    }

    /// One send onto a ring socket's queue, its first `skip` bytes written
    /// already; it goes with the turn's submission. False if the socket is
    /// not on the ring.
    pub(crate) fn ring_queue(
        &mut self,
        s: SocketId,
        parts: &[&[u8]],
        skip: usize,
        marked: bool,
    ) -> bool {
        let Some(ring) = self.ring.as_deref_mut() else {
            return false;
        };
        let (Some(key), Some(slot)) = (ring.key(s), find(&mut self.slots, s)) else {
            return false;
        };
        let Some(f) = ring.flow(key) else {
            return false;
        };
        // Whether its on_sent is wanted is the user's of now: the send
        // completes later, maybe under another user (`set_user`).
        f.out.push_parts(parts, skip, marked && slot.wants_sent);
        ring.want_send(key);
        // Data moved now, as far as the idle clock is concerned: under epoll
        // the write would have been made in this call.
        slot.active = self.stamp;
        true
    }

    /// A send of the socket completed.
    fn ring_sent(&mut self, s: SocketId, result: std::io::Result<usize>) {
        match result {
            Ok(n) => {
                let Some(ring) = self.ring.as_deref_mut() else {
                    return;
                };
                let Some(key) = ring.key(s) else { return };
                let Some(slot) = find(&mut self.slots, s) else {
                    return;
                };
                let Some(rs) = ring.by_key(key) else { return };
                let sending = rs.sending();
                let Some(f) = rs.flow.as_deref_mut() else {
                    return;
                };
                let sends = f.out.lent_out(n);
                let more = !sending && !f.out.pending().is_empty();
                // Only sends whose on_sent was wanted are marked.
                queue_sent(&mut self.tasks, true, s, sends);
                // `active` was stamped when the send was made: the ring
                // reports it a turn later, when the clock may have moved.
                slot.life.wrote(n);
                if more {
                    ring.want_send(key);
                }
            }
            Err(e) => self.fail(s, Reason::Lost, Error::Io(e)),
        }
        self.settle(s);
    }
}

/// One read of a ring socket's stash: what `read_stream` is to a socket.
pub(crate) fn read_ring(rs: &mut RingSock, readable: &mut bool, buf: &mut [u8]) -> Read {
    let r = if rs.stashed() > 0 {
        Read::Data(rs.take(buf))
    } else if let Some(e) = rs.error.take() {
        Read::Failed(Error::Io(e))
    } else if rs.eof {
        Read::Eof
    } else {
        Read::Empty
    };
    *readable = rs.readable();
    r
}

impl<S: 'static> Cx<S> {
    /// Act on one completion of the ring.
    pub(crate) fn on_completion(&mut self, c: &Completion) {
        let Some(ring) = self.engine.ring.as_deref_mut() else {
            return;
        };
        match c.op {
            Op::Recv => {
                if let Some(s) = ring.on_recv(c) {
                    self.ring_input(s);
                }
            }
            Op::Send => {
                if let Some((s, result)) = ring.on_send(c) {
                    self.engine.ring_sent(s, result);
                }
            }
            Op::Accept => {
                if let Some((listener, error)) = ring.on_accept(c) {
                    self.ring_accept_result(listener, error);
                }
            }
            Op::Cancel => ring.on_cancel(c),
            Op::Close | Op::CloseAlone => ring.on_close(c),
            Op::Poll => {}
        }
    }

    /// Receives completed for `s`: bytes came, or its peer ended, or it
    /// failed.
    pub(crate) fn ring_input(&mut self, s: SocketId) {
        let Some(ring) = self.engine.ring.as_deref_mut() else {
            return;
        };
        let eof_now = ring.input_taken(s);
        let Some(rs) = ring.sock(s) else { return };
        if rs.stashed() == 0 {
            if let Some(e) = rs.error.take() {
                // As an error the poller reports: the connection is lost.
                self.engine.fail(s, Reason::Lost, Error::Io(e));
                self.engine.settle(s);
                return;
            }
        }
        let readable = rs.readable();
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return;
        };
        slot.readable = readable;
        if eof_now {
            slot.life.fin_known();
            self.engine.end_if_drained(s);
            self.engine.settle(s);
        }
        let Some(slot) = self.engine.slot(s) else {
            return;
        };
        let wanted = slot.readable && (slot.want.is_some() || slot.life.is_draining());
        if wanted && self.engine.tasks.is_empty() {
            self.pump(s);
        } else if wanted {
            self.engine.tasks.push_back(Task::Read(s));
        }
        self.engine.ring_regulate(s);
    }

    /// An accept completed for `listener` (its connection, if any, is held).
    fn ring_accept_result(&mut self, listener: SocketId, error: Option<std::io::Error>) {
        let Some(e) = error else {
            // Held. The first held connection queues the task that takes
            // them, after the other completions of this wait were seen: a
            // burst is taken a batch per turn, as on epoll.
            let first = self
                .engine
                .ring
                .as_deref_mut()
                .and_then(|r| r.sock(listener))
                .is_some_and(|rs| rs.held() == 1);
            if first {
                self.engine.tasks.push_back(Task::Accept(listener));
            }
            return;
        };
        let target = Target::from(Transport::Tcp);
        let mux = self.engine.mux_id;
        if e.raw_os_error() == Some(libc::ECANCELED) {
            // Stopped at the admission limit; taken up again below.
        } else if is_transient_accept_error(&e) {
            io_log!(debug, target, mux, socket = %listener, error = %e, "accept");
        } else if is_exhaustion(&e) {
            io_log!(warn, target, mux, socket = %listener, error = %e, "accept paused");
            self.pause_accept(listener);
            return;
        } else {
            self.engine
                .fail(listener, Reason::AcceptFailed, Error::Io(e));
            self.engine.settle(listener);
            return;
        }
        self.pump_accept(listener);
    }

    /// `pump_accept` for a listener on the ring: take the connections its
    /// multishot accept holds, within the admission limit and the per-turn
    /// batch; keep the accept armed while there is room, stop it when full
    /// (the kernel's backlog holds the rest). False if not on the ring.
    pub(crate) fn pump_accept_ring(&mut self, listener: SocketId) -> bool {
        let Some(key) = self.engine.ring.as_deref().and_then(|r| r.key(listener)) else {
            return false;
        };
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(slot) = self.engine.slot(listener) else {
                return true;
            };
            let Io::Listener(l) = &slot.io else {
                return true;
            };
            let full = l.full();
            let tls = l.tls.clone();
            let framed = slot.extra.framed().map(|f| f.max_payload());
            let Some(ring) = self.engine.ring.as_deref_mut() else {
                return true;
            };
            let Some(rs) = ring.by_key(key) else {
                return true;
            };
            let armed = rs.accept_armed;
            if full {
                if armed {
                    ring.cancel(key, Op::Accept);
                }
                return true;
            }
            let Some(fd) = rs.flow.as_deref_mut().and_then(|f| f.held.pop_front()) else {
                if !armed {
                    ring.arm_accept(key);
                }
                return true;
            };
            let std = std::net::TcpStream::from(fd);
            let peer = std.peer_addr().ok().map(SockAddr::Inet);
            let accepted = Accepted {
                stream: Stream::Tcp(mio::net::TcpStream::from_std(std)),
                peer,
            };
            self.take_in(listener, accepted, framed, Transport::Tcp, tls.as_ref());
        }
        // More may be held: come back next turn.
        self.engine.next_turn.push(Task::Accept(listener));
        true
    }
}
