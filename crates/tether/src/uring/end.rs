//! Endings: cancelling a socket's requests, closing its descriptor through
//! the ring, and taking a socket off the ring (StartTLS).

use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::types::Timespec;
use io_uring::{opcode, squeue, types};

use crate::transport::send_queue::SendQueue;
use crate::uring::bufs::copy_fresh;
use crate::uring::op::{completion, user_data, Completion, Op};
use crate::uring::sock::Detached;
use crate::uring::Ring;
use crate::SocketId;

impl Ring {
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

    /// The socket's slot closes: its requests are cancelled, and what they
    /// hold is kept until their completions are back. Before the caller
    /// closes the descriptor, everything queued is submitted (no request may
    /// name the descriptor's number once another socket can get it), and the
    /// requests on it are cancelled synchronously: none holds the socket
    /// open any more, so closing it is the last reference (an RST for a reset
    /// goes out at once, not when a receive that was armed ends).
    pub(crate) fn retire(&mut self, s: SocketId) {
        let Some(key) = self.orphan(s) else { return };
        let Some(rs) = self.socks.get(key) else {
            return;
        };
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
        let Some(key) = self.orphan(s) else { return };
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
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

    /// Socket `s`'s slot lets go of it: the ring forgets whose it was and
    /// drops what it held for it (its requests may still be in the kernel).
    /// Its key, if it was on the ring.
    fn orphan(&mut self, s: SocketId) -> Option<usize> {
        let key = self.key(s)?;
        self.keys[s.idx as usize] = None;
        let rs = self.socks.get_mut(key)?;
        rs.owner = None;
        if let Some(f) = rs.flow.as_deref_mut() {
            f.held.clear();
            f.out = SendQueue::default();
        }
        Some(key)
    }

    /// Cancel every request on `fd` and let them end now, not at the next
    /// wait. Everything queued is submitted first (no request may name the
    /// descriptor once the caller lets go of it). With the loop's work
    /// deferred to its waits, a cancelled request would otherwise keep
    /// holding the socket: a reset's RST would go out late.
    pub(super) fn cancel_now(&mut self, fd: RawFd) {
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
                        // Taken in here, not by the engine's wait.
                        if let Some(rs) = self.socks.get_mut(key) {
                            rs.batched = false;
                        }
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
        let rs = self.socks.remove(key);
        self.keys[s.idx as usize] = None;
        let mut f = rs.flow.unwrap_or_default();
        let sends = f.out.lent_out(sent);
        f.inflight_done += sent;
        if let Some(rest) = f.inflight.get(f.inflight_done..) {
            f.out.unlend(rest);
        }
        let stash = f.stash.split_off(f.head);
        Some(Detached {
            stash,
            out: f.out,
            sent,
            sends,
            error: error.or(rs.error),
        })
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
}
