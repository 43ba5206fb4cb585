//! The framed wire format (DESIGN section 5): message boundaries, connect data,
//! an admission answer and disconnect data over any byte stream.
//!
//! ```text
//! frame = length:u32 big-endian | type:u8 | payload    (length counts type + payload, >= 1)
//! ```
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

/// Checks a complete header: the length first (a length of 0 means the "type
/// byte" already belongs to something else), then the type, then the limit.
fn parse_header(head: [u8; HEADER_LEN], max: usize) -> Result<(FrameType, usize), FrameError> {
    let [a, b, c, d, kind] = head;
    let len = u32::from_be_bytes([a, b, c, d]);
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    let kind = FrameType::try_from(kind)?;
    let payload = len - 1;
    match usize::try_from(payload) {
        Ok(n) if n <= max => Ok((kind, n)),
        _ => Err(FrameError::TooLong {
            len: u64::from(payload),
            max,
        }),
    }
}

/// Where the decoder is between calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partial {
    /// At a frame boundary with nothing held.
    Idle,
    /// The first `len` (1 to 4) header bytes arrived. They live here rather
    /// than on the heap, so a split header costs no allocation.
    Header { bytes: [u8; HEADER_LEN], len: u8 },
    /// A valid header arrived; `buf` holds fewer than `len` payload bytes.
    Payload { kind: FrameType, len: usize },
    /// The last call returned a frame from `buf`. The buffer is cleared (and
    /// freed, unless the next frame is gathered in it) on the next call,
    /// because until then the caller may still be reading it.
    Delivered,
    /// A protocol error: every later call repeats it. A stream of frames has
    /// no resynchronisation point, so nothing after a bad header means anything.
    Failed(FrameError),
}

/// A streaming frame decoder that accepts the input split at any point.
///
/// Call [`decode`](Decoder::decode) until it returns no frame:
///
/// ```
/// # use tether_proto::frame::{Decoder, FrameError};
/// # fn handle(_: tether_proto::frame::Frame<'_>) {}
/// fn on_bytes(decoder: &mut Decoder, mut input: &[u8]) -> Result<(), FrameError> {
///     loop {
///         let (used, frame) = decoder.decode(input)?;
///         input = &input[used..];
///         match frame {
///             Some(frame) => handle(frame),
///             None => return Ok(()), // all of `input` was consumed
///         }
///     }
/// }
/// ```
///
/// The last call of that loop, with the input used up, also releases the
/// buffer of a frame gathered across calls, so between reads the decoder
/// holds heap only for a partial payload. (A loop that stops when the input
/// is empty works too, but leaves such a buffer held until the next call.)
pub struct Decoder {
    max_payload: usize,
    state: Partial,
    /// The payload of a frame split across calls. It has no capacity unless
    /// some of such a payload is held or was just delivered.
    buf: Vec<u8>,
}

impl fmt::Debug for Decoder {
    // By hand so a gathered payload of megabytes is summarised, not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("max_payload", &self.max_payload)
            .field("state", &self.state)
            .field("buf_len", &self.buf.len())
            .field("buf_capacity", &self.buf.capacity())
            .finish()
    }
}

