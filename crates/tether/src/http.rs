//! HTTP mode's vocabulary: the options of a socket in HTTP mode, the request
//! it delivers and the response the application gives.
//!
//! In HTTP mode a stream socket (TCP, TLS, Local) carries HTTP/1.1: the
//! layer parses each request (with `httparse`, within [`HttpLimits`]), hands
//! it to [`SocketUser::on_request`](crate::SocketUser::on_request), writes the
//! [`Response`] given to [`Cx::respond`](crate::Cx::respond), and ends the
//! connection itself: after every response unless
//! [`HttpOptions::keep_open`], and then by HTTP/1.1's keep-alive rules.

use std::borrow::Cow;
pub use tether_proto::http::{Limits as HttpLimits, Version as HttpVersion};

/// How a socket in HTTP mode behaves.
///
/// ```
/// use tether::HttpOptions;
///
/// let opts = HttpOptions::default().keep_open(true);
/// assert!(opts.keep_open && opts.limits.head == 16 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Keep the connection open after a response (keep-alive, "httpnoclose"),
    /// where HTTP/1.1's rules allow. `false` (the default): close after every
    /// response, saying `Connection: close`.
    pub keep_open: bool,
    /// What a client may send: the size of a request head, the number of
    /// headers, the size of a body.
    pub limits: HttpLimits,
    /// Body bytes delivered with the request itself; a longer body comes in
    /// parts, to [`SocketUser::on_request_body`](crate::SocketUser::on_request_body),
    /// as it is read.
    pub buffer: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            keep_open: false,
            limits: HttpLimits::default(),
            buffer: 64 * 1024,
        }
    }
}

impl HttpOptions {
    /// Keep connections open between requests (or not).
    pub fn keep_open(mut self, keep_open: bool) -> Self {
        self.keep_open = keep_open;
        self
    }

    /// The limits on what a client sends.
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Body bytes delivered with the request.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }
}

/// A request, as [`SocketUser::on_request`](crate::SocketUser::on_request)
/// gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target, as sent (`/index.html?x=1`).
    pub target: String,
    /// The client's HTTP version.
    pub version: HttpVersion,
    /// The headers, in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, or its first part when it is longer than
    /// [`HttpOptions::buffer`].
    pub body: Vec<u8>,
    /// True when `body` is all of it; otherwise the rest follows in
    /// `on_request_body`.
    pub body_complete: bool,
}

impl Request {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        tether_proto::http::find_header(&self.headers, name)
    }
}

/// How a response's body is given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseBody<'a> {
    /// All of it, now: borrowed (a static page, a cached file) or owned.
    Bytes(Cow<'a, [u8]>),
    /// This many bytes, sent afterwards with [`Cx::send_body`](crate::Cx::send_body).
    Length(u64),
    /// Sent afterwards with [`Cx::send_body`](crate::Cx::send_body), in
    /// chunks, ended by [`Cx::end_body`](crate::Cx::end_body).
    Chunked,
}

/// A response for [`Cx::respond`](crate::Cx::respond). The layer sets `Date`,
/// `Content-Length` (or `Transfer-Encoding`) and `Connection`; headers of
/// those names given here are left out.
///
/// Header names, values and the body may borrow what the handler has (`'a`):
/// `respond` writes the response out before it returns, so a server with
/// fixed answers builds them without copying or allocating anything but the
/// header list.
///
/// ```
/// use tether::{Response, ResponseBody};
///
/// let page = String::from("hello\n");
/// let r = Response::new(200).header("Content-Type", "text/plain").body(&page);
/// assert_eq!(r.body, ResponseBody::Bytes(b"hello\n"[..].into()));
/// // Owned parts make a response that outlives what built it.
/// let r: Response<'static> = Response::new(404).body(format!("no {page}"));
/// assert_eq!(r.headers.len(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, [u8]>)>,
    /// The body.
    pub body: ResponseBody<'a>,
}

impl<'a> Response<'a> {
    /// A response with `status` and no body.
    pub fn new(status: u16) -> Response<'a> {
        Response {
            status,
            headers: Vec::new(),
            body: ResponseBody::Bytes(Cow::Borrowed(&[])),
        }
    }

    /// Add a header.
    pub fn header(
        mut self,
        name: impl Into<Cow<'a, str>>,
        value: impl IntoResponseBytes<'a>,
    ) -> Response<'a> {
        self.headers
            .push((name.into(), value.into_response_bytes()));
        self
    }

    /// The whole body.
    pub fn body(mut self, body: impl IntoResponseBytes<'a>) -> Response<'a> {
        self.body = ResponseBody::Bytes(body.into_response_bytes());
        self
    }

    /// A body of `len` bytes sent afterwards with `send_body`.
    pub fn streamed(mut self, len: u64) -> Response<'a> {
        self.body = ResponseBody::Length(len);
        self
    }

    /// A chunked body sent afterwards with `send_body` and `end_body`.
    pub fn chunked(mut self) -> Response<'a> {
        self.body = ResponseBody::Chunked;
        self
    }
}

/// What a [`Response`] header value or body can be made of: bytes or text,
/// borrowed (`&[u8]`, `&[u8; N]`, `&str`, `&Vec<u8>`, `&String`) or owned
/// (`Vec<u8>`, `String`, `Cow<[u8]>`). Borrowed ones are not copied until
/// the response is written.
pub trait IntoResponseBytes<'a> {
    /// The bytes, borrowed or owned as given.
    fn into_response_bytes(self) -> Cow<'a, [u8]>;
}

impl<'a> IntoResponseBytes<'a> for &'a [u8] {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<'a, const N: usize> IntoResponseBytes<'a> for &'a [u8; N] {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<'a> IntoResponseBytes<'a> for &'a str {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl<'a> IntoResponseBytes<'a> for &'a Vec<u8> {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}

impl<'a> IntoResponseBytes<'a> for &'a String {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl<'a> IntoResponseBytes<'a> for Vec<u8> {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        Cow::Owned(self)
    }
}

impl<'a> IntoResponseBytes<'a> for String {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        Cow::Owned(self.into_bytes())
    }
}

impl<'a> IntoResponseBytes<'a> for Cow<'a, [u8]> {
    fn into_response_bytes(self) -> Cow<'a, [u8]> {
        self
    }
}
