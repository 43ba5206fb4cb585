//! A sans-IO HTTP/1.1 codec for the server side: read requests, write
//! responses.
//!
//! A server feeds the bytes a connection received to a [`RequestDecoder`]
//! and gets back [`Item`]s: a request's [`Head`](Item::Head), its body as
//! ranges of those bytes ([`Body`](Item::Body)), and [`End`](Item::End) once
//! the body is complete, then the next request if the client pipelined one.
//! It answers with [`encode_head`] and, for a chunked body, [`encode_chunk`]
//! and [`encode_last_chunk`]; [`keep_alive`] says whether the connection
//! stays open afterwards. Like the rest of this crate it does no I/O and
//! reads no clock: [`http_date`] formats a time the caller passes in.
//!
//! Request lines and header fields are parsed by `httparse`; this module adds
//! what a server must decide on top of it: how the body is delimited
//! (`Content-Length` or chunked coding, refusing any framing two parsers
//! could read differently, the root of request smuggling), whether the
//! client wants the connection kept open, `Expect: 100-continue`, and the
//! framing headers of the response.
//!
//! # Limits
//!
//! A client decides how much it sends; [`Limits`] decides how much of it a
//! server holds. The decoder keeps no buffer of its own, but the caller must
//! keep the bytes of a head until the head is complete, so [`Limits::head`]
//! is the most a connection can make the caller hold (a slow client
//! trickling an endless header is refused once it passes it, not when memory
//! runs out). [`Limits::headers`] bounds the parse work and the
//! [`RequestHead`] built from it. [`Limits::body`] is checked against the
//! declared `Content-Length` as soon as the head arrives, so an oversized
//! upload is refused before a byte of it is read, and against the running
//! total of a chunked body as each chunk is announced. Each refusal is an
//! [`HttpError`] naming the status to answer with.
//!
//! ```
//! use tether_proto::http::{self, Item, Limits, RequestDecoder, ResponseBody, Version};
//!
//! let input = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
//! let mut decoder = RequestDecoder::new(Limits::default());
//! let mut rest = &input[..];
//! let mut body = Vec::new();
//! loop {
//!     let (used, item) = decoder.decode(rest)?;
//!     match item {
//!         Item::Head(head) => assert_eq!((head.method.as_str(), head.keep_alive), ("POST", true)),
//!         Item::Body { start, len } => body.extend_from_slice(&rest[start..start + len]),
//!         Item::End => break,
//!         Item::NeedMore => unreachable!("the whole request is here"),
//!     }
//!     rest = &rest[used..];
//! }
//! assert_eq!(body, b"hello");
//!
//! let mut out = Vec::new();
//! let date = http::http_date(784111777);
//! let close = http::encode_head(&mut out, 200, &[("Content-Type", "text/plain")], ResponseBody::Length(5), &date, false, Version::Http11, false);
//! out.extend_from_slice(b"hello");
//! assert!(!close);
//! assert_eq!(
//!     out,
//!     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\n\r\nhello"
//! );
//! # Ok::<(), http::HttpError>(())
//! ```
//!
//! Not handled here: `CONNECT` and `Upgrade` (the bytes after the head are
//! another protocol's), transfer codings other than chunked, and checks of
//! `Host`.

use std::fmt;

mod date;
mod error;
mod request;
mod response;
mod rules;

pub use date::http_date;
pub use error::HttpError;
pub use request::{find_header, BodyKind, Item, RequestDecoder, RequestHead};
pub use response::{
    body_allowed, encode_chunk, encode_head, encode_last_chunk, reason, ResponseBody, CONTINUE,
};
pub use rules::keep_alive;

/// Limits a server puts on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of a request line and its header fields, the final empty line
    /// included (default 16 KiB); also bounds a chunked body's trailers and
    /// a chunk-size line. The caller holds at most this much of a head.
    pub head: usize,
    /// Header fields in one request (default 100).
    pub headers: usize,
    /// Bytes of one request's body (default 1 GiB).
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head: 16 * 1024,
            headers: 100,
            body: 1 << 30,
        }
    }
}

/// The protocol version of a request (by default the current one, 1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Version {
    /// HTTP/1.0: no chunked coding, connections close unless the client
    /// asks to keep them open.
    Http10,
    /// HTTP/1.1: connections stay open unless either side says close.
    #[default]
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`, as on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