impl Default for Decoder {
    /// A decoder with the [`DEFAULT_MAX_PAYLOAD`] limit.
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl Decoder {
    /// A decoder that rejects payloads over `max_payload` bytes (header not
    /// counted). A limit above [`WIRE_MAX_PAYLOAD`] means no limit but the
    /// format's.
    pub fn new(max_payload: usize) -> Self {
        Decoder {
            max_payload,
            state: Partial::Idle,
            buf: Vec::new(),
        }
    }

    /// The payload limit this decoder was made with.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Feeds `input`: returns how many of its bytes were consumed and the frame
    /// they completed, if any.
    ///
    /// - Progress: when `input` is not empty, an `Ok` always consumes at least
    ///   one byte. With an empty input the call consumes nothing and returns no
    ///   frame (it only releases the buffer of a frame returned before).
    /// - Zero copy: a payload whose bytes all lie in `input` (nothing of it
    ///   arrived before) is returned borrowing `input`. Only a payload split
    ///   across calls is gathered in the decoder's own buffer, which grows with
    ///   the bytes that actually arrive, never beyond the frame's length.
    /// - A header is checked as soon as its 5 bytes are known, before any of its
    ///   payload is held, so an oversized length costs no allocation.
    /// - After an error the decoder is spent: every later call returns the same
    ///   error.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Frame<'a>>), FrameError> {
        let (kind, len, mut used) = match self.state {
            Partial::Failed(err) => return Err(err),
            Partial::Payload { kind, len } => (kind, len, 0),
            Partial::Idle | Partial::Header { .. } | Partial::Delivered => {
                // The caller is done with the delivered frame (it could not call
                // us otherwise); its buffer may serve the next split frame.
                self.buf.clear();
                let (mut head, have) = match self.state {
                    Partial::Header { bytes, len } => (bytes, usize::from(len)),
                    _ => ([0; HEADER_LEN], 0),
                };
                let take = (HEADER_LEN - have).min(input.len());
                head[have..have + take].copy_from_slice(&input[..take]);
                if have + take < HEADER_LEN {
                    self.state = match have + take {
                        0 => Partial::Idle,
                        // Below HEADER_LEN, so it fits a u8.
                        n => Partial::Header {
                            bytes: head,
                            len: n as u8,
                        },
                    };
                    self.buf = Vec::new();
                    return Ok((take, None));
                }
                match parse_header(head, self.max_payload) {
                    Ok((kind, len)) => (kind, len, take),
                    Err(err) => return Err(self.fail(err)),
                }
            }
        };
        let rest = &input[used..];
        if self.buf.is_empty() && rest.len() >= len {
            self.state = Partial::Idle;
            self.buf = Vec::new();
            return Ok((
                used + len,
                Some(Frame {
                    kind,
                    payload: &rest[..len],
                }),
            ));
        }
        if self.buf.is_empty() && self.buf.capacity() > len {
            // A buffer kept from a bigger frame shrinks to this one, so what a
            // decoder holds is bounded by the frame it is gathering.
            self.buf.shrink_to(len);
        }
        let take = (len - self.buf.len()).min(rest.len());
        self.grow(take, len);
        self.buf.extend_from_slice(&rest[..take]);
        used += take;
        if self.buf.len() < len {
            if self.buf.is_empty() {
                // Only the header arrived: hold no heap for a payload that may
                // never come.
                self.buf = Vec::new();
            }
            self.state = Partial::Payload { kind, len };
            return Ok((used, None));
        }
        self.state = Partial::Delivered;
        Ok((
            used,
            Some(Frame {
                kind,
                payload: &self.buf,
            }),
        ))
    }

    /// Makes room for `take` more payload bytes of a `len`-byte payload.
    fn grow(&mut self, take: usize, len: usize) {
        let need = self.buf.len() + take;
        if need > self.buf.capacity() {
            // Doubling keeps the copying linear, and the cap at `len` keeps a
            // header that announces 16 MiB and then stalls from costing 16 MiB.
            let target = need.max(self.buf.capacity().saturating_mul(2)).min(len);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    fn fail(&mut self, err: FrameError) -> FrameError {
        self.state = Partial::Failed(err);
        self.buf = Vec::new();
        err
    }

    /// True at a frame boundary: no partial frame is pending (and no error
    /// happened).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, Partial::Idle | Partial::Delivered)
    }

    /// Bytes of a partial frame received and held, header included: what
    /// would be lost, unread, if the connection ended now.
    pub fn buffered(&self) -> usize {
        match self.state {
            Partial::Header { len, .. } => usize::from(len),
            Partial::Payload { .. } => HEADER_LEN + self.buf.len(),
            Partial::Idle | Partial::Delivered | Partial::Failed(_) => 0,
        }
    }

    /// Heap bytes the decoder owns: the capacity of its gathering buffer.
    ///
    /// Zero unless payload bytes of a split frame are held (then at most that
    /// frame's length) or the last call returned a gathered frame; so zero
    /// whenever the decoder is idle and the last call returned no frame.
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    /// Checks that the stream may end here, as the peer's FIN arrives: not in
    /// the middle of a frame, and not after an error.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.state {
            Partial::Failed(err) => Err(err),
            Partial::Header { .. } | Partial::Payload { .. } => Err(FrameError::Truncated {
                buffered: self.buffered(),
            }),
            Partial::Idle | Partial::Delivered => Ok(()),
        }
    }
}

/// How far one direction of the conversation has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing sent yet.
    Start,
    /// HELLO (client) or WELCOME (server) sent: DATA and FAREWELL may follow.
    Open,
    /// FAREWELL sent: nothing may follow.
    Farewell,
    /// REJECT sent (server only): nothing may follow.
    Rejected,
}

