//! What a socket on the ring holds while bytes move through it, and the
//! ring's spare ones.
//!
//! An idle connection holds none of it. A socket's flow goes back to the
//! ring's spares once nothing it received waits to be read, nothing waits to
//! be sent and no send is in the kernel; its next receive or send takes one
//! again. So ten thousand idle connections cost what their sockets are, not
//! what their last message needed (nginx frees an idle keep-alive
//! connection's buffers for the same reason), and a busy connection takes
//! and gives back a spare rather than allocating: the spares are as many as
//! the sockets that were busy at once, within `SPARES` and `SPARE_BYTES`.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use crate::transport::send_queue::SendQueue;

/// Spare flows the ring keeps at most.
const SPARES: usize = 1024;
/// Buffer memory the spares keep at most; a flow given back beyond it keeps
/// its structure but not its buffers.
const SPARE_BYTES: usize = 4 << 20;

/// The bytes moving through one socket on the ring.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    /// Bytes received and not yet read by the engine, from `head` on.
    pub(super) stash: Vec<u8>,
    pub(super) head: usize,
    /// Received bytes still in the provided buffers, in order, with nothing
    /// in the stash ahead of them: delivered from there, or copied to the
    /// stash when the wait's batch ends. One run of memory each.
    pub(super) fresh: VecDeque<Fresh>,
    pub(super) fresh_len: usize,
    /// Bytes sent and not yet handed to the kernel.
    pub(crate) out: SendQueue,
    /// The bytes of the send in flight: the kernel reads them until its
    /// completion, so the queue may grow (and move) meanwhile.
    pub(super) inflight: Vec<u8>,
    pub(super) inflight_done: usize,
    /// Connections a listener's multishot accept took and the loop did not
    /// take in yet (the admission limit, the per-turn batch).
    pub(crate) held: VecDeque<OwnedFd>,
}

impl Flow {
    /// Bytes received and not yet read.
    pub(super) fn stashed(&self) -> usize {
        self.stash.len() - self.head + self.fresh_len
    }

    /// Nothing to read, to send or held: the socket can do without it (the
    /// caller knows no send of it is in the kernel).
    pub(super) fn is_idle(&self) -> bool {
        self.stashed() == 0 && self.out.is_empty() && self.held.is_empty()
    }

    /// The memory its buffers hold.
    fn bytes(&self) -> usize {
        self.stash.capacity() + self.inflight.capacity() + self.out.capacity()
    }
}

/// Received bytes in the provided buffers, one run of memory: what one
/// receive brought, or several whose bytes follow one another.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fresh {
    /// Where they start in the buffers' allocation, and how many.
    pub(super) at: usize,
    pub(super) len: usize,
}

/// The ring's spare flows.
#[derive(Debug, Default)]
pub(super) struct Spares {
    // Boxed on purpose: a flow moves between a socket and the spares as
    // its box, without being copied or allocated.
    #[allow(clippy::vec_box)]
    flows: Vec<Box<Flow>>,
    /// Their buffers' memory.
    bytes: usize,
}

impl Spares {
    /// A flow for a socket that needs one: a spare, or a new one.
    pub(super) fn take(&mut self) -> Box<Flow> {
        match self.flows.pop() {
            Some(flow) => {
                self.bytes -= flow.bytes();
                flow
            }
            None => Box::default(),
        }
    }

    /// How many there are.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }

    /// An idle socket's flow, kept for the next socket that needs one.
    pub(super) fn give(&mut self, mut flow: Box<Flow>) {
        if self.flows.len() >= SPARES {
            return;
        }
        flow.stash.clear();
        flow.head = 0;
        flow.fresh_len = 0;
        flow.inflight.clear();
        flow.inflight_done = 0;
        if self.bytes + flow.bytes() > SPARE_BYTES {
            flow.stash = Vec::new();
            flow.inflight = Vec::new();
            flow.out = SendQueue::default();
        }
        self.bytes += flow.bytes();
        self.flows.push(flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_taken_again_and_its_buffers_kept_within_the_budget() {
        let mut spares = Spares::default();
        let mut flow = spares.take();
        flow.stash.extend_from_slice(&[1; 100]);
        flow.head = 100;
        assert!(flow.is_idle());
        let at = flow.stash.as_ptr();
        spares.give(flow);
        let again = spares.take();
        assert_eq!(again.stash.as_ptr(), at, "the same buffer, reused");
        assert_eq!((again.stashed(), again.head), (0, 0));
        // A flow whose buffers would pass the budget keeps none of them.
        let mut big = Box::<Flow>::default();
        big.stash.reserve(SPARE_BYTES + 1);
        spares.give(big);
        assert_eq!(spares.bytes, 0);
        assert_eq!(spares.take().stash.capacity(), 0);
    }

    #[test]
    fn a_flow_with_something_to_read_or_send_is_not_idle() {
        let mut flow = Flow::default();
        flow.stash.push(1);
        assert!(!flow.is_idle());
        let mut flow = Flow::default();
        flow.out.push(b"x");
        assert!(!flow.is_idle());
        let mut flow = Flow::default();
        flow.fresh.push_back(Fresh { at: 0, len: 3 });
        flow.fresh_len = 3;
        assert!(!flow.is_idle());
    }
}
