//! The DTLS side of [`Cx`]: connecting and listening with DTLS, and the
//! SRTP keys a DTLS-SRTP handshake exported.
//!
//! A DTLS socket is a UDP socket whose security layer is a DTLS session: it
//! is `Connecting` until the handshake is over and the peer's certificate
//! verified (`on_tls_ready` then says what was settled), one `send` is one
//! record in one datagram, one `on_received` one record's plaintext.
//! `close` sends close_notify and ends `Normal`; the peer's close_notify
//! ends it `ByPeer`, once what came before it was delivered; a failed
//! handshake ends it `TlsHandshakeFailed`, one that gets no answer
//! `HandshakeTimeout`; reset, discard and timeouts end it as UDP ends.

use crate::{ApiError, Cx, DtlsContext, SocketId, SrtpKeys};

impl<S: 'static> Cx<S> {
    /// Connect a UDP socket (bound or not) to `addr` (`ip:port`) and run a
    /// DTLS handshake with it as the client. The server's certificate is
    /// checked as the context says: by pin, or against trust roots for the
    /// context's server name or else the address's IP. Datagrams sent before
    /// the handshake is over wait for it.
    ///
    /// A context that can verify no server is [`ApiError::TlsRole`].
    pub fn connect_dtls(
        &mut self,
        s: SocketId,
        addr: &str,
        ctx: &DtlsContext,
    ) -> Result<(), ApiError> {
        self.engine.connect_dtls(s, addr, ctx)
    }

    /// Make a bound UDP socket a DTLS listener: each peer that completes the
    /// cookie exchange (proving it receives at its address) is offered to
    /// `on_incoming`, and an admitted one becomes an association (its own
    /// [`SocketId`], `on_accepted` at once, `on_tls_ready` when its handshake
    /// is over). Datagrams from unknown peers that are not a ClientHello are
    /// dropped without keeping anything.
    pub fn listen_dtls(&mut self, s: SocketId, ctx: &DtlsContext) -> Result<(), ApiError> {
        self.engine.listen_dtls(s, ctx)
    }

    /// Peers a DTLS listener has sent a cookie challenge and that have not
    /// completed it yet: what a flood of spoofed ClientHellos can cost it (at
    /// most 256 such handshakes are kept, the oldest dropped first). 0 on any
    /// other socket.
    pub fn dtls_pending(&self, s: SocketId) -> usize {
        self.engine.dtls_pending(s)
    }

    /// The SRTP master keys and salts a DTLS-SRTP handshake exported (RFC
    /// 5764), once `on_tls_ready` came; `None` on a socket without SRTP.
    pub fn srtp_keying_material(&self, s: SocketId) -> Option<SrtpKeys> {
        self.engine.srtp_keying_material(s)
    }
}
