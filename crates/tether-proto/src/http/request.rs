//! The request decoder: heads parsed by httparse, bodies framed by
//! `Content-Length` or chunked coding, pipelined requests one after another.

use super::{HttpError, Limits, Version};

/// How a request's body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    /// No `Content-Length` and no `Transfer-Encoding`: a request without a
    /// body, whatever its method.
    #[default]
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked transfer coding: chunks until a zero-size chunk, then
    /// trailers.
    Chunked,
}

/// A request line and its headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    /// The method as sent (`GET`); methods are case-sensitive.
    pub method: String,
    /// The request target as sent (`/index.html?q=1`, `*`, an absolute URI).
    pub target: String,
    /// The protocol version of the request line.
    pub version: Version,
    /// Every header field in the order received, names as sent and values
    /// as bytes (a value need not be UTF-8).
    pub headers: Vec<(String, Vec<u8>)>,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the client asks to keep the connection open: for HTTP/1.1
    /// unless `Connection: close`, for HTTP/1.0 only with
    /// `Connection: keep-alive`. The server decides with
    /// [`keep_alive`](super::keep_alive).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for
    /// [`CONTINUE`](super::CONTINUE) (or a final status) before it sends
    /// the body.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The value of the first header field named `name` (compared without
    /// regard to case, as field names are).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// A `HEAD` request: its response carries a head but never a body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// One step of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Nothing more can be decoded from the input given: call again when
    /// more bytes arrived (keeping those not consumed).
    NeedMore,
    /// A request's head. Body items (if any) and [`Item::End`] follow.
    Head(RequestHead),
    /// Body bytes: `input[start..start + len]` of the input given to this
    /// call. Chunked framing around them is not part of the range.
    Body {
        /// Offset in the input of the call.
        start: usize,
        /// Number of body bytes.
        len: usize,
    },
    /// The request's body is complete; the decoder is ready for the next
    /// request.
    End,
}

/// Where the decoder is in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between requests: waiting for a complete head.
    Idle,
    /// The body is complete; [`Item::End`] is next.
    Done,
    /// Inside a `Content-Length` body, with this many bytes to go.
    Length(u64),
    /// At a chunk-size line.
    ChunkSize,
    /// Inside a chunk, with this many bytes to go.
    ChunkData(u64),
    /// After a chunk's data, at the CRLF that ends it.
    ChunkEnd,
    /// After the last chunk, in the trailer section: `seen` bytes of it so
    /// far, `line` bytes (not counting CR) in the current line.
    Trailers { seen: usize, line: usize },
    /// A request was refused: every later call gives the same error.
    Failed(HttpError),
}

/// Decodes the requests a client sends on one connection, in order.
///
/// Sans-IO and without a buffer: the caller keeps the bytes received and not
/// yet consumed, and passes them to [`decode`](RequestDecoder::decode) again
/// with whatever arrived since. The decoder holds only a few numbers between
/// calls, so an idle connection costs no memory here, and every limit in
/// [`Limits`] is checked against the caller's input before it can grow past
/// it. Errors are sticky: once a request is refused, the stream's framing is
/// lost and every later call returns the same error.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    /// Chunked body bytes announced so far, for [`Limits::body`].
    chunked_total: u64,
    /// Bytes at the start of the input already searched for the end of a
    /// head without finding it. A client trickling its head a byte at a
    /// time would otherwise have the whole head re-parsed on every call.
    scanned: usize,
    /// A head given back by [`recycle`](RequestDecoder::recycle): the next
    /// head is parsed into its strings, so a connection serving request
    /// after request allocates for the first only.
    spare: RequestHead,
    /// Empty-line bytes (CR, LF) the input starts with, as far as known:
    /// equal to `scanned` while every byte searched so far was one.
    /// Empty lines before a request line are skipped, not taken for the
    /// empty line that ends a head: otherwise whether a malformed request
    /// line after them is refused at once or only at its head's end
    /// depended on how the input was split.
    lead: usize,
}

