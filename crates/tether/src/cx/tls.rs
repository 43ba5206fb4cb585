//! The TLS side of [`Cx`]: connecting, listening and upgrading with TLS, and
//! the handshake's progress.
//!
//! The lifecycle over TLS is the stream lifecycle: a client is `Connecting`
//! until its handshake is over, `shutdown` sends close_notify before the FIN,
//! the peer's close_notify is its end, and a FIN without one is `Lost`.

use crate::{ApiError, Cx, SocketId, TlsContext, TlsRole};

impl<S: 'static> Cx<S> {
    /// Connect to `addr` over TLS, verifying the server as `server_name` (sent as
    /// SNI; a DNS name or an IP address). `on_tls_ready`, then `on_connected`,
    /// follow once the handshake is over; a failed handshake ends the socket
    /// with `Reason::TlsHandshakeFailed` and the rustls error.
    ///
    /// An empty `server_name` means the name `addr` holds: its host name
    /// (`db.internal:5432` is verified as `db.internal`, not as the address
    /// it resolved to) or its IP address; a `unix:` address has none, so
    /// there an empty name is `ApiError::BadServerName`.
    pub fn connect_tls(
        &mut self,
        s: SocketId,
        addr: &str,
        server_name: &str,
        ctx: &TlsContext,
    ) -> Result<(), ApiError> {
        self.engine.connect_tls(s, addr, server_name, ctx)
    }

    /// Listen, and speak TLS on every connection taken: each is announced by
    /// `on_accepted` while its handshake runs (state `Connecting`), then
    /// `on_tls_ready`. A handshake that fails (even garbage instead of a
    /// ClientHello) ends that connection only.
    pub fn listen_tls(&mut self, s: SocketId, ctx: &TlsContext) -> Result<(), ApiError> {
        self.engine.listen_tls(s, ctx)
    }

    /// Upgrade a connected stream to TLS (StartTLS), taking `role` in the
    /// handshake. `read_ahead` is what the application already received past
    /// the end of its plaintext (the start of the peer's handshake, if it sent
    /// both in one go): it is fed to the handshake first, so nothing is lost.
    /// Plaintext sent before the call still goes out before the handshake.
    /// `on_tls_ready` follows once the upgrade is done.
    pub fn start_tls(
        &mut self,
        s: SocketId,
        ctx: &TlsContext,
        role: TlsRole<'_>,
        read_ahead: &[u8],
    ) -> Result<(), ApiError> {
        self.engine.start_tls(s, ctx, role, read_ahead)
    }
}
