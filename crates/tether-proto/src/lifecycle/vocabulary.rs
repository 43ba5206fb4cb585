//! The words of the lifecycle: states, reasons, operations, refusals, and
//! what the machine asks of the driver and tells the user.

use std::fmt;
use std::time::Instant;

#[cfg(doc)]
use super::Lifecycle;

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
    /// The host name to connect to did not resolve to any address; the
    /// resolver's error is in `Closed::error`.
    ResolveFailed,
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
            Reason::ResolveFailed => "resolve_failed",
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
    /// An accepted connection has its user (see the [module documentation](crate::lifecycle)
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
