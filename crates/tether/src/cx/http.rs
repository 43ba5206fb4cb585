//! The HTTP side of [`Cx`]: putting a socket in HTTP mode and answering its
//! requests.
//!
//! In HTTP mode the layer reads: requests come to
//! [`SocketUser::on_request`](crate::SocketUser::on_request) one at a time,
//! a body longer than the buffer read one part per [`Cx::recv_body`],
//! each answered by [`Cx::respond`] (and, for a streamed body,
//! [`Cx::send_body`] and [`Cx::end_body`]); the next is delivered once the
//! response is out. The layer also ends the connection: after a response
//! unless [`HttpOptions::keep_open`] and HTTP/1.1's rules keep it open (a
//! client's `Connection: close`, HTTP/1.0 without keep-alive, or a 400, 408,
//! 413, 431 or 501 close it), with a lingering close so the response is never
//! lost to a reset. The application's `recv`, `close`, `reset`, `discard` and
//! `shutdown` are refused ([`ApiError::Http`]).
//!
//! A malformed request is answered 400, a head over the limit 431, a body
//! over it 413, an unknown transfer coding 501, a head not complete within
//! the socket's handshake timeout (30 s without one) 408; each then closes.
//! `HEAD`, 1xx, 204 and 304 responses carry no body; `Expect: 100-continue`
//! is answered before the body is read; `Date` and `Content-Length` (or
//! chunked `Transfer-Encoding`) are the layer's.

use crate::{ApiError, Cx, HttpOptions, Response, SocketId};

impl<S: 'static> Cx<S> {
    /// HTTP mode: on a listener (before or after `listen`), for every
    /// connection it takes from then on; on an open stream, from now (the
    /// programmatic switch; no recv may be pending).
    pub fn set_http(&mut self, s: SocketId, opts: HttpOptions) -> Result<(), ApiError> {
        self.engine.set_http(s, opts)
    }

    /// Answer the request delivered last. A [`ResponseBody::Bytes`](crate::ResponseBody::Bytes)
    /// response is complete at once; a streamed one takes [`send_body`](Self::send_body)
    /// calls (and [`end_body`](Self::end_body) when chunked).
    pub fn respond(&mut self, s: SocketId, response: Response<'_>) -> Result<(), ApiError> {
        self.engine.respond(s, response)
    }

    /// Part of the body of a streamed response; `on_sent` follows as for any
    /// send. A `Length` body ends with its last byte.
    pub fn send_body(&mut self, s: SocketId, data: &[u8]) -> Result<(), ApiError> {
        self.engine.send_body(s, data)
    }

    /// Ask for the next part of a request body longer than
    /// [`HttpOptions::buffer`](crate::HttpOptions::buffer): one
    /// [`on_request_body`](crate::SocketUser::on_request_body) answers each
    /// call, and nothing more of the body is read meanwhile — a slow
    /// consumer holds back a fast client, as with `recv`. A body not asked
    /// for is thrown away once the response is out.
    pub fn recv_body(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.engine.recv_body(s)
    }

    /// Keep the connection open no longer (a server shutting down, say): it
    /// ends after the response under way (which says `Connection: close`),
    /// or now if it waits between requests — gracefully, by the layer, as
    /// every HTTP-mode connection ends. A request whose first bytes have
    /// reached this host counts as under way, even if the loop has not read
    /// them yet: it is answered, not lost. Only one still on the wire can
    /// meet the closed connection (the keep-alive race HTTP clients answer
    /// by retrying).
    pub fn end_keep_alive(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.engine.end_keep_alive(s)
    }

    /// The end of a chunked response body.
    pub fn end_body(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.engine.end_body(s)
    }
}
