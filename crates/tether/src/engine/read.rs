//! Bytes in: reads for the pending recv or a draining close, delivery, and
//! the peer's end seen without a recv (rule 2).

use tether_proto::{Handshake, Reason};

use crate::engine::io::Io;
use crate::engine::ring::read_ring;
use crate::engine::slot::{find, Extra, Parts, Slot, Want};
use crate::engine::task::Task;
use crate::engine::Engine;
use crate::security::tls::{read_failure, truncated, Tls};
use crate::transport::read;
use crate::transport::{Read, Stream};
use crate::uring::RingSock;
use crate::{sys, Cx, RecvMode, SocketId};

/// Reads one draining socket may do before others get a turn.
const DRAIN_READS_PER_TURN: usize = 16;

impl<S: 'static> Engine<S> {
    /// Rule 2 without a recv: once the peer's FIN is known, nobody waits for
    /// input and none is left in the kernel, the end is reported now rather than
    /// at a recv that may never come.
    ///
    /// Over TLS the end is clean only after the peer's close_notify: a FIN
    /// without one, with nothing left to read, is a truncation.
    pub(crate) fn end_if_drained(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Io::Stream(stream) = &slot.io else { return };
        // Whether to look is the lifecycle's rule; what is left is the
        // socket's (and the TLS session's) to say.
        if !slot.life.wants_end_probe() {
            return;
        }
        if let Some(rs) = self.ring.as_deref_mut().and_then(|r| r.sock(s)) {
            // On the ring, what is left is what its stash holds.
            if rs.stashed() == 0 {
                slot.life.nothing_left();
            }
            return;
        }
        let Some(tls) = slot.extra.tls_mut() else {
            if sys::pending_in(stream) == 0 {
                slot.life.nothing_left();
            }
            return;
        };
        // What remains may be only the close_notify record: read records (the
        // FIN bounds them) until there is plaintext for a recv to take.
        if let Err(e) = tls.pull(stream, &mut slot.readable) {
            self.fail(s, read_failure(&e), e);
        } else if tls.buffered_plaintext() > 0 {
        } else if tls.peer_closed() {
            slot.life.nothing_left();
        } else if sys::pending_in(stream) == 0 {
            self.fail(s, Reason::Lost, truncated());
        }
    }

    /// Whether bytes have arrived for `s` that no recv has taken: in the
    /// ring's stash, a TLS session's plaintext or records, or the kernel's
    /// receive queue. A FIN alone is not input.
    pub(crate) fn input_arrived(&mut self, s: SocketId) -> bool {
        let Some(slot) = find(&mut self.slots, s) else {
            return false;
        };
        let Io::Stream(stream) = &slot.io else {
            return false;
        };
        let stashed = self
            .ring
            .as_deref_mut()
            .and_then(|r| r.sock(s))
            .is_some_and(|rs| rs.stashed() > 0);
        let plaintext = slot
            .extra
            .tls_mut()
            .is_some_and(|t| t.buffered_plaintext() > 0);
        stashed || plaintext || sys::pending_in(stream) > 0
    }
}

