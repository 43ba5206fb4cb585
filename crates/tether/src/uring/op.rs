//! What a request is for, in its user_data, and a completion decoded.

use io_uring::cqueue;

/// What a completion was for: the low byte of its user_data (the rest is the
/// ring socket's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// The epoll instance (the waker, and every socket still on readiness).
    Poll = 1,
    Recv = 2,
    Send = 3,
    Accept = 4,
    Cancel = 5,
    /// The close of a released socket's descriptor, which the ring owns,
    /// after a cancel of its requests.
    Close = 6,
    /// The close of a released socket that had nothing in the kernel: it
    /// runs within the submission and completes only if it fails.
    CloseAlone = 7,
}

impl Op {
    fn from_bits(bits: u8) -> Option<Op> {
        Some(match bits {
            1 => Op::Poll,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Accept,
            5 => Op::Cancel,
            6 => Op::Close,
            7 => Op::CloseAlone,
            _ => return None,
        })
    }
}

pub(super) fn user_data(key: usize, op: Op) -> u64 {
    ((key as u64) << 8) | op as u64
}

/// A completion queue entry of ours, decoded.
pub(super) fn completion(cqe: &cqueue::Entry) -> Option<Completion> {
    let ud = cqe.user_data();
    Some(Completion {
        key: (ud >> 8) as usize,
        op: Op::from_bits((ud & 0xff) as u8)?,
        res: cqe.result(),
        flags: cqe.flags(),
    })
}

/// One completion, copied off the ring so that handling it may queue more.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub(crate) key: usize,
    pub(crate) op: Op,
    pub(crate) res: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// The multishot goes on: more completions of this request will come.
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}
