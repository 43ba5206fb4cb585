//! Framed messages on [`Cx`]: switching a socket to the message layer,
//! its limit, and disconnect data.

use crate::{ApiError, Cx, SocketId};

impl<S: 'static> Cx<S> {
    /// Make a stream socket framed (the wire format of `tether_proto::frame`),
    /// before it connects or listens. A client sends `hello` as its connect data; a listener's
    /// connections inherit the framing, and its `on_incoming` sees each client's
    /// address and connect data before deciding. Messages then move whole:
    /// one `send` is one message, one `on_received` one message (whatever the
    /// recv's length), at most 16 MiB unless `set_frame_limit` says otherwise.
    pub fn set_framing(&mut self, s: SocketId, hello: &[u8]) -> Result<(), ApiError> {
        self.engine.set_framing(s, hello)
    }

    /// The largest message a framed socket accepts from its peer and lets its
    /// user send (16 MiB by default). A peer that announces a longer frame
    /// breaks the protocol: its connection is reset before any of it is held.
    pub fn set_frame_limit(&mut self, s: SocketId, max_payload: usize) -> Result<(), ApiError> {
        self.engine.set_frame_limit(s, max_payload)
    }

    /// Half-close a framed socket with disconnect data: FAREWELL(`data`), then
    /// FIN, after every message queued before. The peer's `on_peer_shutdown`
    /// gets `data`.
    pub fn shutdown_with(&mut self, s: SocketId, data: &[u8]) -> Result<(), ApiError> {
        self.engine.shutdown_with(s, data)
    }

    /// The accept data of the WELCOME a framed client was admitted with.
    pub fn welcome(&self, s: SocketId) -> Option<&[u8]> {
        self.engine.welcome(s)
    }
}
