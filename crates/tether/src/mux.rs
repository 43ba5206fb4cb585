//! [`IoMux`]: the event loop. It waits for readiness, reads the clock, fires
//! due deadlines and runs what was posted; everything else is the engine's.

use std::io::{self, ErrorKind};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::{Events, Poll, Token};

use crate::backend::{Backend, IoMuxBuilder};
use crate::clock::{Clock, TestClock};
use crate::handle::{MuxHandle, Posted, Remote};
use crate::uring::Ring;
use crate::{Cx, SocketId};

/// The waker's token. Its generation is 0, which no socket's is, so
/// `SocketId::from_token` tells it apart.
const WAKE: Token = Token(0);

/// What one [`IoMux::turn`] left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Turn {
    /// Sockets, timers, handles or posted closures remain: turn again.
    Running,
    /// Nothing is left that could ever make a callback run: no sockets, no
    /// timers, no deferred callbacks, no handle held elsewhere. `run` returns
    /// here.
    Idle,
    /// A terminate was carried out: every socket still open was closed with
    /// `Reason::Stopped`, and the request is used up.
    Stopped,
}

/// How many times readiness is taken in before deadlines are judged, while
/// each taking-in ran callbacks (which may have been slow in their turn). A
/// bound, so that a peer that never pauses cannot hold the timers off.
const TAKE_IN_ROUNDS: usize = 8;

/// One event loop on one thread, owning the application's shared state `S`.
///
/// `IoMux` dereferences to [`Cx`], so sockets and timers can be set up before
/// [`run`](IoMux::run) with the same calls callbacks use.
///
/// [`run`](IoMux::run) drives the loop until it is done; a program with an
/// event loop of its own drives it one [`turn`](IoMux::turn) at a time instead,
/// waiting on the loop's file descriptor ([`AsRawFd`]) and
/// [`poll_timeout`](IoMux::poll_timeout) in between.
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
    /// On the ring: the sockets a wait's receives were for (reused).
    inputs: Vec<SocketId>,
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

/// The loop's file descriptor (its epoll instance), for a program with an
/// event loop of its own: register it for readability there, and call
/// [`IoMux::turn`]`(Some(Duration::ZERO))` when it is readable or when
/// [`IoMux::poll_timeout`] has passed. It is readable while a socket of the
/// loop has readiness to take in, a [`MuxHandle`] has posted a closure or
/// asked a terminate, or a [`TestClock`] the loop reads has moved; deadlines
/// and timers do not make it readable, which is what `poll_timeout` is for.
///
/// The descriptor is the loop's: read nothing from it, and do not close it.
///
/// ```
/// use std::os::fd::AsRawFd;
/// use std::time::Duration;
/// use tether::IoMux;
///
/// let mut mux = IoMux::new(()).unwrap();
/// let fd = mux.as_raw_fd(); // register it in the other loop
/// assert!(fd >= 0);
/// // ...and when it is readable, or poll_timeout has passed:
/// mux.turn(Some(Duration::ZERO)).unwrap();
/// ```
impl<S> AsRawFd for IoMux<S> {
    fn as_raw_fd(&self) -> RawFd {
        if let Some(ring) = self.cx.engine.ring.as_deref() {
            // On io_uring: the ring's, readable while completions wait (the
            // epoll instance's readiness is one of them).
            return ring.fd();
        }
        self.poll.as_raw_fd()
    }
}

impl<S> Drop for IoMux<S> {
    fn drop(&mut self) {
        self.cx.remote.gone.store(true, Ordering::Release);
    }
}

impl IoMux {
    /// A builder: the backend, the clock (its `build` takes the shared
    /// state, of any type).
    pub fn builder() -> IoMuxBuilder {
        IoMuxBuilder::new()
    }
}

