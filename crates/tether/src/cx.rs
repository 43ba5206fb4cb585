//! [`Cx`]: what callbacks act through.

mod dtls;
mod framed;
mod http;
mod options;
mod tls;
mod udp;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_proto::{SockAddr, State};

use crate::clock::Clock;
use crate::engine::timers::TimerId;
use crate::engine::Engine;
use crate::handle::{MuxHandle, Remote};
use crate::transport::Transport;
use crate::{ApiError, RecvMode, SocketId, SocketUser};

/// The loop as callbacks see it: act on any socket, create sockets, set timers,
/// reach the application's shared state `S`, stop the loop.
///
/// Operations return at once. What they cause is reported through callbacks
/// that run after the current callback returns, never inside the call. Failures
/// of the operation itself (an address that does not parse, a refused connect)
/// end the socket with a [`Reason`](crate::Reason) in `on_closed`; an `Err` means the call was
/// misuse and changed nothing.
pub struct Cx<S = ()> {
    /// Slots, the task queue, the timer heap, the read buffer, the clock:
    /// everything the operations act on.
    pub(crate) engine: Engine<S>,
    pub(crate) remote: Arc<Remote<S>>,
    shared: S,
}

/// What a loop has done and holds, for tests and monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Times the loop came back from waiting for readiness (each wake-up of
    /// an idle loop is one: readiness, a deadline, a posted closure).
    pub wakeups: u64,
    /// Live sockets.
    pub sockets: usize,
    /// Live timers: user timers plus sockets' deadlines (a socket has at
    /// most one).
    pub timers: usize,
    /// Entries on the timer heap, live or moved; bounded by a small multiple
    /// of `timers`.
    pub timer_entries: usize,
}

impl<S> fmt::Debug for Cx<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx")
            .field("sockets", &self.engine.slots.len())
            .field("tasks", &self.engine.tasks.len())
            .finish_non_exhaustive()
    }
}

/// Why the application's close, reset, discard and shutdown are refused in
/// HTTP mode.
const OWNS_END: &str = "in HTTP mode the connection ends by itself, after its response";

/// The largest Exact recv: its bytes are gathered in memory until all arrived,
/// so a length read off the wire must not be able to ask for more than this.
pub const MAX_EXACT_RECV: usize = 1 << 30;

