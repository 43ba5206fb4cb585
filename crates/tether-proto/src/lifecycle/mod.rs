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
//! # Rules
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

mod commands;
mod inputs;
mod rules;
mod vocabulary;

use std::time::Instant;

use crate::frame::{Order, Role};
use crate::timeouts::Stage;

pub use vocabulary::{Action, Event, Handshake, Op, Reason, Refused, State};

use rules::lowest_bit;

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

    /// A datagram socket's per-peer association taken by a UDP listener: open at
    /// once ([`State::Connected`]) or, with a security layer (DTLS), connecting
    /// while its handshake runs ([`Handshake::Security`]). Its user exists from
    /// the start: [`Event::Accepted`] is pending. It ends as a datagram socket
    /// does (see [`Lifecycle::datagram`]), gracefully only once secured.
    pub fn datagram_accepted(security: bool) -> Self {
        let mut l = Self::accepted_with(security, false);
        l.flags |= F_DATAGRAM;
        l
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
}
