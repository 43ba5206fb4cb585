//! The connection state machine: how a socket begins, half-closes and ends.
//!
//! A [`Lifecycle`] knows nothing of sockets. The driver tells it what the caller
//! asked for (commands such as [`Lifecycle::shutdown`]) and what the wire did
//! (inputs such as [`Lifecycle::wrote`] or [`Lifecycle::eof`]); the machine answers
//! with [`Action`]s for the driver to carry out and [`Event`]s for the user, both
//! drained with [`Lifecycle::poll_action`] and [`Lifecycle::poll_event`], and with
//! queries ([`Lifecycle::holds_output`], [`Lifecycle::stage`], ...) for the
//! decisions the driver must take between them. Bytes are only counted here,
//! never held, so the machine stays a few dozen bytes and the accounting behind
//! `Closed.unsent` / `Closed.unread` has one owner.
//!
//! # Phases
//!
//! A socket is new (or bound), listening, connecting, open or closed; an open
//! one has two directions, ours and the peer's, each open, ending or ended, and
//! [`State`] is derived from them. Connecting has sub-phases, the
//! [`Handshake`] the socket waits for, in this order (absent layers skipped):
//!
//! 1. [`Handshake::Transport`]: the transport is not up yet (TCP's handshake).
//!    [`Lifecycle::connected`] ends it; from then [`Lifecycle::wire_up`] is true.
//! 2. [`Handshake::Security`]: with a security layer
//!    ([`Lifecycle::set_security`]), its handshake (TLS) runs over the wire;
//!    [`Lifecycle::secured`] ends it.
//! 3. [`Handshake::Message`]: with a message layer ([`Lifecycle::set_message`]),
//!    the framed HELLO/WELCOME exchange; [`Lifecycle::admitted`] ends it (the
//!    lifecycle calls it itself for a WELCOME, see [`Lifecycle::frame_in`] and
//!    [`Lifecycle::frame_out`]). A server may answer [`Lifecycle::reject`]
//!    instead: the connection then ends gracefully without ever getting a user.
//!
//! A connection taken from a listener starts with its transport up
//! ([`Lifecycle::accepted`], [`Lifecycle::accepted_with`]). An open connection
//! can also add security later ([`Lifecycle::start_security`], StartTLS): its
//! state stays [`State::Connected`], but its output is held until
//! [`Lifecycle::secured`].
//!
//! # Who hears what
//!
//! - [`Event::Connected`]: the connecting side only, once every handshake is done.
//! - [`Event::Accepted`]: an accepted connection gets its user: at once for a
//!   plain or security-only one (a TLS server's connection is announced while
//!   its handshake runs), at admission for a message-layer server (nobody
//!   exists to tell before its HELLO is admitted).
//! - [`Event::Secured`]: a security handshake is done. A client hears it before
//!   Connected; a message-layer server, whose TLS handshake ends before its
//!   user exists, hears it right after Accepted.
//! - [`Event::PeerShutdown`], then [`Event::Closed`], always last.
//!
//! # Rules (DESIGN section 4)
//!
//! 1. Nothing is accepted for sending after `shutdown`/`close`, and the FIN goes out
//!    only after every accepted byte was written (and every handshake is done).
//! 2. The peer's end is reported ([`Event::PeerShutdown`]) only once its last byte
//!    was delivered; [`State::NoRecv`] shows as soon as the FIN is known (a FIN
//!    that comes during a handshake shows as soon as the connection opens). With
//!    no recv pending, the driver probes the kernel when
//!    [`Lifecycle::wants_end_probe`] says so and reports
//!    [`Lifecycle::nothing_left`].
//! 3. Both directions finished and all input delivered: the machine closes itself.
//!    Our direction is finished only once the FIN is on the wire
//!    ([`Lifecycle::fin_sent`]), so a connection that dies while the FIN is
//!    being sent ends with the failure, not a graceful reason.
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
//! life.fin_sent(); // shutdown(SHUT_WR) succeeded
//! life.eof(); // the peer's FIN after our own: we began, so the reason is Normal
//! assert_eq!(life.poll_action(), Some(Action::Release));
//! assert_eq!(life.poll_event(), Some(Event::Closed(Reason::Normal)));
//! assert_eq!(life.state(), State::NotConnected);
//! ```
//!
//! A TLS client speaking the framed protocol:
//!
//! ```
//! use tether_proto::{Event, FrameType, Handshake, Lifecycle, Role, Stage, State};
//!
//! let mut life = Lifecycle::new();
//! life.set_security().unwrap();
//! life.set_message(Role::Client).unwrap();
//! life.connect().unwrap();
//! life.frame_out(FrameType::Hello).unwrap(); // queued first, goes once secured
//! assert_eq!((life.handshake(), life.stage()), (Some(Handshake::Transport), Some(Stage::Connecting)));
//! life.connected();
//! assert_eq!((life.handshake(), life.stage()), (Some(Handshake::Security), Some(Stage::Handshaking)));
//! assert!(life.wire_up() && life.holds_output());
//! life.secured();
//! assert_eq!(life.poll_event(), Some(Event::Secured));
//! assert_eq!(life.handshake(), Some(Handshake::Message));
//! life.frame_in(FrameType::Welcome).unwrap(); // the admission
//! assert_eq!(life.poll_event(), Some(Event::Connected));
//! assert_eq!((life.state(), life.stage(), life.holds_output()), (State::Connected, Some(Stage::Open), false));
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use crate::frame::{FrameError, FrameType, Order, Role};
use crate::timeouts::Stage;

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
    /// Give a socket a security layer (TLS) before it connects.
    SetSecurity,
    /// Give a socket a message layer (framing) before it connects.
    SetFraming,
    /// Answer a client's HELLO with REJECT.
    Reject,
    /// Set a listener's admission limit.
    MaxConnections,
    /// Set an option on the socket's descriptor (keepalive, user timeout).
    SetOption,
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
            Op::SetSecurity => "set_security",
            Op::SetFraming => "set_framing",
            Op::Reject => "reject",
            Op::MaxConnections => "max_connections",
            Op::SetOption => "set_option",
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
            Op::SetSecurity => "add a security layer to",
            Op::SetFraming => "set framing on",
            Op::MaxConnections => "set max connections on",
            Op::SetOption => "set option on",
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
    /// Half-close the sending side (FIN; over TLS, close_notify first): every
    /// accepted byte has been written. Report [`Lifecycle::fin_sent`] once it is
    /// on the wire, or [`Lifecycle::fail`] if that failed.
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
    /// An accepted connection has its user (see the [module documentation](self)
    /// for when). Accepted connections only.
    Accepted,
    /// A security handshake is done (the first one, or a StartTLS upgrade).
    Secured,
    /// The connection we dialed came up: every handshake is done. Connecting
    /// side only.
    Connected,
    /// The peer finished sending, after its last byte was delivered.
    PeerShutdown,
    /// The socket is closed; always the last event.
    Closed(Reason),
}

