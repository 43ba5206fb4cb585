//! The io_uring backend's ring: its submission and completion queues, the
//! provided-buffer ring that multishot receives fill, and what the ring keeps
//! for each socket on it. All the backend's `unsafe` is here: the kernel reads
//! and writes memory this module owns, and every address handed to it stays
//! valid until the completion that gives it back.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use crate::transport::send_queue::SendQueue;
use crate::SocketId;

/// Buffers in the provided-buffer ring, and the size of each. A multishot
/// receive takes one per completion and the loop gives it back as soon as it
/// copied the bytes out, so the ring needs about one per connection that
/// receives in the same turn.
const BUFS: u16 = 1024;
const BUF_SIZE: usize = 4096;
/// How long a wait that has only the completions of the sends it submitted
/// (a send the kernel takes at once completes within the submission) goes
/// on for something else to come, before it returns with just those.
/// Without it every turn that sent would be followed by one that only counts
/// what was sent: two system calls where one will do.
const SENT_GRACE_USEC: u32 = 50;
/// Sends in one submission from which the wait takes that grace: a busy
/// loop's. For a few connections there is little to batch, and the timer
/// the grace arms costs more than the system call it may save.
const SENT_GRACE_FROM: usize = 4;
/// Sends up to this size count for the grace: the kernel takes them at once
/// unless the socket is full. A larger one (bulk) may well wait for room,
/// and a wait counting on its completion would sit out the grace each turn.
const SMALL_SEND: usize = 4096;
/// The provided-buffer group every receive selects from.
const BGID: u16 = 0;
/// Stashed bytes (received, not yet asked for) above which a socket's
/// multishot receive is cancelled while no recv is pending: the kernel's
/// receive window then fills and holds the peer back, as an unread socket
/// does under epoll.
pub(crate) const STASH_HIGH: usize = 64 * 1024;

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

fn user_data(key: usize, op: Op) -> u64 {
    ((key as u64) << 8) | op as u64
}

/// A completion queue entry of ours, decoded.
fn completion(cqe: &cqueue::Entry) -> Option<Completion> {
    let ud = cqe.user_data();
    Some(Completion {
        key: (ud >> 8) as usize,
        op: Op::from_bits((ud & 0xff) as u8)?,
        res: cqe.result(),
        flags: cqe.flags(),
    })
}

/// Bytes one receive put in consecutive provided buffers: one run of
/// memory.
#[derive(Clone, Copy, Debug)]
struct Fresh {
    /// Where they start in the buffers' allocation, and how many.
    at: usize,
    len: usize,
}

/// Received bytes lent from the provided buffers for one delivery
/// (`Ring::lend`). The buffers go back to the kernel when the wait's batch
/// ends (`Ring::end_batch`), after every delivery of the batch.
#[derive(Debug)]
pub(crate) struct Lent {
    ptr: *const u8,
    len: usize,
}

