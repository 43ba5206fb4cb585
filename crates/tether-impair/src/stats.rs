//! Counters a relay keeps, per direction, and how its threads share them.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What happened to the datagrams (or IP packets) of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams taken in by the relay on this direction's input.
    pub received: u64,
    /// Datagrams sent out (duplicate copies included). Counted just before
    /// the send, so anything the peer has received is already counted.
    pub forwarded: u64,
    /// Datagrams dropped: by loss, by a cut (at arrival or at release), for
    /// want of a client address, or because the send failed.
    pub dropped: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Datagrams held back to go after a later one.
    pub reordered: u64,
    /// Copies scheduled with a nonzero delay (fixed delay plus jitter).
    pub delayed: u64,
    /// The longest datagram taken in, in bytes. On a TUN link it shows that
    /// no offload merged packets beyond the MTU.
    pub largest: u64,
}

/// Counters of both directions of a UDP relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// From the client to the target.
    pub to_target: DirStats,
    /// From the target back to the client.
    pub to_client: DirStats,
}

/// Counters of both directions of a [`TunLink`](crate::TunLink).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunStats {
    /// Packets from namespace A to namespace B.
    pub a_to_b: DirStats,
    /// Packets from namespace B to namespace A.
    pub b_to_a: DirStats,
}

/// Counters that relay threads update and a handle reads or waits on.
#[derive(Debug, Default)]
pub(crate) struct Watched<T> {
    value: Mutex<T>,
    /// Signalled on every change, for [`wait`](Self::wait).
    changed: Condvar,
}

impl<T: Copy> Watched<T> {
    fn lock(&self) -> MutexGuard<'_, T> {
        // A panicking relay thread must not hide the counters from the test.
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters now.
    pub(crate) fn get(&self) -> T {
        *self.lock()
    }

    /// Changes the counters and wakes the waiters.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_all();
        r
    }

    /// Waits until `done` holds, or `timeout` passes; the counters that
    /// satisfied it, or `None` on timeout.
    pub(crate) fn wait(&self, timeout: Duration, done: impl Fn(&T) -> bool) -> Option<T> {
        let (guard, result) = self
            .changed
            .wait_timeout_while(self.lock(), timeout, |s| !done(s))
            .unwrap_or_else(PoisonError::into_inner);
        (!result.timed_out()).then_some(*guard)
    }
}
