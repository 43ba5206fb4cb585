//! The connection state machine: how a socket begins, half-closes and ends.
//!
//! A [`Lifecycle`] knows nothing of sockets. The driver tells it what the caller
//! asked for (commands such as [`Lifecycle::shutdown`]) and what the wire did
//! (inputs such as [`Lifecycle::wrote`] or [`Lifecycle::eof`]); the machine answers
//! with [`Action`]s for the driver to carry out and [`Event`]s for the user, both
//! drained with [`Lifecycle::poll_action`] and [`Lifecycle::poll_event`]. Bytes are
//! only counted here, never held, so the machine stays a few dozen bytes and the
//! accounting behind `Closed.unsent` / `Closed.unread` has one owner.
//!
//! The rules it keeps (DESIGN section 4):
//! 1. Nothing is accepted for sending after `shutdown`/`close`, and the FIN goes out
//!    only after every accepted byte was written.
//! 2. The peer's end is reported ([`Event::PeerShutdown`]) only once its last byte
//!    was delivered; [`State::NoRecv`] shows as soon as the FIN is known.
//! 3. Both directions finished and all input delivered: the machine closes itself.
//! 4. [`Event::Closed`] comes exactly once, after every other event.
//! 5. Whatever is dropped is counted: [`Lifecycle::unsent`], [`Lifecycle::unread`].
//! 6. `close` drains the peer instead of aborting, until the linger deadline.
//! 7. Graceful reasons say who began: [`Reason::Normal`] or [`Reason::ByPeer`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tether_proto::{Action, Event, Lifecycle, Reason, State};
//!
//! let now = Instant::now();
//! let mut life = Lifecycle::new();
//! life.connect().unwrap();
//! life.send(5).unwrap(); // queued while connecting
//! life.connected();
//! assert_eq!(life.poll_event(), Some(Event::Connected));
//! life.wrote(5);
//! life.close(now, Duration::from_secs(5)).unwrap();
//! assert_eq!(life.state(), State::Closing);
//! assert_eq!(life.poll_action(), Some(Action::ArmTimer(now + Duration::from_secs(5))));
//! assert_eq!(life.poll_action(), Some(Action::DrainInput));
//! assert_eq!(life.poll_action(), Some(Action::SendFin));
//! life.eof(); // the peer's FIN after our own: we began, so the reason is Normal
//! assert_eq!(life.poll_action(), Some(Action::Release));
//! assert_eq!(life.poll_event(), Some(Event::Closed(Reason::Normal)));
//! assert_eq!(life.state(), State::NotConnected);
//! ```

use std::fmt;
use std::time::{Duration, Instant};

/// What a socket is doing, as `state(s)` reports it.
///
/// This is the public view; the machine keeps a little more (whether the FIN is
/// still waiting for the send queue, whether the peer's end was delivered) and
/// derives this from it, so the two can never disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Created and not yet connecting or listening, or already closed.
    NotConnected,
    /// Connect issued; the handshake is in progress.
    Connecting,
    /// A listener.
    Listening,
    /// Both directions open.
    Connected,
    /// We shut down our sending side (the FIN may still wait for queued data); we
    /// still receive.
    NoSend,
    /// The peer shut down its sending side; we can still send. Data it sent before
    /// may still wait to be received.
    NoRecv,
    /// Both sides shut down; received data may still wait to be received.
    NoSendRecv,
    /// `close()` was called: flushing, our FIN sent, waiting for the peer's end.
    Closing,
}

