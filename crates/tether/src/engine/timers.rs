//! Timers: one heap for the whole loop, so a thousand sockets with deadlines
//! cost nothing until one of them is due.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::{Cx, SocketId};

/// Names a timer made by [`Cx::set_timer`] or [`Cx::set_interval`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    idx: u32,
    gen: u32,
}

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timer {}.{}", self.idx, self.gen)
    }
}

pub(crate) type TimerFn<S> = Box<dyn FnMut(&mut Cx<S>)>;

struct UserTimer<S> {
    gen: u32,
    every: Option<Duration>,
    /// `None` while the callback runs.
    f: Option<TimerFn<S>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// A socket's own deadline (its lifecycle decides what is due).
    Socket(SocketId),
    User(TimerId),
}

struct Entry {
    at: Instant,
    seq: u64,
    target: Target,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Cancelled timers and closed sockets leave their heap entries behind; they are
/// skipped when they come up, which is cheaper than finding them.
pub(crate) struct Timers<S> {
    heap: BinaryHeap<Reverse<Entry>>,
    user: Slab<UserTimer<S>>,
    seq: u64,
    gen: u32,
}

impl<S> Default for Timers<S> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            user: Slab::new(),
            seq: 0,
            gen: 0,
        }
    }
}

impl<S> Timers<S> {
    pub(crate) fn push(&mut self, at: Instant, target: Target) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            target,
        }));
    }

    pub(crate) fn add(&mut self, at: Instant, every: Option<Duration>, f: TimerFn<S>) -> TimerId {
        self.gen = self.gen.wrapping_add(1);
        let idx = self.user.insert(UserTimer {
            gen: self.gen,
            every,
            f: Some(f),
        });
        let id = TimerId {
            idx: idx as u32,
            gen: self.gen,
        };
        self.push(at, Target::User(id));
        id
    }

    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        let idx = id.idx as usize;
        if self.user.get(idx).is_some_and(|t| t.gen == id.gen) {
            self.user.remove(idx);
            true
        } else {
            false
        }
    }

    /// The earliest deadline, live or not: waking for a dead one costs one turn.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// The next entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Target)> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| (e.at, e.target))
    }

    /// Take a user timer's callback to run it; `None` if it was cancelled.
    pub(crate) fn take(&mut self, id: TimerId) -> Option<TimerFn<S>> {
        let t = self.user.get_mut(id.idx as usize)?;
        if t.gen != id.gen {
            return None;
        }
        t.f.take()
    }

    /// Put a callback back after it ran: a repeating timer is scheduled again
    /// (from its due time, so it does not drift), a one-shot one is removed. A
    /// timer cancelled by its own callback stays cancelled.
    pub(crate) fn restore(&mut self, id: TimerId, due: Instant, now: Instant, f: TimerFn<S>) {
        let idx = id.idx as usize;
        let Some(t) = self.user.get_mut(idx).filter(|t| t.gen == id.gen) else {
            return;
        };
        match t.every {
            Some(every) => {
                t.f = Some(f);
                // After a long stall, skip the missed ticks instead of bursting.
                let next = (due + every).max(now);
                self.push(next, Target::User(id));
            }
            None => {
                self.user.remove(idx);
            }
        }
    }

    /// No live user timer. Heap entries may remain, but they are dead (cancelled
    /// timers) or belong to sockets, which keep the loop alive by themselves;
    /// waiting for a closed socket's linger deadline would hold `run` for nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.user.clear();
    }
}
