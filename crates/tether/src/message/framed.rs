//! The message layer (the wire format of `tether_proto::frame`) over any stream transport: message
//! boundaries, connect data with an admission decision that sees it, and
//! disconnect data both ways.
//!
//! The codec and the order rules are `tether_proto::frame`'s; this file moves
//! frames between them and the byte stream (plain or TLS) and turns them into
//! lifecycle steps: a client is `Connecting` until WELCOME, a server's
//! connection has no user until its HELLO is admitted, a FAREWELL is the
//! peer's end, and a broken rule resets the connection (`ProtocolError`).

use tether_proto::frame::{self, Decoder, FrameError, FrameType, HEADER_LEN};

use crate::transport::send_queue::SendQueue;

/// The message layer's state on one socket (or, on a listener, the settings
/// its connections inherit). Where the connection stands in its handshake and
/// which frame may come next are the lifecycle's to know; this holds bytes.
pub(crate) struct Framed {
    pub(crate) decoder: Decoder,
    /// The decoder's limit, kept here too: the decoder is out of its place
    /// while frames are read, and a send from a callback run then is bounded
    /// by this.
    pub(crate) max_payload: usize,
    /// Encoded bytes read while no recv wanted a message.
    pub(crate) stash: Vec<u8>,
    /// Messages sent before admission; WELCOME releases them.
    pub(crate) held: Option<Box<SendQueue>>,
    /// A client's connect data, until it goes out as HELLO.
    pub(crate) hello: Option<Vec<u8>>,
    /// The peer's last words: its FAREWELL data, or its REJECT reason.
    pub(crate) farewell: Option<Vec<u8>>,
    /// The accept data of the server's WELCOME.
    pub(crate) welcome: Option<Vec<u8>>,
}

impl Framed {
    /// A socket to be connected (or a listener, or a connection a listener
    /// took), with the client's connect data.
    pub(crate) fn new(hello: &[u8], max_payload: usize) -> Framed {
        Framed {
            decoder: Decoder::new(max_payload),
            max_payload,
            stash: Vec::new(),
            held: None,
            hello: Some(hello.to_vec()),
            farewell: None,
            welcome: None,
        }
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.max_payload
    }
}

/// What follows the peer's FAREWELL in the same read: its sender sends nothing
/// after it, so a frame there breaks the order (the lifecycle says which
/// rule). A header that cannot be decoded is reported as what it is. Fewer
/// bytes than a header cannot be named and, like bytes that come later, are
/// left unread (counted in `Closed::unread`).
pub(crate) fn after_farewell(after: &[u8]) -> Result<Option<FrameType>, FrameError> {
    let Some(head) = after.get(..HEADER_LEN) else {
        return Ok(None);
    };
    // Any length is too much here: decode with the wire's own limit.
    Decoder::new(frame::WIRE_MAX_PAYLOAD).decode(head)?;
    // The header is valid, so its type byte names a frame type.
    Ok(FrameType::try_from(head[HEADER_LEN - 1]).ok())
}