impl State {
    /// The snake_case name used in logs and JSON events (`no_send_recv`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::NotConnected => "not_connected",
            State::Connecting => "connecting",
            State::Listening => "listening",
            State::Connected => "connected",
            State::NoSend => "no_send",
            State::NoRecv => "no_recv",
            State::NoSendRecv => "no_send_recv",
            State::Closing => "closing",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a socket closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Graceful, and we began the end (our shutdown or close came first).
    Normal,
    /// Graceful, and the peer began the end (its FIN came first).
    ByPeer,
    /// We reset the connection (RST).
    Reset,
    /// We dropped the connection without telling the peer.
    Discarded,
    /// `close()` could not finish within the linger time, so it reset.
    LingerTimeout,
    /// The connection died under us: reset by the peer, unreachable, broken pipe.
    Lost,
    /// The event loop stopped while the socket was open.
    Stopped,
    /// The address could not be parsed or does not fit the transport.
    AddressInvalid,
    /// The operating system refused to create the socket.
    OpenFailed,
    /// Connecting failed for a reason other than a refusal.
    ConnectFailed,
    /// Nothing accepted the connection (refused, or denied by the listener).
    ConnectRejected,
    /// The local address could not be bound (in use, not permitted, ...).
    BindFailed,
    /// The socket could not be put into the listening state.
    ListenFailed,
    /// The listener could not accept connections any more.
    AcceptFailed,
    /// The TLS handshake failed (bad certificate, no common parameters, an
    /// ALPN protocol refused, garbage instead of TLS).
    TlsHandshakeFailed,
    /// The peer broke the framed protocol (an oversized or unknown frame, a
    /// frame out of order); the connection was reset.
    ProtocolError,
    /// The connect did not complete in time.
    ConnectTimeout,
    /// A handshake over the connection (TLS, framed) did not complete in time.
    HandshakeTimeout,
    /// No data moved either way for the idle time: reset (UDP: discarded).
    IdleTimeout,
}

impl Reason {
    /// True for the two reasons of an orderly end: [`Reason::Normal`] and
    /// [`Reason::ByPeer`].
    pub fn is_graceful(self) -> bool {
        matches!(self, Reason::Normal | Reason::ByPeer)
    }

    /// The snake_case name used in logs and JSON events (`by_peer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Normal => "normal",
            Reason::ByPeer => "by_peer",
            Reason::Reset => "reset",
            Reason::Discarded => "discarded",
            Reason::LingerTimeout => "linger_timeout",
            Reason::Lost => "lost",
            Reason::Stopped => "stopped",
            Reason::AddressInvalid => "address_invalid",
            Reason::OpenFailed => "open_failed",
            Reason::ConnectFailed => "connect_failed",
            Reason::ConnectRejected => "connect_rejected",
            Reason::BindFailed => "bind_failed",
            Reason::ListenFailed => "listen_failed",
            Reason::AcceptFailed => "accept_failed",
            Reason::TlsHandshakeFailed => "tls_handshake_failed",
            Reason::ProtocolError => "protocol_error",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::HandshakeTimeout => "handshake_timeout",
            Reason::IdleTimeout => "idle_timeout",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation a caller can ask of a socket; named in [`Refused`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Bind to a local address.
    Bind,
    /// Start listening.
    Listen,
    /// Connect to a peer.
    Connect,
    /// Queue bytes for sending.
    Send,
    /// Ask for received bytes.
    Recv,
    /// Half-close the sending side.
    Shutdown,
    /// Close gracefully.
    Close,
    /// Reset.
    Reset,
    /// Drop without telling the peer.
    Discard,
    /// Start TLS on a connected stream.
    StartTls,
}

impl Op {
    /// The operation's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Bind => "bind",
            Op::Listen => "listen",
            Op::Connect => "connect",
            Op::Send => "send",
            Op::Recv => "recv",
            Op::Shutdown => "shutdown",
            Op::Close => "close",
            Op::Reset => "reset",
            Op::Discard => "discard",
            Op::StartTls => "start_tls",
        }
    }
}

/// An operation that the socket's state does not allow: API misuse, reported
/// instead of ignored so the bug shows where it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// What was asked.
    pub op: Op,
    /// The state that refused it.
    pub state: State,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phrase = match self.op {
            Op::Listen => "listen on",
            Op::Send => "send on",
            Op::Recv => "recv on",
            Op::Shutdown => "shut down",
            Op::StartTls => "start TLS on",
            op => op.as_str(),
        };
        write!(f, "cannot {phrase} a socket in state {}", self.state)
    }
}

impl std::error::Error for Refused {}

/// What the machine asks the driver to do, drained with [`Lifecycle::poll_action`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Call [`Lifecycle::timeout`] at or after this instant.
    ArmTimer(Instant),
    /// Read whatever arrives and drop it, reporting it with [`Lifecycle::read`]:
    /// `close()` drains the peer so the kernel never answers unread data with RST.
    DrainInput,
    /// Half-close the sending side (FIN): every accepted byte has been written.
    SendFin,
    /// Abort the connection with RST.
    Reset,
    /// Forget the connection without telling the peer.
    Discard,
    /// Close the descriptor normally; the connection is over.
    Release,
}