impl<S: 'static> Cx<S> {
    pub(crate) fn new(
        registry: mio::Registry,
        remote: Arc<Remote<S>>,
        clock: Clock,
        shared: S,
    ) -> Self {
        let mut engine = Engine::new(registry, clock);
        // The resolver's answers come back as posted closures.
        let to_loop = Arc::clone(&remote);
        engine.post = Some(Arc::new(move |answer| {
            if !to_loop.gone.load(Ordering::Acquire) {
                to_loop
                    .posted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(answer);
                let _ = to_loop.waker.wake();
            }
        }));
        Cx {
            engine,
            remote,
            shared,
        }
    }

    // ----- creating and opening -----
    /// A new stream socket (TCP or Local, chosen by the first address it gets),
    /// in state `NotConnected`, with `user` for its callbacks.
    pub fn stream(&mut self, user: impl SocketUser<S> + 'static) -> SocketId {
        self.engine.stream(user)
    }

    /// Shorthand: a new stream socket connecting to `addr`.
    pub fn connect_to(&mut self, addr: &str, user: impl SocketUser<S> + 'static) -> SocketId {
        self.engine.connect_to(addr, user)
    }

    /// Shorthand: a new stream socket bound to `addr` and listening.
    pub fn listen_on(&mut self, addr: &str, user: impl SocketUser<S> + 'static) -> SocketId {
        self.engine.listen_on(addr, user)
    }

    /// Bind to a local address: `ip:port` (port 0: the system picks, reported by
    /// `on_bound`), `[v6]:port`, `unix:/path` or `unix:@name`. A Local path that
    /// holds a stale socket file is reused; a live one or any other file is not.
    pub fn bind(&mut self, s: SocketId, addr: &str) -> Result<(), ApiError> {
        self.engine.bind(s, addr)
    }

    /// Listen. An unbound socket first binds to every interface (IPv4 and IPv6)
    /// on a port the system picks, reported by `on_bound`.
    ///
    /// On a bound, unconnected UDP socket (otherwise [`ApiError::Refused`]) it
    /// makes a UDP listener, which gives each peer an association of its own.
    /// The first datagram from a new address goes to the listener's
    /// [`on_incoming`](crate::SocketUser::on_incoming) (with
    /// [`PeerInfo::peer`](crate::PeerInfo::peer) set); admitted, it opens an
    /// association: a socket with its own user (`on_accepted` first), already
    /// `Connected`, whose `send` goes to that peer through the listener's
    /// socket and whose `recv` is answered by `on_received` with that peer's
    /// datagrams only, the one that opened it first. Datagrams wait for its
    /// recv in a queue of at most 64; beyond, they are dropped and counted in
    /// its `Closed::unread`, as are those still queued when it ends. It has its
    /// own timeouts and `idle_for`, and every end of it is a discard
    /// (`Reason::Discarded`, or `IdleTimeout`); its `local_addr` is the
    /// listener's, and it has no descriptor of its own (`as_fd` is `None`).
    /// Denied, the datagram is dropped, and the peer's next datagram is offered
    /// again (denials are not remembered). At the listener's
    /// [`max_connections`](Cx::max_connections) datagrams from new peers are
    /// dropped without asking, counted and logged (`tether::udp`). The listener
    /// itself stays an open UDP socket (it may still `send_to`), its user
    /// never sees a datagram of a live association, `recv` on it is
    /// [`ApiError::Unsupported`], and its end ends every association.
    pub fn listen(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.engine.listen(s)
    }

    /// Connect to `addr`: `ip:port`, `[v6]:port`, `unix:/path` (or a path
    /// relative to the working directory), `unix:@name`, or a host name with a
    /// port (`db.internal:5432`, `[fe80::1%eth0]:80`). `on_connected` follows,
    /// or `on_closed` with `ConnectRejected` (nothing listening),
    /// `ConnectFailed`, `ResolveFailed` (the resolver's error in
    /// `Closed::error`) or `AddressInvalid`.
    ///
    /// A name is resolved off the loop, on a few helper threads the process
    /// shares, and never blocks it; then its addresses race (Happy Eyeballs,
    /// RFC 8305): IPv6 first, the families alternating, the next address tried
    /// beside the last one once [`CONNECTION_ATTEMPT_DELAY`](crate::CONNECTION_ATTEMPT_DELAY)
    /// passed without it connecting (or at once when it failed). The first to
    /// connect is the socket's connection and the others are closed unseen;
    /// if all fail, the socket ends with the last failure's reason.
    /// `on_resolved` tells the addresses. The connect timeout covers the lookup
    /// and the race. A socket bound before connecting to a name tries only
    /// the first address of its family.
    pub fn connect(&mut self, s: SocketId, addr: &str) -> Result<(), ApiError> {
        self.engine.connect(s, addr)
    }

    // ----- moving bytes -----
    /// Queue `data` for sending; allowed while connecting (it goes out once
    /// connected) and until `shutdown`/`close`. The bytes are written at once when
    /// the kernel takes them, else copied and written in order as it does.
    /// `on_sent` follows once the last of them reached the kernel.
    pub fn send(&mut self, s: SocketId, data: &[u8]) -> Result<(), ApiError> {
        self.engine.send(s, data)
    }

    /// Ask for the next `n` bytes (`Exact`) or for 1 to `n` bytes (`Partial`).
    /// One `on_received` answers one recv. Nothing is read while no recv is
    /// pending: that is how a slow consumer holds back a fast peer.
    #[inline]
    pub fn recv(&mut self, s: SocketId, n: usize, mode: RecvMode) -> Result<(), ApiError> {
        if self.engine.is_http(s) {
            return Err(ApiError::Http(
                "in HTTP mode the layer reads: requests come to on_request",
            ));
        }
        self.engine.recv(s, n, mode)
    }

    /// Refuse what HTTP mode does itself.
    #[inline]
    fn http_owns(&self, s: SocketId, why: &'static str) -> Result<(), ApiError> {
        if self.engine.is_http(s) {
            return Err(ApiError::Http(why));
        }
        Ok(())
    }

    // ----- ending -----
    /// Half-close: once everything queued is sent, send FIN. Receiving goes on;
    /// the state becomes `NoSend`.
    pub fn shutdown(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.http_owns(s, OWNS_END)?;
        self.engine.shutdown(s)
    }

    /// Close gracefully: send what is queued, then FIN, then read and discard
    /// until the peer's FIN, so the peer never loses data to an RST. Past the
    /// linger time (`set_linger`, 30 s by default) the connection is reset and
    /// closes with `LingerTimeout`. A listener or unconnected socket closes now.
    pub fn close(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.http_owns(s, OWNS_END)?;
        self.engine.close(s)
    }

    /// Abort now with RST. Queued bytes are dropped and counted in `unsent`.
    ///
    /// A Local socket has no RST: it closes at once, and its peer sees
    /// ECONNRESET only if it had sent bytes we never read, else a plain end.
    pub fn reset(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.http_owns(s, OWNS_END)?;
        self.engine.reset(s)
    }

    /// Drop the connection without telling the peer: TCP_REPAIR when the process
    /// may use it, else an RST (TCP) or a plain close (Local); `Closed::discard`
    /// says which happened.
    pub fn discard(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.http_owns(s, OWNS_END)?;
        self.engine.discard(s)
    }

    /// How long a later `close()` may take before it resets.
    pub fn set_linger(&mut self, s: SocketId, linger: Duration) -> Result<(), ApiError> {
        self.engine.set_linger(s, linger)
    }

    // ----- looking -----
    /// The socket's state; `NotConnected` for a stale id.
    pub fn state(&self, s: SocketId) -> State {
        self.engine.state(s)
    }

    /// Bytes accepted by `send` that have not reached the kernel yet (frame
    /// headers included on a framed socket; 0 for a stale id): the live form
    /// of [`Closed::unsent`](crate::Closed::unsent).
    ///
    /// It is the backpressure signal. A producer that sends only while this is
    /// 0 writes what the kernel takes at once and nothing more, keeping no copy
    /// of its data in tether, and fills one socket before it turns to the next;
    /// the `on_sent` of the send that had to wait tells it when to go on.
    ///
    /// ```no_run
    /// # use tether::{Cx, SocketId};
    /// const CHUNK: [u8; 65536] = [0; 65536];
    /// fn produce<S: 'static>(cx: &mut Cx<S>, s: SocketId) {
    ///     while cx.unsent(s) == 0 && cx.send(s, &CHUNK).is_ok() {}
    /// }
    /// ```
    pub fn unsent(&self, s: SocketId) -> u64 {
        self.engine.unsent(s)
    }

    /// The local address, once bound or connected; `None` for an unnamed Unix
    /// socket or a stale id.
    pub fn local_addr(&self, s: SocketId) -> Option<SockAddr> {
        self.engine.local_addr(s)
    }

    /// The socket's transport: fixed at creation for UDP, by the first address
    /// for a stream socket (`None` until then, and for a stale id).
    pub fn transport(&self, s: SocketId) -> Option<Transport> {
        self.engine.transport(s)
    }

    /// The socket's descriptor, for the options tether does not wrap (buffer
    /// sizes, TOS, ...), e.g. with `socket2::SockRef::from(&fd)`. Reading,
    /// writing or closing through it would bypass the lifecycle and its
    /// accounting: don't.
    pub fn as_fd(&self, s: SocketId) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.engine.as_fd(s)
    }

    /// The peer's address, once connected.
    pub fn peer_addr(&self, s: SocketId) -> Option<SockAddr> {
        self.engine.peer_addr(s)
    }

    /// Give the socket another user. Within one of the socket's own callbacks,
    /// the new user takes over once that callback returns.
    pub fn set_user(
        &mut self,
        s: SocketId,
        user: impl SocketUser<S> + 'static,
    ) -> Result<(), ApiError> {
        self.engine.set_user(s, user)
    }

    // ----- the loop -----
    /// Run `f` once, `after` from now.
    pub fn set_timer(&mut self, after: Duration, f: impl FnOnce(&mut Cx<S>) + 'static) -> TimerId {
        self.engine.set_timer(after, f)
    }

    /// Run `f` every `every`, first after one period, until cancelled.
    pub fn set_interval(
        &mut self,
        every: Duration,
        f: impl FnMut(&mut Cx<S>) + 'static,
    ) -> TimerId {
        self.engine.set_interval(every, f)
    }

    /// Cancel a timer; false if it already ran (one-shot) or was cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.engine.cancel_timer(id)
    }

    /// The loop's time: read when it last came back from waiting for
    /// readiness, or at the start of its turn, and passed to everything the
    /// turn runs. It does not move while callbacks run, so it is the same for
    /// every socket of one batch. Timers and linger deadlines are measured
    /// from the clock at the call, not from this.
    pub fn now(&self) -> Instant {
        self.engine.now
    }

    /// What the loop has done and holds: wake-ups, sockets, timers.
    pub fn stats(&self) -> LoopStats {
        let (timers, timer_entries) = self.engine.timers.counts();
        LoopStats {
            wakeups: self.engine.wakeups,
            sockets: self.engine.slots.len(),
            timers,
            timer_entries,
        }
    }

    /// The application's shared state.
    pub fn shared(&self) -> &S {
        &self.shared
    }

    /// The application's shared state, mutably.
    pub fn shared_mut(&mut self) -> &mut S {
        &mut self.shared
    }

    /// Stop the loop once the current callback returns. Open sockets are then
    /// closed with `Reason::Stopped` (TCP ones reset, so no peer takes it for a
    /// graceful end; Unix-domain ones simply close), each with its `on_closed`.
    pub fn terminate(&mut self) {
        self.remote.stop.store(true, Ordering::Release);
    }

    /// A handle for other threads.
    pub fn handle(&self) -> MuxHandle<S> {
        MuxHandle::new(&self.remote)
    }
}
