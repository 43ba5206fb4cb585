//! What the caller asks of a socket: bind, listen, connect, the layers it
//! carries, send and recv, and the ways to end it.

use std::time::{Duration, Instant};

use crate::frame::{Order, Role};

use super::rules::deadline;
use super::*;

impl Lifecycle {
    /// The socket got a local address.
    pub fn bind(&mut self) -> Result<(), Refused> {
        match self.phase {
            Phase::Idle if self.is_datagram() => {
                self.phase = Phase::Open;
                Ok(())
            }
            Phase::Idle => {
                self.phase = Phase::Bound;
                Ok(())
            }
            _ => Err(self.refuse(Op::Bind)),
        }
    }

    /// Give the connection a security layer (TLS, or DTLS on a datagram
    /// socket): once its transport is up, it waits for
    /// [`secured`](Self::secured). Only before connecting or listening, and
    /// once. A datagram socket takes it bound or not, before its `connect`
    /// (the peer it connects to is the one the handshake runs with).
    pub fn set_security(&mut self) -> Result<(), Refused> {
        let datagram = self.is_datagram() && matches!(self.phase, Phase::Idle | Phase::Open);
        if !(self.configurable() || datagram) || self.has(F_SECURITY) {
            return Err(self.refuse(Op::SetSecurity));
        }
        self.flags |= F_SECURITY;
        Ok(())
    }

    /// Give the connection a message layer (framing) in which our side takes
    /// `role` (a socket that connects is the [`Role::Client`]): after the
    /// transport and any security layer it waits for the admission, and its
    /// frames are checked by [`frame_in`](Self::frame_in) and
    /// [`frame_out`](Self::frame_out). Only before connecting or listening,
    /// once, and not on a datagram socket.
    pub fn set_message(&mut self, role: Role) -> Result<(), Refused> {
        if !self.configurable() || self.order.is_some() {
            return Err(self.refuse(Op::SetFraming));
        }
        self.order = Some(Order::new(role));
        Ok(())
    }

