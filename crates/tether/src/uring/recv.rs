//! Receiving: the multishot receive, its completions, and the bytes they
//! brought until a recv takes them.

use std::io;

use io_uring::{cqueue, opcode, types};

use crate::uring::bufs::{copy_fresh, Lent, BGID};
use crate::uring::flow::Fresh;
use crate::uring::op::{user_data, Completion, Op};
use crate::uring::sock::RingSock;
use crate::uring::Ring;
use crate::SocketId;

/// Stashed bytes (received, not yet asked for) above which a socket's
/// multishot receive is cancelled while no recv is pending: the kernel's
/// receive window then fills and holds the peer back, as an unread socket
/// does under epoll.
pub(crate) const STASH_HIGH: usize = 64 * 1024;

impl Ring {
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
        let entry = opcode::RecvMulti::new(types::Fd(rs.fd), BGID)
            .build()
            .user_data(user_data(key, Op::Recv));
        self.push(entry);
    }

    /// A receive completion: its bytes are kept, its buffers given back at
    /// the batch's end. Returns the socket it is for, if still open and not
    /// yet listed in this wait.
    pub(crate) fn on_recv(&mut self, c: &Completion) -> Option<SocketId> {
        let more = c.more();
        let len = c.res.max(0) as usize;
        // Where its bytes are; a buffer it used up goes back to the kernel
        // when the batch ends, whoever it was for.
        let run =
            cqueue::buffer_select(c.flags).map(|bid| self.bufs.fill(bid, len, &mut self.consumed));
        let Some(rs) = self.socks.get_mut(c.key) else {
            // Not ours (cannot happen: a socket is kept while a request of
            // it is in the kernel).
            return None;
        };
        if let Some(run) = run.filter(|_| len > 0 && rs.owner.is_some()) {
            let f = rs.flow.get_or_insert_with(|| self.spares.take());
            if f.stash.len() == f.head {
                // Left where they are: delivered from there if recvs take
                // them in this batch. A receive that goes on where the
                // socket's last one stopped extends its run.
                match f.fresh.back_mut() {
                    Some(last) if last.at + last.len == run.at => last.len += run.len,
                    _ => f.fresh.push_back(run),
                }
                f.fresh_len += run.len;
                self.fresh_keys.push(c.key);
            } else {
                f.stash.extend_from_slice(self.bufs.bytes(run));
            }
        } else if c.res == 0 {
            rs.eof = true;
        } else if c.res < 0 && c.res != -libc::ENOBUFS && c.res != -libc::ECANCELED {
            rs.error = Some(io::Error::from_raw_os_error(-c.res));
        }
        // Listed once a wait, however many receives it brought.
        let first = rs
            .owner
            .filter(|_| !std::mem::replace(&mut rs.batched, true));
        if !more {
            rs.recv_armed = false;
            rs.recv_cancelling = false;
            self.op_done(c.key);
        }
        first
    }

    /// The engine takes in what this wait brought socket `s`: true if its
    /// peer's FIN came with it (told once).
    pub(crate) fn input_taken(&mut self, s: SocketId) -> bool {
        let Some(rs) = self.sock(s) else {
            return false;
        };
        rs.batched = false;
        rs.eof && !std::mem::replace(&mut rs.fin_told, true)
    }

    /// Socket `s`'s received bytes, all in its stash (its fresh ones copied
    /// there): what reads that do not take them whole need.
    pub(crate) fn settled(&mut self, s: SocketId) -> Option<&mut RingSock> {
        let key = self.key(s)?;
        // The caller reads: its stash may be empty by the next wait.
        self.may_idle(key);
        let rs = self.socks.get_mut(key)?;
        copy_fresh(&self.bufs, rs);
        Some(rs)
    }

    /// Up to `cap` of socket `s`'s fresh bytes (nothing is stashed before
    /// them): lent from the provided buffers for one delivery, not copied.
    /// The socket no longer holds them.
    pub(crate) fn lend(&mut self, s: SocketId, cap: usize) -> Option<Lent> {
        let key = self.key(s)?;
        let f = self.socks.get_mut(key)?.flow.as_deref_mut()?;
        let fresh = f.fresh.front_mut().filter(|_| cap > 0)?;
        let len = fresh.len.min(cap);
        let lent = self.bufs.lend(Fresh { at: fresh.at, len });
        fresh.at += len;
        fresh.len -= len;
        if fresh.len == 0 {
            f.fresh.pop_front();
        }
        f.fresh_len -= len;
        Some(lent)
    }

    /// The wait's batch is over: what no recv took is copied to the
    /// stashes, and the batch's buffers go back to the kernel.
    pub(crate) fn end_batch(&mut self) {
        for i in 0..self.fresh_keys.len() {
            let key = self.fresh_keys[i];
            if let Some(rs) = self.socks.get_mut(key) {
                copy_fresh(&self.bufs, rs);
            }
            // Its recvs may have taken everything.
            self.may_idle(key);
        }
        self.fresh_keys.clear();
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
}
