//! The loop's one clock.
//!
//! The loop reads the time at fixed points — after each poll returns, and once
//! after a batch of work before it decides how long to sleep — and passes that
//! `now` down to everything it runs; nothing below reads a clock of its own.
//! Operations that start a deadline (`set_timer`, `set_timeouts`, `close`)
//! read the system clock at the call, since they may run long after the loop
//! last woke (before `run`, or after a slow callback); on a test clock they
//! take the loop's turn time while it runs, so a test moving the clock from
//! another thread cannot race a callback.
//!
//! Which clock is read is chosen when the loop is made: the system's monotonic
//! clock, or a [`TestClock`] that only moves when a test moves it, so that
//! timeout, linger and idle behaviour can be tested without sleeping.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The clock a loop reads.
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// `Instant::now()`.
    #[default]
    System,
    /// Time moved by hand.
    Manual(TestClock),
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(clock) => clock.now(),
        }
    }

    /// The time an operation counts a deadline from: the system clock read at
    /// the call (a callback may have run long since the loop woke); a test
    /// clock's time as the loop's turn saw it while the loop runs (`turn`), so
    /// a test that moves it meanwhile cannot race a callback.
    pub(crate) fn at_call(&self, turn: Option<Instant>) -> Instant {
        match (self, turn) {
            (Clock::Manual(_), Some(turn)) => turn,
            _ => self.now(),
        }
    }

    /// How long the loop may sleep in poll before `deadline` is due. A test
    /// clock does not move while the loop sleeps: the loop waits for readiness
    /// or for the clock to be advanced, which wakes it.
    pub(crate) fn sleep_until(&self, deadline: Option<Instant>) -> Option<Duration> {
        let deadline = deadline?;
        let now = self.now();
        match self {
            Clock::System => Some(deadline.saturating_duration_since(now)),
            Clock::Manual(_) if deadline <= now => Some(Duration::ZERO),
            Clock::Manual(_) => None,
        }
    }
}

/// A clock that stands still until it is moved: timeouts, idle deadlines,
/// linger and timers all run on it, deterministically, with no sleeping.
///
/// Give it to a loop with [`IoMux::with_clock`](crate::IoMux::with_clock);
/// every clone moves the same time. [`advance`](TestClock::advance) wakes the
/// loops that use it, from any thread or from a callback.
///
/// ```
/// use std::time::Duration;
/// use tether::{IoMux, TestClock};
///
/// let clock = TestClock::new();
/// let mut mux = IoMux::with_clock(0u32, &clock).unwrap();
/// let start = mux.now();
/// mux.set_timer(Duration::from_secs(3600), |cx| *cx.shared_mut() += 1);
/// // An hour passes at once: the timer fires on the next turn.
/// clock.advance(Duration::from_secs(3600));
/// mux.run().unwrap();
/// assert_eq!(*mux.shared(), 1);
/// assert_eq!(clock.now() - start, Duration::from_secs(3600));
/// ```
#[derive(Clone)]
pub struct TestClock {
    inner: Arc<Mutex<Manual>>,
}

struct Manual {
    now: Instant,
    /// The wakers of the loops that read this clock.
    wakers: Vec<Weak<mio::Waker>>,
}

impl fmt::Debug for TestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClock")
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClock {
    /// A clock that starts at the system's present time and stays there.
    pub fn new() -> TestClock {
        TestClock {
            inner: Arc::new(Mutex::new(Manual {
                now: Instant::now(),
                wakers: Vec::new(),
            })),
        }
    }

    /// The clock's time.
    pub fn now(&self) -> Instant {
        self.lock().now
    }

    /// Move the time forward by `by`, and wake the loops that read it so they
    /// judge their deadlines.
    pub fn advance(&self, by: Duration) {
        let mut inner = self.lock();
        inner.now += by;
        inner.wakers.retain(|w| match w.upgrade() {
            Some(waker) => {
                let _ = waker.wake();
                true
            }
            None => false,
        });
    }

    pub(crate) fn attach(&self, waker: &Arc<mio::Waker>) {
        self.lock().wakers.push(Arc::downgrade(waker));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Manual> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