/// What the machine reports to the user, drained with [`Lifecycle::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The connection came up.
    Connected,
    /// The peer finished sending, after its last byte was delivered.
    PeerShutdown,
    /// The socket is closed; always the last event.
    Closed(Reason),
}

/// Where a socket stands, before any direction-level detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Bound,
    Listening,
    Connecting,
    Open,
    Done(Reason),
}

/// Our sending direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendSide {
    Open,
    /// Shutdown asked; the FIN waits for the queue to drain (or the connect).
    Draining,
    /// FIN sent.
    Finished,
}

/// The peer's sending direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvSide {
    Open,
    /// The peer's FIN is known, but bytes before it may still wait to be read.
    FinKnown,
    /// Every byte before the FIN was read: the end was reported.
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Us,
    Peer,
}

// Pending actions and events are bit sets popped in a fixed order. The order is
// the one every sequence needs (a timer before draining, the FIN before the
// release; Connected before PeerShutdown before Closed), so no queue is needed.
const A_TIMER: u8 = 1;
const A_DRAIN: u8 = 1 << 1;
const A_FIN: u8 = 1 << 2;
const A_RESET: u8 = 1 << 3;
const A_DISCARD: u8 = 1 << 4;
const A_RELEASE: u8 = 1 << 5;
const E_CONNECTED: u8 = 1;
const E_PEER_SHUTDOWN: u8 = 1 << 1;
const E_CLOSED: u8 = 1 << 2;