/// What a connecting socket waits for, as [`Lifecycle::handshake`] reports it.
/// The handshakes run in this order; a layer the socket does not have is
/// skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Handshake {
    /// The transport itself (TCP's handshake): nothing can be written yet.
    Transport,
    /// The security layer's handshake (TLS), over the transport.
    Security,
    /// The message layer's handshake (the framed HELLO, then WELCOME or
    /// REJECT), over the security layer if there is one.
    Message,
}

impl Handshake {
    /// The snake_case name used in logs and JSON events (`security`).
    pub fn as_str(self) -> &'static str {
        match self {
            Handshake::Transport => "transport",
            Handshake::Security => "security",
            Handshake::Message => "message",
        }
    }
}

impl fmt::Display for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Shutdown asked; the FIN waits for the queue to drain (or the handshakes).
    Draining,
    /// [`Action::SendFin`] asked; waiting for [`Lifecycle::fin_sent`]. Not yet
    /// finished: the FIN may still fail to go out, and then the end is that
    /// failure, not a graceful one.
    FinPending,
    /// FIN on the wire.
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
// release; Accepted before Secured before Connected before PeerShutdown before
// Closed), so no queue is needed. Events that must come in the other order are
// never pending together: the Secured of a message-layer server, whose TLS
// handshake ends before its user exists, is held back (not set) until its
// admission sets Accepted, so the two come out as Accepted, Secured.
const A_TIMER: u8 = 1;
const A_DRAIN: u8 = 1 << 1;
const A_FIN: u8 = 1 << 2;
const A_RESET: u8 = 1 << 3;
const A_DISCARD: u8 = 1 << 4;
const A_RELEASE: u8 = 1 << 5;
const E_ACCEPTED: u8 = 1;
const E_SECURED: u8 = 1 << 1;
const E_CONNECTED: u8 = 1 << 2;
const E_PEER_SHUTDOWN: u8 = 1 << 3;
const E_CLOSED: u8 = 1 << 4;

