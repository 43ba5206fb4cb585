//! [`IoMux`]: the event loop, and the engine behind [`Cx`]: readiness in,
//! lifecycle actions out, callbacks deferred until the caller's returns.

use std::io::{self, ErrorKind};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use tether_proto::{Action, Event, Lifecycle, Reason, State};

use crate::cx::{connect_reason, Task};
use crate::framed::Framed;
use crate::handle::{MuxHandle, Posted, Remote};
use crate::slot::{find, Slot, Want};
use crate::timer::Target;
use crate::transport::tls::{Flushed, Tls};
use crate::transport::{read_stream, Io, Read, Stream, Transport};
use crate::{
    sys, Admission, Closed, Cx, DiscardMethod, Error, PeerInfo, RecvMode, SocketId, SocketUser,
};

const WAKE: Token = Token(usize::MAX);

/// Reads one draining socket may do before others get a turn.
const DRAIN_READS_PER_TURN: usize = 16;

/// After the process ran out of descriptors, how long a listener waits before
/// it tries to accept again (the waiting connections stay in the backlog).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    /// A new loop owning `shared`.
    pub fn new(shared: S) -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let remote = Arc::new(Remote {
            waker: mio::Waker::new(poll.registry(), WAKE)?,
            posted: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
        });
        Ok(IoMux {
            poll,
            events: Events::with_capacity(1024),
            cx: Cx::new(registry, remote, shared),
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
        let result = self.turns();
        self.cx.stop_all();
        self.cx.remote.stop.store(false, Ordering::Release);
        result
    }

    fn turns(&mut self) -> io::Result<()> {
        loop {
            self.cx.now = Instant::now();
            self.run_posted();
            if self
                .cx
                .timers
                .next_deadline()
                .is_some_and(|at| at <= self.cx.now)
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
            let timeout = self
                .cx
                .timers
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
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
        self.cx.now = Instant::now();
        let mut n = 0;
        for event in self.events.iter() {
            if event.token() != WAKE {
                self.cx.on_ready(SocketId::from_token(event.token()), event);
                self.cx.run_tasks();
                n += 1;
            }
        }
        Ok(n)
    }

    fn run_posted(&mut self) {
        self.cx.remote.take_posted(&mut self.posted);
        for f in self.posted.drain(..) {
            f(&mut self.cx);
            self.cx.now = Instant::now();
            self.cx.run_tasks();
        }
    }
}

impl<S: 'static> Cx<S> {
    fn is_idle(&self) -> bool {
        self.slots.is_empty()
            && self.tasks.is_empty()
            && self.timers.is_empty()
            && self.remote.handles.load(Ordering::Acquire) == 0
            && self.remote.posted.lock().map_or(true, |p| p.is_empty())
    }

    /// Run a callback of `s`'s user. The user is taken out of its slot for the
    /// call, so the callback can use `cx` freely, even on its own socket.
    pub(crate) fn call<R>(
        &mut self,
        s: SocketId,
        f: impl FnOnce(&mut dyn SocketUser<S>, &mut Cx<S>) -> R,
    ) -> Option<R> {
        let mut user = self.slot_mut(s)?.user.take()?;
        let r = f(&mut *user, self);
        // The loop's clock moves on past every callback (and timer, posted
        // closure, on_closed), however long it took: data read after it is
        // stamped when it was read, so a slow callback never makes an active
        // connection look idle.
        self.now = Instant::now();
        if let Some(slot) = self.slot_mut(s) {
            // Unless set_user gave it a new one meanwhile.
            if slot.user.is_none() {
                slot.user = Some(user);
            }
        }
        Some(r)
    }

    /// Callbacks queued by operations, run in order once nobody is inside one.
    pub(crate) fn run_tasks(&mut self) {
        while let Some(task) = self.tasks.pop_front() {
            match task {
                Task::Bound(s) => {
                    if let Some(local) = self.slot(s).and_then(|slot| slot.io.local_addr()) {
                        self.call(s, |u, cx| u.on_bound(cx, s, &local));
                    }
                }
                Task::Connected(s) => self.announce(s),
                Task::TlsReady(s) => self.tls_ready(s),
                Task::Accepted(s) => {
                    self.call(s, |u, cx| u.on_accepted(cx, s));
                }
                Task::Sent(s) => {
                    self.call(s, |u, cx| u.on_sent(cx, s));
                }
                Task::PeerShutdown(s) => {
                    let farewell = self
                        .slot_mut(s)
                        .and_then(|slot| slot.framed.as_mut())
                        .and_then(|f| f.farewell.take());
                    self.call(s, |u, cx| u.on_peer_shutdown(cx, s, farewell.as_deref()));
                    // Kept for Closed::farewell too.
                    if let Some(framed) = self.slot_mut(s).and_then(|slot| slot.framed.as_mut()) {
                        framed.farewell = farewell;
                    }
                }
                Task::Read(s) => self.pump(s),
                Task::Closed(s) => self.finish(s),
                Task::State(s, from, to) => {
                    self.call(s, |u, cx| u.on_state(cx, s, from, to));
                }
            }
        }
    }

    /// Carry out what the lifecycle asks, and queue what it reports.
    pub(crate) fn settle(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let mut flush = false;
        let mut opened = false;
        while let Some(action) = slot.life.poll_action() {
            match action {
                Action::ArmTimer(at) => self.timers.push(at, Target::Socket(s)),
                Action::DrainInput => {
                    if slot.readable {
                        self.tasks.push_back(Task::Read(s));
                    }
                }
                Action::SendFin if slot.tls.is_some() => {
                    // close_notify first, the FIN once it is written: now, as a
                    // release may follow in this same step. (Every send is out
                    // by now, so nothing else is in the way.)
                    if let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.tls.as_mut()) {
                        tls.close_notify();
                        match tls.flush(stream).1 {
                            Ok(Flushed::Done { fin: true, .. }) => {
                                if let Err(e) = stream.shutdown_write() {
                                    slot.end().error.get_or_insert(Error::Io(e));
                                    slot.life.fail(Reason::Lost);
                                }
                            }
                            Ok(_) => flush = true,
                            Err(e) => {
                                slot.end().error.get_or_insert(Error::Io(e));
                                slot.life.fail(Reason::Lost);
                            }
                        }
                    }
                }
                Action::SendFin => {
                    if let Io::Stream(stream) = &slot.io {
                        io_log!(trace, stream.kind(), socket = %s, "FIN");
                        if let Err(e) = stream.shutdown_write() {
                            slot.end().error.get_or_insert(Error::Io(e));
                            slot.life.fail(Reason::Lost);
                        }
                    }
                }
                Action::Reset => abort(slot, false),
                Action::Discard => abort(slot, true),
                Action::Release => {
                    // A connection lost under us (a user timeout, keepalive
                    // giving up) may leave sent bytes unacknowledged in the
                    // kernel: they did not reach the peer, so they are unsent.
                    // (Plain TCP only: under TLS the kernel holds records, not the user's
                    // bytes, and a lost TLS session's last records are its own.)
                    let lost = slot.life.closed() == Some(Reason::Lost) && slot.tls.is_none();
                    if let (true, Io::Stream(stream @ Stream::Tcp(_))) = (lost, &slot.io) {
                        let unsent = sys::pending_out(stream);
                        slot.end().kernel_unsent = unsent;
                    }
                    // Dropping the socket closes it and takes it off the poller.
                    slot.io = Io::None;
                }
            }
        }
        // The last change (into NotConnected) is told just before on_closed,
        // after the socket's other callbacks; any other, before this step's.
        let state = slot.life.state();
        if state != slot.shown && slot.life.closed().is_none() {
            self.tasks.push_back(Task::State(s, slot.shown, state));
            slot.shown = state;
        }
        while let Some(event) = slot.life.poll_event() {
            let task = match event {
                // A TLS server's connection was announced by on_accepted. Known
                // here, while the session is there to say so: by the time a
                // task ran, a failure could have dropped it.
                // Its stage changes all the same: the idle timeout runs from now.
                Event::Connected
                    if slot.framed.is_none()
                        && slot.tls.as_ref().is_some_and(|t| t.is_server()) =>
                {
                    opened = true;
                    continue;
                }
                Event::Connected => Task::Connected(s),
                Event::PeerShutdown => Task::PeerShutdown(s),
                Event::Closed(_) => {
                    let from = std::mem::replace(&mut slot.shown, State::NotConnected);
                    if from != State::NotConnected {
                        self.tasks
                            .push_back(Task::State(s, from, State::NotConnected));
                    }
                    slot.want = None;
                    slot.outq = None;
                    slot.tls = None;
                    Task::Closed(s)
                }
            };
            self.tasks.push_back(task);
        }
        if opened {
            self.enter_stage(s);
        }
        if flush {
            self.flush(s);
        }
    }

    /// The last callback of a socket: its slot goes, then `on_closed` runs.
    fn finish(&mut self, s: SocketId) {
        let Some(slot) = self.slot(s) else { return };
        if slot.life.closed().is_none() {
            return;
        }
        let slot = self.slots.remove(s.idx as usize);
        let end = slot.end.map(|b| *b).unwrap_or_default();
        let closed = Closed {
            reason: slot.life.closed().unwrap_or(Reason::Lost),
            unsent: slot.life.unsent() + end.kernel_unsent,
            unread: slot.life.unread() + end.kernel_unread,
            error: end.error,
            discard: end.discard,
            farewell: slot.framed.and_then(|f| f.farewell),
        };
        io_log!(debug, slot.io.kind().unwrap_or(Transport::Tcp), socket = %s, reason = %closed.reason, closed.unsent, closed.unread, "closed");
        if let Some(mut user) = slot.user {
            user.on_closed(self, s, &closed);
            self.now = Instant::now();
        }
        if let Some(listener) = slot.origin {
            self.release_admission(listener);
        }
    }

    // ----- readiness -----

    fn on_ready(&mut self, s: SocketId, event: &mio::event::Event) {
        let Some(slot) = self.slot_mut(s) else { return };
        match &slot.io {
            Io::Listener(..) => self.pump_accept(s),
            Io::Udp(..) => self.on_udp_ready(s, event),
            Io::Stream(_) => {
                if !slot.wire_up && !self.check_connect(s) {
                    return;
                }
                let Some(slot) = self.slot_mut(s) else { return };
                let Io::Stream(stream) = &slot.io else { return };
                if event.is_error() {
                    let error = match stream.take_error() {
                        Ok(Some(e)) | Err(e) => e,
                        Ok(None) => io::Error::from(ErrorKind::ConnectionReset),
                    };
                    self.fail(s, Reason::Lost, Error::Io(error));
                    self.settle(s);
                    return;
                }
                if event.is_readable() || event.is_read_closed() {
                    slot.readable = true;
                }
                if event.is_read_closed() {
                    slot.life.fin_known();
                    if let Some(tls) = slot.tls.as_mut() {
                        // Edge-triggered: told once. A handshake still running
                        // keeps it for when the connection is up.
                        tls.peer_fin = true;
                    }
                    self.end_if_drained(s);
                    self.settle(s);
                }
                if event.is_writable() {
                    self.flush(s);
                }
                if self
                    .slot(s)
                    .is_some_and(|slot| slot.tls.as_ref().is_some_and(|t| !t.ready))
                {
                    // What came is the handshake's. Once that is over, tls_ready
                    // reads for the recv, after on_connected is queued.
                    self.drive_tls(s);
                } else if let Some(slot) = self.slot(s) {
                    let handshaking = slot.framed.as_ref().is_some_and(|f| f.handshaking());
                    if slot.readable
                        && (slot.want.is_some() || slot.life.is_draining() || handshaking)
                    {
                        self.tasks.push_back(Task::Read(s));
                    }
                }
            }
            _ => {}
        }
    }

    /// A connecting socket became ready: connected, failed, or neither yet.
    /// Returns true once connected.
    fn check_connect(&mut self, s: SocketId) -> bool {
        let Some(slot) = self.slot_mut(s) else {
            return false;
        };
        let Io::Stream(stream) = &slot.io else {
            return false;
        };
        match stream.take_error() {
            Ok(None) if stream.is_connected() => {
                io_log!(debug, stream.kind(), socket = %s, "connected");
                slot.wire_up = true;
                // Connected means every handshake above TCP is over too: TLS
                // starts now, framing waits for its WELCOME.
                match (slot.tls.as_mut(), &slot.framed) {
                    (Some(tls), _) => tls.tcp_up = true,
                    (None, Some(_)) => {}
                    (None, None) => slot.life.connected(),
                }
                self.enter_stage(s);
                self.settle(s);
                self.flush(s);
                true
            }
            Ok(None) => false,
            Ok(Some(e)) | Err(e) => {
                io_log!(debug, stream.kind(), socket = %s, error = %e, "connect failed");
                self.fail(s, connect_reason(&e), Error::Io(e));
                self.settle(s);
                false
            }
        }
    }

    /// Write what is queued, for as long as the kernel takes it.
    pub(crate) fn flush(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.tls.is_some() {
            self.flush_tls(s);
            return;
        }
        let (Io::Stream(stream), Some(q)) = (&slot.io, slot.outq.as_mut()) else {
            return;
        };
        if !slot.wire_up {
            return;
        }
        let mut failed = None;
        while !q.pending().is_empty() {
            let asked = q.pending().len();
            match stream.write(q.pending()) {
                Ok(n) => {
                    for _ in 0..q.advance(n) {
                        self.tasks.push_back(Task::Sent(s));
                    }
                    slot.life.wrote(n);
                    slot.active = self.now;
                    // Full: the next writable edge comes when there is room.
                    if n < asked {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Sends of zero bytes complete when everything before them has.
        for _ in 0..q.advance(0) {
            self.tasks.push_back(Task::Sent(s));
        }
        if q.is_empty() {
            slot.outq = None;
        }
        if let Some(e) = failed {
            self.fail(s, Reason::Lost, Error::Io(e));
        }
        self.settle(s);
    }

    /// Read what is wanted, in the way the socket's layers call for.
    fn pump(&mut self, s: SocketId) {
        let Some(slot) = self.slot(s) else { return };
        if slot.life.is_datagram() {
            self.pump_datagram(s);
        } else if slot.tls.as_ref().is_some_and(|t| !t.ready) {
            // Until the handshake is over, what arrives is the handshake's.
            self.drive_tls(s);
        } else if slot
            .framed
            .as_ref()
            // A close() before WELCOME waits for it, as a close while connecting
            // waits for the connection: only then can what it sends go out.
            .is_some_and(|f| f.handshaking() || !slot.life.is_draining())
        {
            self.pump_framed(s);
        } else {
            self.pump_read(s);
        }
    }

    /// A connection is up: a client hears `on_connected`; a framed server's
    /// connection, whose user exists only since its admission, `on_accepted`
    /// (and `on_tls_ready`, which ran before there was a user to tell). A TLS
    /// server's never comes here: it was announced when it was taken, and
    /// `settle` drops its Connected event.
    fn announce(&mut self, s: SocketId) {
        // The connection is up: from now the idle timeout runs.
        self.enter_stage(s);
        let Some(slot) = self.slot(s) else { return };
        let framed_server = slot.framed.as_ref().is_some_and(|f| f.is_server());
        let tls = slot.tls.as_ref().map(|t| t.info());
        if framed_server {
            self.call(s, |u, cx| u.on_accepted(cx, s));
            if let Some(info) = tls {
                self.call(s, |u, cx| u.on_tls_ready(cx, s, &info));
            }
        } else {
            self.call(s, |u, cx| u.on_connected(cx, s));
        }
    }

    /// Read for the pending recv (one answer per turn) or for a draining close.
    fn pump_read(&mut self, s: SocketId) {
        let mut buf = std::mem::take(&mut self.rbuf);
        // Whether the turn's reads ran out while input was still wanted.
        let ran_out = 'turn: {
            for _ in 0..DRAIN_READS_PER_TURN {
                let Some(slot) = find(&mut self.slots, s) else {
                    break 'turn false;
                };
                let Slot {
                    io: Io::Stream(stream),
                    tls,
                    readable,
                    partial,
                    want: pending,
                    life,
                    active,
                    ..
                } = slot
                else {
                    break 'turn false;
                };
                // With TLS, decrypted bytes may wait in the session though the
                // socket has nothing more.
                if (!*readable && tls.is_none()) || !life.wants_input() {
                    break 'turn false;
                }
                let tls = tls.as_deref_mut();
                let fin_seen = life.fin_seen();
                if life.is_draining() {
                    match read_stream(stream, tls, readable, fin_seen, &mut buf) {
                        Read::Data(n) => life.read(n),
                        Read::Eof => life.eof(),
                        Read::Empty => break 'turn false,
                        Read::Failed(e) => self.fail(s, crate::tls::read_failure(&e), e),
                    }
                    self.settle(s);
                    continue;
                }
                let Some(want) = *pending else {
                    break 'turn false;
                };
                let outcome = match want.mode {
                    RecvMode::Partial => {
                        let cap = want.n.min(buf.len());
                        read_stream(stream, tls, readable, fin_seen, &mut buf[..cap])
                    }
                    RecvMode::Exact if partial.is_empty() && want.n <= buf.len() => {
                        read_stream(stream, tls, readable, fin_seen, &mut buf[..want.n])
                    }
                    RecvMode::Exact => {
                        let filled = partial.len();
                        partial.resize(want.n, 0);
                        let r =
                            read_stream(stream, tls, readable, fin_seen, &mut partial[filled..]);
                        let got = if let Read::Data(n) = r { n } else { 0 };
                        partial.truncate(filled + got);
                        r
                    }
                };
                match outcome {
                    Read::Data(n) => {
                        life.read(n);
                        *active = self.now;
                        if let Some(data) = self.complete(s, want, &buf, n) {
                            self.deliver(s, data.as_deref().unwrap_or(&buf[..n]));
                            break 'turn false;
                        }
                    }
                    Read::Eof => {
                        pending.take();
                        *partial = Vec::new();
                        life.eof();
                        self.settle(s);
                        break 'turn false;
                    }
                    Read::Empty => break 'turn false,
                    Read::Failed(e) => {
                        self.fail(s, crate::tls::read_failure(&e), e);
                        self.settle(s);
                        break 'turn false;
                    }
                }
            }
            true
        };
        self.rbuf = buf;
        // The turn's reads ran out with input still wanted and waiting (a long
        // drain, a large Exact recv): edge-triggered readiness will not say so
        // again, so come back after the other sockets had their turn.
        if let (true, Some(slot)) = (ran_out, self.slot(s)) {
            let wanted = slot.want.is_some() || slot.life.is_draining();
            if wanted && slot.readable && slot.life.wants_input() {
                self.tasks.push_back(Task::Read(s));
            }
        }
        // Reading may have produced records to answer (alerts, key updates).
        if self
            .slot(s)
            .is_some_and(|slot| slot.tls.as_ref().is_some_and(|t| t.wants_write()))
        {
            self.flush(s);
        }
    }

    /// After a read of `n` bytes: is the recv answered? `Some(None)`: yes, from
    /// the shared buffer; `Some(Some(v))`: yes, from the bytes gathered in `v`.
    #[allow(clippy::option_option)]
    fn complete(
        &mut self,
        s: SocketId,
        want: Want,
        buf: &[u8],
        n: usize,
    ) -> Option<Option<Vec<u8>>> {
        let slot = self.slot_mut(s)?;
        match want.mode {
            RecvMode::Partial => Some(None),
            RecvMode::Exact if slot.partial.is_empty() && n == want.n => Some(None),
            RecvMode::Exact => {
                if slot.partial.len() < want.n && slot.partial.capacity() < want.n {
                    // The first read of a long Exact recv came from the shared
                    // buffer; keep its bytes and gather the rest in the socket.
                    slot.partial.reserve_exact(want.n);
                    slot.partial.extend_from_slice(&buf[..n]);
                }
                (slot.partial.len() == want.n).then(|| Some(std::mem::take(&mut slot.partial)))
            }
        }
    }

    fn deliver(&mut self, s: SocketId, data: &[u8]) {
        if let Some(slot) = self.slot_mut(s) {
            slot.want = None;
            slot.life.delivered(data.len());
        }
        self.call(s, |u, cx| u.on_received(cx, s, data));
        // The peer's FIN may have come with these last bytes.
        self.end_if_drained(s);
        self.settle(s);
    }

    /// Rule 2 without a recv: once the peer's FIN is known, nobody waits for
    /// input and none is left in the kernel, the end is reported now rather than
    /// at a recv that may never come.
    ///
    /// Over TLS the end is clean only after the peer's close_notify: a FIN
    /// without one, with nothing left to read, is a truncation.
    pub(crate) fn end_if_drained(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Io::Stream(stream) = &slot.io else { return };
        if slot.want.is_some()
            || slot.life.is_draining()
            || !matches!(slot.life.state(), State::NoRecv | State::NoSendRecv)
        {
            return;
        }
        if slot.framed.is_some() {
            // A framed peer's end is its FAREWELL, read by a recv.
            return;
        }
        let Some(tls) = slot.tls.as_mut() else {
            if sys::pending_in(stream) == 0 {
                slot.life.eof();
            }
            return;
        };
        // What remains may be only the close_notify record: read records (the
        // FIN bounds them) until there is plaintext for a recv to take.
        if let Err(e) = tls.pull(stream, &mut slot.readable) {
            self.fail(s, crate::tls::read_failure(&e), e);
        } else if tls.buffered_plaintext() > 0 {
        } else if tls.peer_closed() {
            slot.life.eof();
        } else if sys::pending_in(stream) == 0 {
            self.fail(s, Reason::Lost, crate::tls::truncated());
        }
    }

    /// Take waiting connections, asking the listener's user about each.
    pub(crate) fn pump_accept(&mut self, listener: SocketId) {
        loop {
            let Some(slot) = self.slot(listener) else {
                return;
            };
            let Io::Listener(l) = &slot.io else {
                return;
            };
            if l.full() {
                // The kernel's backlog holds the rest until one closes.
                return;
            }
            let tls = l.tls.clone();
            let kind = l.listener.kind();
            let framed = slot.framed.as_ref().map(|f| f.max_payload());
            match l.listener.accept() {
                Ok(accepted) => {
                    let Some(max_payload) = framed else {
                        let info = PeerInfo {
                            peer: accepted.peer,
                            hello: None,
                        };
                        let admission =
                            self.call(listener, |u, cx| u.on_incoming(cx, listener, &info));
                        self.admit(listener, admission, accepted.stream, kind, tls.as_ref());
                        continue;
                    };
                    // A framed connection is admitted on its HELLO: until then
                    // it has no user.
                    let pending = Framed::accepted(listener, max_payload);
                    self.open_accepted(
                        listener,
                        None,
                        accepted.stream,
                        kind,
                        tls.as_ref(),
                        Some(pending),
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => {
                    io_log!(debug, kind, socket = %listener, error = %e, "accept");
                }
                Err(e) if is_exhaustion(&e) => {
                    io_log!(warn, kind, socket = %listener, error = %e, "accept paused");
                    self.timers
                        .push(self.now + ACCEPT_BACKOFF, Target::Socket(listener));
                    return;
                }
                Err(e) => {
                    self.fail(listener, Reason::AcceptFailed, Error::Io(e));
                    self.settle(listener);
                    return;
                }
            }
        }
    }

    /// Carry out a plain listener's decision on a connection it was offered.
    fn admit(
        &mut self,
        listener: SocketId,
        admission: Option<Admission<S>>,
        stream: Stream,
        kind: Transport,
        tls: Option<&crate::TlsContext>,
    ) {
        match admission {
            Some(Admission::Accept(user)) => {
                self.open_accepted(listener, Some(user), stream, kind, tls, None)
            }
            Some(Admission::AcceptWith(user, data)) => {
                io_log!(
                    warn,
                    kind,
                    len = data.len(),
                    "accept data needs a framed listener: not sent"
                );
                self.open_accepted(listener, Some(user), stream, kind, tls, None)
            }
            Some(Admission::Reject(data)) => {
                io_log!(
                    warn,
                    kind,
                    len = data.len(),
                    "reject data needs a framed listener: reset instead"
                );
                deny(&stream, kind);
            }
            _ => deny(&stream, kind),
        }
    }

    /// A socket for a connection just taken. TLS and framed connections stay
    /// `Connecting` until their handshakes are over.
    pub(crate) fn open_accepted(
        &mut self,
        listener: SocketId,
        user: Option<Box<dyn SocketUser<S>>>,
        mut stream: Stream,
        kind: Transport,
        tls: Option<&crate::TlsContext>,
        framed: Option<Framed>,
    ) {
        let life = if tls.is_some() || framed.is_some() {
            let mut life = Lifecycle::new();
            let _ = life.connect();
            life
        } else {
            Lifecycle::accepted()
        };
        let announce = user.is_some();
        let inherited = self
            .slot(listener)
            .and_then(|l| l.timeouts.as_ref())
            .map(|d| d.config);
        let s = self.insert(user, Io::None, life);
        // It holds one of its listener's admissions until its on_closed returns.
        if let Some(Io::Listener(l)) = find(&mut self.slots, listener).map(|slot| &mut slot.io) {
            l.live += 1;
        }
        if let Some(slot) = find(&mut self.slots, s) {
            slot.origin = Some(listener);
            if let Some(config) = inherited {
                slot.timeouts = Some(Box::new(crate::slot::Deadlines {
                    config,
                    since: self.now,
                }));
            }
        }
        match stream.register(&self.registry, s.token()) {
            Ok(()) => {
                io_log!(debug, kind, socket = %s, "accepted");
                if let Some(slot) = find(&mut self.slots, s) {
                    slot.io = Io::Stream(stream);
                    slot.wire_up = true;
                    slot.tls = tls.and_then(|ctx| Tls::server(ctx).ok()).map(Box::new);
                    slot.framed = framed.map(Box::new);
                }
                if announce {
                    self.tasks.push_back(Task::Accepted(s));
                }
                self.arm(s);
                self.settle(s);
            }
            Err(e) => {
                self.fail(s, Reason::AcceptFailed, Error::Io(e));
                self.settle(s);
            }
        }
    }

    // ----- time -----

    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some((due, target)) = self.timers.pop_due(now) {
            match target {
                Target::Socket(s) => {
                    let Some(slot) = self.slot(s) else { continue };
                    if matches!(slot.io, Io::Listener(..)) {
                        self.pump_accept(s);
                    } else {
                        self.on_deadline(s, now);
                    }
                }
                Target::User(id) => {
                    if let Some(mut f) = self.timers.take(id) {
                        f(self);
                        self.now = Instant::now();
                        self.timers.restore(id, due, now, f);
                    }
                }
            }
            self.run_tasks();
        }
    }

    /// The loop is ending: close every socket, each with its `on_closed`. A
    /// callback may open new sockets meanwhile; they are closed in turn.
    fn stop_all(&mut self) {
        self.stopping = true;
        for _ in 0..64 {
            if self.slots.is_empty() {
                break;
            }
            let ids: Vec<SocketId> = self
                .slots
                .iter()
                .map(|(idx, slot)| SocketId {
                    idx: idx as u32,
                    gen: slot.gen,
                })
                .collect();
            for s in ids {
                if let Some(slot) = self.slot_mut(s) {
                    slot.life.stop();
                }
                self.settle(s);
            }
            self.run_tasks();
        }
        self.timers.clear();
        self.stopping = false;
    }
}

/// Abort a connection: count what the kernel still holds, then RST, or
/// forget it silently if `discard` and the process may.
fn abort<S>(slot: &mut crate::slot::Slot<S>, discard: bool) {
    let io = std::mem::take(&mut slot.io);
    let (unsent, unread, method) = match &io {
        Io::Stream(stream @ Stream::Tcp(_)) => {
            let counts = (sys::pending_out(stream), sys::pending_in(stream));
            let method = if discard && sys::set_repair(stream).is_ok() {
                DiscardMethod::Silent
            } else {
                let _ = sys::set_abortive(stream);
                DiscardMethod::Reset
            };
            (counts.0, counts.1, method)
        }
        // What a Unix socket wrote already sits in the peer's receive queue, which
        // closing does not take back (and SIOCOUTQ counts it in kernel memory, not
        // bytes): only TCP has bytes in the kernel that an abort loses.
        Io::Stream(stream @ Stream::Local(_)) => (0, sys::pending_in(stream), DiscardMethod::Close),
        // Nobody is told of a UDP socket's end. Sent datagrams are counted by
        // tether's own queue; those waiting to be received are read and counted.
        Io::Udp(sock, _) => (0, sys::drain_datagrams(sock), DiscardMethod::Silent),
        _ => return,
    };
    // Decrypted bytes nobody took are unread too (the kernel's count of a TLS
    // socket is of records, close enough to the bytes they carry).
    let decrypted = slot
        .tls
        .as_mut()
        .map_or(0, |t| t.buffered_plaintext() as u64);
    let end = slot.end();
    end.kernel_unsent = unsent;
    end.kernel_unread = unread + decrypted;
    if discard {
        end.discard = Some(method);
    }
    drop(io);
}

/// Refuse a connection: RST, so the client sees a refusal (a Unix socket has
/// none: its client sees the stream end).
fn deny(stream: &Stream, kind: Transport) {
    io_log!(debug, kind, "denied");
    if kind == Transport::Tcp {
        let _ = sys::set_abortive(stream);
    }
}

/// Errors that concern one would-be connection, not the listener.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM)
    )
}

/// The process or system is out of something; accepting may work again later.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
