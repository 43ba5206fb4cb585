//! Entry points for the fuzz targets in `fuzz/`, compiled only with the
//! `fuzzing` feature and not part of the API: a DTLS session fed datagrams
//! and time without a socket, as the engine feeds it, and the listener's
//! first look at a datagram from an unknown peer.

use std::time::Instant;

use tether_proto::Reason;

use crate::security::dtls::{self, Out, Session};
use crate::{DtlsContext, Error};

/// One DTLS session, as the engine drives it.
pub struct DtlsSession {
    session: Session,
    /// The loop's buffer that records are polled into.
    buf: Vec<u8>,
}

impl std::fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsSession").finish_non_exhaustive()
    }
}

impl DtlsSession {
    /// A client's (`client`) or a server's session of `ctx`, starting at `now`.
    pub fn new(ctx: &DtlsContext, client: bool, now: Instant) -> Self {
        DtlsSession {
            session: Session::new(ctx, client, now),
            buf: Vec::new(),
        }
    }

    /// One datagram from the peer; an error ends the session.
    pub fn feed(&mut self, now: Instant, datagram: &[u8]) -> Result<(), (Reason, Error)> {
        self.session.feed(now, datagram)
    }

    /// Time passed; an error ends the session.
    pub fn tick(&mut self, now: Instant) -> Result<(), (Reason, Error)> {
        self.session.tick(now)
    }

    /// Plaintext to send once the handshake is done.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.session.send(data)
    }

    /// Queue close_notify.
    pub fn close(&mut self) {
        self.session.close();
    }

    /// Everything the session has: each record to write goes to `packet`,
    /// each piece of plaintext to `data`.
    pub fn drain(&mut self, mut packet: impl FnMut(&[u8]), mut data: impl FnMut(&[u8])) {
        self.session.drain(&mut self.buf, |out| match out {
            Out::Packet(p) => packet(p),
            Out::Data(d) => data(d),
        });
    }

    /// When the session wants [`tick`](Self::tick).
    pub fn deadline(&self) -> Option<Instant> {
        self.session.deadline()
    }

    /// True once, when the handshake has completed.
    pub fn take_connected(&mut self) -> bool {
        self.session.take_connected()
    }

    /// The peer's close_notify arrived.
    pub fn peer_closed(&self) -> bool {
        self.session.peer_closed()
    }

    /// What the engine checks after the handshake: the peer's certificate
    /// against the context (as a client, for `server_name`).
    pub fn verify(&self, server_name: Option<&str>) -> Result<(), Error> {
        self.session.verify(server_name)
    }
}

/// Would a DTLS listener take this datagram from an unknown peer as the
/// start of a handshake?
pub fn is_client_hello(datagram: &[u8]) -> bool {
    dtls::is_client_hello(datagram)
}

/// Is this a session's cookie challenge rather than its first flight?
pub fn is_hello_verify(datagram: &[u8]) -> bool {
    dtls::is_hello_verify(datagram)
}