// Handshake progress and other facts, in one byte.
/// The connection has a security layer (configured, or a StartTLS upgrade).
const F_SECURITY: u8 = 1;
/// Its security handshake is done.
const F_SECURED: u8 = 1 << 1;
/// The transport is up: bytes may be written.
const F_WIRE: u8 = 1 << 2;
/// The message handshake is done.
const F_ADMITTED: u8 = 1 << 3;
/// Taken from a listener: its user hears Accepted, never Connected.
const F_SERVER: u8 = 1 << 4;
/// A recv is pending (rule 2 without a recv applies only when none is).
const F_RECV: u8 = 1 << 5;
/// A datagram socket: no connection to set up or tear down.
const F_DATAGRAM: u8 = 1 << 6;

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
    /// `F_*` bits.
    flags: u8,
    /// The frame order, with a message layer.
    order: Option<Order>,
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
            flags: 0,
            order: None,
        }
    }

    /// A datagram (UDP) socket. It is open as soon as it is bound, `connect` only
    /// fixes its peer, and every way of ending it is a discard: there is nobody
    /// to tell, so `shutdown` and `listen` are refused and `close`/`reset` end it
    /// with [`Reason::Discarded`].
    pub fn datagram() -> Self {
        Lifecycle {
            flags: F_DATAGRAM,
            ..Self::new()
        }
    }

    /// True for a datagram socket.
    #[inline]
    pub fn is_datagram(&self) -> bool {
        self.has(F_DATAGRAM)
    }

    /// A plain connection taken from a listener: already [`State::Connected`],
    /// with [`Event::Accepted`] pending (never [`Event::Connected`]).
    pub fn accepted() -> Self {
        Self::accepted_with(false, false)
    }

    /// A connection taken from a listener, with a security layer (TLS server)
    /// and/or a message layer (framed server) whose handshakes are still to
    /// run: [`State::Connecting`] with its transport up, waiting for
    /// [`Handshake::Security`] or [`Handshake::Message`]. Without a message
    /// layer [`Event::Accepted`] is pending at once (the user exists while the
    /// handshake runs); with one, it comes at the admission. Without either
    /// this is [`Lifecycle::accepted`].
    pub fn accepted_with(security: bool, message: bool) -> Self {
        let mut l = Self::new();
        l.flags = F_WIRE | F_SERVER | if security { F_SECURITY } else { 0 };
        if message {
            l.order = Some(Order::new(Role::Server));
        } else {
            l.events = E_ACCEPTED;
        }
        l.phase = if security || message {
            Phase::Connecting
        } else {
            Phase::Open
        };
        l
    }

    #[inline]
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    #[inline]
    fn live(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Open)
    }

    /// The public state.
    #[inline]
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
    #[inline]
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
    #[inline]
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
    #[inline]
    pub fn wants_input(&self) -> bool {
        self.live() && self.recv != RecvSide::Finished
    }

    /// True once the peer's FIN is known (its last bytes may still wait).
    #[inline]
    pub fn fin_seen(&self) -> bool {
        self.recv != RecvSide::Open
    }

    /// True while `close()` (or a server's [`reject`](Self::reject)) drains the
    /// peer: input is to be dropped, not delivered.
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.closing.is_some()
    }

    /// The handshake the socket waits for: on a connecting socket (also one
    /// being closed meanwhile, whose FIN waits for it) the first one not done,
    /// and [`Handshake::Security`] during a StartTLS upgrade of an open one.
    /// `None` when no handshake runs.
    #[inline]
    pub fn handshake(&self) -> Option<Handshake> {
        let securing = self.has(F_SECURITY) && !self.has(F_SECURED);
        match self.phase {
            Phase::Connecting if !self.has(F_WIRE) => Some(Handshake::Transport),
            Phase::Connecting | Phase::Open if securing => Some(Handshake::Security),
            Phase::Connecting if self.order.is_some() && !self.has(F_ADMITTED) => {
                Some(Handshake::Message)
            }
            _ => None,
        }
    }

    /// True while bytes may be written: the transport is up, even while the
    /// handshakes over it run. (Which bytes: see [`holds_output`](Self::holds_output).)
    #[inline]
    pub fn wire_up(&self) -> bool {
        match self.phase {
            Phase::Open => true,
            Phase::Connecting => self.has(F_WIRE),
            _ => false,
        }
    }

    /// True while the user's output must wait in the queue: the transport is not
    /// up, the security handshake (the first one or a StartTLS upgrade) is not
    /// done, or a client's message handshake is not done (its messages wait for
    /// WELCOME). The handshakes' own bytes go out meanwhile: TLS records once
    /// [`wire_up`](Self::wire_up), a client's HELLO once the handshake is
    /// [`Handshake::Message`]. A message-layer server's user exists only after
    /// admission, so its handshake holds nothing.
    #[inline]
    pub fn holds_output(&self) -> bool {
        let securing = self.has(F_SECURITY) && !self.has(F_SECURED);
        match self.phase {
            Phase::Connecting => {
                let awaiting_welcome =
                    !self.has(F_SERVER) && self.order.is_some() && !self.has(F_ADMITTED);
                !self.has(F_WIRE) || securing || awaiting_welcome
            }
            Phase::Open => securing,
            _ => false,
        }
    }

    /// Which timeout applies now: [`Stage::Connecting`] until the transport is
    /// up, [`Stage::Handshaking`] while a handshake runs over it (a StartTLS
    /// upgrade included), [`Stage::Open`] on an open connection. `None` when
    /// none does: not connected, listening, closing (the linger deadline is the
    /// close's own), closed. The driver restarts the stage's clock whenever the
    /// answer changes.
    #[inline]
    pub fn stage(&self) -> Option<Stage> {
        if self.closing.is_some() {
            return None;
        }
        match (self.phase, self.handshake()) {
            (Phase::Connecting, Some(Handshake::Transport)) => Some(Stage::Connecting),
            (Phase::Connecting | Phase::Open, Some(_)) => Some(Stage::Handshaking),
            (Phase::Open, None) => Some(Stage::Open),
            _ => None,
        }
    }

    /// True while a recv is pending (between [`recv`](Self::recv) and its
    /// answer: a delivery, the peer's end, or the close).
    #[inline]
    pub fn recv_pending(&self) -> bool {
        self.has(F_RECV)
    }

    /// Rule 2 without a recv: should the driver look whether anything is left
    /// to read before the peer's FIN? True on an open connection whose FIN is
    /// known but not reached, with no recv pending (a recv would reach it
    /// itself), nothing held, not draining (a close ends it its own way), no
    /// handshake running (a FIN then is the handshake's failure), and no message
    /// layer (a framed peer's end is its FAREWELL, read by a recv). Answer with
    /// [`nothing_left`](Self::nothing_left) when nothing is.
    #[inline]
    pub fn wants_end_probe(&self) -> bool {
        self.phase == Phase::Open
            && self.recv == RecvSide::FinKnown
            && !self.has(F_RECV)
            && self.held == 0
            && self.closing.is_none()
            && self.order.is_none()
            && !self.holds_output()
    }

    /// True when no action and no event waits to be polled: the driver has
    /// nothing to carry out or report (a cheap check for its hot path).
    #[inline]
    pub fn is_quiet(&self) -> bool {
        self.actions == 0 && self.events == 0
    }

    /// The next action for the driver, in the order they must be carried out.
    #[inline]
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
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        let bit = lowest_bit(self.events)?;
        self.events &= !bit;
        Some(match bit {
            E_ACCEPTED => Event::Accepted,
            E_SECURED => Event::Secured,
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
            Phase::Idle if self.is_datagram() => {
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

    /// Give the connection a security layer (TLS): once its transport is up,
    /// it waits for [`secured`](Self::secured). Only before connecting or
    /// listening, once, and not on a datagram socket (its bind opens it with no
    /// peer to run a handshake with).
    pub fn set_security(&mut self) -> Result<(), Refused> {
        if !self.configurable() || self.has(F_SECURITY) {
            return Err(self.refuse(Op::SetSecurity));
        }
        self.flags |= F_SECURITY;
        Ok(())
    }

    /// Give the connection a message layer (framing) in which our side takes
    /// `role` (a socket that connects is the [`Role::Client`]): after the
    /// transport and any security layer it waits for the admission, and its
    /// frames are checked by [`frame_in`](Self::frame_in) and
    /// [`frame_out`](Self::frame_out). Only before connecting or listening,
    /// once, and not on a datagram socket.
    pub fn set_message(&mut self, role: Role) -> Result<(), Refused> {
        if !self.configurable() || self.order.is_some() {
            return Err(self.refuse(Op::SetFraming));
        }
        self.order = Some(Order::new(role));
        Ok(())
    }

    fn configurable(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Bound) && !self.is_datagram()
    }

    /// The socket listens.
    pub fn listen(&mut self) -> Result<(), Refused> {
        match self.phase {
            Phase::Idle | Phase::Bound if !self.is_datagram() => {
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
            Phase::Idle | Phase::Open if self.is_datagram() => {
                self.phase = Phase::Connecting;
                self.flags &= !F_WIRE;
                Ok(())
            }
            Phase::Idle | Phase::Bound => {
                self.phase = Phase::Connecting;
                Ok(())
            }
            _ => Err(self.refuse(Op::Connect)),
        }
    }

    /// Upgrade an open connection to TLS (StartTLS). Only in
    /// [`State::Connected`] (both directions open, not closing) on a stream
    /// that has no security layer yet. The state stays `Connected`, but
    /// [`holds_output`](Self::holds_output) is true (and a pending FIN waits)
    /// until [`secured`](Self::secured). Bytes accepted before stay accepted:
    /// they go out ahead of the handshake.
    pub fn start_security(&mut self) -> Result<(), Refused> {
        if self.state() != State::Connected || self.is_datagram() || self.has(F_SECURITY) {
            return Err(self.refuse(Op::StartTls));
        }
        self.flags = (self.flags | F_SECURITY) & !F_SECURED;
        Ok(())
    }

    /// May the user ask for received bytes now? Only on a connection whose peer
    /// has not ended and that is not being closed.
    #[inline]
    pub fn check_recv(&self) -> Result<(), Refused> {
        if self.live() && self.recv != RecvSide::Finished && self.closing.is_none() {
            Ok(())
        } else {
            Err(self.refuse(Op::Recv))
        }
    }

    /// A recv is pending: allowed where [`check_recv`](Self::check_recv) allows
    /// it. It stays pending until [`delivered`](Self::delivered), the peer's
    /// end ([`eof`](Self::eof)) or the close. Asking again while one is pending
    /// is not refused here (the driver has its own error for that; see
    /// [`recv_pending`](Self::recv_pending)).
    #[inline]
    pub fn recv(&mut self) -> Result<(), Refused> {
        self.check_recv()?;
        self.flags |= F_RECV;
        Ok(())
    }

    /// Accept `n` bytes for sending. Allowed while connecting (they wait) and on an
    /// open connection until `shutdown`/`close`.
    #[inline]
    pub fn send(&mut self, n: usize) -> Result<(), Refused> {
        self.check_send()?;
        self.queued += n as u64;
        Ok(())
    }

    /// Would [`send`](Self::send) accept bytes now?
    #[inline]
    pub fn check_send(&self) -> Result<(), Refused> {
        if self.live() && self.send == SendSide::Open && self.closing.is_none() {
            Ok(())
        } else {
            Err(self.refuse(Op::Send))
        }
    }

    /// Half-close: once every accepted byte is written (and every handshake is
    /// done), send the FIN.
    pub fn shutdown(&mut self) -> Result<(), Refused> {
        if !self.live()
            || self.send != SendSide::Open
            || self.closing.is_some()
            || self.is_datagram()
        {
            return Err(self.refuse(Op::Shutdown));
        }
        self.began.get_or_insert(Side::Us);
        self.send = SendSide::Draining;
        self.flush_fin();
        Ok(())
    }

    /// Close gracefully: send what is queued, then the FIN, then drain the peer
    /// until its FIN; past `now + linger`, reset instead.
    pub fn close(&mut self, now: Instant, linger: Duration) -> Result<(), Refused> {
        if self.is_datagram() {
            return self.abort(Op::Close, Reason::Discarded, A_DISCARD);
        }
        match self.phase {
            Phase::Idle | Phase::Bound | Phase::Listening => {
                self.finish(Reason::Normal, A_RELEASE);
                Ok(())
            }
            Phase::Connecting | Phase::Open if self.closing.is_none() => {
                self.begin_close(now, linger);
                Ok(())
            }
            _ => Err(self.refuse(Op::Close)),
        }
    }

    /// A message-layer server answers the client's HELLO with REJECT: the
    /// connection ends gracefully without ever getting a user. The REJECT frame
    /// must have passed [`frame_out`](Self::frame_out) and its bytes
    /// [`send`](Self::send) first; then, as for `close`, the FIN follows them
    /// and the peer is drained until its end or `now + linger`. No
    /// [`Event::Accepted`] (nor Secured) ever comes; the reason is
    /// [`Reason::Normal`]. Refused anywhere else: not a server waiting for its
    /// message handshake, or no REJECT went out.
    pub fn reject(&mut self, now: Instant, linger: Duration) -> Result<(), Refused> {
        let rejected = self
            .order
            .as_ref()
            .is_some_and(|o| o.role() == Role::Server && o.sent_reject());
        let waiting = self.handshake() == Some(Handshake::Message) && self.has(F_SERVER);
        if !(rejected && waiting && self.phase == Phase::Connecting && self.closing.is_none()) {
            return Err(self.refuse(Op::Reject));
        }
        // The handshake is over, answered no: what is left is a graceful
        // close, with nobody to tell.
        self.phase = Phase::Open;
        self.begin_close(now, linger);
        Ok(())
    }

    fn begin_close(&mut self, now: Instant, linger: Duration) {
        self.began.get_or_insert(Side::Us);
        self.closing = Some(deadline(now, linger));
        self.actions |= A_TIMER;
        // A recv pending now is never answered, and bytes held for it are
        // dropped: the user can no longer get them.
        self.flags &= !F_RECV;
        self.dropped += std::mem::take(&mut self.held);
        if self.recv != RecvSide::Finished {
            self.actions |= A_DRAIN;
        }
        if self.send == SendSide::Open {
            self.send = SendSide::Draining;
        }
        self.flush_fin();
    }

    /// Abort with RST now; queued bytes are counted as unsent.
    pub fn reset(&mut self) -> Result<(), Refused> {
        if self.is_datagram() {
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

    /// The transport is up (the connect completed). Without further layers the
    /// connection opens ([`Event::Connected`]); otherwise the next handshake
    /// begins. Ignored unless waiting for [`Handshake::Transport`].
    pub fn connected(&mut self) {
        if self.phase == Phase::Connecting && !self.has(F_WIRE) {
            self.flags |= F_WIRE;
            self.advance();
        }
    }

    /// The security handshake is done: [`Event::Secured`], and the next
    /// handshake begins or the connection opens (a StartTLS upgrade just lets
    /// its output go). A message-layer server's Secured waits for its
    /// admission, when its user exists. Ignored unless waiting for
    /// [`Handshake::Security`].
    pub fn secured(&mut self) {
        if self.handshake() != Some(Handshake::Security) {
            return;
        }
        self.flags |= F_SECURED;
        let no_user_yet = self.has(F_SERVER) && self.order.is_some() && !self.has(F_ADMITTED);
        if !no_user_yet {
            self.events |= E_SECURED;
        }
        self.advance();
        // A FIN held back by an upgrade may go now.
        self.flush_fin();
    }

    /// The message handshake is done: a client received WELCOME, a server
    /// admitted the client's HELLO. A server's connection gets its user
    /// ([`Event::Accepted`], then the held-back [`Event::Secured`] if it has a
    /// security layer); a client's opens ([`Event::Connected`]). With framing,
    /// [`frame_in`](Self::frame_in) (a client's WELCOME) and
    /// [`frame_out`](Self::frame_out) (a server's WELCOME) call this
    /// themselves. Ignored unless waiting for [`Handshake::Message`].
    pub fn admitted(&mut self) {
        if self.handshake() != Some(Handshake::Message) {
            return;
        }
        self.flags |= F_ADMITTED;
        if self.has(F_SERVER) {
            self.events |= E_ACCEPTED;
            if self.has(F_SECURITY) {
                self.events |= E_SECURED;
            }
        }
        self.advance();
    }

    /// A frame received from the peer, checked against the frame order. A
    /// violation is the peer's protocol error: the connection is reset
    /// ([`Reason::ProtocolError`]) and the error says which rule it broke. A
    /// client's WELCOME is its admission ([`admitted`](Self::admitted) is
    /// called here); a client's REJECT ends it with [`Reason::ConnectRejected`]
    /// (released: the server closes after it). A FAREWELL only passes the
    /// check: the driver reports [`eof`](Self::eof) once it has also checked
    /// that nothing follows it. Without a message layer every frame is an
    /// error, and nothing changes (a driver bug, not the peer's).
    pub fn frame_in(&mut self, kind: FrameType) -> Result<(), FrameError> {
        let Some(order) = self.order.as_mut() else {
            return Err(not_framed(kind));
        };
        if let Err(e) = order.check(kind) {
            self.violated();
            return Err(e);
        }
        match (order.role(), kind) {
            (Role::Client, FrameType::Welcome) => self.admitted(),
            (Role::Client, FrameType::Reject) if self.live() => {
                self.finish(Reason::ConnectRejected, A_RELEASE)
            }
            _ => {}
        }
        Ok(())
    }

    /// A frame of ours accepted for sending, in queue order, checked against
    /// the frame order ([`Order::check_queued`]: a client's DATA and FAREWELL
    /// may be queued before WELCOME, since [`holds_output`](Self::holds_output)
    /// holds them until it came). An error is a bug of the caller and changes
    /// nothing. A server's WELCOME is its admission
    /// ([`admitted`](Self::admitted) is called here); its REJECT is followed by
    /// [`reject`](Self::reject).
    pub fn frame_out(&mut self, kind: FrameType) -> Result<(), FrameError> {
        let Some(order) = self.order.as_mut() else {
            return Err(not_framed(kind));
        };
        order.check_queued(kind)?;
        if order.role() == Role::Server && kind == FrameType::Welcome {
            self.admitted();
        }
        Ok(())
    }

    /// `n` queued bytes reached the kernel.
    #[inline]
    pub fn wrote(&mut self, n: usize) {
        // Once closed, `unsent` is final (it was reported with Closed).
        if !self.live() {
            return;
        }
        self.queued = self.queued.saturating_sub(n as u64);
        self.flush_fin();
    }

    /// The FIN asked by [`Action::SendFin`] is on the wire (over TLS, after
    /// close_notify was written): our direction is finished, and if the peer's
    /// is too, the socket closes gracefully. Ignored unless a SendFin was
    /// polled and not yet answered. If sending the FIN failed, report
    /// [`fail`](Self::fail) instead.
    pub fn fin_sent(&mut self) {
        if self.live() && self.send == SendSide::FinPending && self.actions & A_FIN == 0 {
            self.send = SendSide::Finished;
            self.maybe_finish();
        }
    }

    /// `n` bytes were read from the kernel: held for the user, or dropped while
    /// `close()` drains.
    #[inline]
    pub fn read(&mut self, n: usize) {
        // No connection, nothing to read; once closed, `unread` is final.
        if !self.live() {
            return;
        }
        if self.closing.is_some() {
            self.dropped += n as u64;
        } else {
            self.held += n as u64;
        }
    }

    /// `n` held bytes were handed to the user, answering the pending recv.
    #[inline]
    pub fn delivered(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n as u64);
        self.flags &= !F_RECV;
    }

    /// Held bytes will never be delivered (an Exact recv cut short); count them
    /// as unread.
    pub fn drop_held(&mut self) {
        self.dropped += std::mem::take(&mut self.held);
    }

    /// The peer's FIN is known (the poller said so) though bytes before it may
    /// still wait in the kernel. Remembered during a handshake carried over the
    /// wire, so the connection shows [`State::NoRecv`] as soon as it opens.
    pub fn fin_known(&mut self) {
        if self.wire_up() && self.recv == RecvSide::Open {
            self.began.get_or_insert(Side::Peer);
            self.recv = RecvSide::FinKnown;
        }
    }

    /// A read found the end of the peer's stream: every byte before its FIN was
    /// read. Bytes still held for an unfinished recv can never complete it and are
    /// counted as unread. (During a handshake the end of the stream is the
    /// handshake's failure, which the driver reports with [`fail`](Self::fail);
    /// it is ignored here.)
    pub fn eof(&mut self) {
        if self.phase != Phase::Open || self.recv == RecvSide::Finished {
            return;
        }
        self.began.get_or_insert(Side::Peer);
        self.recv = RecvSide::Finished;
        self.flags &= !F_RECV;
        self.actions &= !A_DRAIN;
        self.drop_held();
        if self.closing.is_none() {
            self.events |= E_PEER_SHUTDOWN;
        }
        self.maybe_finish();
    }

    /// The driver probed, as [`wants_end_probe`](Self::wants_end_probe) asked,
    /// and found nothing left before the peer's FIN (over TLS: the peer's
    /// close_notify was read and no plaintext waits): rule 2 ends the peer's
    /// direction now ([`eof`](Self::eof)) rather than at a recv that may never
    /// come. Ignored when the probe is not wanted (any more).
    pub fn nothing_left(&mut self) {
        if self.wants_end_probe() {
            self.eof();
        }
    }

    /// The socket failed with `reason` (an OS error while connecting, binding,
    /// listening, a handshake failing, sending the FIN failing, or a connection
    /// lost under us).
    pub fn fail(&mut self, reason: Reason) {
        if !matches!(self.phase, Phase::Done(_)) {
            self.finish(reason, A_RELEASE);
        }
    }

    /// The peer broke the protocol spoken over the connection: reset it, for
    /// nothing more it sends can be trusted.
    pub fn violated(&mut self) {
        if self.live() {
            self.finish(Reason::ProtocolError, A_RESET);
        }
    }

    /// A timeout of the connection passed (connect, handshake, idle): abort it —
    /// reset a stream, so the peer knows it was not a graceful end; a datagram
    /// socket has nobody to tell and is discarded. A closing connection is the
    /// linger deadline's to end.
    pub fn expire(&mut self, reason: Reason) {
        if self.live() && self.closing.is_none() {
            let action = if self.is_datagram() {
                A_DISCARD
            } else {
                A_RESET
            };
            self.finish(reason, action);
        }
    }

    /// Time passed: past the linger deadline, a `close()` gives up and resets.
    pub fn timeout(&mut self, now: Instant) {
        match self.closing {
            Some(deadline) if self.live() && now >= deadline => {
                self.finish(Reason::LingerTimeout, A_RESET);
            }
            _ => {}
        }
    }

    // ----- the rules -----

    /// Every handshake done: the connection opens. Only the side that
    /// connected hears Connected; an accepted one heard Accepted already.
    fn advance(&mut self) {
        if self.phase == Phase::Connecting && self.handshake().is_none() {
            self.phase = Phase::Open;
            if !self.has(F_SERVER) {
                self.events |= E_CONNECTED;
            }
            self.flush_fin();
        }
    }

    /// Rule 1: the FIN follows the last accepted byte, never precedes it, and
    /// waits for the handshakes (it would otherwise cut them off).
    #[inline]
    fn flush_fin(&mut self) {
        if self.phase == Phase::Open
            && !self.holds_output()
            && self.send == SendSide::Draining
            && self.queued == 0
        {
            self.send = SendSide::FinPending;
            self.actions |= A_FIN;
        }
    }

    /// Rule 3: both directions done and all input delivered: close by itself.
    #[inline]
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
        self.flags &= !F_RECV;
        // A terminal action replaces draining, timers and a FIN not yet carried
        // out: a graceful end comes only after `fin_sent`, so a FIN still
        // pending here belongs to an abort or a failure, and a dead connection
        // is not sent one.
        self.actions = action;
        self.events |= E_CLOSED;
    }
}

/// The error for a frame on a connection without a message layer.
fn not_framed(kind: FrameType) -> FrameError {
    FrameError::OutOfOrder {
        got: kind,
        rule: "on a connection without a message layer: it carries no frames",
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

#[inline]
fn lowest_bit(bits: u8) -> Option<u8> {
    (bits != 0).then(|| bits & bits.wrapping_neg())
}
