//! [`Backend`] and [`IoMuxBuilder`]: which kernel interface a loop waits and
//! does its I/O through.

use std::io;

use crate::clock::{Clock, TestClock};
use crate::IoMux;

/// The kernel interface an [`IoMux`] waits and does its I/O through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Readiness from epoll, then a system call per read and write.
    #[default]
    Epoll,
    /// io_uring: multishot accepts, multishot receives into buffers the loop
    /// owns (answered from there without a copy), small sends submitted with
    /// the loop's wait: one system call a turn. A busy loop (16 completions
    /// or more in its last turn) waits up to 50 µs for a quarter of its
    /// sockets (at most 64) to have something: fuller turns for less CPU,
    /// at up to 50 µs more latency per turn under load. TCP listeners and
    /// plain TCP streams (HTTP mode's too) are on the ring; TLS, framed, UDP,
    /// DTLS and Unix sockets stay on epoll readiness in the same loop, which
    /// the ring watches. A kernel that refuses io_uring gets epoll.
    IoUring,
}

impl Backend {
    /// The backend the `TETHER_BACKEND` environment variable names (`uring`
    /// or `io_uring`; anything else, or nothing, is epoll): what
    /// [`IoMux::new`] uses, so that a test suite runs on either.
    pub fn from_env() -> Backend {
        match std::env::var("TETHER_BACKEND").as_deref() {
            Ok("uring" | "io_uring" | "iouring") => Backend::IoUring,
            _ => Backend::Epoll,
        }
    }
}

/// Builds an [`IoMux`]: its backend and its clock.
///
/// ```
/// use tether::{Backend, IoMux};
///
/// let mux = IoMux::builder().backend(Backend::IoUring).build(()).unwrap();
/// // Epoll if the kernel refused the ring.
/// assert!(matches!(mux.backend(), Backend::IoUring | Backend::Epoll));
/// ```
#[derive(Debug)]
pub struct IoMuxBuilder {
    backend: Backend,
    clock: Clock,
}

impl IoMuxBuilder {
    pub(crate) fn new() -> Self {
        IoMuxBuilder {
            backend: Backend::Epoll,
            clock: Clock::System,
        }
    }

    /// The backend (epoll unless set).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Run on `clock`'s time rather than the system's (see
    /// [`IoMux::with_clock`]).
    pub fn clock(mut self, clock: &TestClock) -> Self {
        self.clock = Clock::Manual(clock.clone());
        self
    }

    /// The loop, owning `shared`.
    pub fn build<S: 'static>(self, shared: S) -> io::Result<IoMux<S>> {
        IoMux::open(shared, self.clock, self.backend)
    }
}
