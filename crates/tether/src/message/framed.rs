//! The message layer (DESIGN section 5) over any stream transport: message
//! boundaries, connect data with an admission decision that sees it, and
//! disconnect data both ways.
//!
//! The codec and the order rules are `tether_proto::frame`'s; this file moves
//! frames between them and the byte stream (plain or TLS) and turns them into
//! lifecycle steps: a client is `Connecting` until WELCOME, a server's
//! connection has no user until its HELLO is admitted, a FAREWELL is the
//! peer's end, and a broken rule resets the connection (`ProtocolError`).

use tether_proto::frame::{self, Decoder, FrameError, FrameType, Order, Role, HEADER_LEN};

use crate::transport::send_queue::SendQueue;
use crate::SocketId;

/// Where a framed connection is in its own handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A server's connection, waiting for the client's HELLO.
    AwaitHello,
    /// A client, waiting for WELCOME or REJECT.
    AwaitWelcome,
    /// Admitted: messages flow.
    Open,
}

/// The message layer's state on one socket (or, on a listener, the settings
/// its connections inherit).
pub(crate) struct Framed {
    pub(crate) decoder: Decoder,
    /// The decoder's limit, kept here too: the decoder is out of its place
    /// while frames are read, and a send from a callback run then is bounded
    /// by this.
    pub(crate) max_payload: usize,
    pub(crate) order: Order,
    pub(crate) phase: Phase,
    /// Encoded bytes read while no recv wanted a message.
    pub(crate) stash: Vec<u8>,
    /// Messages sent before admission; WELCOME releases them.
    pub(crate) held: Option<Box<SendQueue>>,
    /// The listener that took this connection, until its HELLO is decided.
    pub(crate) listener: Option<SocketId>,
    /// A client's connect data, until it goes out as HELLO.
    pub(crate) hello: Option<Vec<u8>>,
    /// The peer's last words: its FAREWELL data, or its REJECT reason.
    pub(crate) farewell: Option<Vec<u8>>,
    /// The accept data of the server's WELCOME.
    pub(crate) welcome: Option<Vec<u8>>,
}

impl Framed {
    /// A socket to be connected (or a listener), with the client's connect data.
    pub(crate) fn new(hello: &[u8], max_payload: usize) -> Framed {
        Framed {
            decoder: Decoder::new(max_payload),
            max_payload,
            order: Order::new(Role::Client),
            phase: Phase::AwaitWelcome,
            stash: Vec::new(),
            held: None,
            listener: None,
            hello: Some(hello.to_vec()),
            farewell: None,
            welcome: None,
        }
    }

    /// A connection a framed listener took, waiting for its HELLO.
    pub(crate) fn accepted(listener: SocketId, max_payload: usize) -> Framed {
        Framed {
            order: Order::new(Role::Server),
            phase: Phase::AwaitHello,
            listener: Some(listener),
            hello: None,
            ..Framed::new(&[], max_payload)
        }
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub(crate) fn is_server(&self) -> bool {
        self.order.role() == Role::Server
    }

    /// Frames are read before any recv while the handshake runs.
    pub(crate) fn handshaking(&self) -> bool {
        self.phase != Phase::Open
    }

    /// A client waiting for the server's answer to its HELLO.
    pub(crate) fn awaits_welcome(&self) -> bool {
        self.phase == Phase::AwaitWelcome
    }

    /// Whether the next frame is wanted now.
    pub(crate) fn wants_frame(&self, recv_pending: bool) -> bool {
        self.handshaking() || recv_pending
    }
}

/// A frame that came in the same read as the peer's FAREWELL, after it: the
/// rule it breaks (its sender sends nothing after FAREWELL), found before the
/// FAREWELL is taken for a graceful end. Fewer bytes than a header cannot be
/// named and, like bytes that come later, are left unread (counted in
/// `Closed::unread`).
pub(crate) fn after_farewell(order: &mut Order, after: &[u8]) -> Option<FrameError> {
    let head = after.get(..HEADER_LEN)?;
    // A zero length or an unknown type is reported as what it is; any length
    // is too much here.
    if let Err(e) = Decoder::new(frame::WIRE_MAX_PAYLOAD).decode(head) {
        return Some(e);
    }
    // The header is valid, so its type byte names a frame type.
    let kind = FrameType::try_from(head[HEADER_LEN - 1]).ok()?;
    order.check(kind).err()
}
