//! The framed wire format: message boundaries, connect data, an admission
//! answer and disconnect data over any byte stream. This module is its
//! specification.
//!
//! ```text
//! frame = length:u32 big-endian | type:u8 | payload    (length counts type + payload, >= 1)
//! ```
//!
//! | field | size | content |
//! |---|---|---|
//! | length | 4 bytes, unsigned, big-endian | the bytes after it: 1 (the type) + the payload's length; never 0 |
//! | type | 1 byte | one of the five types below |
//! | payload | length − 1 bytes | may be empty; at most the receiver's limit ([`DEFAULT_MAX_PAYLOAD`], 16 MiB, unless configured), and never over [`WIRE_MAX_PAYLOAD`] |
//!
//! | type | byte | sent by | payload | when |
//! |---|---|---|---|---|
//! | HELLO | 1 | client | connect data | the client's first frame, once |
//! | WELCOME | 2 | server | accept data | the server's first frame, after the client's HELLO: admitted |
//! | REJECT | 3 | server | reason data | instead of WELCOME: refused; the server sends nothing more and closes |
//! | DATA | 4 | both | one message | client: after the server's WELCOME; server: after its WELCOME |
//! | FAREWELL | 5 | both | disconnect data | its sender's last frame, followed by its half-close (FIN) |
//!
//! The rules, which [`Order`] checks for each side:
//! 1. A client's first frame is HELLO, and it sends nothing more until the
//!    server's WELCOME.
//! 2. A server sends nothing before the client's HELLO; its first frame is
//!    WELCOME or REJECT, and it sends either once.
//! 3. HELLO, WELCOME and REJECT come only from the side named above.
//! 4. Nothing follows a REJECT or a FAREWELL from the same side.
//! 5. A frame breaking any of these, a length of 0, a payload over the limit
//!    (judged from the 5 header bytes, before any payload is held) or an
//!    unknown type is a protocol error: the receiver resets the connection.
//!    A connection that ends (FIN) without FAREWELL after its handshake did
//!    not end gracefully.
//!
//! Three pieces, all sans-IO:
//! - [`header`] and [`encode`] write frames. [`header`] alone lets a driver send
//!   the 5 header bytes and the caller's payload as two slices of one vectored
//!   write, so sending never copies the payload.
//! - [`Decoder`] cuts frames out of a byte stream split anywhere. A frame that
//!   arrives whole is handed out borrowing the caller's input; only a payload
//!   split across reads is gathered, and an idle decoder owns no heap, so idle
//!   connections cost no buffer.
//! - [`Order`] checks which frame may come next for each side (HELLO first,
//!   then WELCOME or REJECT, DATA, FAREWELL, nothing after). It is separate from
//!   the decoder so the codec can be tested and fuzzed on its own and the order
//!   rules are written in one place for both directions.
//!
//! Every error is a [`FrameError`] whose message names the rule broken; the
//! driver resets the connection and reports it as `ProtocolError`.
//!
//! ```
//! use tether_proto::frame::{self, Decoder, FrameType, Order, Role, DEFAULT_MAX_PAYLOAD};
//!
//! let mut wire = Vec::new();
//! frame::encode(FrameType::Hello, b"hi", &mut wire)?;
//! frame::encode(FrameType::Data, b"one message", &mut wire)?;
//! assert_eq!(wire[..7], [0, 0, 0, 3, 1, b'h', b'i']);
//!
//! let mut decoder = Decoder::new(DEFAULT_MAX_PAYLOAD);
//! let mut order = Order::new(Role::Server);
//! let mut input = &wire[..];
//! let mut got = Vec::new();
//! loop {
//!     let (used, frame) = decoder.decode(input)?;
//!     input = &input[used..];
//!     let Some(frame) = frame else { break };
//!     order.check(frame.kind)?;
//!     got.push((frame.kind, frame.payload.to_vec()));
//! }
//! assert_eq!(got, [(FrameType::Hello, b"hi".to_vec()), (FrameType::Data, b"one message".to_vec())]);
//! assert!(decoder.is_idle() && decoder.allocated() == 0);
//! # Ok::<(), tether_proto::frame::FrameError>(())
//! ```

use std::error::Error;
use std::fmt;

mod decoder;
mod order;

pub use decoder::Decoder;
pub use order::Order;

/// Bytes before the payload: the `u32` length and the type byte.
pub const HEADER_LEN: usize = 5;

/// The default limit on a frame's payload: 16 MiB.
///
/// The limit counts payload bytes only, not the 5 header bytes, so "a 16 MiB
/// message" fits exactly. It bounds what one peer can make the other hold in
/// memory for a single message.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 << 20;

/// The largest payload the format can carry at all: the `u32` length also
/// counts the type byte.
pub const WIRE_MAX_PAYLOAD: usize = u32::MAX as usize - 1;

/// The kind of a frame, the byte after the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Client to server, the first frame; the payload is the connect data.
    Hello = 1,
    /// Server to client: admission accepted; the payload is the accept data.
    Welcome = 2,
    /// Server to client: admission denied; the payload is the reason. The
    /// server then closes.
    Reject = 3,
    /// One message.
    Data = 4,
    /// Disconnect data. Its sender sends nothing after it and half-closes.
    Farewell = 5,
}

