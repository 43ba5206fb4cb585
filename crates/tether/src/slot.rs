//! What the loop keeps per socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slab::Slab;
use tether_proto::timer::Timeouts;
use tether_proto::{Lifecycle, State};

use crate::framed::Framed;
use crate::transport::tls::Tls;
use crate::transport::Io;
use crate::{DiscardMethod, Error, RecvMode, SocketId, SocketUser};

/// How long `close()` may take before it resets, unless `set_linger` says
/// otherwise: long enough for a slow peer to read a large last response.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// One socket. Kept small because an idle connection is mostly this: buffers
/// that are not in use are not allocated.
pub(crate) struct Slot<S> {
    pub(crate) gen: u32,
    /// `None` only while one of its callbacks runs.
    pub(crate) user: Option<Box<dyn SocketUser<S>>>,
    pub(crate) io: Io,
    pub(crate) life: Lifecycle,
    /// The pending recv.
    pub(crate) want: Option<Want>,
    /// Bytes gathered for an Exact recv that one read could not fill.
    pub(crate) partial: Vec<u8>,
    /// Bytes that the kernel would not take yet (or, on TLS, held until the
    /// handshake is over); `None` when all went out.
    pub(crate) outq: Option<Box<SendQueue>>,
    /// The TLS session, on a TLS connection.
    pub(crate) tls: Option<Box<Tls>>,
    /// The message layer, on a framed socket.
    pub(crate) framed: Option<Box<Framed>>,
    /// The connection itself is up (TCP connected or accepted): bytes may be
    /// written, even while TLS or framing handshakes keep the state `Connecting`.
    pub(crate) wire_up: bool,
    /// The poller said readable and no read has hit WouldBlock since.
    pub(crate) readable: bool,
    /// The linger time in milliseconds (a `Duration` would take 16 bytes of
    /// every socket for a number that is rarely set).
    pub(crate) linger_ms: u32,
    /// How it ended, once it did.
    pub(crate) end: Option<Box<End>>,
    /// When data last moved either way (for `idle_for` and the idle timeout).
    pub(crate) active: Instant,
    /// Its timeouts, if any were set (or inherited from its listener).
    pub(crate) timeouts: Option<Box<Deadlines>>,
    /// The listener that took it, whose admission count it holds.
    pub(crate) origin: Option<SocketId>,
    /// The state its user was last told of.
    pub(crate) shown: State,
}

/// A socket's timeouts and when its current stage began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) config: Timeouts,
    pub(crate) since: Instant,
}

/// The live slot `s` names. A free function rather than a method of `Cx`, so
/// the slot can be borrowed beside the loop's other fields (tasks, timers).
pub(crate) fn find<S>(slots: &mut Slab<Slot<S>>, s: SocketId) -> Option<&mut Slot<S>> {
    slots
        .get_mut(s.idx as usize)
        .filter(|slot| slot.gen == s.gen)
}

/// A pending recv.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    pub(crate) n: usize,
    pub(crate) mode: RecvMode,
}

/// The part of `Closed` the lifecycle machine does not know.
#[derive(Debug, Default)]
pub(crate) struct End {
    pub(crate) error: Option<Error>,
    pub(crate) discard: Option<DiscardMethod>,
    /// Bytes an abort left in the kernel's queues.
    pub(crate) kernel_unsent: u64,
    pub(crate) kernel_unread: u64,
}

impl<S> Slot<S> {
    /// A slot; `user` is `None` only for a framed connection awaiting its
    /// admission, which has no user until its listener accepts it.
    pub(crate) fn new(
        gen: u32,
        user: Option<Box<dyn SocketUser<S>>>,
        io: Io,
        life: Lifecycle,
        now: Instant,
    ) -> Self {
        Slot {
            gen,
            user,
            io,
            life,
            want: None,
            partial: Vec::new(),
            outq: None,
            tls: None,
            framed: None,
            wire_up: false,
            readable: false,
            linger_ms: DEFAULT_LINGER.as_millis() as u32,
            end: None,
            active: now,
            timeouts: None,
            origin: None,
            shown: State::NotConnected,
        }
    }

    pub(crate) fn linger(&self) -> Duration {
        Duration::from_millis(u64::from(self.linger_ms))
    }

    pub(crate) fn end(&mut self) -> &mut End {
        self.end.get_or_insert_with(Box::default)
    }
}

/// Queued outgoing bytes, and where each `send` ends so that its `on_sent` fires
/// when its last byte reaches the kernel. A datagram socket's queue is the same,
/// each send one datagram, with its destination beside it.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    head: usize,
    /// Stream positions (bytes ever written through this queue) where a send ends.
    marks: VecDeque<u64>,
    /// Bytes ever written through this queue.
    done: u64,
    /// For datagrams: each one's destination (`None`: the connected peer).
    dests: VecDeque<Option<SocketAddr>>,
}