impl<S: 'static> Cx<S> {
    /// Read what is wanted, in the way the socket's layers call for.
    #[inline]
    pub(crate) fn pump(&mut self, s: SocketId) {
        let Some(slot) = self.engine.slot(s) else {
            return;
        };
        if slot.life.is_datagram() {
            self.pump_datagram(s);
        } else if slot.extra.tls().is_some() && slot.life.handshake() == Some(Handshake::Security) {
            // Until the handshake is over, what arrives is the handshake's.
            self.engine.drive_tls(s);
        } else if slot.extra.framed().is_some()
            // A close() before WELCOME waits for it, as a close while connecting
            // waits for the connection: only then can what it sends go out.
            && (slot.life.handshake() == Some(Handshake::Message) || !slot.life.is_draining())
        {
            self.pump_framed(s);
        } else {
            self.pump_read(s);
        }
    }

    /// Read for the pending recv (one answer per turn) or for a draining close.
    fn pump_read(&mut self, s: SocketId) {
        if self.engine.ring.is_some() && self.pump_ring_partial(s) {
            self.engine.ring_regulate(s);
            return;
        }
        let mut buf = std::mem::take(&mut self.engine.rbuf);
        // Whether the turn's reads ran out while input was still wanted.
        let ran_out = 'turn: {
            for _ in 0..DRAIN_READS_PER_TURN {
                let Some(slot) = find(&mut self.engine.slots, s) else {
                    break 'turn false;
                };
                let Slot {
                    io: Io::Stream(stream),
                    extra,
                    readable,
                    want: pending,
                    life,
                    active,
                    ..
                } = slot
                else {
                    break 'turn false;
                };
                // With TLS, decrypted bytes may wait in the session though the
                // socket has nothing more.
                if (!*readable && extra.tls().is_none()) || !life.wants_input() {
                    break 'turn false;
                }
                let fin_seen = life.fin_seen();
                let mut ring = self.engine.ring.as_deref_mut().and_then(|r| r.settled(s));
                if life.is_draining() {
                    let tls = extra.tls_mut();
                    let rs = ring.as_deref_mut();
                    match read_from(stream, rs, tls, readable, fin_seen, &mut buf) {
                        Read::Data(n) => life.read(n),
                        Read::Eof => life.eof(),
                        Read::Empty => break 'turn false,
                        Read::Failed(e) => self.engine.fail(s, read_failure(&e), e),
                    }
                    self.engine.settle(s);
                    continue;
                }
                let Some(want) = *pending else {
                    break 'turn false;
                };
                let outcome = match want.mode {
                    RecvMode::Partial => {
                        let cap = want.n().min(buf.len());
                        let (rs, tls) = (ring.as_deref_mut(), extra.tls_mut());
                        read_from(stream, rs, tls, readable, fin_seen, &mut buf[..cap])
                    }
                    RecvMode::Exact if extra.gathered() == 0 && want.n() <= buf.len() => {
                        let tls = extra.tls_mut();
                        let rs = ring.as_deref_mut();
                        read_from(stream, rs, tls, readable, fin_seen, &mut buf[..want.n()])
                    }
                    RecvMode::Exact => {
                        let Parts { tls, partial, .. } = extra.make();
                        let filled = partial.len();
                        partial.resize(want.n(), 0);
                        let tls = tls.as_deref_mut();
                        let r = read_from(
                            stream,
                            ring,
                            tls,
                            readable,
                            fin_seen,
                            &mut partial[filled..],
                        );
                        let got = if let Read::Data(n) = r { n } else { 0 };
                        partial.truncate(filled + got);
                        r
                    }
                };
                match outcome {
                    Read::Data(n) => {
                        life.read(n);
                        *active = self.engine.stamp;
                        let gathered = match answer(want, extra, &buf, n) {
                            Answer::NotYet => continue,
                            Answer::InBuffer => None,
                            Answer::Gathered(bytes) => Some(bytes),
                        };
                        let data = gathered.as_deref().unwrap_or(&buf[..n]);
                        *pending = None;
                        life.delivered(data.len());
                        self.deliver::<false>(s, data);
                        break 'turn false;
                    }
                    Read::Eof => {
                        pending.take();
                        if let Some(parts) = extra.get_mut() {
                            parts.partial = Vec::new();
                        }
                        life.eof();
                        self.engine.settle(s);
                        break 'turn false;
                    }
                    Read::Empty => break 'turn false,
                    Read::Failed(e) => {
                        self.engine.fail(s, read_failure(&e), e);
                        self.engine.settle(s);
                        break 'turn false;
                    }
                }
            }
            true
        };
        self.engine.rbuf = buf;
        let Some(slot) = self.engine.slot(s) else {
            return;
        };
        // The turn's reads ran out with input still wanted and waiting (a long
        // drain, a large Exact recv): edge-triggered readiness will not say so
        // again, so come back after the other sockets had their turn.
        let wanted = slot.want.is_some() || slot.life.is_draining();
        let again = ran_out && wanted && slot.readable && slot.life.wants_input();
        // Reading may have produced records to answer (alerts, key updates).
        let answer_records = slot.extra.tls().is_some_and(|t| t.wants_write());
        if again {
            self.engine.tasks.push_back(Task::Read(s));
        }
        if answer_records {
            self.engine.flush(s);
        }
        if self.engine.ring.is_some() {
            self.engine.ring_regulate(s);
        }
    }

    /// A Partial recv of a ring socket answered from what the ring received,
    /// without copying it out: lent from the provided buffers (this wait's
    /// bytes), or the whole read-ahead when it fits. False if neither
    /// applies: `pump_read` then reads as for any socket. Out of line, so
    /// that `pump_read` stays as small as the epoll path needs (inlined, it
    /// cost the epoll pingpong ~40 instructions a message).
    #[inline(never)]
    fn pump_ring_partial(&mut self, s: SocketId) -> bool {
        let (Some(ring), Some(slot)) = (
            self.engine.ring.as_deref_mut(),
            find(&mut self.engine.slots, s),
        ) else {
            return false;
        };
        let Some(want) = slot.want.filter(|w| w.mode == RecvMode::Partial) else {
            return false;
        };
        if !slot.readable || !slot.life.wants_input() || slot.life.is_draining() {
            return false;
        }
        if let Some(lent) = ring.lend(s, want.n()) {
            slot.readable = ring.sock(s).is_some_and(|rs| rs.readable());
            self.answered(s, lent.bytes());
            return true;
        }
        let Some(bytes) = ring.settled(s).and_then(|rs| rs.take_whole(want.n())) else {
            return false;
        };
        slot.readable = ring.sock(s).is_some_and(|rs| rs.readable());
        self.answered(s, &bytes);
        if let Some(rs) = self.engine.ring.as_deref_mut().and_then(|r| r.sock(s)) {
            rs.restore(bytes);
        }
        true
    }

    /// The pending recv is answered with `data`, taken off the socket.
    fn answered(&mut self, s: SocketId, data: &[u8]) {
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return;
        };
        slot.life.read(data.len());
        slot.active = self.engine.stamp;
        slot.want = None;
        slot.life.delivered(data.len());
        self.deliver::<true>(s, data);
    }

    /// Hand the answer of its recv (already taken off the socket) to the user.
    /// `RING` only makes the ring's path (`answered`) a copy of its own, so
    /// that `pump_read`'s stays its one caller and is inlined there with the
    /// callback call (shared, both went out of line: ~40 instructions more a
    /// message on the epoll pingpong).
    fn deliver<const RING: bool>(&mut self, s: SocketId, data: &[u8]) {
        if self.engine.is_http(s) {
            self.http_received(s, data);
        } else {
            self.call(s, |u, cx| u.on_received(cx, s, data));
        }
        // The peer's FIN may have come with these last bytes.
        if self
            .engine
            .slot(s)
            .is_some_and(|slot| slot.life.fin_seen() && slot.life.wants_end_probe())
        {
            self.engine.end_if_drained(s);
        }
        self.engine.settle(s);
    }
}

