//! The servers compared, and starting and stopping one of them: the one
//! place that calls each server module's `start`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::common::{Spec, Stats, Target};

/// The servers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Tether,
    /// tether on its io_uring backend (plain TCP on the ring; the rest of
    /// its sockets on epoll, as the backend does for now).
    TetherUring,
    Mio,
    Tokio,
    /// monoio's io_uring runtime (plain TCP only).
    Monoio,
    /// A hand-written io_uring loop: the io_uring floor, as mio is epoll's
    /// (plain TCP only).
    Uring,
    /// Blocking std::net, a thread per connection (stream only).
    Std,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Tether => "tether",
            Kind::TetherUring => "tether-uring",
            Kind::Mio => "mio",
            Kind::Tokio => "tokio",
            Kind::Monoio => "monoio",
            Kind::Uring => "uring",
            Kind::Std => "std",
        }
    }

    /// Every server, in the order of the reports' columns.
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Tether,
        Kind::TetherUring,
        Kind::Mio,
        Kind::Tokio,
        Kind::Monoio,
        Kind::Uring,
        Kind::Std,
    ];

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether this server can run here: monoio and uring only where the
    /// kernel lets them set up io_uring (each says why not, once, when it
    /// cannot).
    pub(crate) fn available(self) -> bool {
        match self {
            Kind::Monoio => crate::server_monoio::available(),
            Kind::Uring => crate::server_uring::available(),
            _ => true,
        }
    }
}

/// A server running on its own thread.
pub(crate) struct Server {
    pub(crate) target: Target,
    pub(crate) stats: Arc<Stats>,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Start a server of `kind` and wait until it listens.
    pub(crate) fn start(kind: Kind, spec: &Spec) -> Server {
        let stats = Arc::new(Stats::default());
        let (target, stop, thread) = match kind {
            Kind::Tether => {
                crate::server_tether::start(spec.clone(), stats.clone(), tether::Backend::Epoll)
            }
            Kind::TetherUring => {
                crate::server_tether::start(spec.clone(), stats.clone(), tether::Backend::IoUring)
            }
            Kind::Mio => crate::server_mio::start(spec.clone(), stats.clone()),
            Kind::Tokio => crate::server_tokio::start(spec.clone(), stats.clone()),
            Kind::Monoio => crate::server_monoio::start(spec.clone(), stats.clone()),
            Kind::Uring => crate::server_uring::start(spec.clone(), stats.clone()),
            Kind::Std => crate::server_std::start(spec.clone(), stats.clone()),
        };
        Server {
            target,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stop it and wait for its thread.
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Target::Unix(path) = &self.target {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}
