//! The io_uring backend's ring: its submission and completion queues, the
//! provided-buffer ring that multishot receives fill, and what the ring keeps
//! for each socket on it. All the backend's `unsafe` is in this module: the
//! kernel reads and writes memory it owns, and every address handed to the
//! kernel stays valid until the completion that gives it back.
//!
//! One file a concern: `op` (what a completion is for), `bufs` (the
//! provided buffers), `sock` (a socket's state on the ring), `recv`, `send`,
//! `accept`, `end` (cancel, close, leaving the ring).

mod accept;
mod bufs;
mod end;
mod flow;
mod op;
mod recv;
mod send;
mod sock;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{opcode, squeue, types, IoUring};
use slab::Slab;

use bufs::{BufRing, BGID};
use flow::{Flow, Spares};
use op::{completion, user_data};
pub(crate) use op::{Completion, Op};
pub(crate) use recv::STASH_HIGH;
pub(crate) use sock::RingSock;

use crate::SocketId;

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

/// A busy loop's batch. After a turn that took at least `BUSY_FROM`
/// completions, a wait asks for a quarter of the ring's sockets (at most
/// `BATCH`) within the same grace, then one will do. Each turn has a fixed
/// cost (the enter, the batch's bookkeeping) that fuller turns share: at
/// 256 connections trading small messages this is what takes the server's
/// CPU per round trip from about 0.87 to about 0.8 of an epoll loop's. A
/// loop that is not busy waits for the first completion as before: it
/// would only sleep longer, and a few connections could not fill a batch
/// (asking them for 64 costs a third of their rate).
const BUSY_FROM: usize = 16;
const BATCH: usize = 64;

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
    /// Completions the last wait took (see `BUSY_FROM`).
    last: usize,
    /// Buffers the wait's receives used up, in the order the kernel took
    /// them: given back in that order when the batch ends, so that the ring
    /// keeps the buffers in order and consecutive ones are one run of memory.
    consumed: Vec<u16>,
    /// Sockets with fresh bytes in this batch.
    fresh_keys: Vec<usize>,
    /// Sockets that may do without their flow since the last wait (they
    /// read or sent), to be looked at before the next; a key may be listed
    /// twice, which only costs a second look.
    tidy: Vec<usize>,
    /// Flows idle sockets gave back, for the next socket that needs one.
    spares: Spares,
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
        let bufs = Self::register_bufs(&uring)?;
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
            last: 0,
            consumed: Vec::new(),
            fresh_keys: Vec::new(),
            tidy: Vec::new(),
            spares: Spares::default(),
        };
        ring.min_wait = ring.uring.params().is_feature_min_timeout();
        ring.arm_poll();
        // In the kernel from the start: the ring's descriptor is readable
        // when the epoll instance is, before the first turn.
        ring.uring.submit()?;
        Ok(ring)
    }

    /// The provided buffers, registered: consumed incrementally where the
    /// kernel can (6.12; it refuses the flag before), whole elsewhere.
    fn register_bufs(uring: &IoUring) -> io::Result<BufRing> {
        let mut last = None;
        for inc in [true, false] {
            let bufs = BufRing::new(inc)?;
            // SAFETY: the entries are page-aligned, `count` long, and live as
            // long as the ring (they are freed after it, see the field
            // order); the kernel reads them only once registered.
            let registered = unsafe {
                uring.submitter().register_buf_ring_with_flags(
                    bufs.entries_addr(),
                    bufs.count(),
                    BGID,
                    bufs.flags(),
                )
            };
            match registered {
                Ok(()) => {
                    bufs.publish();
                    return Ok(bufs);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::Unsupported)))
    }

    pub(super) fn push(&mut self, entry: squeue::Entry) {
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

    pub(super) fn arm_poll(&mut self) {
        let entry = opcode::PollAdd::new(types::Fd(self.epoll), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(0, Op::Poll));
        self.push(entry);
        self.poll_armed = true;
    }

    /// Put socket `s` (descriptor `fd`, owned by its slot) on the ring.
    pub(crate) fn adopt(&mut self, s: SocketId, fd: RawFd) -> usize {
        let key = self.socks.insert(RingSock::new(s, fd));
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

    /// The flow of the socket at `key`, a spare taken if it had none.
    pub(crate) fn flow(&mut self, key: usize) -> Option<&mut Flow> {
        let rs = self.socks.get_mut(key)?;
        Some(rs.flow.get_or_insert_with(|| self.spares.take()))
    }

    /// The socket at `key` may have nothing left to read or send: looked at
    /// before the next wait.
    pub(super) fn may_idle(&mut self, key: usize) {
        self.tidy.push(key);
    }

    /// Flows of sockets that have nothing to read or send and no send in
    /// the kernel go back to the spares.
    fn give_back_idle(&mut self) {
        for key in self.tidy.drain(..) {
            let Some(rs) = self.socks.get_mut(key) else {
                continue;
            };
            if rs.sending || !rs.flow.as_ref().is_some_and(|f| f.is_idle()) {
                continue;
            }
            if let Some(flow) = rs.flow.take() {
                self.spares.give(flow);
            }
        }
    }

    /// A retired socket with nothing left in the kernel is forgotten.
    pub(super) fn forget_if_done(&mut self, key: usize) {
        if self
            .socks
            .get(key)
            .is_some_and(|rs| rs.owner.is_none() && rs.ops == 0)
        {
            self.socks.remove(key);
        }
    }

    /// One request of the socket came back for good.
    pub(super) fn op_done(&mut self, key: usize) {
        if let Some(rs) = self.socks.get_mut(key) {
            rs.ops = rs.ops.saturating_sub(1);
        }
        self.forget_if_done(key);
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
        self.give_back_idle();
        if !self.poll_armed {
            self.arm_poll();
        }
        let waiting = !self.uring.completion().is_empty() || !self.early.is_empty();
        let sends = std::mem::take(&mut self.sends);
        // How many completions the wait asks for within the grace (one
        // asks for no grace).
        let mut want = 1;
        if self.min_wait {
            if sends >= SENT_GRACE_FROM {
                // One more than the sends: what they complete within the
                // submission does not end the wait at once.
                want = sends + 1;
            }
            if self.last >= BUSY_FROM {
                want = want.max((self.socks.len() / 4).min(BATCH));
            }
        }
        let result = match timeout {
            _ if waiting => self.uring.submit(),
            Some(Duration::ZERO) => self.uring.submit(),
            None if want == 1 => self.uring.submit_and_wait(1),
            None => {
                let args = SubmitArgs::new().min_wait_usec(SENT_GRACE_USEC);
                self.uring.submitter().submit_with_args(want, &args)
            }
            Some(d) => {
                let ts = Timespec::from(d);
                let mut args = SubmitArgs::new().timespec(&ts);
                if want > 1 {
                    args = args.min_wait_usec(SENT_GRACE_USEC);
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
        self.last = self.done.len();
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
    pub(super) fn in_flight(&self) -> u32 {
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
            self.bufs.leak();
            std::mem::forget(std::mem::take(&mut self.socks));
        }
    }
}
