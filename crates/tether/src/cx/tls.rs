//! The TLS side of [`Cx`]: connecting, listening and upgrading with TLS, and
//! the handshake's progress.
//!
//! The lifecycle over TLS is the stream lifecycle: a client is `Connecting`
//! until its handshake is over, `shutdown` sends close_notify before the FIN,
//! the peer's close_notify is its end, and a FIN without one is `Lost`.

use tether_proto::{Op, Reason, Refused, State};

use crate::engine::slot::find;
use crate::engine::task::Task;
use crate::log::Target;
use crate::security::tls::Tls;
use crate::transport::Io;

use crate::{ApiError, Cx, SocketId, TlsContext, TlsRole};

impl<S: 'static> Cx<S> {
    /// Connect to `addr` over TLS, verifying the server as `server_name` (sent as
    /// SNI; a DNS name or an IP address). `on_tls_ready`, then `on_connected`,
    /// follow once the handshake is over; a failed handshake ends the socket
    /// with `Reason::TlsHandshakeFailed` and the rustls error.
    pub fn connect_tls(
        &mut self,
        s: SocketId,
        addr: &str,
        server_name: &str,
        ctx: &TlsContext,
    ) -> Result<(), ApiError> {
        if ctx.client_config().is_none() {
            return Err(ApiError::TlsRole(
                "this TLS context cannot connect: it has no trust roots or pins",
            ));
        }
        let session = Tls::client(ctx, server_name)
            .map_err(|_| ApiError::BadServerName(server_name.to_string()))?;
        self.connect_with(s, addr, Some(Box::new(session)))
    }

    /// Listen, and speak TLS on every connection taken: each is announced by
    /// `on_accepted` while its handshake runs (state `Connecting`), then
    /// `on_tls_ready`. A handshake that fails (even garbage instead of a
    /// ClientHello) ends that connection only.
    pub fn listen_tls(&mut self, s: SocketId, ctx: &TlsContext) -> Result<(), ApiError> {
        if ctx.server_config().is_none() {
            return Err(ApiError::TlsRole(
                "this TLS context cannot serve: it has no certificate",
            ));
        }
        self.listen(s)?;
        if let Some(slot) = find(&mut self.slots, s) {
            if let Io::Listener(l) = &mut slot.io {
                l.tls = Some(ctx.clone());
            }
        }
        Ok(())
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
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            return Err(ApiError::Unsupported {
                op: "start_tls",
                transport: crate::Transport::Udp,
            });
        }
        if slot.tls.is_some() {
            return Err(ApiError::TlsActive);
        }
        if slot.life.state() != State::Connected {
            return Err(ApiError::Refused(Refused {
                op: Op::StartTls,
                state: slot.life.state(),
            }));
        }
        if slot.want.is_some() {
            // Its bytes would be half plaintext, half decrypted.
            return Err(ApiError::RecvPending);
        }
        let mut session = match role {
            TlsRole::Client { server_name } => {
                if ctx.client_config().is_none() {
                    return Err(ApiError::TlsRole(
                        "this TLS context cannot connect: it has no trust roots or pins",
                    ));
                }
                Tls::client(ctx, server_name)
                    .map_err(|_| ApiError::BadServerName(server_name.to_string()))?
            }
            TlsRole::Server => Tls::server(ctx).map_err(|_| {
                ApiError::TlsRole("this TLS context cannot serve: it has no certificate")
            })?,
        };
        // The lifecycle holds user output from here until the upgrade is done.
        slot.life.start_security()?;
        session.set_prefix(slot.outq.take());
        let fed = session.feed(read_ahead);
        slot.tls = Some(Box::new(session));
        io_log!(debug, Target::Tls, self.mux_id, socket = %s, "start_tls");
        if let Err(error) = fed {
            // The alert that says why goes out before the end.
            self.flush(s);
            self.fail(s, Reason::TlsHandshakeFailed, error);
            self.settle(s);
            return Ok(());
        }
        // The handshake may already have its next step (a server answering a
        // ClientHello read ahead), and the socket may hold more of it.
        self.flush(s);
        self.tasks.push_back(Task::Read(s));
        Ok(())
    }
}