impl Lent {
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies in the provided buffers of a ring
        // that outlives the delivery (the loop's ring is dropped only with
        // the loop, never inside a callback). The kernel wrote these bytes
        // before their completion and cannot write them again before the
        // buffers are given back, at the end of the batch, once every
        // delivery of it returned; nothing else writes them.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
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

/// What the ring keeps for one socket on it (a stream or a listener).
#[derive(Debug)]
pub(crate) struct RingSock {
    /// The socket it serves; `None` once retired (its slot closed), while
    /// requests of it are still in the kernel.
    pub(crate) owner: Option<SocketId>,
    fd: RawFd,
    pub(crate) recv_armed: bool,
    /// Its multishot receive was asked to stop (it is armed until the last
    /// completion says it stopped).
    recv_cancelling: bool,
    pub(crate) accept_armed: bool,
    accept_cancelling: bool,
    /// Bytes received and not yet read by the engine, from `head` on.
    stash: Vec<u8>,
    head: usize,
    /// Received bytes still in the provided buffers, in order, with nothing
    /// in the stash ahead of them: delivered from there, or copied to the
    /// stash when the wait's batch ends. One run of memory each.
    fresh: VecDeque<Fresh>,
    fresh_len: usize,
    /// The peer's FIN came (a receive of zero bytes).
    pub(crate) eof: bool,
    /// A receive failed; reported by the next read.
    pub(crate) error: Option<io::Error>,
    /// Bytes sent and not yet handed to the kernel.
    pub(crate) out: SendQueue,
    /// The bytes of the send in flight: the kernel reads them until its
    /// completion, so the queue may grow (and move) meanwhile.
    inflight: Vec<u8>,
    inflight_done: usize,
    sending: bool,
    /// In the turn's list of sockets to send for.
    listed: bool,
    /// Requests in the kernel: the socket's memory is kept until all are back.
    ops: u32,
    /// Connections a listener's multishot accept took and the loop did not
    /// take in yet (the admission limit, the per-turn batch).
    pub(crate) held: VecDeque<OwnedFd>,
}

impl RingSock {
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

/// The provided-buffer ring: the entries the kernel picks buffers from, and
/// the buffers. Both are raw allocations: the kernel writes the buffers while
/// the loop runs, so no Rust reference to them may live across that.
struct BufRing {
    entries: *mut BufRingEntry,
    data: *mut u8,
    /// The tail the loop has written; published to the kernel by `publish`.
    tail: u16,
    /// The buffer each ring entry holds, and the entry each buffer is in:
    /// a bundle receive names its first buffer, the others are the entries
    /// after it.
    bid_at: Vec<u16>,
    entry_of: Vec<u16>,
}

impl BufRing {
    fn entries_layout() -> Layout {
        // The kernel wants the ring page-aligned.
        Layout::from_size_align(
            usize::from(BUFS) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .expect("a valid layout")
    }

    fn data_layout() -> Layout {
        Layout::from_size_align(usize::from(BUFS) * BUF_SIZE, 4096).expect("a valid layout")
    }

    fn new() -> io::Result<BufRing> {
        // SAFETY: both layouts have a non-zero size; a null result is checked.
        let entries = unsafe { alloc_zeroed(Self::entries_layout()) }.cast::<BufRingEntry>();
        // SAFETY: as above.
        let data = unsafe { alloc_zeroed(Self::data_layout()) };
        if entries.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(BufRing {
            entries,
            data,
            tail: 0,
            bid_at: vec![0; usize::from(BUFS)],
            entry_of: vec![0; usize::from(BUFS)],
        })
    }

    /// Give buffer `bid` (back) to the kernel; seen once `publish`ed.
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUFS - 1));
        // SAFETY: `slot` < BUFS, inside the allocation; the kernel reads only
        // the entries between its head and the published tail, and this one
        // is past the published tail until `publish`.
        let entry = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `bid` < BUFS: the buffer lies inside the data allocation.
        let addr = unsafe { self.data.add(usize::from(bid) * BUF_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.bid_at[slot] = bid;
        self.entry_of[usize::from(bid.min(BUFS - 1))] = slot as u16;
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish the entries pushed so far.
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field,
        // inside the allocation, aligned for a u16; the kernel only reads it.
        let tail = unsafe { BufRingEntry::tail(self.entries) } as *mut u16;
        // SAFETY: `tail` is valid and aligned (above); the store is atomic,
        // as the kernel's reads of it are.
        unsafe { AtomicU16::from_ptr(tail) }.store(self.tail, Ordering::Release);
    }

    /// Where the run of `len` bytes at offset `at` of the buffers'
    /// allocation starts (consecutive buffers are one run of memory).
    fn run(&self, at: usize, len: usize) -> *const u8 {
        assert!(
            at + len <= usize::from(BUFS) * BUF_SIZE,
            "a run in the buffers"
        );
        self.data.wrapping_add(at).cast_const()
    }

    /// The first `len` bytes of buffer `bid`, which a completion gave back.
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid.min(BUFS - 1));
        let len = len.min(BUF_SIZE);
        // SAFETY: inside the data allocation; the kernel wrote these bytes
        // before the completion and writes the buffer again only after it is
        // pushed back, which the caller does after using the slice.
        unsafe { std::slice::from_raw_parts(self.data.add(bid * BUF_SIZE), len) }
    }
}

// SAFETY: the allocations are owned by this value alone (no other thread has
// a pointer to them); moving it to another thread moves that ownership.
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.entries.is_null() {
            // Leaked on purpose (see `Ring::drop`).
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the ring that used
        // them is gone (dropped before, see `Ring`'s field order) and had no
        // request left in the kernel (see `Ring::drop`).
        unsafe {
            dealloc(self.entries.cast(), Self::entries_layout());
            dealloc(self.data, Self::data_layout());
        }
    }
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing").field("tail", &self.tail).finish()
    }
}

