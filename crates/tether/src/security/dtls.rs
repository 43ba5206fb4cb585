//! A DTLS session: the DTLS library's sans-IO state machine, fed datagrams
//! and the loop's time, and drained of what it has for the wire and the user.
//!
//! The session knows no socket: the engine reads datagrams, hands each to
//! [`Session::feed`], then [`Session::drain`]s records to write and plaintext
//! to deliver. Its retransmission deadline ([`Session::deadline`]) goes on
//! the loop's timer heap; when it is due the engine calls [`Session::tick`].

use std::time::Instant;

use dimpl::Output;
use tether_proto::Reason;

use super::dtls_context::DtlsContext;
use super::fingerprint::Fingerprint;
use super::info::{TlsInfo, TlsVersion};
use super::srtp::{SrtpKeys, SrtpProfile};
use crate::Error;

/// What a session has for the engine.
pub(crate) enum Out<'a> {
    /// A record to write to the peer.
    Packet(&'a [u8]),
    /// Plaintext the peer sent.
    Data(&'a [u8]),
}

/// One DTLS session with one peer.
pub(crate) struct Session {
    dtls: dimpl::Dtls,
    ctx: DtlsContext,
    /// When the library wants [`tick`](Self::tick) next.
    deadline: Option<Instant>,
    /// The handshake completed (reported once by [`take_connected`](Self::take_connected)).
    connected: bool,
    reported: bool,
    /// The peer's leaf certificate, as the handshake presented it.
    peer_cert: Option<Box<[u8]>>,
    keys: Option<SrtpKeys>,
    /// The peer's close_notify arrived.
    peer_closed: bool,
}

impl Session {
    pub(crate) fn new(ctx: &DtlsContext, client: bool, now: Instant) -> Session {
        Session {
            dtls: ctx.session(client, now),
            ctx: ctx.clone(),
            deadline: None,
            connected: false,
            reported: false,
            peer_cert: None,
            keys: None,
            peer_closed: false,
        }
    }

    /// Move the session's clock to `now` (it retransmits what is due). An
    /// error is the session's end, and says why.
    pub(crate) fn tick(&mut self, now: Instant) -> Result<(), (Reason, Error)> {
        let result = self.dtls.handle_timeout(now);
        result.map_err(|e| self.failure(e))
    }

    /// One datagram from the peer. Noise (a malformed or replayed record) is
    /// dropped by the library and changes nothing; an error is the end.
    pub(crate) fn feed(&mut self, now: Instant, datagram: &[u8]) -> Result<(), (Reason, Error)> {
        self.tick(now)?;
        let result = self.dtls.handle_packet(datagram);
        result.map_err(|e| self.failure(e))
    }

    /// Why a library error ends the session: its handshake timed out or
    /// failed, or an open session broke.
    fn failure(&self, e: dimpl::Error) -> (Reason, Error) {
        let reason = match e {
            dimpl::Error::Timeout(_) => Reason::HandshakeTimeout,
            _ if self.is_handshaking() => Reason::TlsHandshakeFailed,
            _ => Reason::Lost,
        };
        (reason, dtls_error(e))
    }

    /// Plaintext to send: one record, written by the next [`drain`](Self::drain).
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.dtls
            .send_application_data(data)
            .map(drop)
            .map_err(dtls_error)
    }

    /// Queue close_notify (the library drops the session at once, without
    /// one, if its handshake is not done).
    pub(crate) fn close(&mut self) {
        let _ = self.dtls.close();
    }

    /// Hand everything the session has to `out`, in order, and note the
    /// rest (the handshake's end, the peer's certificate, SRTP keys, the
    /// peer's close_notify, the next deadline). `buf` is the loop's, shared
    /// by every session, so an idle one holds no buffer of its own.
    pub(crate) fn drain(&mut self, buf: &mut Vec<u8>, mut out: impl FnMut(Out<'_>)) {
        if buf.is_empty() {
            buf.resize(self.ctx.max_record() + 256, 0);
        }
        loop {
            match self.dtls.poll_output(buf) {
                Output::Packet(p) => out(Out::Packet(p)),
                Output::ApplicationData(d) => out(Out::Data(d)),
                Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                Output::Timeout(at) => {
                    self.deadline = Some(at);
                    break;
                }
                Output::Connected => self.connected = true,
                Output::PeerCert(der) => self.peer_cert = Some(der.into()),
                Output::KeyingMaterial(material, profile) => {
                    self.keys = SrtpProfile::from_dimpl(profile)
                        .and_then(|p| SrtpKeys::new(p, material.to_vec()));
                }
                Output::CloseNotify => self.peer_closed = true,
                _ => {}
            }
        }
    }

    /// When the session wants [`tick`](Self::tick): during the handshake, its
    /// retransmission; once it is over, none (the library's own far-off
    /// deadlines would only wake the loop).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.connected {
            None
        } else {
            self.deadline
        }
    }

    /// True once, when the handshake has completed.
    pub(crate) fn take_connected(&mut self) -> bool {
        let now = self.connected && !self.reported;
        self.reported |= now;
        now
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        !self.connected
    }

    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    pub(crate) fn context(&self) -> &DtlsContext {
        &self.ctx
    }

    /// Check what the handshake settled against the context: the peer's
    /// certificate, and the SRTP profile if SRTP is wanted.
    pub(crate) fn verify(&self, server_name: Option<&str>) -> Result<(), Error> {
        self.ctx.verify(self.peer_cert.as_deref(), server_name)?;
        let wanted = self.ctx.srtp_profiles();
        if wanted.is_empty() {
            return Ok(());
        }
        match self.keys.as_ref().map(SrtpKeys::profile) {
            Some(p) if wanted.contains(&p) => Ok(()),
            Some(p) => Err(Error::Dtls(format!(
                "the peer chose SRTP profile {p}, which is not among those accepted"
            ))),
            None => Err(Error::Dtls("the peer did not negotiate SRTP".into())),
        }
    }

    /// The SRTP keys, when SRTP was wanted and negotiated.
    pub(crate) fn srtp_keys(&self) -> Option<&SrtpKeys> {
        self.keys
            .as_ref()
            .filter(|_| !self.ctx.srtp_profiles().is_empty())
    }

    pub(crate) fn info(&self) -> TlsInfo {
        let version = match self.dtls.protocol_version() {
            Some(dimpl::ProtocolVersion::DTLS1_3) => TlsVersion::Dtls13,
            _ => TlsVersion::Dtls12,
        };
        TlsInfo {
            version,
            cipher_suite: "",
            alpn: None,
            peer_fingerprint: self.peer_cert.as_deref().map(Fingerprint::of),
            server_name: None,
            srtp_profile: self.srtp_keys().map(SrtpKeys::profile),
        }
    }
}

