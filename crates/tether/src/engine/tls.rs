//! The security layer in the engine: the handshake's progress, its end
//! (ALPN, `on_tls_ready`, held data let go), and records out.

use tether_proto::{Destination, Handshake, Lifecycle, Op, Reason, Refused, SockAddr, State};

use crate::engine::io::Io;
use crate::engine::settle::send_fin;
use crate::engine::slot::{find, Parts};
use crate::engine::task::{queue_sent, Task};
use crate::engine::Engine;
use crate::log::Target;
use crate::security::tls::{Flushed, Tls};
use crate::{ApiError, Cx, Error, SocketId, TlsContext, TlsRole};

impl<S: 'static> Engine<S> {
    /// Move a handshake on with what the socket holds; once it is over,
    /// announce it.
    pub(crate) fn drive_tls(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.extra.tls_mut()) else {
            return;
        };
        // Only while the lifecycle waits for it, and once: a finished
        // handshake waits for its TlsReady task.
        if slot.life.handshake() != Some(Handshake::Security) || !tls.is_handshaking() {
            return;
        }
        let result = tls.handshake(stream, &mut slot.readable);
        // Our next handshake message, or the alert that says why it failed;
        // the plaintext from before a StartTLS goes first, and counts.
        let (prefix, _) = tls.flush(stream, false);
        queue_sent(&mut self.tasks, slot.wants_sent, s, prefix.sends);
        slot.life.wrote(prefix.bytes);
        match result {
            Err(error) => {
                io_log!(debug, Target::Tls, self.mux_id, socket = %s, %error, "handshake failed");
                self.fail(s, Reason::TlsHandshakeFailed, error);
                self.settle(s);
            }
            Ok(()) if !tls.is_handshaking() => self.tasks.push_back(Task::TlsReady(s)),
            Ok(()) => {}
        }
    }

    /// Write what TLS has for the wire; complete sends whose records went out.
    pub(crate) fn flush_tls(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.extra.tls_mut()) else {
            return;
        };
        let handshaking = !secured(&slot.life);
        let (prefix, result) = tls.flush(stream, !handshaking);
        queue_sent(&mut self.tasks, slot.wants_sent, s, prefix.sends);
        slot.life.wrote(prefix.bytes);
        let failure = match result {
            Ok(Flushed::Pending) => None,
            Ok(Flushed::Done { sends, bytes, fin }) => {
                queue_sent(&mut self.tasks, slot.wants_sent, s, sends);
                slot.life.wrote(bytes);
                if bytes > 0 {
                    slot.active = self.stamp;
                }
                if fin {
                    send_fin(slot, self.mux_id, s);
                }
                None
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

impl<S: 'static> Cx<S> {
    /// The handshake is over: let the user refuse the ALPN choice, then tell
    /// the lifecycle (which reports it, and opens the connection or begins the
    /// next handshake), then let the data held during the handshake go.
    pub(crate) fn tls_ready(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return;
        };
        let Some(tls) = slot.extra.tls() else { return };
        if slot.life.handshake() != Some(Handshake::Security) {
            return;
        }
        let info = tls.info();
        io_log!(debug, Target::Tls, self.engine.mux_id, socket = %s, version = %info.version, suite = info.cipher_suite, "handshake done");
        if let Some(protocol) = info.alpn.clone() {
            if self.call(s, |u, cx| u.on_alpn(cx, s, &protocol)) == Some(false) {
                self.engine
                    .fail(s, Reason::TlsHandshakeFailed, Error::AlpnRefused(protocol));
                self.engine.settle(s);
                return;
            }
        }
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return;
        };
        if slot.life.closed().is_some() {
            return;
        }
        // What was sent during the handshake goes first, ahead of anything
        // sent from the callbacks that follow.
        if let Some(Parts {
            tls: Some(tls),
            outq: outq @ Some(_),
            ..
        }) = slot.extra.get_mut()
        {
            let held = outq.take().unwrap_or_default();
            tls.queue(held.pending(), held.sends());
        }
        // on_tls_ready and a client's on_connected are queued now, ahead of
        // whatever they cause (a recv answered from records already read).
        slot.life.secured();
        self.engine.settle(s);
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return;
        };
        if slot.life.closed().is_some() {
            return;
        }
        let framed_handshake = slot.life.handshake() == Some(Handshake::Message);
        if slot.want.is_some() || slot.life.is_draining() || framed_handshake {
            self.engine.tasks.push_back(Task::Read(s));
        }
        self.engine.flush(s);
    }
}

/// The security handshake is done (or there is none to wait for): user data
/// goes through the session.
pub(crate) fn secured(life: &Lifecycle) -> bool {
    life.wire_up() && life.handshake() != Some(Handshake::Security)
}

impl<S: 'static> Engine<S> {
    /// Connect to `addr` over TLS, verifying the server as `server_name` (sent as
    /// SNI; a DNS name or an IP address). `on_tls_ready`, then `on_connected`,
    /// follow once the handshake is over; a failed handshake ends the socket
    /// with `Reason::TlsHandshakeFailed` and the rustls error.
    pub(crate) fn connect_tls(
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
        // No name given: the one the address holds (a host name, or the IP
        // address itself; a name-scoped IPv6 address without its scope).
        let implied = match Destination::parse(addr) {
            Ok(Destination::Name { host, .. }) => host
                .split_once('%')
                .map_or(host.clone(), |(ip, _)| ip.to_owned()),
            Ok(Destination::Addr(SockAddr::Inet(a))) => a.ip().to_string(),
            _ => String::new(),
        };
        let server_name = if server_name.is_empty() {
            implied.as_str()
        } else {
            server_name
        };
        let session = Tls::client(ctx, server_name)
            .map_err(|_| ApiError::BadServerName(server_name.to_string()))?;
        self.connect_with(s, addr, Some(Box::new(session)))
    }

    /// Listen, and speak TLS on every connection taken: each is announced by
    /// `on_accepted` while its handshake runs (state `Connecting`), then
    /// `on_tls_ready`. A handshake that fails (even garbage instead of a
    /// ClientHello) ends that connection only.
    pub(crate) fn listen_tls(&mut self, s: SocketId, ctx: &TlsContext) -> Result<(), ApiError> {
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
    pub(crate) fn start_tls(
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
        if slot.extra.tls().is_some() {
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
        // TLS reads and writes the socket itself: one on the io_uring
        // backend's ring moves to readiness, with what the ring holds.
        let stashed = self.ring_detach(s)?;
        let Some(slot) = find(&mut self.slots, s) else {
            return Ok(());
        };
        // The lifecycle holds user output from here until the upgrade is done.
        slot.life.start_security()?;
        session.set_prefix(slot.extra.take_outq());
        let fed = session
            .feed(read_ahead)
            .and_then(|()| session.feed(&stashed));
        slot.extra.make().tls = Some(Box::new(session));
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