impl<S: 'static> IoMux<S> {
    /// A new loop owning `shared`, on the system's clock, on epoll (or on
    /// the backend the `TETHER_BACKEND` environment variable names: see
    /// [`Backend::from_env`]).
    pub fn new(shared: S) -> io::Result<Self> {
        Self::open(shared, Clock::System, Backend::from_env())
    }

    /// The backend the loop runs on (epoll when io_uring was asked for and
    /// the kernel refused it).
    pub fn backend(&self) -> Backend {
        if self.cx.engine.ring.is_some() {
            Backend::IoUring
        } else {
            Backend::Epoll
        }
    }

    /// A new loop owning `shared` whose time is `clock`'s: deadlines, timers,
    /// linger and idle times all follow it, and it only moves when the test
    /// moves it. Sockets are real; only time is not.
    pub fn with_clock(shared: S, clock: &TestClock) -> io::Result<Self> {
        Self::open(shared, Clock::Manual(clock.clone()), Backend::from_env())
    }

    pub(crate) fn open(shared: S, clock: Clock, backend: Backend) -> io::Result<Self> {
        let poll = Poll::new()?;
        let ring = match backend {
            Backend::Epoll => None,
            Backend::IoUring => match Ring::new(poll.as_raw_fd()) {
                Ok(ring) => Some(Box::new(ring)),
                Err(e) => {
                    tracing::warn!(target: "tether", error = %e, "io_uring refused: running on epoll");
                    None
                }
            },
        };
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
        let mut cx = Cx::new(registry, remote, clock, shared);
        cx.engine.ring = ring;
        Ok(IoMux {
            poll,
            events: Events::with_capacity(1024),
            cx,
            posted: Vec::new(),
            inputs: Vec::new(),
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
    ///
    /// `run` is [`turn`](IoMux::turn)`(None)` repeated until it returns
    /// [`Turn::Idle`] or [`Turn::Stopped`]; a program with an event loop of
    /// its own calls `turn` instead. If waiting fails, every socket is closed
    /// as on a terminate and the error is returned.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            // The sends a turn queued on the ring go with the next turn's
            // wait: one system call for both.
            let result = match self.turn_inner(None) {
                Ok(Turn::Running) => continue,
                Ok(Turn::Idle | Turn::Stopped) => Ok(()),
                Err(e) => {
                    self.stop();
                    Err(e)
                }
            };
            // On the ring, what the last turns queued (the closes of the
            // sockets they released) is carried out before `run` returns.
            if let Some(ring) = self.cx.engine.ring.as_deref_mut() {
                ring.flush();
            }
            return result;
        }
    }

    /// One turn of the loop, for a program that drives it from an event loop
    /// of its own (a game loop, a GUI toolkit, another reactor): wait up to
    /// `timeout` for readiness and act on what came, then run the closures
    /// posted by [`MuxHandle`]s, fire the deadlines and timers that are due,
    /// and run the callbacks those deferred.
    ///
    /// `Some(Duration::ZERO)` polls without blocking; `None` waits for the next
    /// event or deadline, whichever comes first. The wait is never longer than
    /// the next deadline, and it is skipped when work is already waiting (a
    /// deferred callback, a terminate) or when the loop is idle, so `turn(None)`
    /// cannot block forever on a loop with nothing left.
    ///
    /// What the turn left:
    /// - [`Turn::Running`]: sockets, timers or handles remain; turn again (at
    ///   the latest after [`poll_timeout`](IoMux::poll_timeout), or when the
    ///   loop's file descriptor ([`AsRawFd`]) is readable).
    /// - [`Turn::Idle`]: nothing is left that could ever make a callback run
    ///   (where [`run`](IoMux::run) returns). Opening a socket or setting a
    ///   timer makes it worth turning again.
    /// - [`Turn::Stopped`]: [`Cx::terminate`] or [`MuxHandle::terminate`] was
    ///   asked (in this turn or before it). As when `run` ends, the closures
    ///   posted before the request ran and every socket still open was closed
    ///   with `Reason::Stopped`, each with its `on_closed`, before `turn`
    ///   returned; the request is used up, so the loop can be used again.
    ///
    /// An error is the poll's own (`EINTR` is not one: that turn took in
    /// nothing); the loop's sockets are left as they were.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tether::{IoMux, Turn};
    ///
    /// let mut mux = IoMux::new(0u32).unwrap();
    /// mux.set_timer(Duration::from_millis(5), |cx| *cx.shared_mut() += 1);
    /// // A frame loop: a little of everyone's work per frame, never blocking.
    /// for _frame in 0..1000 {
    ///     if mux.turn(Some(Duration::ZERO)).unwrap() == Turn::Idle {
    ///         break;
    ///     }
    ///     std::thread::sleep(Duration::from_millis(1)); // the frame's own work
    /// }
    /// assert_eq!(*mux.shared(), 1);
    /// ```
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<Turn> {
        let result = self.turn_inner(timeout);
        // On the ring, what this turn sent is submitted before it returns:
        // the caller may not turn again before its peer answers.
        if let Some(ring) = self.cx.engine.ring.as_deref_mut() {
            ring.submit_now()?;
        }
        result
    }

    fn turn_inner(&mut self, timeout: Option<Duration>) -> io::Result<Turn> {
        self.cx.engine.running = true;
        let result = self.step(timeout);
        self.cx.engine.running = false;
        if let Ok(Turn::Stopped) = result {
            self.stop();
        }
        result
    }

    /// How long a program driving the loop by [`turn`](IoMux::turn) may wait
    /// for the loop's file descriptor before it must turn anyway: `Some(ZERO)`
    /// when work is waiting (a deferred callback, connections a listener put
    /// off to the next turn, a posted closure, a terminate), the time to the next deadline or timer when there is one,
    /// `None` when only readiness can give the loop work (the descriptor
    /// becomes readable for sockets, posted closures and a moved
    /// [`TestClock`] alike).
    ///
    /// On a [`TestClock`], a deadline not yet due is `None`: the clock does not
    /// move by waiting, and [`TestClock::advance`] makes the descriptor
    /// readable.
    pub fn poll_timeout(&mut self) -> Option<Duration> {
        if self.work_waiting() {
            return Some(Duration::ZERO);
        }
        let next = self.cx.engine.timers.next_deadline();
        self.cx.engine.clock.sleep_until(next)
    }

    /// Work a turn must do without waiting for readiness first.
    fn work_waiting(&self) -> bool {
        !self.cx.engine.tasks.is_empty()
            || !self.cx.engine.next_turn.is_empty()
            || self.cx.remote.stop.load(Ordering::Acquire)
            || self.cx.remote.posted.lock().is_ok_and(|p| !p.is_empty())
    }

    /// The stop request is carried out: every socket is closed, the request
    /// used up.
    fn stop(&mut self) {
        self.cx.stop_all();
        self.cx.remote.stop.store(false, Ordering::Release);
    }

    /// One turn: wait, take in, run what is due; and say what is left. Closing
    /// on a stop is the caller's.
    fn step(&mut self, timeout: Option<Duration>) -> io::Result<Turn> {
        // What operations made between turns (or before `run`) deferred comes
        // before anything new is taken in: a listener's `on_bound` before its
        // first `on_incoming`. So does what the last turn put off.
        let engine = &mut self.cx.engine;
        engine.tasks.extend(engine.next_turn.drain(..));
        if !self.cx.engine.tasks.is_empty() {
            self.cx.run_tasks();
        }
        if self.cx.remote.stop.load(Ordering::Acquire) {
            // A terminate asked between turns (or before `run`) stops this
            // turn before it takes in anything new.
        } else if self.cx.is_idle() {
            return Ok(Turn::Idle);
        } else {
            let wait = match (self.poll_timeout(), timeout) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.wait(wait)?;
        }
        // Once after a batch: callbacks may have taken long.
        self.cx.engine.tick();
        if self
            .cx
            .engine
            .timers
            .next_deadline()
            .is_some_and(|at| at <= self.cx.engine.now)
        {
            // What arrived while the loop was busy is taken in before any
            // deadline is judged: a peer whose data waits unread because a
            // callback took long is not idle. Again after a taking-in that ran
            // callbacks: one of them may have been the slow one.
            for _ in 0..TAKE_IN_ROUNDS {
                if self.wait(Some(Duration::ZERO))? == 0 {
                    break;
                }
            }
        }
        // After the taking-in: its poll may have taken the waker's event of a
        // closure posted meanwhile, which must not wait for another.
        self.run_posted();
        self.cx.fire_timers();
        self.cx.run_tasks();
        if self.cx.remote.stop.load(Ordering::Acquire) {
            // Closures posted before the stop was asked for run first, even if
            // both came while a callback of this turn ran.
            self.run_posted();
            return Ok(Turn::Stopped);
        }
        if self.cx.is_idle() {
            return Ok(Turn::Idle);
        }
        Ok(Turn::Running)
    }

    /// Wait up to `timeout` for readiness, and act on what came. Returns the
    /// number of events.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        if self.cx.engine.ring.is_some() {
            return self.wait_ring(timeout);
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        self.cx.engine.wakeups += 1;
        self.cx.engine.tick();
        Ok(self.dispatch_ready())
    }

    /// Act on the readiness the last poll found; how many sockets had some.
    fn dispatch_ready(&mut self) -> usize {
        let mut n = 0;
        for event in self.events.iter() {
            if let Some(s) = SocketId::from_token(event.token()) {
                self.cx.on_ready(s, event);
                if !self.cx.engine.tasks.is_empty() {
                    self.cx.run_tasks();
                }
                n += 1;
            }
        }
        n
    }

    /// `wait` on io_uring: the turn's sends and the wait in one system call,
    /// then each completion; the epoll instance's readiness (the waker, the
    /// sockets not on the ring) is taken in as under epoll.
    fn wait_ring(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let Some(ring) = self.cx.engine.ring.as_deref_mut() else {
            return Ok(0);
        };
        ring.enter(timeout)?;

        self.cx.engine.wakeups += 1;
        self.cx.engine.tick();
        let mut n = 0;
        let mut epoll = false;
        // What each receive brought is stashed first, all of the batch, so
        // that a socket that received several buffers is read (and its recv
        // answered) once, with all of them.
        let mut inputs = std::mem::take(&mut self.inputs);
        while let Some(c) = self
            .cx
            .engine
            .ring
            .as_deref_mut()
            .and_then(|r| r.next_completion())
        {
            let Some(ring) = self.cx.engine.ring.as_deref_mut() else {
                break;
            };
            match c.op {
                crate::uring::Op::Poll => {
                    epoll = true;
                    ring.on_poll(&c);
                }
                crate::uring::Op::Recv => {
                    if let Some(s) = ring.on_recv(&c) {
                        inputs.push(s);
                    }
                }
                crate::uring::Op::Accept => {
                    // Held, and taken by one task after the batch: a
                    // burst's connections a batch per turn.
                    self.cx.on_completion(&c);
                    n += 1;
                }
                _ => {
                    self.cx.on_completion(&c);
                    if !self.cx.engine.tasks.is_empty() {
                        self.cx.run_tasks();
                    }
                    n += 1;
                }
            }
        }
        for s in inputs.drain(..) {
            self.cx.ring_input(s);
            if !self.cx.engine.tasks.is_empty() {
                self.cx.run_tasks();
            }
            n += 1;
        }
        self.inputs = inputs;
        if !self.cx.engine.tasks.is_empty() {
            // The accepts' task, when no receive ran it.
            self.cx.run_tasks();
        }
        if let Some(ring) = self.cx.engine.ring.as_deref_mut() {
            // Every delivery of the batch is done: its buffers go back.
            ring.end_batch();
        }
        if epoll {
            match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            n += self.dispatch_ready();
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
