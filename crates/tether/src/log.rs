//! Where log lines go: one `tracing` target per transport and layer.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::transport::Transport;

/// The target a log line is written under (see the `io_log!` macro).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Tcp,
    Local,
    Udp,
    Tls,
    Framed,
    Timer,
}

impl From<Transport> for Target {
    fn from(t: Transport) -> Target {
        match t {
            Transport::Tcp => Target::Tcp,
            Transport::Local => Target::Local,
            Transport::Udp => Target::Udp,
        }
    }
}

/// A number for each loop of the process, so the lines of several loops (one
/// per core) can be told apart.
pub(crate) fn next_mux_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