/// One read for the user: from a ring socket's stash, or as `read_stream`.
#[inline]
fn read_from(
    stream: &Stream,
    ring: Option<&mut RingSock>,
    tls: Option<&mut Tls>,
    readable: &mut bool,
    fin_seen: bool,
    buf: &mut [u8],
) -> Read {
    match ring {
        Some(rs) => read_ring(rs, readable, buf),
        None => read_stream(stream, tls, readable, fin_seen, buf),
    }
}

/// One read of the byte stream the user sees: from the socket, or through TLS.
#[inline]
pub(crate) fn read_stream(
    stream: &Stream,
    tls: Option<&mut Tls>,
    readable: &mut bool,
    fin_seen: bool,
    buf: &mut [u8],
) -> Read {
    match tls {
        Some(tls) => tls.read(stream, readable, buf),
        None => {
            let r = read(stream, buf);
            match r {
                Read::Empty => *readable = false,
                // A short read emptied the receive queue, and the next byte to
                // arrive raises readiness again (edge-triggered), so the read
                // that would only say EAGAIN is saved — unless the peer's FIN
                // is known: its edge has come and gone, and the end must still
                // be read.
                Read::Data(n) if n < buf.len() && !fin_seen => *readable = false,
                _ => {}
            }
            r
        }
    }
}

/// Where the answer to a recv stands after a read.
enum Answer {
    /// An Exact recv still gathers.
    NotYet,
    /// The read itself, in the shared buffer, is the answer.
    InBuffer,
    /// The bytes an Exact recv gathered in the socket.
    Gathered(Vec<u8>),
}

/// After a read of `n` bytes into `buf` (or, for a long Exact recv, into
/// `partial`): is the recv answered, and where are its bytes?
#[inline]
fn answer(want: Want, extra: &mut Extra, buf: &[u8], n: usize) -> Answer {
    match want.mode {
        RecvMode::Partial => Answer::InBuffer,
        RecvMode::Exact if extra.gathered() == 0 && n == want.n() => Answer::InBuffer,
        RecvMode::Exact => {
            let partial = &mut extra.make().partial;
            if partial.len() < want.n() && partial.capacity() < want.n() {
                // The first read of a long Exact recv came from the shared
                // buffer; keep its bytes and gather the rest in the socket.
                partial.reserve_exact(want.n());
                partial.extend_from_slice(&buf[..n]);
            }
            if partial.len() == want.n() {
                Answer::Gathered(std::mem::take(partial))
            } else {
                Answer::NotYet
            }
        }
    }
}