/// The lifecycle of one socket. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Lifecycle {
    phase: Phase,
    send: SendSide,
    recv: RecvSide,
    began: Option<Side>,
    /// `Some(deadline)` once `close()` was called.
    closing: Option<Instant>,
    actions: u8,
    events: u8,
    /// Accepted by `send`, not yet written to the kernel.
    queued: u64,
    /// Read from the kernel for the user, not yet delivered.
    held: u64,
    /// Read and thrown away.
    dropped: u64,
    /// A datagram socket: no connection to set up or tear down.
    datagram: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A new socket: [`State::NotConnected`].
    pub fn new() -> Self {
        Lifecycle {
            phase: Phase::Idle,
            send: SendSide::Open,
            recv: RecvSide::Open,
            began: None,
            closing: None,
            actions: 0,
            events: 0,
            queued: 0,
            held: 0,
            dropped: 0,
            datagram: false,
        }
    }

    /// A datagram (UDP) socket. It is open as soon as it is bound, `connect` only
    /// fixes its peer, and every way of ending it is a discard: there is nobody
    /// to tell, so `shutdown` and `listen` are refused and `close`/`reset` end it
    /// with [`Reason::Discarded`].
    pub fn datagram() -> Self {
        Lifecycle {
            datagram: true,
            ..Self::new()
        }
    }

    /// True for a datagram socket.
    pub fn is_datagram(&self) -> bool {
        self.datagram
    }

    /// A connection taken from a listener: already [`State::Connected`], with no
    /// [`Event::Connected`] (the user learns of it as an accepted socket).
    pub fn accepted() -> Self {
        Lifecycle {
            phase: Phase::Open,
            ..Self::new()
        }
    }

    /// The public state.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Idle | Phase::Bound | Phase::Done(_) => State::NotConnected,
            Phase::Listening => State::Listening,
            Phase::Connecting if self.closing.is_some() => State::Closing,
            Phase::Connecting => State::Connecting,
            Phase::Open if self.closing.is_some() => State::Closing,
            Phase::Open => match (self.send == SendSide::Open, self.recv == RecvSide::Open) {
                (true, true) => State::Connected,
                (false, true) => State::NoSend,
                (true, false) => State::NoRecv,
                (false, false) => State::NoSendRecv,
            },
        }
    }

    /// The reason, once closed.
    pub fn closed(&self) -> Option<Reason> {
        match self.phase {
            Phase::Done(reason) => Some(reason),
            _ => None,
        }
    }

    /// True once the socket is bound, listening, connecting or connected: it has
    /// a descriptor. Binding twice is refused on this.
    pub fn is_bound(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::Done(_))
    }

    /// Bytes accepted for sending and not written; after a close, the bytes that
    /// never went out.
    pub fn unsent(&self) -> u64 {
        self.queued
    }

    /// Bytes received and thrown away (plus any read but not yet delivered, which
    /// become thrown away if the socket closes now).
    pub fn unread(&self) -> u64 {
        self.dropped + self.held
    }

    /// True while the peer's bytes may still be read: on a connection (or one
    /// still in a handshake carried over it) whose peer has not ended. The
    /// driver reads only when someone wants them: a recv, a handshake, or a
    /// `close()` draining the peer.
    pub fn wants_input(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Open) && self.recv != RecvSide::Finished
    }

    /// True once the peer's FIN is known (its last bytes may still wait).
    pub fn fin_seen(&self) -> bool {
        self.recv != RecvSide::Open
    }

    /// True while `close()` drains the peer: input is to be dropped, not delivered.
    pub fn is_draining(&self) -> bool {
        self.closing.is_some()
    }

    /// The next action for the driver, in the order they must be carried out.
    pub fn poll_action(&mut self) -> Option<Action> {
        let bit = lowest_bit(self.actions)?;
        self.actions &= !bit;
        Some(match bit {
            A_TIMER => Action::ArmTimer(self.closing?),
            A_DRAIN => Action::DrainInput,
            A_FIN => Action::SendFin,
            A_RESET => Action::Reset,
            A_DISCARD => Action::Discard,
            _ => Action::Release,
        })
    }

    /// The next event for the user; [`Event::Closed`] is always the last one.
    pub fn poll_event(&mut self) -> Option<Event> {
        let bit = lowest_bit(self.events)?;
        self.events &= !bit;
        Some(match bit {
            E_CONNECTED => Event::Connected,
            E_PEER_SHUTDOWN => Event::PeerShutdown,
            _ => Event::Closed(self.closed()?),
        })
    }

    fn refuse(&self, op: Op) -> Refused {
        Refused {
            op,
            state: self.state(),
        }
    }

    // ----- commands -----

    /// The socket got a local address.
    pub fn bind(&mut self) -> Result<(), Refused> {
        match self.phase {
            Phase::Idle if self.datagram => {
                self.phase = Phase::Open;
                Ok(())
            }
            Phase::Idle => {
                self.phase = Phase::Bound;
                Ok(())
            }
            _ => Err(self.refuse(Op::Bind)),
        }
    }

    /// The socket listens.
    pub fn listen(&mut self) -> Result<(), Refused> {
        match self.phase {
            Phase::Idle | Phase::Bound if !self.datagram => {
                self.phase = Phase::Listening;
                Ok(())
            }
            _ => Err(self.refuse(Op::Listen)),
        }
    }

    /// Connecting began.
    pub fn connect(&mut self) -> Result<(), Refused> {
        match self.phase {
            // A datagram socket connects within the call (the driver reports
            // `connected` or `fail` at once), and may connect again to another
            // peer.
            Phase::Idle | Phase::Open if self.datagram => {
                self.phase = Phase::Connecting;
                Ok(())
            }
            Phase::Idle | Phase::Bound => {
                self.phase = Phase::Connecting;
                Ok(())
            }
            _ => Err(self.refuse(Op::Connect)),
        }
    }

    /// May the user ask for received bytes now? Only on a connection whose peer
    /// has not ended and that is not being closed.
    pub fn check_recv(&self) -> Result<(), Refused> {
        let open = matches!(self.phase, Phase::Connecting | Phase::Open);
        if open && self.recv != RecvSide::Finished && self.closing.is_none() {
            Ok(())
        } else {
            Err(self.refuse(Op::Recv))
        }
    }

    /// Accept `n` bytes for sending. Allowed while connecting (they wait) and on an
    /// open connection until `shutdown`/`close`.
    pub fn send(&mut self, n: usize) -> Result<(), Refused> {
        self.check_send()?;
        self.queued += n as u64;
        Ok(())
    }

    /// Would [`send`](Self::send) accept bytes now?
    pub fn check_send(&self) -> Result<(), Refused> {
        let open = matches!(self.phase, Phase::Connecting | Phase::Open);
        if open && self.send == SendSide::Open && self.closing.is_none() {
            Ok(())
        } else {
            Err(self.refuse(Op::Send))
        }
    }

    /// Half-close: once every accepted byte is written, send the FIN.
    pub fn shutdown(&mut self) -> Result<(), Refused> {
        let open = matches!(self.phase, Phase::Connecting | Phase::Open);
        if !open || self.send != SendSide::Open || self.closing.is_some() || self.datagram {
            return Err(self.refuse(Op::Shutdown));
        }
        self.began.get_or_insert(Side::Us);
        self.send = SendSide::Draining;
        self.flush_fin();
        // The peer may have ended already: then this FIN finishes both directions.
        self.maybe_finish();
        Ok(())
    }

    /// Close gracefully: send what is queued, then the FIN, then drain the peer
    /// until its FIN; past `now + linger`, reset instead.
    pub fn close(&mut self, now: Instant, linger: Duration) -> Result<(), Refused> {
        if self.datagram {
            return self.abort(Op::Close, Reason::Discarded, A_DISCARD);
        }
        match self.phase {
            Phase::Idle | Phase::Bound | Phase::Listening => {
                self.finish(Reason::Normal, A_RELEASE);
                Ok(())
            }
            Phase::Connecting | Phase::Open if self.closing.is_none() => {
                self.began.get_or_insert(Side::Us);
                self.closing = Some(deadline(now, linger));
                self.actions |= A_TIMER;
                // Bytes held for a recv the user will never see again are dropped.
                self.dropped += std::mem::take(&mut self.held);
                if self.recv != RecvSide::Finished {
                    self.actions |= A_DRAIN;
                }
                if self.send == SendSide::Open {
                    self.send = SendSide::Draining;
                }
                self.flush_fin();
                self.maybe_finish();
                Ok(())
            }
            _ => Err(self.refuse(Op::Close)),
        }
    }

    /// Abort with RST now; queued bytes are counted as unsent.
    pub fn reset(&mut self) -> Result<(), Refused> {
        if self.datagram {
            return self.abort(Op::Reset, Reason::Discarded, A_DISCARD);
        }
        self.abort(Op::Reset, Reason::Reset, A_RESET)
    }

    /// Forget the connection without telling the peer.
    pub fn discard(&mut self) -> Result<(), Refused> {
        self.abort(Op::Discard, Reason::Discarded, A_DISCARD)
    }

    /// The event loop is stopping: open connections are reset (the peer must not
    /// take the end for a graceful one), anything else is released.
    pub fn stop(&mut self) {
        match self.phase {
            Phase::Done(_) => {}
            Phase::Connecting | Phase::Open => self.finish(Reason::Stopped, A_RESET),
            _ => self.finish(Reason::Stopped, A_RELEASE),
        }
    }

    fn abort(&mut self, op: Op, reason: Reason, action: u8) -> Result<(), Refused> {
        match self.phase {
            Phase::Done(_) => Err(self.refuse(op)),
            Phase::Connecting | Phase::Open => {
                self.finish(reason, action);
                Ok(())
            }
            // Nothing to tell a peer that does not exist: just let go.
            _ => {
                self.finish(reason, A_RELEASE);
                Ok(())
            }
        }
    }

    // ----- inputs -----

    /// The connect completed.
    pub fn connected(&mut self) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::Open;
            self.events |= E_CONNECTED;
            self.flush_fin();
        }
    }

    /// `n` queued bytes reached the kernel.
    pub fn wrote(&mut self, n: usize) {
        // Once closed, `unsent` is final (it was reported with Closed).
        if !matches!(self.phase, Phase::Connecting | Phase::Open) {
            return;
        }
        self.queued = self.queued.saturating_sub(n as u64);
        self.flush_fin();
        self.maybe_finish();
    }

    /// `n` bytes were read from the kernel: held for the user, or dropped while
    /// `close()` drains.
    pub fn read(&mut self, n: usize) {
        // No connection, nothing to read; once closed, `unread` is final.
        if !matches!(self.phase, Phase::Connecting | Phase::Open) {
            return;
        }
        if self.closing.is_some() {
            self.dropped += n as u64;
        } else {
            self.held += n as u64;
        }
    }

    /// `n` held bytes were handed to the user.
    pub fn delivered(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n as u64);
    }

    /// Held bytes will never be delivered (an Exact recv cut short); count them
    /// as unread.
    pub fn drop_held(&mut self) {
        self.dropped += std::mem::take(&mut self.held);
    }

    /// The peer's FIN is known (the poller said so) though bytes before it may
    /// still wait in the kernel.
    pub fn fin_known(&mut self) {
        if self.phase == Phase::Open && self.recv == RecvSide::Open {
            self.began.get_or_insert(Side::Peer);
            self.recv = RecvSide::FinKnown;
        }
    }

    /// A read found the end of the peer's stream: every byte before its FIN was
    /// read. Bytes still held for an unfinished recv can never complete it and are
    /// counted as unread.
    pub fn eof(&mut self) {
        if self.phase != Phase::Open || self.recv == RecvSide::Finished {
            return;
        }
        self.began.get_or_insert(Side::Peer);
        self.recv = RecvSide::Finished;
        self.actions &= !A_DRAIN;
        self.drop_held();
        if self.closing.is_none() {
            self.events |= E_PEER_SHUTDOWN;
        }
        self.maybe_finish();
    }

    /// The socket failed with `reason` (an OS error while connecting, binding,
    /// listening, or a connection lost under us).
    pub fn fail(&mut self, reason: Reason) {
        if !matches!(self.phase, Phase::Done(_)) {
            self.finish(reason, A_RELEASE);
        }
    }

    /// The peer broke the protocol spoken over the connection: reset it, for
    /// nothing more it sends can be trusted.
    pub fn violated(&mut self) {
        if matches!(self.phase, Phase::Connecting | Phase::Open) {
            self.finish(Reason::ProtocolError, A_RESET);
        }
    }

    /// A timeout of the connection passed (connect, handshake, idle): abort it —
    /// reset a stream, so the peer knows it was not a graceful end; a datagram
    /// socket has nobody to tell and is discarded. A closing connection is the
    /// linger deadline's to end.
    pub fn expire(&mut self, reason: Reason) {
        let live = matches!(self.phase, Phase::Connecting | Phase::Open);
        if live && self.closing.is_none() {
            let action = if self.datagram { A_DISCARD } else { A_RESET };
            self.finish(reason, action);
        }
    }

    /// Time passed: past the linger deadline, a `close()` gives up and resets.
    pub fn timeout(&mut self, now: Instant) {
        let live = matches!(self.phase, Phase::Connecting | Phase::Open);
        match self.closing {
            Some(deadline) if live && now >= deadline => {
                self.finish(Reason::LingerTimeout, A_RESET);
            }
            _ => {}
        }
    }

    // ----- the rules -----

    /// Rule 1: the FIN follows the last accepted byte, never precedes it.
    fn flush_fin(&mut self) {
        if self.phase == Phase::Open && self.send == SendSide::Draining && self.queued == 0 {
            self.send = SendSide::Finished;
            self.actions |= A_FIN;
        }
    }

    /// Rule 3: both directions done and all input delivered: close by itself.
    fn maybe_finish(&mut self) {
        if self.phase == Phase::Open
            && self.send == SendSide::Finished
            && self.recv == RecvSide::Finished
        {
            let reason = match self.began {
                Some(Side::Peer) => Reason::ByPeer,
                _ => Reason::Normal,
            };
            self.finish(reason, A_RELEASE);
        }
    }

    /// Rule 4: one terminal transition, one Closed event, after all others.
    fn finish(&mut self, reason: Reason, action: u8) {
        self.phase = Phase::Done(reason);
        self.drop_held();
        // A terminal action replaces draining and timers. A FIN decided in the
        // same step survives a graceful end (it must precede the release), never
        // an abort or a failure: a dead connection is not sent one.
        let fin = if reason.is_graceful() {
            self.actions & A_FIN
        } else {
            0
        };
        self.actions = fin | action;
        self.events |= E_CLOSED;
    }
}

/// `now + linger`; a linger too long to represent is as good as forever (an
/// instant at least half as far that fits), never as good as zero.
fn deadline(now: Instant, mut linger: Duration) -> Instant {
    loop {
        if let Some(deadline) = now.checked_add(linger) {
            return deadline;
        }
        linger /= 2;
    }
}

fn lowest_bit(bits: u8) -> Option<u8> {
    (bits != 0).then(|| bits & bits.wrapping_neg())
}
