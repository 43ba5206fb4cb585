//! [`Decoder`]: cuts frames out of a byte stream split anywhere.

use std::fmt;

use super::{Frame, FrameError, FrameType, DEFAULT_MAX_PAYLOAD, HEADER_LEN};

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
    /// counted). A limit above [`WIRE_MAX_PAYLOAD`](super::WIRE_MAX_PAYLOAD) means no limit but the
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
