//! Reaching the loop from other threads.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::Cx;

pub(crate) type Posted<S> = Box<dyn FnOnce(&mut Cx<S>) + Send>;

/// What the loop and its handles share.
pub(crate) struct Remote<S> {
    pub(crate) waker: Arc<mio::Waker>,
    pub(crate) posted: Mutex<Vec<Posted<S>>>,
    pub(crate) stop: AtomicBool,
    /// Set when the loop is dropped: nothing posted would ever run.
    pub(crate) gone: AtomicBool,
    /// Live `MuxHandle`s. While there is one, work may still be posted, so
    /// the loop is not idle; dropping the last one wakes the loop to see that.
    pub(crate) handles: AtomicUsize,
}

impl<S> Remote<S> {
    pub(crate) fn take_posted(&self, into: &mut Vec<Posted<S>>) {
        let mut posted = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *posted, into);
    }
}

/// A handle on an [`IoMux`](crate::IoMux) for other threads: post closures to
/// run on the loop, or stop it. `Send + Clone`; cheap to clone.
///
/// ```
/// let mut mux = tether::IoMux::new(0u32).unwrap();
/// let handle = mux.handle();
/// std::thread::spawn(move || {
///     handle.post(|cx| *cx.shared_mut() += 1).unwrap();
///     handle.terminate();
/// });
/// mux.run().unwrap();
/// assert_eq!(*mux.shared(), 1);
/// ```
pub struct MuxHandle<S> {
    pub(crate) remote: Arc<Remote<S>>,
}

impl<S> MuxHandle<S> {
    pub(crate) fn new(remote: &Arc<Remote<S>>) -> Self {
        remote.handles.fetch_add(1, Ordering::Relaxed);
        MuxHandle {
            remote: Arc::clone(remote),
        }
    }
}

impl<S> Clone for MuxHandle<S> {
    fn clone(&self) -> Self {
        MuxHandle::new(&self.remote)
    }
}

impl<S> Drop for MuxHandle<S> {
    fn drop(&mut self) {
        // The loop may be waiting with nothing else to do: let it see it is idle.
        if self.remote.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.remote.waker.wake();
        }
    }
}

impl<S> fmt::Debug for MuxHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxHandle").finish_non_exhaustive()
    }
}

/// The loop a handle points at has been dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopGone;

impl fmt::Display for LoopGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event loop is gone")
    }
}

impl std::error::Error for LoopGone {}

impl<S> MuxHandle<S> {
    /// Run `f` on the loop's thread, in order with other posted closures.
    pub fn post(&self, f: impl FnOnce(&mut Cx<S>) + Send + 'static) -> Result<(), LoopGone> {
        if self.remote.gone.load(Ordering::Acquire) {
            return Err(LoopGone);
        }
        self.remote
            .posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
        self.remote.waker.wake().map_err(|_| LoopGone)
    }

    /// Ask the loop to stop: `run` returns after closing every socket (each gets
    /// its `on_closed`, with `Reason::Stopped` if it was still open). Closures
    /// posted before still run; if the loop is not running, its next run stops.
    pub fn terminate(&self) {
        self.remote.stop.store(true, Ordering::Release);
        let _ = self.remote.waker.wake();
    }
}
