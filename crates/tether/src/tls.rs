//! The TLS side of [`Cx`]: connecting, listening and upgrading with TLS, and
//! the handshake's progress.
//!
//! The lifecycle over TLS is the stream lifecycle: a client is `Connecting`
//! until its handshake is over, `shutdown` sends close_notify before the FIN,
//! the peer's close_notify is its end, and a FIN without one is `Lost`.

use std::io::{self, ErrorKind};

use tether_proto::{Op, Reason, Refused, State};

use crate::cx::Task;
use crate::slot::find;
use crate::transport::tls::{Flushed, Tls};
use crate::transport::Io;
use crate::{ApiError, Cx, Error, SocketId, TlsContext, TlsRole};

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
        let session = Tls::client(ctx, server_name, false)
            .map_err(|_| ApiError::BadServerName(server_name.to_string()))?;
        self.connect(s, addr)?;
        if let Some(slot) = find(&mut self.slots, s) {
            if slot.life.closed().is_none() {
                slot.tls = Some(Box::new(session));
            }
        }
        Ok(())
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
                Tls::client(ctx, server_name, true)
                    .map_err(|_| ApiError::BadServerName(server_name.to_string()))?
            }
            TlsRole::Server => Tls::server(ctx).map_err(|_| {
                ApiError::TlsRole("this TLS context cannot serve: it has no certificate")
            })?,
        };
        session.set_prefix(slot.outq.take());
        let fed = session.feed(read_ahead);
        slot.tls = Some(Box::new(session));
        tracing::debug!(target: "tether::tls", socket = %s, "start_tls");
        if let Err(error) = fed {
            self.fail(s, Reason::TlsHandshakeFailed, error);
            self.flush(s);
            self.settle(s);
            return Ok(());
        }
        // The handshake may already have its next step (a server answering a
        // ClientHello read ahead), and the socket may hold more of it.
        self.flush(s);
        self.tasks.push_back(Task::Read(s));
        Ok(())
    }

    /// Move a handshake on with what the socket holds; once it is over,
    /// announce it.
    pub(crate) fn drive_tls(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.tls.as_mut()) else {
            return;
        };
        if tls.ready || !tls.tcp_up || slot.life.closed().is_some() {
            return;
        }
        let result = tls.handshake(stream, &mut slot.readable);
        // Our next handshake message, or the alert that says why it failed.
        let _ = tls.flush(stream);
        match result {
            Err(error) => {
                tracing::debug!(target: "tether::tls", socket = %s, %error, "handshake failed");
                self.fail(s, Reason::TlsHandshakeFailed, error);
                self.settle(s);
            }
            Ok(()) if !tls.is_handshaking() => {
                tls.ready = true;
                self.tasks.push_back(Task::TlsReady(s));
            }
            Ok(()) => {}
        }
    }

    /// The handshake is over: let the user refuse the ALPN choice, report it,
    /// then let the data held during the handshake go.
    pub(crate) fn tls_ready(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let Some(tls) = slot.tls.as_ref() else { return };
        if slot.life.closed().is_some() {
            return;
        }
        let info = tls.info();
        tracing::debug!(target: "tether::tls", socket = %s, version = %info.version, suite = info.cipher_suite, "handshake done");
        if let Some(protocol) = info.alpn.clone() {
            if self.call(s, |u, cx| u.on_alpn(cx, s, &protocol)) == Some(false) {
                self.fail(s, Reason::TlsHandshakeFailed, Error::AlpnRefused(protocol));
                self.settle(s);
                return;
            }
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.life.closed().is_some() {
            return;
        }
        // What was sent during the handshake goes first, ahead of anything
        // sent from the callbacks that follow.
        if let (Some(tls), Some(held)) = (slot.tls.as_mut(), slot.outq.take()) {
            tls.queue(held.pending(), held.sends());
        }
        let framed = slot.framed.as_ref().map(|f| f.handshaking());
        if slot.life.state() == State::Connecting && framed.is_none() {
            slot.life.connected();
            // The peer's FIN may have come with the handshake's last records.
            if slot.tls.as_ref().is_some_and(|t| t.peer_fin) {
                slot.life.fin_known();
            }
        }
        // A client's on_connected is queued now, ahead of whatever
        // on_tls_ready causes (a recv answered from records already read).
        self.settle(s);
        if self
            .slot(s)
            .is_some_and(|slot| slot.life.closed().is_none())
        {
            self.call(s, |u, cx| u.on_tls_ready(cx, s, &info));
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        if slot.life.closed().is_some() {
            return;
        }
        if slot.want.is_some() || slot.life.is_draining() || framed == Some(true) {
            self.tasks.push_back(Task::Read(s));
        }
        // With no recv pending, the peer's end is seen now or never: the
        // poller will not say it again.
        self.end_if_drained(s);
        self.settle(s);
        self.flush(s);
    }

    /// Write what TLS has for the wire; complete sends whose records went out.
    pub(crate) fn flush_tls(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.tls.as_mut()) else {
            return;
        };
        let handshaking = !tls.ready;
        let (prefix, result) = tls.flush(stream);
        for _ in 0..prefix.sends {
            self.tasks.push_back(Task::Sent(s));
        }
        slot.life.wrote(prefix.bytes);
        let failure = match result {
            Ok(Flushed::Pending) => None,
            Ok(Flushed::Done { sends, bytes, fin }) => {
                for _ in 0..sends {
                    self.tasks.push_back(Task::Sent(s));
                }
                slot.life.wrote(bytes);
                if bytes > 0 {
                    slot.active = self.now;
                }
                if fin {
                    stream.shutdown_write().err()
                } else {
                    None
                }
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failure {
            let reason = if handshaking {
                Reason::TlsHandshakeFailed
            } else {
                Reason::Lost
            };
            self.fail(s, reason, Error::Io(e));
        }
        self.settle(s);
    }
}

/// The reason a stream ends when reading it failed. A fatal alert that only a
/// handshake can cause is the handshake's failure even when it comes after our
/// side of the handshake was over: in TLS 1.3 a client has finished (and had
/// `on_tls_ready`) before the server has judged its certificate, and hears of a
/// refusal only as the alert that follows. Anything else is `Lost`.
pub(crate) fn read_failure(error: &Error) -> Reason {
    use rustls::AlertDescription as A;
    match error {
        Error::Tls(rustls::Error::AlertReceived(
            A::HandshakeFailure
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::NoApplicationProtocol,
        )) => Reason::TlsHandshakeFailed,
        _ => Reason::Lost,
    }
}

/// The error of a peer that ended without close_notify.
pub(crate) fn truncated() -> Error {
    Error::Io(io::Error::new(
        ErrorKind::UnexpectedEof,
        "the peer closed the connection without sending TLS close_notify",
    ))
}
