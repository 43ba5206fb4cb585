//! Accepting: a listener's multishot accept and the connections it holds.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::{opcode, types};

use crate::uring::op::{user_data, Completion, Op};
use crate::uring::Ring;
use crate::SocketId;

impl Ring {
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
                rs.flow
                    .get_or_insert_with(|| self.spares.take())
                    .held
                    .push_back(fd);
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
}
