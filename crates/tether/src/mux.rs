//! [`IoMux`]: the event loop. It waits for readiness, reads the clock, fires
//! due deadlines and runs what was posted; everything else is the engine's.

use std::io::{self, ErrorKind};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Poll, Token};

use crate::clock::{Clock, TestClock};
use crate::handle::{MuxHandle, Posted, Remote};
use crate::{Cx, SocketId};

const WAKE: Token = Token(usize::MAX);

/// How many times readiness is taken in before deadlines are judged, while
/// each taking-in ran callbacks (which may have been slow in their turn). A
/// bound, so that a peer that never pauses cannot hold the timers off.
const TAKE_IN_ROUNDS: usize = 8;

/// One event loop on one thread, owning the application's shared state `S`.
///
/// `IoMux` dereferences to [`Cx`], so sockets and timers can be set up before
/// [`run`](IoMux::run) with the same calls callbacks use.
///
/// ```no_run
/// use tether::{Admission, Closed, Cx, IoMux, PeerInfo, SocketId, SocketUser};
///
/// struct Server;
/// impl SocketUser for Server {
///     fn on_incoming(&mut self, _cx: &mut Cx, _l: SocketId, _peer: &PeerInfo) -> Admission {
///         Admission::Deny // a server that turns everyone away
///     }
///     fn on_closed(&mut self, _cx: &mut Cx, _s: SocketId, closed: &Closed) {
///         eprintln!("listener closed: {}", closed.reason);
///     }
/// }
///
/// let mut mux = IoMux::new(()).unwrap();
/// mux.listen_on("127.0.0.1:7000", Server);
/// mux.run().unwrap();
/// ```
pub struct IoMux<S = ()> {
    poll: Poll,
    events: Events,
    cx: Cx<S>,
    posted: Vec<Posted<S>>,
}

impl<S> std::fmt::Debug for IoMux<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoMux")
            .field("cx", &self.cx)
            .finish_non_exhaustive()
    }
}

impl<S> Deref for IoMux<S> {
    type Target = Cx<S>;
    fn deref(&self) -> &Cx<S> {
        &self.cx
    }
}

impl<S> DerefMut for IoMux<S> {
    fn deref_mut(&mut self) -> &mut Cx<S> {
        &mut self.cx
    }
}

impl<S> Drop for IoMux<S> {
    fn drop(&mut self) {
        self.cx.remote.gone.store(true, Ordering::Release);
    }
}

impl<S: 'static> IoMux<S> {
    /// A new loop owning `shared`, on the system's clock.
    pub fn new(shared: S) -> io::Result<Self> {
        Self::on_clock(shared, Clock::System)
    }

    /// A new loop owning `shared` whose time is `clock`'s: deadlines, timers,
    /// linger and idle times all follow it, and it only moves when the test
    /// moves it. Sockets are real; only time is not.
    pub fn with_clock(shared: S, clock: &TestClock) -> io::Result<Self> {
        Self::on_clock(shared, Clock::Manual(clock.clone()))
    }

    fn on_clock(shared: S, clock: Clock) -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
        if let Clock::Manual(manual) = &clock {
            manual.attach(&waker);
        }
        let remote = Arc::new(Remote {
            waker,
            posted: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
        });
        Ok(IoMux {
            poll,
            events: Events::with_capacity(1024),
            cx: Cx::new(registry, remote, clock, shared),
            posted: Vec::new(),
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> MuxHandle<S> {
        self.cx.handle()
    }

    /// The shared state, after (or before) running.
    pub fn into_shared(self) -> S
    where
        S: Default,
    {
        let mut this = self;
        std::mem::take(this.cx.shared_mut())
    }

    /// Run until [`Cx::terminate`] or [`MuxHandle::terminate`], or until nothing
    /// is left that could ever make a callback run (no sockets, no timers, no
    /// handle held elsewhere). Every socket still open then is closed with
    /// `Reason::Stopped`, each with its `on_closed`, before this returns.
    ///
    /// A terminate made before `run` was called stops this run at once; the
    /// request is used up when `run` returns, so the loop can be run again.
    pub fn run(&mut self) -> io::Result<()> {
        self.cx.engine.running = true;
        let result = self.turns();
        self.cx.engine.running = false;
        self.cx.stop_all();
        self.cx.remote.stop.store(false, Ordering::Release);
        result
    }

    fn turns(&mut self) -> io::Result<()> {
        loop {
            // Once after a batch: callbacks may have taken long.
            self.cx.engine.now = self.cx.engine.clock.now();
            if self
                .cx
                .engine
                .timers
                .next_deadline()
                .is_some_and(|at| at <= self.cx.engine.now)
            {
                // What arrived while the loop was busy is taken in before any
                // deadline is judged: a peer whose data waits unread because
                // a callback took long is not idle. Again after a taking-in
                // that ran callbacks: one of them may have been the slow one.
                for _ in 0..TAKE_IN_ROUNDS {
                    if self.wait(Some(Duration::ZERO))? == 0 {
                        break;
                    }
                }
            }
            // After the taking-in: its poll may have taken the waker's event
            // of a closure posted meanwhile, which must not wait for another.
            self.run_posted();
            self.cx.fire_timers();
            self.cx.run_tasks();
            if self.cx.remote.stop.load(Ordering::Acquire) {
                // Closures posted before the stop was asked for run first,
                // even if both came while a callback of this turn ran.
                self.run_posted();
                return Ok(());
            }
            if self.cx.is_idle() {
                return Ok(());
            }
            let next = self.cx.engine.timers.next_deadline();
            let timeout = self.cx.engine.clock.sleep_until(next);
            self.wait(timeout)?;
        }
    }

    /// Wait up to `timeout` for readiness, and act on what came. Returns the
    /// number of events.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        self.cx.engine.wakeups += 1;
        self.cx.engine.now = self.cx.engine.clock.now();
        let mut n = 0;
        for event in self.events.iter() {
            if event.token() != WAKE {
                self.cx.on_ready(SocketId::from_token(event.token()), event);
                if !self.cx.engine.tasks.is_empty() {
                    self.cx.run_tasks();
                }
                n += 1;
            }
        }
        Ok(n)
    }

    fn run_posted(&mut self) {
        self.cx.remote.take_posted(&mut self.posted);
        for f in self.posted.drain(..) {
            f(&mut self.cx);
            self.cx.run_tasks();
        }
    }
}

impl<S: 'static> Cx<S> {
    fn is_idle(&self) -> bool {
        self.engine.slots.is_empty()
            && self.engine.tasks.is_empty()
            && self.engine.timers.is_empty()
            && self.remote.handles.load(Ordering::Acquire) == 0
            && self.remote.posted.lock().map_or(true, |p| p.is_empty())
    }

    // ----- readiness -----

    // ----- time -----
}
