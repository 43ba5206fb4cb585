//! Sending: the turn's sends, one in flight per socket, and their
//! completions.

use std::io;

use io_uring::{opcode, types};

use crate::uring::op::{user_data, Completion, Op};
use crate::uring::Ring;
use crate::SocketId;

/// Sends up to this size count for the grace: the kernel takes them at once
/// unless the socket is full. A larger one (bulk) may well wait for room,
/// and a wait counting on its completion would sit out the grace each turn.
pub(super) const SMALL_SEND: usize = 4096;

impl Ring {
    /// The socket has bytes to send: they go with this turn's submission.
    pub(crate) fn want_send(&mut self, key: usize) {
        if let Some(rs) = self.socks.get_mut(key) {
            if !rs.listed {
                rs.listed = true;
                self.to_send.push(key);
            }
        }
    }

    /// Queue one send for each listed socket with bytes and none in flight.
    pub(super) fn queue_sends(&mut self) {
        let mut list = std::mem::take(&mut self.to_send);
        for key in list.drain(..) {
            let Some(rs) = self.socks.get_mut(key) else {
                continue;
            };
            rs.listed = false;
            let Some(f) = rs.flow.as_deref_mut() else {
                continue;
            };
            if rs.sending || rs.owner.is_none() || f.out.pending().is_empty() {
                continue;
            }
            // The bytes move out of the queue without a copy; the queue
            // takes new sends meanwhile.
            f.out.lend(&mut f.inflight);
            f.inflight_done = 0;
            self.push_send(key);
        }
        self.to_send = list;
    }

    pub(super) fn push_send(&mut self, key: usize) {
        let Some(rs) = self.socks.get_mut(key) else {
            return;
        };
        let Some(f) = rs.flow.as_deref() else {
            return;
        };
        let rest = &f.inflight[f.inflight_done..];
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

    /// A send completion: how many bytes went, or the error; the rest of a
    /// short send is queued again. Returns the socket it is for, if still open.
    pub(crate) fn on_send(&mut self, c: &Completion) -> Option<(SocketId, io::Result<usize>)> {
        let rs = self.socks.get_mut(c.key)?;
        rs.sending = false;
        let owner = rs.owner;
        let result = if c.res >= 0 {
            let n = c.res as usize;
            // A send in the kernel keeps its socket's flow.
            let rest = rs.flow.as_deref_mut().map_or(0, |f| {
                f.inflight_done += n;
                f.inflight.len().saturating_sub(f.inflight_done)
            });
            self.op_done(c.key);
            if owner.is_some() && rest > 0 {
                self.push_send(c.key);
            } else {
                self.may_idle(c.key);
            }
            Ok(n)
        } else {
            self.op_done(c.key);
            Err(io::Error::from_raw_os_error(-c.res))
        };
        Some((owner?, result))
    }
}