/// Move a socket's fresh bytes (still in the provided buffers) to its stash.
fn copy_fresh(bufs: &BufRing, rs: &mut RingSock) {
    if rs.fresh.is_empty() {
        return;
    }
    if rs.head > 0 && rs.head == rs.stash.len() {
        rs.stash.clear();
        rs.head = 0;
    }
    rs.fresh_len = 0;
    for fresh in rs.fresh.drain(..) {
        let ptr = bufs.run(fresh.at, fresh.len);
        // SAFETY: the run lies in the buffers' allocation (`run`), which the
        // kernel wrote before the completion and does not write before the
        // buffers are given back at the end of the batch.
        rs.stash
            .extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, fresh.len) });
    }
}

/// The ring of one loop.
pub(crate) struct Ring {
    /// Dropped first: the kernel lets go of the buffers before they are freed.
    uring: IoUring,
    bufs: BufRing,
    socks: Slab<RingSock>,
    /// Each live socket's key, by its slot index.
    keys: Vec<Option<(SocketId, usize)>>,
    /// Sockets with bytes to send this turn.
    to_send: Vec<usize>,
    /// The epoll instance's poll is armed.
    poll_armed: bool,
    epoll: RawFd,
    /// The completions of the last wait, and the next one to hand out.
    done: Vec<Completion>,
    next: usize,
    /// Completions taken off the queue between waits (while a socket left
    /// the ring), for the next wait to hand out.
    early: Vec<Completion>,
    /// Small sends queued since the last wait (see `SMALL_SEND`).
    sends: usize,
    /// The kernel knows a wait's minimum time (6.12).
    min_wait: bool,
    /// The kernel fills several buffers in one receive completion (6.10).
    bundles: bool,
    /// The buffers of the completion being taken in (reused).
    bids: Vec<u16>,
    /// Buffers the wait's completions filled, in the order the kernel took
    /// them: given back in that order when the batch ends, so that ring
    /// entries stay in buffer order and a bundle's buffers are one run of
    /// memory.
    consumed: Vec<u16>,
    /// Sockets with fresh bytes in this batch.
    fresh_keys: Vec<usize>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("socks", &self.socks.len())
            .field("bufs", &self.bufs)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring, its buffers registered, watching `epoll` (the loop's epoll
    /// instance) for readiness of what is not on the ring.
    pub(crate) fn new(epoll: RawFd) -> io::Result<Ring> {
        // Left out on purpose. SQPOLL: a kernel thread polling the queue
        // costs a core. COOP_TASKRUN: with DEFER_TASKRUN every request's
        // task work is the loop's own, run in its enter; nothing is left to
        // signal. In TCP pingpong the server spends about nine tenths of
        // its time in the kernel's TCP send and receive: NO_SQARRAY and
        // huge pages for the buffers measured within the run-to-run noise
        // of its CPU per round trip, and the descriptor lookup that a
        // registered ring descriptor (per enter) or fixed files (per send)
        // would save is about 1% of its time in a profile.
        let uring = IoUring::builder()
            .setup_single_issuer()
            // Completions are made when the loop enters the ring to take
            // them, all at once, rather than as each packet arrives: more of
            // them per wait, and no interruption of the loop between.
            .setup_defer_taskrun()
            // Tells when completions wait for that work, so that a
            // non-blocking enter still does it (see `submit_and_wait`).
            .setup_taskrun_flag()
            .setup_cqsize(8192)
            .build(2048)?;
        let mut bufs = BufRing::new()?;
        // SAFETY: the entries are page-aligned, BUFS long, and live as long
        // as the ring (they are freed after it, see the field order).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(bufs.entries as u64, BUFS, BGID, 0)?;
        }
        for bid in 0..BUFS {
            bufs.push(bid);
        }
        bufs.publish();
        let mut ring = Ring {
            uring,
            bufs,
            socks: Slab::new(),
            keys: Vec::new(),
            to_send: Vec::new(),
            poll_armed: false,
            epoll,
            done: Vec::new(),
            next: 0,
            early: Vec::new(),
            sends: 0,
            min_wait: false,
            bundles: false,
            bids: Vec::new(),
            consumed: Vec::new(),
            fresh_keys: Vec::new(),
        };
        ring.bundles = ring.uring.params().is_feature_recvsend_bundle();
        ring.min_wait = ring.uring.params().is_feature_min_timeout();
        ring.arm_poll();
        // In the kernel from the start: the ring's descriptor is readable
        // when the epoll instance is, before the first turn.
        ring.uring.submit()?;
        Ok(ring)
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every address an entry carries (a send's bytes, the
            // buffer ring) is owned by this ring and kept until the request's
            // last completion (`RingSock::ops`, `Drop`).
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel to make room.
            let _ = self.uring.submit();
        }
    }

