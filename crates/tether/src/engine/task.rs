//! The callbacks an operation causes, deferred until the current callback
//! returns: no callback ever runs inside an operation.

use std::collections::VecDeque;

use tether_proto::State;

use crate::SocketId;

/// Work deferred until the current callback returns.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Task {
    Bound(SocketId),
    /// A host name resolved: `on_resolved` with what `Engine::announced` holds.
    Resolved(SocketId),
    Connected(SocketId),
    Accepted(SocketId),
    Sent(SocketId),
    PeerShutdown(SocketId),
    Closed(SocketId),
    /// The socket's state changed, from and to.
    State(SocketId, State, State),
    /// Read for a pending recv or a draining close (or, on TLS, for the
    /// handshake).
    Read(SocketId),
    /// The TLS handshake is over: check ALPN, then the lifecycle moves on.
    TlsReady(SocketId),
    /// The security handshake is done: `on_tls_ready`.
    Secured(SocketId),
    /// Take the listener's waiting connections (its limit was raised).
    Accept(SocketId),
    /// HTTP mode: decode what is buffered (a response went out).
    Http(SocketId),
}

/// `n` sends of the socket reached the kernel: their `on_sent`, if its user
/// wants it (`Slot::wants_sent`).
#[inline]
pub(crate) fn queue_sent(tasks: &mut VecDeque<Task>, wanted: bool, s: SocketId, n: usize) {
    if wanted && n > 0 {
        tasks.extend(std::iter::repeat_n(Task::Sent(s), n));
    }
}
