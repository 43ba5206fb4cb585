//! The HTTP message layer's state on one connection: the request decoder
//! and the bytes it has not consumed yet, where the exchange stands, and how
//! the response's body is being sent.

use tether_proto::http::{RequestDecoder, Version};

use crate::HttpOptions;

/// Where a connection in HTTP mode stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a request's head.
    Head,
    /// Reading a body to deliver with its request.
    Body,
    /// The request was delivered; no response yet. A body longer than the
    /// buffer goes on arriving in parts.
    Serving,
    /// The response's head went out; its body is being sent.
    Streaming,
    /// The last response is out: the connection is closing.
    Done,
}

/// How the body of the response under way is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// This many bytes are still owed.
    Length(u64),
    Chunked,
}

/// One connection in HTTP mode.
#[derive(Debug)]
pub(crate) struct HttpConn {
    pub(crate) opts: HttpOptions,
    pub(crate) decoder: RequestDecoder,
    /// Bytes read and not consumed by the decoder yet (a partial head, or
    /// the next pipelined request while this one is served).
    pub(crate) input: Vec<u8>,
    pub(crate) phase: Phase,
    /// The request being read, before it is delivered.
    pub(crate) request: Option<crate::Request>,
    /// Of the request being served: the client wants to keep alive.
    pub(crate) client_keep_alive: bool,
    /// Of the request being served: it was a HEAD.
    pub(crate) head_request: bool,
    /// Of the request being served: its version.
    pub(crate) version: Version,
    /// Its body was read to its end.
    pub(crate) body_read: bool,
    /// Its body is delivered in parts (`on_request_body`).
    pub(crate) body_in_parts: bool,
    /// The application asked for the next part (`recv_body`): the body is
    /// read only as fast as it is asked for.
    pub(crate) body_wanted: bool,
    /// The response under way streams its body.
    pub(crate) outgoing: Option<Outgoing>,
    /// The connection stays open after the response under way.
    pub(crate) keep: bool,
}

impl HttpConn {
    pub(crate) fn new(opts: HttpOptions) -> HttpConn {
        HttpConn {
            opts,
            decoder: RequestDecoder::new(opts.limits),
            input: Vec::new(),
            phase: Phase::Head,
            request: None,
            client_keep_alive: false,
            head_request: false,
            version: Version::Http11,
            body_read: true,
            body_in_parts: false,
            body_wanted: false,
            outgoing: None,
            keep: false,
        }
    }

    /// Does the connection read from the socket now? For a request's head or
    /// body; once a request is delivered, only for its body.
    pub(crate) fn wants_input(&self) -> bool {
        match self.phase {
            Phase::Head | Phase::Body => true,
            Phase::Serving | Phase::Streaming => self.reads_body(),
            Phase::Done => false,
        }
    }

    /// Once the request is delivered, its body is read only while it is
    /// buffered for it (not in parts) or a part was asked for.
    pub(crate) fn reads_body(&self) -> bool {
        !self.body_read && (!self.body_in_parts || self.body_wanted)
    }
}
