//! What the ring keeps for one socket, and what a socket leaving the ring
//! hands over.

use std::io;
use std::os::fd::RawFd;

use crate::transport::send_queue::SendQueue;
use crate::uring::flow::Flow;
use crate::SocketId;

/// What the ring keeps for one socket on it (a stream or a listener). The
/// bytes moving through it are in its `flow`, which an idle socket does
/// without (see `flow.rs`).
#[derive(Debug)]
pub(crate) struct RingSock {
    /// The socket it serves; `None` once retired (its slot closed), while
    /// requests of it are still in the kernel.
    pub(crate) owner: Option<SocketId>,
    pub(super) fd: RawFd,
    /// Requests in the kernel: the socket's memory is kept until all are back.
    pub(super) ops: u32,
    pub(crate) recv_armed: bool,
    /// Its multishot receive was asked to stop (it is armed until the last
    /// completion says it stopped).
    pub(super) recv_cancelling: bool,
    pub(crate) accept_armed: bool,
    pub(super) accept_cancelling: bool,
    /// The peer's FIN came (a receive of zero bytes).
    pub(crate) eof: bool,
    /// A send is in the kernel.
    pub(super) sending: bool,
    /// In the turn's list of sockets to send for.
    pub(super) listed: bool,
    /// Among the sockets the wait being handled brought input for.
    pub(super) batched: bool,
    /// Its peer's FIN was reported to the engine.
    pub(super) fin_told: bool,
    /// A receive failed; reported by the next read.
    pub(crate) error: Option<io::Error>,
    /// What is received, to send, in flight or held; `None` while nothing is.
    pub(crate) flow: Option<Box<Flow>>,
}

impl RingSock {
    /// Socket `s`'s state on the ring, its descriptor `fd` (owned by its
    /// slot, or by the ring once released).
    pub(super) fn new(s: SocketId, fd: RawFd) -> RingSock {
        RingSock {
            owner: Some(s),
            fd,
            ops: 0,
            recv_armed: false,
            recv_cancelling: false,
            accept_armed: false,
            accept_cancelling: false,
            eof: false,
            sending: false,
            listed: false,
            batched: false,
            fin_told: false,
            error: None,
            flow: None,
        }
    }

    /// Bytes received and not yet read.
    pub(crate) fn stashed(&self) -> usize {
        self.flow.as_ref().map_or(0, |f| f.stashed())
    }

    /// Nothing to send and no send in the kernel.
    pub(crate) fn all_sent(&self) -> bool {
        !self.sending && self.flow.as_ref().is_none_or(|f| f.out.is_empty())
    }

    /// Connections its multishot accept took that wait to be taken in.
    pub(crate) fn held(&self) -> usize {
        self.flow.as_ref().map_or(0, |f| f.held.len())
    }

    /// Take up to `buf.len()` stashed bytes; how many. Only once settled
    /// (`Ring::settled`): nothing fresh.
    pub(crate) fn take(&mut self, buf: &mut [u8]) -> usize {
        let Some(f) = self.flow.as_deref_mut() else {
            return 0;
        };
        debug_assert!(f.fresh.is_empty());
        let n = buf.len().min(f.stashed());
        buf[..n].copy_from_slice(&f.stash[f.head..f.head + n]);
        f.head += n;
        if f.head == f.stash.len() {
            f.stash.clear();
            f.head = 0;
        }
        n
    }

    /// The whole stash, if there is some and it fits in `cap`: the caller
    /// delivers it from this buffer rather than copying it out, then gives
    /// the buffer back (`restore`).
    pub(crate) fn take_whole(&mut self, cap: usize) -> Option<Vec<u8>> {
        let f = self.flow.as_deref_mut()?;
        let n = f.stashed();
        if n == 0 || n > cap {
            return None;
        }
        let mut bytes = std::mem::take(&mut f.stash);
        bytes.drain(..std::mem::take(&mut f.head));
        Some(bytes)
    }

    /// A buffer `take_whole` lent, for the stash to reuse.
    pub(crate) fn restore(&mut self, mut bytes: Vec<u8>) {
        let Some(f) = self.flow.as_deref_mut() else {
            return;
        };
        if f.stash.is_empty() && bytes.capacity() > f.stash.capacity() {
            bytes.clear();
            f.stash = bytes;
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