    fn arm_poll(&mut self) {
        let entry = opcode::PollAdd::new(types::Fd(self.epoll), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(0, Op::Poll));
        self.push(entry);
        self.poll_armed = true;
    }

    /// Put socket `s` (descriptor `fd`, owned by its slot) on the ring.
    pub(crate) fn adopt(&mut self, s: SocketId, fd: RawFd) -> usize {
        let key = self.socks.insert(RingSock {
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
        });
        let idx = s.idx as usize;
        if self.keys.len() <= idx {
            self.keys.resize(idx + 1, None);
        }
        self.keys[idx] = Some((s, key));
        key
    }

    /// The key of socket `s`, if it is on the ring.
    #[inline]
    pub(crate) fn key(&self, s: SocketId) -> Option<usize> {
        match self.keys.get(s.idx as usize) {
            Some(Some((owner, key))) if *owner == s => Some(*key),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn sock(&mut self, s: SocketId) -> Option<&mut RingSock> {
        let key = self.key(s)?;
        self.socks.get_mut(key)
    }

    pub(crate) fn by_key(&mut self, key: usize) -> Option<&mut RingSock> {
        self.socks.get_mut(key)
    }

    /// Start the socket's multishot receive.
    pub(crate) fn arm_recv(&mut self, key: usize) {
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
        if rs.recv_armed || rs.eof || rs.owner.is_none() {
            return;
        }
        rs.recv_armed = true;
        rs.ops += 1;
        let entry = if self.bundles {
            // A bulk receive takes many buffers in one completion.
            opcode::RecvMultiBundle::new(types::Fd(rs.fd), BGID).build()
        } else {
            opcode::RecvMulti::new(types::Fd(rs.fd), BGID).build()
        }
        .user_data(user_data(key, Op::Recv));
        self.push(entry);
    }

    /// Start the listener's multishot accept.
    pub(crate) fn arm_accept(&mut self, key: usize) {
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
        if rs.accept_armed || rs.owner.is_none() {
            return;
        }
        rs.accept_armed = true;
        rs.ops += 1;
        let entry = opcode::AcceptMulti::new(types::Fd(rs.fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(key, Op::Accept));
        self.push(entry);
    }

    /// Ask the kernel to end the socket's request `op` (a multishot), once.
    pub(crate) fn cancel(&mut self, key: usize, op: Op) {
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
        let asked = match op {
            Op::Recv => &mut rs.recv_cancelling,
            Op::Accept => &mut rs.accept_cancelling,
            _ => return,
        };
        if std::mem::replace(asked, true) {
            return;
        }
        rs.ops += 1;
        let entry = opcode::AsyncCancel::new(user_data(key, op))
            .build()
            .user_data(user_data(key, Op::Cancel));
        self.push(entry);
    }

    /// The socket has bytes to send: they go with this turn's submission.
    pub(crate) fn want_send(&mut self, key: usize) {
        if let Some(rs) = self.socks.get_mut(key) {
            if !rs.listed {
                rs.listed = true;
                self.to_send.push(key);
            }
        }
    }

    /// The socket's slot closes: its requests are cancelled, and what they
    /// hold is kept until their completions are back. Before the caller
    /// closes the descriptor, everything queued is submitted (no request may
    /// name the descriptor's number once another socket can get it), and the
    /// requests on it are cancelled synchronously: none holds the socket
    /// open any more, so closing it is the last reference (an RST for a reset
    /// goes out at once, not when a receive that was armed ends).
    pub(crate) fn retire(&mut self, s: SocketId) {
        let Some(key) = self.key(s) else { return };
        self.keys[s.idx as usize] = None;
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
        rs.owner = None;
        rs.held.clear();
        rs.out = SendQueue::default();
        let (fd, busy) = (rs.fd, rs.ops > 0);
        if busy {
            self.cancel_now(fd);
        }
        self.forget_if_done(key);
    }

    /// The socket's slot closes and hands its descriptor to the ring, which
    /// closes it with the turn's submission (no system call of its own).
    /// Requests of it still in the kernel are cancelled first, the close
    /// hard-linked after the cancel (it runs whatever the cancel found: a
    /// request may end on its own meanwhile), and the socket's memory kept
    /// until the close completes. The close is the last request naming the
    /// descriptor: its number is free for another socket only after it.
    pub(crate) fn release(&mut self, s: SocketId, fd: OwnedFd) {
        let Some(key) = self.key(s) else { return };
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
        self.keys[s.idx as usize] = None;
        rs.owner = None;
        rs.held.clear();
        rs.out = SendQueue::default();
        // The ring's from here: the close below gives it back to the kernel.
        let raw = fd.into_raw_fd();
        if rs.ops == 0 {
            // Nothing of it in the kernel: the close alone, run within the
            // submission. Only a failure would complete it, and nothing
            // waits for it: the socket is forgotten now, and the wait the
            // close is submitted with is not ended by it.
            self.socks.remove(key);
            let entry = opcode::Close::new(types::Fd(raw))
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(user_data(key, Op::CloseAlone));
            self.push(entry);
            return;
        }
        rs.ops += 2;
        // Both in one submission: a link cut by a submission in between
        // would not hold.
        let room = {
            let sq = self.uring.submission();
            sq.capacity() - sq.len()
        };
        if room < 2 {
            let _ = self.uring.submit();
        }
        let cancel = types::CancelBuilder::fd(types::Fd(raw)).all();
        let entry = opcode::AsyncCancel2::new(cancel)
            .build()
            .flags(squeue::Flags::IO_HARDLINK)
            .user_data(user_data(key, Op::Cancel));
        self.push(entry);
        let entry = opcode::Close::new(types::Fd(raw))
            .build()
            .user_data(user_data(key, Op::Close));
        self.push(entry);
    }

    /// Cancel every request on `fd` and let them end now, not at the next
    /// wait. Everything queued is submitted first (no request may name the
    /// descriptor once the caller lets go of it). With the loop's work
    /// deferred to its waits, a cancelled request would otherwise keep
    /// holding the socket: a reset's RST would go out late.
    fn cancel_now(&mut self, fd: RawFd) {
        if !self.uring.submission().is_empty() {
            let _ = self.uring.submit();
        }
        let cancel = types::CancelBuilder::fd(types::Fd(fd)).all();
        let within = Timespec::from(Duration::from_millis(100));
        let _ = self
            .uring
            .submitter()
            .register_sync_cancel(Some(within), cancel);
        // SAFETY: no submission, no argument: an enter that only runs the
        // ring's pending work and takes no memory of ours.
        let _ = unsafe {
            self.uring.submitter().enter::<libc::sigset_t>(
                0,
                0,
                io_uring::EnterFlags::GETEVENTS.bits(),
                None,
            )
        };
    }

    /// Take socket `s` off the ring, its descriptor left open (a StartTLS
    /// moves it to readiness, where the TLS layer reads and writes it). Its
    /// requests end first; what they completed is taken in here. `None` if
    /// it is not on the ring, or a request of it would not end.
    pub(crate) fn detach(&mut self, s: SocketId) -> Option<Detached> {
        let key = self.key(s)?;
        let fd = self.socks.get(key)?.fd;
        let mut sent = 0;
        let mut error = None;
        if self.socks.get(key)?.ops > 0 {
            self.cancel_now(fd);
            // Its completions: those of the wait being handled that are
            // still to come, then those the cancel brought.
            // (A lone close's failure names a socket that is gone, maybe by
            // a key now this one's.)
            let mine = |c: &Completion| c.key == key && !matches!(c.op, Op::Poll | Op::CloseAlone);
            let mut taken: Vec<Completion> = self.done[self.next..]
                .iter()
                .copied()
                .filter(mine)
                .collect();
            let (next, mut at) = (self.next, 0);
            self.done.retain(|c| {
                at += 1;
                at <= next || !mine(c)
            });
            for cqe in self.uring.completion() {
                let Some(c) = completion(&cqe) else { continue };
                if mine(&c) {
                    taken.push(c);
                } else {
                    self.early.push(c);
                }
            }
            for c in taken {
                match c.op {
                    Op::Recv => {
                        self.on_recv(&c);
                    }
                    Op::Send => {
                        // Not `on_send`: what a send left is not sent again
                        // from here; it stays in the queue handed over.
                        if let Some(rs) = self.socks.get_mut(key) {
                            rs.sending = false;
                        }
                        match c.res {
                            n if n >= 0 => sent += n as usize,
                            e if e == -libc::ECANCELED => {}
                            e => error = Some(io::Error::from_raw_os_error(-e)),
                        }
                        self.op_done(key);
                    }
                    _ => self.op_done(key),
                }
            }
        }
        let rs = self.socks.get_mut(key)?;
        if rs.ops > 0 {
            return None;
        }
        copy_fresh(&self.bufs, rs);
        let mut rs = self.socks.remove(key);
        self.keys[s.idx as usize] = None;
        let sends = rs.out.lent_out(sent);
        rs.inflight_done += sent;
        if let Some(rest) = rs.inflight.get(rs.inflight_done..) {
            rs.out.unlend(rest);
        }
        let stash = rs.stash.split_off(rs.head);
        Some(Detached {
            stash,
            out: rs.out,
            sent,
            sends,
            error: error.or(rs.error),
        })
    }

    /// A retired socket with nothing left in the kernel is forgotten.
    fn forget_if_done(&mut self, key: usize) {
        if self
            .socks
            .get(key)
            .is_some_and(|rs| rs.owner.is_none() && rs.ops == 0)
        {
            self.socks.remove(key);
        }
    }

    /// One request of the socket came back for good.
    fn op_done(&mut self, key: usize) {
        if let Some(rs) = self.socks.get_mut(key) {
            rs.ops = rs.ops.saturating_sub(1);
        }
        self.forget_if_done(key);
    }

    /// Queue one send for each listed socket with bytes and none in flight.
    fn queue_sends(&mut self) {
        let mut list = std::mem::take(&mut self.to_send);
        for key in list.drain(..) {
            let Some(rs) = self.socks.get_mut(key) else {
                continue;
            };
            rs.listed = false;
            if rs.sending || rs.owner.is_none() || rs.out.pending().is_empty() {
                continue;
            }
            // The bytes move out of the queue without a copy; the queue
            // takes new sends meanwhile.
            rs.out.lend(&mut rs.inflight);
            rs.inflight_done = 0;
            self.push_send(key);
        }
        self.to_send = list;
    }

    fn push_send(&mut self, key: usize) {
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
        let rest = &rs.inflight[rs.inflight_done..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        rs.sending = true;
        rs.ops += 1;
        if rest.len() <= SMALL_SEND {
            self.sends += 1;
        }
        let entry = opcode::Send::new(types::Fd(rs.fd), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(key, Op::Send));
        self.push(entry);
    }

    /// The ring's descriptor: readable while completions wait.
    pub(crate) fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.uring.as_raw_fd()
    }

    /// Submit what is queued (the turn's sends included), without waiting;
    /// no system call if nothing is.
    pub(crate) fn submit_now(&mut self) -> io::Result<()> {
        self.queue_sends();
        // Waited for by nobody: the next wait does not count on them.
        self.sends = 0;
        if self.uring.submission().is_empty() {
            return Ok(());
        }
        match self.uring.submit() {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submit what this turn queued and wait up to `timeout` (`None`: until
    /// something completes) in one system call; then take the completions
    /// (see `completions`).
    pub(crate) fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.queue_sends();
        if !self.poll_armed {
            self.arm_poll();
        }
        let waiting = !self.uring.completion().is_empty() || !self.early.is_empty();
        let sends = std::mem::take(&mut self.sends);
        let result = match timeout {
            _ if waiting => self.uring.submit(),
            Some(Duration::ZERO) => self.uring.submit(),
            None if sends < SENT_GRACE_FROM || !self.min_wait => self.uring.submit_and_wait(1),
            None => {
                // One more than the sends: what they complete within the
                // submission does not end the wait at once.
                let args = SubmitArgs::new().min_wait_usec(SENT_GRACE_USEC);
                self.uring.submitter().submit_with_args(sends + 1, &args)
            }
            Some(d) => {
                let ts = Timespec::from(d);
                let mut args = SubmitArgs::new().timespec(&ts);
                let mut want = 1;
                if sends >= SENT_GRACE_FROM && self.min_wait {
                    args = args.min_wait_usec(SENT_GRACE_USEC);
                    want = sends + 1;
                }
                self.uring.submitter().submit_with_args(want, &args)
            }
        };
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.done.clear();
        self.next = 0;
        self.done.append(&mut self.early);
        for cqe in self.uring.completion() {
            if let Some(c) = completion(&cqe) {
                self.done.push(c);
            }
        }
        Ok(())
    }

    /// The next completion of the last wait, in order. They stay here while
    /// they are handled, so that a socket leaving the ring (`detach`) takes
    /// its own out of those still to come.
    pub(crate) fn next_completion(&mut self) -> Option<Completion> {
        let c = *self.done.get(self.next)?;
        self.next += 1;
        Some(c)
    }

    /// The epoll instance's poll completed; false if it must be armed again.
    pub(crate) fn on_poll(&mut self, c: &Completion) {
        if !c.more() {
            self.poll_armed = false;
        }
    }

    /// A receive completion: its bytes are stashed and its buffer goes back.
    /// Returns the socket it is for, if still open.
    pub(crate) fn on_recv(&mut self, c: &Completion) -> Option<SocketId> {
        let more = c.more();
        let bid = cqueue::buffer_select(c.flags);
        // The buffers it filled: its first, and for a bundle the entries
        // after that one's, each full but the last.
        self.bids.clear();
        if let Some(first) = bid {
            let used = (c.res.max(1) as usize).div_ceil(BUF_SIZE);
            let entry = usize::from(self.bufs.entry_of[usize::from(first.min(BUFS - 1))]);
            for k in 0..used.min(usize::from(BUFS)) {
                let slot = (entry + k) & usize::from(BUFS - 1);
                self.bids.push(self.bufs.bid_at[slot]);
            }
        }
        // Given back when the batch ends, whoever they were for.
        self.consumed.extend_from_slice(&self.bids);
        let Some(rs) = self.socks.get_mut(c.key) else {
            // Not ours (cannot happen: a socket is kept while a request of
            // it is in the kernel).
            return None;
        };
        if c.res > 0 && rs.owner.is_some() {
            let len = c.res as usize;
            if rs.stash.len() == rs.head {
                // Left where they are, a run of consecutive buffers at a
                // time: delivered from there if recvs take them in this
                // batch.
                let mut left = len;
                let mut i = 0;
                while left > 0 && i < self.bids.len() {
                    let first = self.bids[i];
                    let mut n = 1;
                    while i + n < self.bids.len() && self.bids[i + n] == first + n as u16 {
                        n += 1;
                    }
                    let run = left.min(n * BUF_SIZE);
                    rs.fresh.push_back(Fresh {
                        at: usize::from(first) * BUF_SIZE,
                        len: run,
                    });
                    rs.fresh_len += run;
                    left -= run;
                    i += n;
                }
                self.fresh_keys.push(c.key);
            } else {
                let mut left = len;
                for &b in &self.bids {
                    let bytes = self.bufs.bytes(b, left.min(BUF_SIZE));
                    left -= bytes.len();
                    rs.stash.extend_from_slice(bytes);
                }
            }
        } else if c.res == 0 {
            rs.eof = true;
        } else if c.res < 0 && c.res != -libc::ENOBUFS && c.res != -libc::ECANCELED {
            rs.error = Some(io::Error::from_raw_os_error(-c.res));
        }
        let owner = rs.owner;
        if !more {
            rs.recv_armed = false;
            rs.recv_cancelling = false;
            self.op_done(c.key);
        }
        owner
    }

    /// Socket `s`'s received bytes, all in its stash (its fresh ones copied
    /// there): what reads that do not take them whole need.
    pub(crate) fn settled(&mut self, s: SocketId) -> Option<&mut RingSock> {
        let key = self.key(s)?;
        let rs = self.socks.get_mut(key)?;
        copy_fresh(&self.bufs, rs);
        Some(rs)
    }

    /// Up to `cap` of socket `s`'s fresh bytes (nothing is stashed before
    /// them): lent from the provided buffers for one delivery, not copied.
    /// The socket no longer holds them.
    pub(crate) fn lend(&mut self, s: SocketId, cap: usize) -> Option<Lent> {
        let key = self.key(s)?;
        let rs = self.socks.get_mut(key)?;
        let fresh = rs.fresh.front_mut().filter(|_| cap > 0)?;
        let len = fresh.len.min(cap);
        let ptr = self.bufs.run(fresh.at, len);
        fresh.at += len;
        fresh.len -= len;
        if fresh.len == 0 {
            rs.fresh.pop_front();
        }
        rs.fresh_len -= len;
        Some(Lent { ptr, len })
    }

    /// The wait's batch is over: what no recv took is copied to the
    /// stashes, and the batch's buffers go back to the kernel.
    pub(crate) fn end_batch(&mut self) {
        for key in self.fresh_keys.drain(..) {
            if let Some(rs) = self.socks.get_mut(key) {
                copy_fresh(&self.bufs, rs);
            }
        }
        if self.consumed.is_empty() {
            return;
        }
        for i in 0..self.consumed.len() {
            let bid = self.consumed[i];
            self.bufs.push(bid);
        }
        self.consumed.clear();
        self.bufs.publish();
    }

    /// A send completion: how many bytes went, or the error; the rest of a
    /// short send is queued again. Returns the socket it is for, if still open.
    pub(crate) fn on_send(&mut self, c: &Completion) -> Option<(SocketId, io::Result<usize>)> {
        let rs = self.socks.get_mut(c.key)?;
        rs.sending = false;
        let owner = rs.owner;
        let result = if c.res >= 0 {
            let n = c.res as usize;
            rs.inflight_done += n;
            if rs.owner.is_some() && rs.inflight_done < rs.inflight.len() {
                self.op_done(c.key);
                self.push_send(c.key);
            } else {
                self.op_done(c.key);
            }
            Ok(n)
        } else {
            self.op_done(c.key);
            Err(io::Error::from_raw_os_error(-c.res))
        };
        Some((owner?, result))
    }

    /// An accept completion: the new connection is held for the listener.
    /// Returns the listener, if still open, and the accept's error, if any.
    pub(crate) fn on_accept(&mut self, c: &Completion) -> Option<(SocketId, Option<io::Error>)> {
        let rs = self.socks.get_mut(c.key)?;
        let owner = rs.owner;
        let mut error = None;
        if c.res >= 0 {
            // SAFETY: a successful accept completion carries a new descriptor
            // that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(c.res) };
            if owner.is_some() {
                rs.held.push_back(fd);
            }
        } else {
            error = Some(io::Error::from_raw_os_error(-c.res));
        }
        if !c.more() {
            rs.accept_armed = false;
            rs.accept_cancelling = false;
            self.op_done(c.key);
        }
        Some((owner?, error))
    }

    /// A cancel request came back.
    pub(crate) fn on_cancel(&mut self, c: &Completion) {
        self.op_done(c.key);
    }

    /// A released socket's close completed: its memory goes once every other
    /// request of it is back too. (A close that failed leaves nothing to
    /// do: the descriptor is not the ring's any more either way.)
    pub(crate) fn on_close(&mut self, c: &Completion) {
        if c.op == Op::Close {
            self.op_done(c.key);
        }
    }

    /// Submit what is queued and run the ring's deferred work, the closes
    /// linked after a cancel included (the loop stops turning: nothing
    /// queued may wait for a next turn that may not come).
    pub(crate) fn flush(&mut self) {
        let _ = self.submit_now();
        if !self.socks.iter().any(|(_, rs)| rs.owner.is_none()) {
            return;
        }
        // SAFETY: no submission, no argument: an enter that only runs the
        // ring's pending work and takes no memory of ours.
        let _ = unsafe {
            self.uring.submitter().enter::<libc::sigset_t>(
                0,
                0,
                io_uring::EnterFlags::GETEVENTS.bits(),
                None,
            )
        };
    }

    /// Requests in the kernel, over all sockets.
    fn in_flight(&self) -> u32 {
        self.socks.iter().map(|(_, rs)| rs.ops).sum()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The closes still queued are the kernel's to carry out.
        let _ = self.uring.submit();
        // Every request ends before the memory it uses is freed: cancel all,
        // and wait (a bounded while) for their completions.
        let keys: Vec<(usize, bool, bool)> = self
            .socks
            .iter()
            .map(|(k, rs)| (k, rs.recv_armed, rs.accept_armed))
            .collect();
        for (key, recv, accept) in keys {
            if recv {
                self.cancel(key, Op::Recv);
            }
            if accept {
                self.cancel(key, Op::Accept);
            }
        }
        for _ in 0..100 {
            if self.in_flight() == 0 {
                return;
            }
            if self.enter(Some(Duration::from_millis(10))).is_err() {
                break;
            }
            while let Some(c) = self.next_completion() {
                match c.op {
                    Op::Recv => {
                        if let Some(rs) = self.socks.get_mut(c.key) {
                            rs.owner = None;
                        }
                        self.on_recv(&c);
                    }
                    Op::Send => {
                        self.on_send(&c);
                    }
                    Op::Accept => {
                        self.on_accept(&c);
                    }
                    Op::Cancel => self.on_cancel(&c),
                    Op::Close | Op::CloseAlone => self.on_close(&c),
                    Op::Poll => {}
                }
            }
        }
        if self.in_flight() > 0 {
            // The kernel may still use the buffers: leak them rather than
            // free memory it could write.
            let bufs = std::mem::replace(
                &mut self.bufs,
                BufRing {
                    entries: std::ptr::null_mut(),
                    data: std::ptr::null_mut(),
                    tail: 0,
                    bid_at: Vec::new(),
                    entry_of: Vec::new(),
                },
            );
            std::mem::forget(bufs);
            std::mem::forget(std::mem::take(&mut self.socks));
        }
    }
}