const BEFORE_HELLO: &str = "before HELLO: a client's first frame must be HELLO";
const BEFORE_ANSWER: &str = "before WELCOME: a server's first frame must be WELCOME or REJECT";
const HELLO_AGAIN: &str = "after HELLO: a client sends HELLO once, as its first frame";
const ANSWER_AGAIN: &str = "after WELCOME: a server admits or rejects once, with its first frame";
const NOT_ADMITTED: &str =
    "before WELCOME: a client sends nothing after HELLO until the server admits it";
const UNASKED: &str = "before HELLO: a server answers only after the client's HELLO";

/// The next step of `sender`'s side after it sends `kind`, by the rules of
/// that side alone.
fn advance(sender: Role, step: Step, kind: FrameType) -> Result<Step, FrameError> {
    use FrameType::{Data, Farewell, Hello, Reject, Welcome};
    let wrong_sender = match sender {
        Role::Client => matches!(kind, Welcome | Reject),
        Role::Server => kind == Hello,
    };
    if wrong_sender {
        return Err(FrameError::WrongSender { got: kind, sender });
    }
    let out_of_order = |rule| Err(FrameError::OutOfOrder { got: kind, rule });
    match (step, kind) {
        (Step::Farewell, _) => Err(FrameError::AfterFarewell(kind)),
        (Step::Rejected, _) => Err(FrameError::AfterReject(kind)),
        (Step::Start, Hello | Welcome) => Ok(Step::Open),
        (Step::Start, Reject) => Ok(Step::Rejected),
        (Step::Start, _) if sender == Role::Client => out_of_order(BEFORE_HELLO),
        (Step::Start, _) => out_of_order(BEFORE_ANSWER),
        (Step::Open, Data) => Ok(Step::Open),
        (Step::Open, Farewell) => Ok(Step::Farewell),
        (Step::Open, Hello) => out_of_order(HELLO_AGAIN),
        (Step::Open, Welcome | Reject) => out_of_order(ANSWER_AGAIN),
    }
}

/// The frame order of one framed connection, in both directions.
///
/// ```text
/// client: HELLO, then (after the server's WELCOME) DATA*, FAREWELL
/// server: (after the client's HELLO) WELCOME, DATA*, FAREWELL  |  REJECT
/// ```
///
/// [`check`](Order::check) judges each frame the peer sends us (a violation is
/// the peer's protocol error); [`check_send`](Order::check_send) judges our
/// own, which catches a driver bug where it is made and tells a client that its
/// messages must wait for WELCOME. A frame that fails a check changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    role: Role,
    recv: Step,
    sent: Step,
}

impl Order {
    /// The order for our side of a connection, `role` being our role.
    pub fn new(role: Role) -> Self {
        Order {
            role,
            recv: Step::Start,
            sent: Step::Start,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Accepts a frame received from the peer, or says which rule it breaks.
    pub fn check(&mut self, kind: FrameType) -> Result<(), FrameError> {
        self.recv = advance(self.role.peer(), self.recv, kind)?;
        Ok(())
    }

    /// Accepts a frame we are about to send, or says which rule it would break.
    /// Besides our own side's order, a client sends DATA and FAREWELL only
    /// after receiving WELCOME, and a server answers only after receiving HELLO.
    pub fn check_send(&mut self, kind: FrameType) -> Result<(), FrameError> {
        let next = advance(self.role, self.sent, kind)?;
        let out_of_order = |rule| Err(FrameError::OutOfOrder { got: kind, rule });
        match (self.role, self.recv) {
            (Role::Client, Step::Start) if kind != FrameType::Hello => {
                return out_of_order(NOT_ADMITTED)
            }
            (Role::Client, Step::Rejected) => return Err(FrameError::AfterReject(kind)),
            (Role::Server, Step::Start) => return out_of_order(UNASKED),
            _ => {}
        }
        self.sent = next;
        Ok(())
    }

    /// Accepts a frame we queue for sending that may wait in the queue for the
    /// peer's answer, or says which rule it would break. It is
    /// [`check_send`](Order::check_send) but for one rule: a client's DATA and
    /// FAREWELL may follow its HELLO before WELCOME arrived, because they are
    /// held back until it does (the lifecycle's `holds_output`), so the order
    /// on the wire is still the one `check_send` demands. A server still
    /// answers only after HELLO, and nothing follows a REJECT either way.
    pub fn check_queued(&mut self, kind: FrameType) -> Result<(), FrameError> {
        if self.role == Role::Client && self.recv == Step::Start {
            self.sent = advance(self.role, self.sent, kind)?;
            return Ok(());
        }
        self.check_send(kind)
    }

    /// True once we sent (or queued) a REJECT.
    pub(crate) fn sent_reject(&self) -> bool {
        self.sent == Step::Rejected
    }
}