fn dtls_error(e: dimpl::Error) -> Error {
    Error::Dtls(e.to_string())
}

/// Would this datagram open a DTLS handshake: a handshake record (content
/// type 22) whose first message is a ClientHello (type 1)? Anything else from
/// an unknown peer is dropped before any state is made for it.
pub(crate) fn is_client_hello(datagram: &[u8]) -> bool {
    datagram.len() > 25 && datagram[0] == 22 && datagram[13] == 1
}

/// The random of a DTLS 1.3 ServerHello that is a HelloRetryRequest (RFC 8446
/// section 4.1.3: SHA-256 of "HelloRetryRequest").
const RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Is this (a session's first answer to a ClientHello) the cookie challenge
/// — a DTLS 1.2 HelloVerifyRequest (handshake type 3), or a DTLS 1.3
/// HelloRetryRequest (a ServerHello, type 2, with the retry random after its
/// 13-byte record header, 12-byte handshake header and 2-byte version) —
/// rather than the server's first flight?
pub(crate) fn is_hello_verify(datagram: &[u8]) -> bool {
    let handshake = datagram.len() > 13 && datagram[0] == 22;
    let hvr = handshake && datagram[13] == 3;
    let hrr = handshake && datagram[13] == 2 && datagram.get(27..59) == Some(&RETRY_RANDOM[..]);
    hvr || hrr
}
