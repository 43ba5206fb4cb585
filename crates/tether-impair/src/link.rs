//! One direction of an impaired link: the decisions and the delay queue.
//!
//! Kept apart from sockets and devices so that every relay (UDP datagrams,
//! IP packets on the TUN link) shares the same seeded decisions, and so the
//! scheduling can be tested with time passed by hand.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::prng::Prng;
use crate::{DirStats, Impairment};

/// How long a held-back datagram waits for a next one before it is released
/// anyway: reordering must not turn into loss when traffic stops.
pub const REORDER_HOLD_MAX: Duration = Duration::from_millis(50);

/// A datagram waiting for its due time. Ordered by `(due, seq)`, so copies due
/// at the same instant leave in the order they were scheduled.
#[derive(Debug)]
struct Pending {
    due: Instant,
    seq: u64,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// A datagram held back by a reorder decision, with its own due time.
#[derive(Debug)]
struct Held {
    due: Instant,
    data: Vec<u8>,
}

/// One direction: its impairment, its generator, and what waits to be sent.
#[derive(Debug)]
pub(crate) struct Link {
    imp: Impairment,
    rng: Prng,
    /// Min-heap of due times (`Reverse` turns std's max-heap around).
    queue: BinaryHeap<Reverse<Pending>>,
    held: Option<Held>,
    seq: u64,
}

impl Link {
    pub(crate) fn new(imp: Impairment, rng: Prng) -> Self {
        Link {
            imp,
            rng,
            queue: BinaryHeap::new(),
            held: None,
            seq: 0,
        }
    }

    /// Takes in one datagram arriving at `now`, decides its fate and queues
    /// what is to be sent. `cut` drops it (the draws still happen, so the n-th
    /// datagram's decisions do not depend on earlier cuts).
    pub(crate) fn accept(&mut self, data: &[u8], now: Instant, cut: bool, stats: &mut DirStats) {
        stats.received += 1;
        stats.largest = stats.largest.max(data.len() as u64);
        // Always five draws per datagram: decisions stay aligned with n.
        let lost = self.rng.chance(self.imp.loss);
        let dup = self.rng.chance(self.imp.duplicate);
        let reorder = self.rng.chance(self.imp.reorder);
        let jitter = [self.rng.next_f64(), self.rng.next_f64()];
        if cut || lost {
            stats.dropped += 1;
            return;
        }
        let copies = if dup { 2 } else { 1 };
        stats.duplicated += u64::from(dup);
        let dues: Vec<Instant> = jitter[..copies]
            .iter()
            .map(|&j| now + self.imp.delay + self.imp.jitter.mul_f64(j))
            .collect();
        stats.delayed += dues.iter().filter(|&&d| d > now).count() as u64;

        if reorder && self.held.is_none() {
            // Hold it back; the next datagram releases it behind itself. A
            // duplicate copy still goes at its own time, which is what a
            // reordering network does to one of two copies too.
            stats.reordered += 1;
            if let Some(&extra) = dues.get(1) {
                self.push(extra, data.to_vec());
            }
            self.held = Some(Held {
                due: dues[0],
                data: data.to_vec(),
            });
            return;
        }
        let mut last = now;
        for &due in &dues {
            self.push(due, data.to_vec());
            last = last.max(due);
        }
        if let Some(held) = self.held.take() {
            // After this datagram: no earlier due, and a later seq on ties.
            self.push(held.due.max(last), held.data);
        }
    }

    fn push(&mut self, due: Instant, data: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse(Pending {
            due,
            seq: self.seq,
            data,
        }));
    }

    /// When something next becomes due (a queued datagram, or the release of
    /// a held one that no later datagram came to free).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let queued = self.queue.peek().map(|p| p.0.due);
        let held = self.held.as_ref().map(|h| h.due + REORDER_HOLD_MAX);
        match (queued, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.due + REORDER_HOLD_MAX <= now)
        {
            let held = self.held.take().expect("checked above");
            self.push(now, held.data);
        }
        if self.queue.peek().is_some_and(|p| p.0.due <= now) {
            return self.queue.pop().map(|p| p.0.data);
        }
        None
    }
}

/// Sets a relay's stop flag and joins its threads (they look at the flag at
/// least every poll interval). Shared by every relay's `stop` and `Drop`.
pub(crate) fn stop_threads(
    stop: &std::sync::atomic::AtomicBool,
    threads: &mut Vec<std::thread::JoinHandle<()>>,
) {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for thread in threads.drain(..) {
        // A relay thread does not panic; if one did, the test has already
        // failed on its counters, and panicking in drop would abort.
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(link: &mut Link, now: Instant) -> Vec<u8> {
        std::iter::from_fn(|| link.pop_due(now))
            .map(|d| d[0])
            .collect()
    }

    #[test]
    fn no_impairment_is_immediate_and_in_order() {
        let mut link = Link::new(Impairment::none(), Prng::new(1));
        let mut stats = DirStats::default();
        let t = Instant::now();
        for i in 0..10u8 {
            link.accept(&[i], t, false, &mut stats);
        }
        assert_eq!(drain(&mut link, t), (0..10).collect::<Vec<_>>());
        assert_eq!(link.next_due(), None);
        assert_eq!(
            stats,
            DirStats {
                received: 10,
                largest: 1,
                ..DirStats::default()
            }
        );
    }

    #[test]
    fn held_datagram_goes_after_the_next_one() {
        let mut link = Link::new(Impairment::none().reorder(1.0), Prng::new(1));
        let mut stats = DirStats::default();
        let t = Instant::now();
        for i in 0..4u8 {
            link.accept(&[i], t, false, &mut stats);
        }
        // 0 held, 1 frees it; 2 held, 3 frees it.
        assert_eq!(drain(&mut link, t), vec![1, 0, 3, 2]);
        assert_eq!(stats.reordered, 2);
    }

    #[test]
    fn held_datagram_is_released_when_nothing_follows() {
        let mut link = Link::new(Impairment::none().reorder(1.0), Prng::new(1));
        let mut stats = DirStats::default();
        let t = Instant::now();
        link.accept(&[9], t, false, &mut stats);
        assert_eq!(drain(&mut link, t), Vec::<u8>::new());
        assert_eq!(link.next_due(), Some(t + REORDER_HOLD_MAX));
        assert_eq!(drain(&mut link, t + REORDER_HOLD_MAX), vec![9]);
    }

    #[test]
    fn delay_waits_until_due() {
        let d = Duration::from_millis(10);
        let mut link = Link::new(Impairment::none().delay(d, Duration::ZERO), Prng::new(1));
        let mut stats = DirStats::default();
        let t = Instant::now();
        link.accept(&[1], t, false, &mut stats);
        assert_eq!(link.pop_due(t), None);
        assert_eq!(link.next_due(), Some(t + d));
        assert_eq!(drain(&mut link, t + d), vec![1]);
        assert_eq!(stats.delayed, 1);
    }

    #[test]
    fn decisions_follow_the_seed_not_earlier_cuts() {
        let run = |cut_first: bool| {
            let mut link = Link::new(Impairment::none().loss(0.5), Prng::new(3));
            let mut stats = DirStats::default();
            let t = Instant::now();
            for i in 0..50u8 {
                link.accept(&[i], t, cut_first && i < 10, &mut stats);
            }
            drain(&mut link, t)
                .into_iter()
                .filter(|&i| i >= 10)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(false), run(true));
    }
}