/// Where the first empty line (LF LF, or LF CR LF) in `bytes` ends, if
/// there is one: the end of a head. The search stops there, so finding a
/// head costs its own length, not the input's: with pipelined requests the
/// input holds many heads, and searching it all (up to the head limit) for
/// each of them made decoding a buffer quadratic in its length.
fn blank_line_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(lf) = bytes[from..].iter().position(|&b| b == b'\n') {
        let at = from + lf + 1;
        match bytes[at..] {
            [b'\n', ..] => return Some(at + 1),
            [b'\r', b'\n', ..] => return Some(at + 2),
            _ => from = at,
        }
    }
    None
}

/// The most a recycled head may hold, in bytes of capacity, to be kept: an
/// idle connection keeps no more than this of what its client once sent.
const SPARE_MAX: usize = 1024;

impl RequestDecoder {
    /// A decoder between requests, enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Idle,
            chunked_total: 0,
            scanned: 0,
            spare: RequestHead::default(),
            lead: 0,
        }
    }

    /// Decode from `input` (the bytes received and not yet consumed).
    /// Returns how many bytes of `input` were consumed and what they held;
    /// call again with the rest. [`Item::NeedMore`] consumes what it can
    /// (chunk framing, trailers) or nothing, and means the rest of `input` is
    /// not enough for the next item.
    ///
    /// A head is consumed only once it is complete, so a caller keeps at
    /// most [`Limits::head`] bytes of an unfinished head. Until then, each
    /// call must pass those same bytes again (with more after them): the
    /// decoder remembers how far it searched for the head's end, so a head
    /// arriving in many small pieces is not parsed again for each. Body bytes are
    /// handed out as ranges of `input` as soon as they arrive. Each call
    /// does work bounded by the length of `input`.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Item), HttpError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Failed(ref err) => return Err(err.clone()),
                State::Idle => {
                    return match self.head(rest) {
                        Ok(Some((used, head))) => Ok((pos + used, Item::Head(head))),
                        Ok(None) => Ok((pos, Item::NeedMore)),
                        Err(err) => Err(self.fail(err)),
                    };
                }
                State::Done => {
                    self.state = State::Idle;
                    return Ok((pos, Item::End));
                }
                State::Length(0) => self.state = State::Done,
                State::Length(remaining) | State::ChunkData(remaining) => {
                    if rest.is_empty() {
                        return Ok((pos, Item::NeedMore));
                    }
                    // Bounded by `rest.len()`, so it fits in a usize.
                    let len = remaining.min(rest.len() as u64) as usize;
                    let left = remaining - len as u64;
                    self.state = match self.state {
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok((pos + len, Item::Body { start: pos, len }));
                }
                // Extensions may make a size line as long as a client likes:
                // like a head, it must end within the limit.
                State::ChunkSize => {
                    match httparse::parse_chunk_size(&rest[..rest.len().min(self.limits.head)]) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            pos += used;
                            if size == 0 {
                                self.state = State::Trailers { seen: 0, line: 0 };
                                continue;
                            }
                            let total = self.chunked_total.saturating_add(size);
                            if total > self.limits.body {
                                return Err(self.fail(HttpError::BodyTooLarge {
                                    limit: self.limits.body,
                                }));
                            }
                            self.chunked_total = total;
                            self.state = State::ChunkData(size);
                        }
                        Ok(httparse::Status::Partial) => {
                            if rest.len() > self.limits.head {
                                let why = format!(
                                    "chunk-size line longer than {} bytes",
                                    self.limits.head
                                );
                                return Err(self.fail(HttpError::Malformed(why)));
                            }
                            return Ok((pos, Item::NeedMore));
                        }
                        Err(httparse::InvalidChunkSize) => {
                            return Err(
                                self.fail(HttpError::Malformed("invalid chunk-size line".into()))
                            );
                        }
                    }
                }
                State::ChunkEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok((pos, Item::NeedMore)),
                    _ => {
                        let why = "chunk data not followed by CRLF".to_string();
                        return Err(self.fail(HttpError::Malformed(why)));
                    }
                },
                State::Trailers { mut seen, mut line } => {
                    // Trailer fields are skipped: scan for the empty line
                    // that ends them, consuming as we go.
                    for (i, &byte) in rest.iter().enumerate() {
                        seen += 1;
                        if seen > self.limits.head {
                            return Err(self.fail(HttpError::HeadTooLarge {
                                limit: self.limits.head,
                            }));
                        }
                        match byte {
                            b'\n' if line == 0 => {
                                pos += i + 1;
                                self.state = State::Done;
                                break;
                            }
                            b'\n' => line = 0,
                            b'\r' => {}
                            _ => line += 1,
                        }
                    }
                    if let State::Trailers { .. } = self.state {
                        self.state = State::Trailers { seen, line };
                        return Ok((input.len(), Item::NeedMore));
                    }
                }
            }
        }
    }

    /// Gives back a head this decoder produced once its user is done with
    /// it: the next head reuses its allocations (method, target, header
    /// names and values). A head holding more than a small bound is dropped
    /// instead, so what a connection keeps between requests stays small.
    pub fn recycle(&mut self, mut head: RequestHead) {
        let held = head.method.capacity()
            + head.target.capacity()
            + head
                .headers
                .iter()
                .map(|(n, v)| n.capacity() + v.capacity())
                .sum::<usize>();
        if held <= SPARE_MAX {
            head.method.clear();
            head.target.clear();
            self.spare = head;
        }
    }

    /// True between requests (nothing of a next request consumed yet).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Records `err` as the decoder's final answer and returns it.
    fn fail(&mut self, err: HttpError) -> HttpError {
        self.state = State::Failed(err.clone());
        err
    }

    /// Parses a head at the start of `input`: `None` if it is not complete
    /// yet. On success the state moves to the body.
    fn head(&mut self, input: &[u8]) -> Result<Option<(usize, RequestHead)>, HttpError> {
        let limit = self.limits.head;
        // Never look past the limit: a head that is not complete within it
        // is refused, whatever follows.
        let window = &input[..input.len().min(limit)];
        // Parse only once the head can have ended (an empty line, CRLF or
        // bare LF), or to decide between malformed and too large.
        if self.lead == self.scanned {
            let seen = self.lead.min(window.len());
            let more = window[seen..]
                .iter()
                .position(|&b| b != b'\r' && b != b'\n');
            self.lead = more.map_or(window.len(), |n| seen + n);
        }
        let from = self
            .scanned
            .saturating_sub(2)
            .max(self.lead)
            .min(window.len());
        let ended = blank_line_end(&window[from..]).is_some();
        if !ended && input.len() <= limit {
            self.scanned = window.len();
            return Ok(None);
        }
        // Header slots on the stack, left uninitialised (httparse fills what
        // it uses): a request costs no allocation for them unless the limit
        // is above what the stack holds.
        let mut stack = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
        let mut heap = Vec::new();
        let fields = if self.limits.headers <= STACK_HEADERS {
            &mut stack[..self.limits.headers]
        } else {
            heap.resize(self.limits.headers, std::mem::MaybeUninit::uninit());
            &mut heap[..]
        };
        let mut request = httparse::Request::new(&mut []);
        let used = match request.parse_with_uninit_headers(window, fields) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if input.len() > limit => {
                return Err(HttpError::HeadTooLarge { limit });
            }
            Ok(httparse::Status::Partial) => {
                // Only empty lines before a request line end like a head.
                self.scanned = window.len();
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::TooManyHeaders {
                    limit: self.limits.headers,
                });
            }
            Err(err) => return Err(HttpError::Malformed(err.to_string())),
        };
        let version = match request.version {
            Some(0) => Version::Http10,
            Some(1) => Version::Http11,
            _ => return Err(HttpError::Malformed("unsupported HTTP version".into())),
        };
        let mut head = std::mem::take(&mut self.spare);
        head.method.clear();
        head.method.push_str(request.method.unwrap_or_default());
        head.target.clear();
        head.target.push_str(request.path.unwrap_or_default());
        head.version = version;
        head.headers.truncate(request.headers.len());
        for (i, h) in request.headers.iter().enumerate() {
            match head.headers.get_mut(i) {
                Some((name, value)) => {
                    name.clear();
                    name.push_str(h.name);
                    value.clear();
                    value.extend_from_slice(h.value);
                }
                None => head.headers.push((h.name.to_string(), h.value.to_vec())),
            }
        }
        head.body = body_kind(&head)?;
        let close = has_token(&head, "connection", "close");
        head.keep_alive = match version {
            Version::Http11 => !close,
            Version::Http10 => !close && has_token(&head, "connection", "keep-alive"),
        };
        head.expect_continue = head
            .header("expect")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
        self.chunked_total = 0;
        self.scanned = 0;
        self.lead = 0;
        self.state = match head.body {
            BodyKind::None => State::Done,
            BodyKind::Length(len) if len > self.limits.body => {
                return Err(HttpError::BodyTooLarge {
                    limit: self.limits.body,
                });
            }
            BodyKind::Length(len) => State::Length(len),
            BodyKind::Chunked => State::ChunkSize,
        };
        Ok(Some((used, head)))
    }
}

