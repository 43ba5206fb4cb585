//! The engine behind [`Cx`](crate::Cx): what the loop keeps per socket, the
//! queue of deferred callbacks, the timer heap, and the work that moves bytes
//! and readiness through a socket's layers and carries out its lifecycle.
//!
//! [`Engine`] holds the data; each file here holds one part of the work. What
//! runs no callback is a method of `Engine`; what must call a socket's user
//! (delivering bytes, asking admission, running deferred callbacks) is a
//! method of `Cx`, which owns the engine and lends itself to the callback.

mod accept;
pub(crate) mod association;
pub(crate) mod datagram;
mod deadlines;
pub(crate) mod dial;
#[cfg(test)]
mod dial_tests;
mod dispatch;
mod dtls;
pub(crate) mod failure;
mod framed;
pub(crate) mod http;
pub(crate) mod io;
mod ops;
mod options;
pub(crate) mod read;
mod ready;
mod ring;
pub(crate) mod settle;
pub(crate) mod slot;
pub(crate) mod task;
pub(crate) mod timers;
pub(crate) mod tls;
mod write;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use slab::Slab;

use crate::clock::Clock;
use crate::engine::dial::{Dial, Post};
use crate::engine::slot::{Slot, Stamp};
use crate::engine::task::Task;
use crate::engine::timers::Timers;
use crate::id::Gen;
use crate::SocketId;

/// Size of the shared read buffer: a Partial recv is answered with at most this
/// much, and an Exact recv up to this size is served from it without a copy.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// The loop's machinery behind [`Cx`](crate::Cx).
pub(crate) struct Engine<S> {
    pub(crate) registry: mio::Registry,
    pub(crate) slots: Slab<Slot<S>>,
    /// The generation the next socket gets.
    pub(crate) gen: Gen,
    /// Callbacks deferred until the current one returns.
    pub(crate) tasks: VecDeque<Task>,
    /// Work put off to the next turn, after the readiness this turn took in
    /// has been acted on (a listener's further accepts).
    pub(crate) next_turn: Vec<Task>,
    pub(crate) timers: Timers<S>,
    /// The read buffer all sockets share; callbacks get slices of it.
    pub(crate) rbuf: Vec<u8>,
    /// DTLS records waiting to be written (reused).
    pub(crate) wire: dtls::Wire,
    /// The sockets in HTTP mode, and their layer's state.
    pub(crate) http: http::HttpSockets,
    /// The `Date` of HTTP responses, made once a second.
    pub(crate) date: http::DateCache,
    /// The loop's time, read at its fixed points (see `Cx::now`).
    pub(crate) now: Instant,
    /// Where the sockets' `Stamp`s count from: the loop's first time.
    pub(crate) epoch: Instant,
    /// `now` as a `Stamp`, made when `now` is (every read and write stamps
    /// its socket with it, and making one costs more than the copy).
    pub(crate) stamp: Stamp,
    pub(crate) clock: Clock,
    /// The loop is closing every socket: nothing new may open.
    pub(crate) stopping: bool,
    /// This loop's number in log lines.
    pub(crate) mux_id: u32,
    /// Times the loop came back from waiting for readiness.
    pub(crate) wakeups: u64,
    /// Inside `IoMux::run`.
    pub(crate) running: bool,
    /// Connects to a host name, resolving or racing their addresses.
    pub(crate) dials: HashMap<SocketId, Box<Dial>>,
    /// What names resolved to, until their `on_resolved` runs.
    pub(crate) announced: HashMap<SocketId, Vec<SocketAddr>>,
    /// How the resolver's answers reach this loop.
    pub(crate) post: Option<Post<S>>,
    /// The io_uring backend's ring, when the loop runs on it. Last: dropped
    /// after the sockets, whose requests it then cancels and waits for.
    pub(crate) ring: Option<Box<crate::uring::Ring>>,
}

impl<S> Engine<S> {
    /// The loop's time moved on: read the clock.
    pub(crate) fn tick(&mut self) {
        self.now = self.clock.now();
        self.stamp = Stamp::new(self.epoch, self.now);
    }

    pub(crate) fn new(registry: mio::Registry, clock: Clock) -> Self {
        Engine {
            registry,
            // Room for 2,048 sockets from the start: 240 KiB, above glibc's
            // mmap threshold, so the pages are resident only once sockets use
            // them, and each time the slab grows the buffer it leaves goes
            // back to the system. Grown from empty, the buffers under the
            // threshold stayed in the heap: 15 bytes per connection of 8,000.
            slots: Slab::with_capacity(2048),
            gen: Gen::START,
            tasks: VecDeque::new(),
            next_turn: Vec::new(),
            timers: Timers::default(),
            rbuf: vec![0; READ_BUF],
            now: clock.now(),
            epoch: clock.now(),
            stamp: Stamp::default(),
            clock,
            stopping: false,
            mux_id: crate::log::next_mux_id(),
            wakeups: 0,
            running: false,
            dials: HashMap::new(),
            announced: HashMap::new(),
            post: None,
            ring: None,
            wire: Default::default(),
            http: Default::default(),
            date: Default::default(),
        }
    }
}
