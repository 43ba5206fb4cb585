//! The timer heap: one for the whole loop, so a thousand sockets with
//! deadlines cost nothing until one of them is due.
//!
//! Every timer — a user's, or a socket's one deadline — is a record; the heap
//! holds `(when, record)` entries. Moving a deadline updates the record and
//! pushes a new entry; cancelling removes the record. An entry whose record
//! is gone or has moved is dead: it is dropped when it reaches the top,
//! without waking anybody, and the heap is rebuilt when dead entries
//! outnumber live ones, so neither wake-ups nor memory grow with re-arming.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::id::Gen;
use crate::{Cx, SocketId};

/// Names a timer made by [`Cx::set_timer`] or [`Cx::set_interval`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    idx: u32,
    gen: Gen,
}

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timer {}.{}", self.idx, self.gen.get())
    }
}

/// A socket's deadline on the heap, kept in its slot.
pub(crate) type SocketTimer = Option<TimerId>;

pub(crate) type TimerFn<S> = Box<dyn FnMut(&mut Cx<S>)>;

enum Kind<S> {
    /// A socket's own deadline (its lifecycle decides what is due).
    Socket(SocketId),
    User {
        every: Option<Duration>,
        /// `None` while the callback runs.
        f: Option<TimerFn<S>>,
    },
}

struct Record<S> {
    gen: Gen,
    at: Instant,
    kind: Kind<S>,
}

/// A timer that came due.
pub(crate) enum Due {
    Socket(SocketId),
    User(TimerId, Instant),
}

struct Entry {
    at: Instant,
    seq: u64,
    id: TimerId,
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

pub(crate) struct Timers<S> {
    heap: BinaryHeap<Reverse<Entry>>,
    records: Slab<Record<S>>,
    /// Live user timers (sockets keep the loop alive by themselves).
    users: usize,
    seq: u64,
    gen: Gen,
}

impl<S> Default for Timers<S> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            records: Slab::new(),
            users: 0,
            seq: 0,
            gen: Gen::START,
        }
    }
}

impl<S> Timers<S> {
    fn record(&self, id: TimerId) -> Option<&Record<S>> {
        self.records
            .get(id.idx as usize)
            .filter(|r| r.gen == id.gen)
    }

    fn record_mut(&mut self, id: TimerId) -> Option<&mut Record<S>> {
        self.records
            .get_mut(id.idx as usize)
            .filter(|r| r.gen == id.gen)
    }

    fn is_live(&self, e: &Entry) -> bool {
        self.record(e.id).is_some_and(|r| r.at == e.at)
    }

    fn push(&mut self, at: Instant, id: TimerId) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            id,
        }));
        // Dead entries are dropped as they surface; if moves keep burying
        // them, rebuild once they outnumber the live ones.
        if self.heap.len() > 2 * self.records.len() + 64 {
            let heap = std::mem::take(&mut self.heap);
            self.heap = heap.into_iter().filter(|e| self.is_live(&e.0)).collect();
        }
    }

    fn insert(&mut self, at: Instant, kind: Kind<S>) -> TimerId {
        self.gen = self.gen.next();
        let gen = self.gen;
        let idx = self.records.insert(Record { gen, at, kind });
        let id = TimerId {
            idx: idx as u32,
            gen,
        };
        self.push(at, id);
        id
    }

    fn remove(&mut self, id: TimerId) -> bool {
        if self.record(id).is_none() {
            return false;
        }
        if matches!(self.records[id.idx as usize].kind, Kind::User { .. }) {
            self.users -= 1;
        }
        self.records.remove(id.idx as usize);
        true
    }

    /// Set a socket's one deadline to `at` (moving it if it has one).
    pub(crate) fn arm_socket(&mut self, timer: &mut SocketTimer, s: SocketId, at: Instant) {
        if let Some(id) = *timer {
            if let Some(record) = self.record_mut(id) {
                if record.at != at {
                    record.at = at;
                    self.push(at, id);
                }
                return;
            }
        }
        *timer = Some(self.insert(at, Kind::Socket(s)));
    }

    /// Take a socket's deadline off the heap.
    pub(crate) fn disarm_socket(&mut self, timer: &mut SocketTimer) {
        if let Some(id) = timer.take() {
            self.remove(id);
        }
    }

    pub(crate) fn add(&mut self, at: Instant, every: Option<Duration>, f: TimerFn<S>) -> TimerId {
        self.users += 1;
        self.insert(at, Kind::User { every, f: Some(f) })
    }

    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        self.record(id)
            .is_some_and(|r| matches!(r.kind, Kind::User { .. }))
            && self.remove(id)
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_live(top) {
                return Some(top.at);
            }
            self.heap.pop();
        }
        None
    }

    /// The next timer due at `now`. A socket's deadline is used up by coming
    /// due; a user timer stays until [`restore`](Self::restore).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let at = self.next_deadline()?;
        if at > now {
            return None;
        }
        let Reverse(entry) = self.heap.pop()?;
        match self.record(entry.id)?.kind {
            Kind::Socket(s) => {
                self.remove(entry.id);
                Some(Due::Socket(s))
            }
            Kind::User { .. } => Some(Due::User(entry.id, entry.at)),
        }
    }

    /// Take a user timer's callback to run it; `None` if it was cancelled.
    pub(crate) fn take(&mut self, id: TimerId) -> Option<TimerFn<S>> {
        match &mut self.record_mut(id)?.kind {
            Kind::User { f, .. } => f.take(),
            Kind::Socket(_) => None,
        }
    }

    /// Put a callback back after it ran: a repeating timer is scheduled again
    /// (from its due time, so it does not drift), a one-shot one is removed. A
    /// timer cancelled by its own callback stays cancelled.
    pub(crate) fn restore(&mut self, id: TimerId, due: Instant, now: Instant, f: TimerFn<S>) {
        let Some(record) = self.record_mut(id) else {
            return;
        };
        let Kind::User { every, f: slot } = &mut record.kind else {
            return;
        };
        match *every {
            Some(every) => {
                *slot = Some(f);
                // After a long stall, skip the missed ticks instead of
                // bursting: the ticks after it count from its end.
                let next = match due + every {
                    next if next > now => next,
                    _ => now + every,
                };
                record.at = next;
                self.push(next, id);
            }
            None => {
                self.remove(id);
            }
        }
    }

    /// No live user timer. Sockets' deadlines keep the loop alive through
    /// their sockets; waiting for a closed socket's deadline would hold `run`
    /// for nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.users == 0
    }

    /// Live timers (user timers and socket deadlines), and entries on the heap.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.records.len(), self.heap.len())
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.records.clear();
        self.users = 0;
    }
}