    pub(super) fn configurable(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Bound) && !self.is_datagram()
    }

    /// The socket listens.
    pub fn listen(&mut self) -> Result<(), Refused> {
        match self.phase {
            Phase::Idle | Phase::Bound if !self.is_datagram() => {
                self.phase = Phase::Listening;
                Ok(())
            }
            _ => Err(self.refuse(Op::Listen)),
        }
    }

    /// Connecting began.
    pub fn connect(&mut self) -> Result<(), Refused> {
        match self.phase {
            // A datagram socket connects within the call (the driver reports
            // `connected` or `fail` at once), and may connect again to another
            // peer (not once a security handshake ran with the first).
            Phase::Idle | Phase::Open if self.is_datagram() && !self.has(F_SECURED) => {
                self.phase = Phase::Connecting;
                self.flags &= !F_WIRE;
                Ok(())
            }
            Phase::Idle | Phase::Bound => {
                self.phase = Phase::Connecting;
                Ok(())
            }
            _ => Err(self.refuse(Op::Connect)),
        }
    }

    /// Upgrade an open connection to TLS (StartTLS). Only in
    /// [`State::Connected`] (both directions open, not closing) on a stream
    /// that has no security layer yet. The state stays `Connected`, but
    /// [`holds_output`](Self::holds_output) is true (and a pending FIN waits)
    /// until [`secured`](Self::secured). Bytes accepted before stay accepted:
    /// they go out ahead of the handshake.
    pub fn start_security(&mut self) -> Result<(), Refused> {
        if self.state() != State::Connected || self.is_datagram() || self.has(F_SECURITY) {
            return Err(self.refuse(Op::StartTls));
        }
        self.flags = (self.flags | F_SECURITY) & !F_SECURED;
        Ok(())
    }

    /// May the user ask for received bytes now? Only on a connection whose peer
    /// has not ended and that is not being closed.
    #[inline]
    pub fn check_recv(&self) -> Result<(), Refused> {
        if self.live() && self.recv != RecvSide::Finished && self.closing.is_none() {
            Ok(())
        } else {
            Err(self.refuse(Op::Recv))
        }
    }

    /// A recv is pending: allowed where [`check_recv`](Self::check_recv) allows
    /// it. It stays pending until [`delivered`](Self::delivered), the peer's
    /// end ([`eof`](Self::eof)) or the close. Asking again while one is pending
    /// is not refused here (the driver has its own error for that; see
    /// [`recv_pending`](Self::recv_pending)).
    #[inline]
    pub fn recv(&mut self) -> Result<(), Refused> {
        self.check_recv()?;
        self.flags |= F_RECV;
        Ok(())
    }

    /// Accept `n` bytes for sending. Allowed while connecting (they wait) and on an
    /// open connection until `shutdown`/`close`.
    #[inline]
    pub fn send(&mut self, n: usize) -> Result<(), Refused> {
        self.check_send()?;
        self.queued += n as u64;
        Ok(())
    }

    /// Would [`send`](Self::send) accept bytes now?
    #[inline]
    pub fn check_send(&self) -> Result<(), Refused> {
        if self.live() && self.send == SendSide::Open && self.closing.is_none() {
            Ok(())
        } else {
            Err(self.refuse(Op::Send))
        }
    }

    /// Half-close: once every accepted byte is written (and every handshake is
    /// done), send the FIN.
    pub fn shutdown(&mut self) -> Result<(), Refused> {
        if !self.live()
            || self.send != SendSide::Open
            || self.closing.is_some()
            || self.is_datagram()
        {
            return Err(self.refuse(Op::Shutdown));
        }
        self.began.get_or_insert(Side::Us);
        self.send = SendSide::Draining;
        self.flush_fin();
        Ok(())
    }

    /// Close gracefully: send what is queued, then the FIN, then drain the peer
    /// until its FIN; past `now + linger`, reset instead.
    ///
    /// A datagram socket has no FIN and is discarded, unless its security
    /// handshake is done (DTLS): then its FIN is the close_notify, sent after
    /// what is queued, and nothing is awaited from the peer (DTLS has no
    /// half-close), so the socket ends [`Reason::Normal`] once it is written.
    pub fn close(&mut self, now: Instant, linger: Duration) -> Result<(), Refused> {
        if self.is_datagram() {
            if self.has(F_SECURED) && self.phase == Phase::Open && self.closing.is_none() {
                self.recv = RecvSide::Finished;
                self.begin_close(now, linger);
                return Ok(());
            }
            return self.abort(Op::Close, Reason::Discarded, A_DISCARD);
        }
        match self.phase {
            Phase::Idle | Phase::Bound | Phase::Listening => {
                self.finish(Reason::Normal, A_RELEASE);
                Ok(())
            }
            Phase::Connecting | Phase::Open if self.closing.is_none() => {
                self.begin_close(now, linger);
                Ok(())
            }
            _ => Err(self.refuse(Op::Close)),
        }
    }

    /// A message-layer server answers the client's HELLO with REJECT: the
    /// connection ends gracefully without ever getting a user. The REJECT frame
    /// must have passed [`frame_out`](Self::frame_out) and its bytes
    /// [`send`](Self::send) first; then, as for `close`, the FIN follows them
    /// and the peer is drained until its end or `now + linger`. No
    /// [`Event::Accepted`] (nor Secured) ever comes; the reason is
    /// [`Reason::Normal`]. Refused anywhere else: not a server waiting for its
    /// message handshake, or no REJECT went out.
    pub fn reject(&mut self, now: Instant, linger: Duration) -> Result<(), Refused> {
        let rejected = self
            .order
            .as_ref()
            .is_some_and(|o| o.role() == Role::Server && o.sent_reject());
        let waiting = self.handshake() == Some(Handshake::Message) && self.has(F_SERVER);
        if !(rejected && waiting && self.phase == Phase::Connecting && self.closing.is_none()) {
            return Err(self.refuse(Op::Reject));
        }
        // The handshake is over, answered no: what is left is a graceful
        // close, with nobody to tell.
        self.phase = Phase::Open;
        self.begin_close(now, linger);
        Ok(())
    }

    pub(super) fn begin_close(&mut self, now: Instant, linger: Duration) {
        self.began.get_or_insert(Side::Us);
        self.closing = Some(deadline(now, linger));
        self.actions |= A_TIMER;
        // A recv pending now is never answered, and bytes held for it are
        // dropped: the user can no longer get them.
        self.flags &= !F_RECV;
        self.dropped += std::mem::take(&mut self.held);
        if self.recv != RecvSide::Finished {
            self.actions |= A_DRAIN;
        }
        if self.send == SendSide::Open {
            self.send = SendSide::Draining;
        }
        self.flush_fin();
    }

    /// Abort with RST now; queued bytes are counted as unsent.
    pub fn reset(&mut self) -> Result<(), Refused> {
        if self.is_datagram() {
            return self.abort(Op::Reset, Reason::Discarded, A_DISCARD);
        }
        self.abort(Op::Reset, Reason::Reset, A_RESET)
    }

    /// Forget the connection without telling the peer.
    pub fn discard(&mut self) -> Result<(), Refused> {
        self.abort(Op::Discard, Reason::Discarded, A_DISCARD)
    }

    /// The event loop is stopping: open connections are reset (the peer must not
    /// take the end for a graceful one), anything else is released.
    pub fn stop(&mut self) {
        match self.phase {
            Phase::Done(_) => {}
            Phase::Connecting | Phase::Open => self.finish(Reason::Stopped, A_RESET),
            _ => self.finish(Reason::Stopped, A_RELEASE),
        }
    }

    pub(super) fn abort(&mut self, op: Op, reason: Reason, action: u8) -> Result<(), Refused> {
        match self.phase {
            Phase::Done(_) => Err(self.refuse(op)),
            Phase::Connecting | Phase::Open => {
                self.finish(reason, action);
                Ok(())
            }
            // Nothing to tell a peer that does not exist: just let go.
            _ => {
                self.finish(reason, A_RELEASE);
                Ok(())
            }
        }
    }
}
