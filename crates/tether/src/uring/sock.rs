//! What the ring keeps for one socket, and what a socket leaving the ring
//! hands over.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

use crate::transport::send_queue::SendQueue;
use crate::SocketId;

/// What the ring keeps for one socket on it (a stream or a listener).
#[derive(Debug)]
pub(crate) struct RingSock {
    /// The socket it serves; `None` once retired (its slot closed), while
    /// requests of it are still in the kernel.
    pub(crate) owner: Option<SocketId>,
    pub(super) fd: RawFd,
    pub(crate) recv_armed: bool,
    /// Its multishot receive was asked to stop (it is armed until the last
    /// completion says it stopped).
    pub(super) recv_cancelling: bool,
    pub(crate) accept_armed: bool,
    pub(super) accept_cancelling: bool,
    /// Bytes received and not yet read by the engine, from `head` on.
    pub(super) stash: Vec<u8>,
    pub(super) head: usize,
    /// Received bytes still in the provided buffers, in order, with nothing
    /// in the stash ahead of them: delivered from there, or copied to the
    /// stash when the wait's batch ends. One run of memory each.
    pub(super) fresh: VecDeque<Fresh>,
    pub(super) fresh_len: usize,
    /// The peer's FIN came (a receive of zero bytes).
    pub(crate) eof: bool,
    /// A receive failed; reported by the next read.
    pub(crate) error: Option<io::Error>,
    /// Bytes sent and not yet handed to the kernel.
    pub(crate) out: SendQueue,
    /// The bytes of the send in flight: the kernel reads them until its
    /// completion, so the queue may grow (and move) meanwhile.
    pub(super) inflight: Vec<u8>,
    pub(super) inflight_done: usize,
    pub(super) sending: bool,
    /// In the turn's list of sockets to send for.
    pub(super) listed: bool,
    /// Requests in the kernel: the socket's memory is kept until all are back.
    pub(super) ops: u32,
    /// Connections a listener's multishot accept took and the loop did not
    /// take in yet (the admission limit, the per-turn batch).
    pub(crate) held: VecDeque<OwnedFd>,
    /// Among the sockets the wait being handled brought input for.
    pub(super) batched: bool,
    /// Its peer's FIN was reported to the engine.
    pub(super) fin_told: bool,
}

impl RingSock {
    /// Socket `s`'s state on the ring, its descriptor `fd` (owned by its
    /// slot, or by the ring once released).
    pub(super) fn new(s: SocketId, fd: RawFd) -> RingSock {
        RingSock {
            owner: Some(s),
            fd,
            recv_armed: false,
            recv_cancelling: false,
            accept_armed: false,
            accept_cancelling: false,
            stash: Vec::new(),
            head: 0,
            fresh: VecDeque::new(),
            fresh_len: 0,
            eof: false,
            error: None,
            out: SendQueue::default(),
            inflight: Vec::new(),
            inflight_done: 0,
            sending: false,
            listed: false,
            ops: 0,
            held: VecDeque::new(),
            batched: false,
            fin_told: false,
        }
    }

    /// Bytes received and not yet read.
    pub(crate) fn stashed(&self) -> usize {
        self.stash.len() - self.head + self.fresh_len
    }

    /// Take up to `buf.len()` stashed bytes; how many. Only once settled
    /// (`Ring::settled`): nothing fresh.
    pub(crate) fn take(&mut self, buf: &mut [u8]) -> usize {
        debug_assert!(self.fresh.is_empty());
        let n = buf.len().min(self.stashed());
        buf[..n].copy_from_slice(&self.stash[self.head..self.head + n]);
        self.head += n;
        if self.head == self.stash.len() {
            self.stash.clear();
            self.head = 0;
        }
        n
    }

    /// The whole stash, if there is some and it fits in `cap`: the caller
    /// delivers it from this buffer rather than copying it out, then gives
    /// the buffer back (`restore`).
    pub(crate) fn take_whole(&mut self, cap: usize) -> Option<Vec<u8>> {
        let n = self.stashed();
        if n == 0 || n > cap {
            return None;
        }
        let mut bytes = std::mem::take(&mut self.stash);
        bytes.drain(..std::mem::take(&mut self.head));
        Some(bytes)
    }

    /// A buffer `take_whole` lent, for the stash to reuse.
    pub(crate) fn restore(&mut self, mut bytes: Vec<u8>) {
        if self.stash.is_empty() && bytes.capacity() > self.stash.capacity() {
            bytes.clear();
            self.stash = bytes;
        }
    }

    /// Something to read: bytes, the end, or an error.
    pub(crate) fn readable(&self) -> bool {
        self.stashed() > 0 || self.eof || self.error.is_some()
    }

    /// A send is in the kernel now.
    pub(crate) fn sending(&self) -> bool {
        self.sending
    }
}

/// What a socket taken off the ring (`Ring::detach`) leaves to its new path.
#[derive(Debug)]
pub(crate) struct Detached {
    /// Received, not yet read.
    pub(crate) stash: Vec<u8>,
    /// Sent by the user, not yet on the wire.
    pub(crate) out: SendQueue,
    /// Bytes its last send put on the wire while it left, and the sends
    /// they completed (for the lifecycle and `on_sent`).
    pub(crate) sent: usize,
    pub(crate) sends: usize,
    /// A receive or send failed.
    pub(crate) error: Option<io::Error>,
}

/// Received bytes in the provided buffers, one run of memory: what one
/// receive brought, or several whose bytes follow one another.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fresh {
    /// Where they start in the buffers' allocation, and how many.
    pub(super) at: usize,
    pub(super) len: usize,
}