/// The body framing of a request, refusing every ambiguous one: a message
/// two parsers could read as different lengths is how request smuggling
/// works (RFC 9112 6.3).
fn body_kind(head: &RequestHead) -> Result<BodyKind, HttpError> {
    let malformed = |why: &str| HttpError::Malformed(why.to_string());
    let fields = |name: &'static str| {
        head.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    };
    let mut length: Option<u64> = None;
    for value in fields("content-length") {
        // A list of identical values ("5, 5") is one length (RFC 9110 8.6).
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                return Err(malformed("Content-Length is not a number"));
            }
            let n = std::str::from_utf8(item)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| malformed("Content-Length too large"))?;
            if length.is_some_and(|l| l != n) {
                return Err(malformed("differing Content-Length values"));
            }
            length = Some(n);
        }
    }
    let mut codings: Vec<Vec<u8>> = Vec::new();
    let mut te_value = Vec::new();
    for value in fields("transfer-encoding") {
        if !te_value.is_empty() {
            te_value.extend_from_slice(b", ");
        }
        te_value.extend_from_slice(value);
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if !item.is_empty() {
                codings.push(item.to_ascii_lowercase());
            }
        }
    }
    let has_te = fields("transfer-encoding").next().is_some();
    if !has_te {
        return Ok(length.map_or(BodyKind::None, BodyKind::Length));
    }
    if length.is_some() {
        return Err(malformed("both Content-Length and Transfer-Encoding"));
    }
    if head.version == Version::Http10 {
        // HTTP/1.0 has no transfer codings: a 1.0 message with one has
        // faulty framing (RFC 9112 6.1).
        return Err(malformed("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let chunked = codings
        .iter()
        .filter(|c| c.as_slice() == b"chunked")
        .count();
    if chunked > 1 {
        return Err(malformed("chunked applied more than once"));
    }
    if codings.last().map(Vec::as_slice) != Some(b"chunked") || codings.len() > 1 {
        let value = String::from_utf8_lossy(&te_value).into_owned();
        return Err(HttpError::UnsupportedTransferEncoding(value));
    }
    Ok(BodyKind::Chunked)
}

/// Whether any `name` field lists `token` (comma-separated, any case).
fn has_token(head: &RequestHead, name: &str, token: &str) -> bool {
    head.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .any(|(_, v)| {
            v.split(|&b| b == b',')
                .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
}

/// Header slots a parse takes from the stack (beyond, from the heap).
const STACK_HEADERS: usize = 128;

/// The first header called `name` (any case) in `headers`: header names are
/// case-insensitive (RFC 9110 section 5.1).
pub fn find_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::blank_line_end;

    #[test]
    fn blank_line_end_finds_the_first_empty_line() {
        assert_eq!(
            blank_line_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"),
            Some(24)
        );
        assert_eq!(blank_line_end(b"GET / HTTP/1.1\nA: b\n\nrest"), Some(21));
        assert_eq!(blank_line_end(b"\n\n"), Some(2));
        assert_eq!(blank_line_end(b"\r\n\r\n"), Some(4));
        for partial in [
            &b""[..],
            b"\n",
            b"\r\n",
            b"\n\r",
            b"GET / HTTP/1.1\r\nA: b\r\n\r",
        ] {
            assert_eq!(blank_line_end(partial), None, "{partial:?}");
        }
    }

    /// The search ends at the first head, however much follows it: a buffer
    /// of pipelined requests is not searched to its end (up to the head
    /// limit) once per request.
    #[test]
    fn blank_line_end_stops_at_the_first_head() {
        let one = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut many = Vec::new();
        for _ in 0..1000 {
            many.extend_from_slice(one);
        }
        assert_eq!(blank_line_end(&many), Some(one.len()));
        assert_eq!(blank_line_end(&many[one.len()..]), Some(one.len()));
    }
}