impl SendQueue {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.push_parts(&[data], 0, true);
    }

    /// Move the unwritten tail to the front once it is at most half the
    /// buffer, so a queue that is always busy does not grow without bound.
    fn compact(&mut self) {
        if self.head > 0 && self.head * 2 >= self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// `n` bytes were written; returns how many sends completed.
    pub(crate) fn advance(&mut self, n: usize) -> usize {
        self.head += n;
        self.done += n as u64;
        let before = self.marks.len();
        while self.marks.front().is_some_and(|&end| end <= self.done) {
            self.marks.pop_front();
        }
        before - self.marks.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.marks.is_empty() && self.head == self.buf.len()
    }

    /// How many sends are waiting.
    pub(crate) fn sends(&self) -> usize {
        self.marks.len()
    }

    /// Queue one send made of several pieces (a frame header and its payload),
    /// skipping the first `skip` bytes, which were written already. An unmarked
    /// send (a control frame) completes no user's send.
    pub(crate) fn push_parts(&mut self, parts: &[&[u8]], mut skip: usize, marked: bool) {
        self.compact();
        for part in parts {
            let cut = skip.min(part.len());
            skip -= cut;
            self.buf.extend_from_slice(&part[cut..]);
        }
        if marked {
            let end = self.done + (self.buf.len() - self.head) as u64;
            self.marks.push_back(end);
        }
    }

    /// Move everything `other` holds to the back of this queue, marks included.
    pub(crate) fn append(&mut self, other: &SendQueue) {
        self.compact();
        let base = self.done + (self.buf.len() - self.head) as u64;
        self.buf.extend_from_slice(other.pending());
        self.marks
            .extend(other.marks.iter().map(|&end| base + (end - other.done)));
    }

    pub(crate) fn push_datagram(&mut self, to: Option<SocketAddr>, data: &[u8]) {
        self.push(data);
        self.dests.push_back(to);
    }

    /// The next datagram to send and its destination.
    pub(crate) fn front_datagram(&self) -> Option<(Option<SocketAddr>, &[u8])> {
        let to = *self.dests.front()?;
        let len = (self.marks.front()? - self.done) as usize;
        Some((to, &self.pending()[..len]))
    }

    /// The front datagram went out (or was given up): exactly one send ends,
    /// even for an empty datagram. Returns its length.
    pub(crate) fn pop_datagram(&mut self) -> usize {
        let Some(end) = self.marks.pop_front() else {
            return 0;
        };
        self.dests.pop_front();
        let len = (end - self.done) as usize;
        self.head += len;
        self.done = end;
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle plaintext connection with nothing queued costs this slot and its
    /// kernel socket, nothing more: the budget is 256 bytes (216 now).
    #[test]
    fn idle_socket_state_is_small() {
        let size = std::mem::size_of::<Slot<()>>();
        println!(
            "size_of::<Slot<()>>() = {size} bytes (Lifecycle {} bytes)",
            std::mem::size_of::<Lifecycle>()
        );
        assert!(size <= 256, "per-socket state grew to {size} bytes");
    }

    #[test]
    fn send_queue_marks_each_send() {
        let mut q = SendQueue::default();
        q.push(b"abc");
        q.push(b"");
        q.push(b"de");
        assert_eq!(q.pending(), b"abcde");
        assert_eq!(q.advance(2), 0);
        assert_eq!(
            q.advance(1),
            2,
            "the first send and the empty one behind it"
        );
        assert_eq!(q.pending(), b"de");
        q.push(b"f");
        assert_eq!(q.advance(3), 2);
        assert!(q.is_empty());
    }

    #[test]
    fn datagrams_keep_their_bounds_and_destinations() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        let mut q = SendQueue::default();
        q.push_datagram(Some(a), b"one");
        q.push_datagram(Some(b), b"");
        q.push_datagram(None, b"three");
        assert_eq!(q.front_datagram(), Some((Some(a), &b"one"[..])));
        assert_eq!(q.pop_datagram(), 3);
        assert_eq!(
            q.front_datagram(),
            Some((Some(b), &b""[..])),
            "an empty datagram is one too"
        );
        assert_eq!(q.pop_datagram(), 0);
        assert_eq!(q.front_datagram(), Some((None, &b"three"[..])));
        assert_eq!(q.pop_datagram(), 5);
        assert!(q.is_empty());
        assert_eq!(q.front_datagram(), None);
    }
}
