//! The send queue: bytes the kernel would not take yet, and where each
//! `send` ends, so its completion is reported when its last byte is out.

use std::collections::VecDeque;
use std::net::SocketAddr;

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
    /// Bytes lent to a writer (`lend`) and not yet reported written.
    lent: usize,
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
        self.complete()
    }

    /// Drop the marks of sends whose last byte is written; how many.
    fn complete(&mut self) -> usize {
        let before = self.marks.len();
        while self.marks.front().is_some_and(|&end| end <= self.done) {
            self.marks.pop_front();
        }
        before - self.marks.len()
    }

    /// Where the next byte queued will be in the stream.
    fn end(&self) -> u64 {
        self.done + (self.lent + self.buf.len() - self.head) as u64
    }

    /// Hand every unwritten byte to a writer that needs them to stay put
    /// until it is done (an io_uring send): they move into `into` (its old
    /// contents dropped), by swapping buffers when nothing was written from
    /// this one, and the queue goes on with `into`'s old allocation. Their
    /// sends stay marked here; `lent_out` reports them.
    pub(crate) fn lend(&mut self, into: &mut Vec<u8>) {
        into.clear();
        if self.head > 0 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        std::mem::swap(&mut self.buf, into);
        self.lent += into.len();
    }

    /// `n` lent bytes were written; returns how many sends completed.
    pub(crate) fn lent_out(&mut self, n: usize) -> usize {
        self.lent = self.lent.saturating_sub(n);
        self.done += n as u64;
        self.complete()
    }

    /// Lent bytes that will not be written by the borrower after all go
    /// back to the front of the queue.
    pub(crate) fn unlend(&mut self, rest: &[u8]) {
        self.lent = self.lent.saturating_sub(rest.len());
        self.buf.splice(self.head..self.head, rest.iter().copied());
    }

    /// The memory its buffer holds.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.marks.is_empty() && self.head == self.buf.len() && self.lent == 0
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
            let end = self.end();
            self.marks.push_back(end);
        }
    }

    /// Move everything `other` holds to the back of this queue, marks included.
    pub(crate) fn append(&mut self, other: &SendQueue) {
        self.compact();
        let base = self.end();
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
    fn lent_bytes_keep_their_sends_marked_until_written() {
        let mut q = SendQueue::default();
        q.push(b"abc");
        q.push(b"de");
        let mut lent = Vec::new();
        q.lend(&mut lent);
        assert_eq!(lent, b"abcde", "moved out whole");
        assert_eq!(q.pending(), b"");
        assert!(!q.is_empty(), "its bytes are not written yet");
        // A send made while they are out ends after them.
        q.push(b"f");
        assert_eq!(q.pending(), b"f");
        assert_eq!(q.lent_out(3), 1, "abc");
        // The writer gives up on the rest: it goes back in front.
        q.unlend(&lent[3..]);
        assert_eq!(q.pending(), b"def");
        assert_eq!(q.advance(2), 1, "de");
        assert_eq!(q.advance(1), 1, "f");
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