impl FrameType {
    /// The snake_case name used in logs and JSON events (`farewell`).
    pub fn as_str(self) -> &'static str {
        match self {
            FrameType::Hello => "hello",
            FrameType::Welcome => "welcome",
            FrameType::Reject => "reject",
            FrameType::Data => "data",
            FrameType::Farewell => "farewell",
        }
    }

    /// The name as the wire format spells it (`FAREWELL`); error messages use
    /// it so they read like the specification they quote.
    pub fn wire_name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::Welcome => "WELCOME",
            FrameType::Reject => "REJECT",
            FrameType::Data => "DATA",
            FrameType::Farewell => "FAREWELL",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<u8> for FrameType {
    type Error = FrameError;

    fn try_from(byte: u8) -> Result<Self, FrameError> {
        Ok(match byte {
            1 => FrameType::Hello,
            2 => FrameType::Welcome,
            3 => FrameType::Reject,
            4 => FrameType::Data,
            5 => FrameType::Farewell,
            _ => return Err(FrameError::UnknownType(byte)),
        })
    }
}

impl From<FrameType> for u8 {
    fn from(kind: FrameType) -> u8 {
        kind as u8
    }
}

/// One decoded frame. The payload borrows either the caller's input or the
/// decoder's buffer, never a copy made for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's type.
    pub kind: FrameType,
    /// The payload, without the header; may be empty.
    pub payload: &'a [u8],
}

/// Which end of a framed connection a side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that connected and sends HELLO.
    Client,
    /// The side that accepted and answers with WELCOME or REJECT.
    Server,
}

impl Role {
    /// The other side.
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    /// `client` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A broken rule of the framed protocol. Coming from the peer it is a
/// protocol error: the connection is reset and closes with `ProtocolError`,
/// and this message says why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A length field of 0: there is not even a type byte.
    ZeroLength,
    /// A payload over the limit: the decoder's configured one, or for
    /// [`encode`] and [`header`] the format's own [`WIRE_MAX_PAYLOAD`].
    TooLong {
        /// The payload length announced or asked for, in bytes.
        len: u64,
        /// The limit it broke, in payload bytes.
        max: usize,
    },
    /// A type byte that names no frame type.
    UnknownType(u8),
    /// The byte stream ended inside a frame ([`Decoder::finish`]).
    Truncated {
        /// How many bytes of the frame, header included, had arrived.
        buffered: usize,
    },
    /// A frame type the sender's role never sends: HELLO from a server,
    /// WELCOME or REJECT from a client.
    WrongSender {
        /// The frame.
        got: FrameType,
        /// The role of the side that sent it.
        sender: Role,
    },
    /// A frame at a point where its sender may not send it.
    OutOfOrder {
        /// The frame.
        got: FrameType,
        /// Where it came and the rule that forbids it, completing a sentence
        /// that begins with the frame's name: `"before WELCOME: ..."`.
        rule: &'static str,
    },
    /// A frame after its sender's FAREWELL.
    AfterFarewell(FrameType),
    /// A frame after a REJECT, which ends the connection.
    AfterReject(FrameType),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::ZeroLength => {
                f.write_str("frame length 0: a frame has at least its type byte")
            }
            // A decoder's limit is at most what a u32 length can announce, so a
            // decoded frame never breaks the format's own limit: that one can
            // only be an oversized payload handed to the encoder.
            FrameError::TooLong { len, max } if max == WIRE_MAX_PAYLOAD => write!(
                f,
                "frame payload of {len} bytes cannot be framed: the u32 length, which also \
                 counts the type byte, allows at most {max}"
            ),
            FrameError::TooLong { len, max } => write!(
                f,
                "frame payload of {len} bytes is over the limit of {max} bytes"
            ),
            FrameError::UnknownType(byte) => write!(
                f,
                "unknown frame type 0x{byte:02x}: the types are 0x01 HELLO to 0x05 FAREWELL"
            ),
            FrameError::Truncated { buffered } => write!(
                f,
                "the stream ended {buffered} bytes into a frame: a stream may end only \
                 between frames"
            ),
            FrameError::WrongSender { got, sender } => write!(
                f,
                "{} sent by a {sender}: only a {} sends {}",
                got.wire_name(),
                sender.peer(),
                got.wire_name()
            ),
            FrameError::OutOfOrder { got, rule } => write!(f, "{} {rule}", got.wire_name()),
            FrameError::AfterFarewell(got) => write!(
                f,
                "{} after FAREWELL: its sender must send nothing more",
                got.wire_name()
            ),
            FrameError::AfterReject(got) => write!(
                f,
                "{} after REJECT: a REJECT ends the connection",
                got.wire_name()
            ),
        }
    }
}

impl Error for FrameError {}

/// The 5 header bytes of a frame with a payload of `payload_len` bytes.
///
/// Fails only when the payload is over [`WIRE_MAX_PAYLOAD`]; a receiver's
/// smaller limit is the sender's business to respect, since only the sender
/// knows the peer's configuration.
pub fn header(kind: FrameType, payload_len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    let too_long = FrameError::TooLong {
        len: payload_len as u64,
        max: WIRE_MAX_PAYLOAD,
    };
    let len = u32::try_from(payload_len)
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or(too_long)?;
    let [a, b, c, d] = len.to_be_bytes();
    Ok([a, b, c, d, kind as u8])
}

/// Appends one frame to `out`. Allocates nothing of its own: `out` grows only
/// if it lacks room for the frame, so a reused buffer costs nothing.
pub fn encode(kind: FrameType, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let head = header(kind, payload.len())?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    Ok(())
}
