//! What the wire did: the transport up, handshakes done, frames, bytes
//! written and read, the peer's end, failures and time.

use std::time::Instant;

use crate::frame::{FrameError, FrameType, Role};

use super::rules::not_framed;
use super::*;

impl Lifecycle {
    /// The transport is up (the connect completed). Without further layers the
    /// connection opens ([`Event::Connected`]); otherwise the next handshake
    /// begins. Ignored unless waiting for [`Handshake::Transport`].
    pub fn connected(&mut self) {
        if self.phase == Phase::Connecting && !self.has(F_WIRE) {
            self.flags |= F_WIRE;
            self.advance();
        }
    }

    /// The security handshake is done: [`Event::Secured`], and the next
    /// handshake begins or the connection opens (a StartTLS upgrade just lets
    /// its output go). A message-layer server's Secured waits for its
    /// admission, when its user exists. Ignored unless waiting for
    /// [`Handshake::Security`].
    pub fn secured(&mut self) {
        if self.handshake() != Some(Handshake::Security) {
            return;
        }
        self.flags |= F_SECURED;
        let no_user_yet = self.has(F_SERVER) && self.order.is_some() && !self.has(F_ADMITTED);
        if !no_user_yet {
            self.events |= E_SECURED;
        }
        self.advance();
        // A FIN held back by an upgrade may go now.
        self.flush_fin();
    }

    /// The message handshake is done: a client received WELCOME, a server
    /// admitted the client's HELLO. A server's connection gets its user
    /// ([`Event::Accepted`], then the held-back [`Event::Secured`] if it has a
    /// security layer); a client's opens ([`Event::Connected`]). With framing,
    /// [`frame_in`](Self::frame_in) (a client's WELCOME) and
    /// [`frame_out`](Self::frame_out) (a server's WELCOME) call this
    /// themselves. Ignored unless waiting for [`Handshake::Message`].
    pub fn admitted(&mut self) {
        if self.handshake() != Some(Handshake::Message) {
            return;
        }
        self.flags |= F_ADMITTED;
        if self.has(F_SERVER) {
            self.events |= E_ACCEPTED;
            if self.has(F_SECURITY) {
                self.events |= E_SECURED;
            }
        }
        self.advance();
    }

    /// A frame received from the peer, checked against the frame order. A
    /// violation is the peer's protocol error: the connection is reset
    /// ([`Reason::ProtocolError`]) and the error says which rule it broke. A
    /// client's WELCOME is its admission ([`admitted`](Self::admitted) is
    /// called here); a client's REJECT ends it with [`Reason::ConnectRejected`]
    /// (released: the server closes after it). A FAREWELL only passes the
    /// check: the driver reports [`eof`](Self::eof) once it has also checked
    /// that nothing follows it. Without a message layer every frame is an
    /// error, and nothing changes (a driver bug, not the peer's).
    pub fn frame_in(&mut self, kind: FrameType) -> Result<(), FrameError> {
        let Some(order) = self.order.as_mut() else {
            return Err(not_framed(kind));
        };
        if let Err(e) = order.check(kind) {
            self.violated();
            return Err(e);
        }
        match (order.role(), kind) {
            (Role::Client, FrameType::Welcome) => self.admitted(),
            (Role::Client, FrameType::Reject) if self.live() => {
                self.finish(Reason::ConnectRejected, A_RELEASE)
            }
            _ => {}
        }
        Ok(())
    }

    /// A frame of ours accepted for sending, in queue order, checked against
    /// the frame order ([`Order::check_queued`]: a client's DATA and FAREWELL
    /// may be queued before WELCOME, since [`holds_output`](Self::holds_output)
    /// holds them until it came). An error is a bug of the caller and changes
    /// nothing. A server's WELCOME is its admission
    /// ([`admitted`](Self::admitted) is called here); its REJECT is followed by
    /// [`reject`](Self::reject).
    pub fn frame_out(&mut self, kind: FrameType) -> Result<(), FrameError> {
        let Some(order) = self.order.as_mut() else {
            return Err(not_framed(kind));
        };
        order.check_queued(kind)?;
        if order.role() == Role::Server && kind == FrameType::Welcome {
            self.admitted();
        }
        Ok(())
    }

    /// `n` queued bytes reached the kernel.
    #[inline]
    pub fn wrote(&mut self, n: usize) {
        // Once closed, `unsent` is final (it was reported with Closed).
        if !self.live() {
            return;
        }
        self.queued = self.queued.saturating_sub(n as u64);
        self.flush_fin();
    }

    /// The FIN asked by [`Action::SendFin`] is on the wire (over TLS, after
    /// close_notify was written): our direction is finished, and if the peer's
    /// is too, the socket closes gracefully. Ignored unless a SendFin was
    /// polled and not yet answered. If sending the FIN failed, report
    /// [`fail`](Self::fail) instead.
    pub fn fin_sent(&mut self) {
        if self.live() && self.send == SendSide::FinPending && self.actions & A_FIN == 0 {
            self.send = SendSide::Finished;
            self.maybe_finish();
        }
    }

    /// `n` bytes were read from the kernel: held for the user, or dropped while
    /// `close()` drains.
    #[inline]
    pub fn read(&mut self, n: usize) {
        // No connection, nothing to read; once closed, `unread` is final.
        if !self.live() {
            return;
        }
        if self.closing.is_some() {
            self.dropped += n as u64;
        } else {
            self.held += n as u64;
        }
    }

    /// `n` held bytes were handed to the user, answering the pending recv.
    #[inline]
    pub fn delivered(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n as u64);
        self.flags &= !F_RECV;
    }

    /// Held bytes will never be delivered (an Exact recv cut short); count them
    /// as unread.
    pub fn drop_held(&mut self) {
        self.dropped += std::mem::take(&mut self.held);
    }

    /// The peer's FIN is known (the poller said so) though bytes before it may
    /// still wait in the kernel. Remembered during a handshake carried over the
    /// wire, so the connection shows [`State::NoRecv`] as soon as it opens.
    pub fn fin_known(&mut self) {
        if self.wire_up() && self.recv == RecvSide::Open {
            self.began.get_or_insert(Side::Peer);
            self.recv = RecvSide::FinKnown;
        }
    }

    /// A read found the end of the peer's stream: every byte before its FIN was
    /// read. Bytes still held for an unfinished recv can never complete it and are
    /// counted as unread. (During a handshake the end of the stream is the
    /// handshake's failure, which the driver reports with [`fail`](Self::fail);
    /// it is ignored here.)
    ///
    /// On a datagram socket (DTLS: the peer's close_notify, reported once the
    /// datagrams before it were delivered) the peer's end ends the socket
    /// ([`Reason::ByPeer`]): there is no half-close to keep sending in.
    pub fn eof(&mut self) {
        if self.phase != Phase::Open || self.recv == RecvSide::Finished {
            return;
        }
        if self.is_datagram() {
            self.began.get_or_insert(Side::Peer);
            self.recv = RecvSide::Finished;
            self.send = SendSide::Finished;
            self.maybe_finish();
            return;
        }
        self.began.get_or_insert(Side::Peer);
        self.recv = RecvSide::Finished;
        self.flags &= !F_RECV;
        self.actions &= !A_DRAIN;
        self.drop_held();
        if self.closing.is_none() {
            self.events |= E_PEER_SHUTDOWN;
        }
        self.maybe_finish();
    }

    /// The driver probed, as [`wants_end_probe`](Self::wants_end_probe) asked,
    /// and found nothing left before the peer's FIN (over TLS: the peer's
    /// close_notify was read and no plaintext waits): rule 2 ends the peer's
    /// direction now ([`eof`](Self::eof)) rather than at a recv that may never
    /// come. Ignored when the probe is not wanted (any more).
    pub fn nothing_left(&mut self) {
        if self.wants_end_probe() {
            self.eof();
        }
    }

    /// The socket failed with `reason` (an OS error while connecting, binding,
    /// listening, a handshake failing, sending the FIN failing, or a connection
    /// lost under us).
    pub fn fail(&mut self, reason: Reason) {
        if !matches!(self.phase, Phase::Done(_)) {
            self.finish(reason, A_RELEASE);
        }
    }

    /// The peer broke the protocol spoken over the connection: reset it, for
    /// nothing more it sends can be trusted.
    pub fn violated(&mut self) {
        if self.live() {
            self.finish(Reason::ProtocolError, A_RESET);
        }
    }

    /// A timeout of the connection passed (connect, handshake, idle): abort it —
    /// reset a stream, so the peer knows it was not a graceful end; a datagram
    /// socket has nobody to tell and is discarded. A closing connection is the
    /// linger deadline's to end.
    pub fn expire(&mut self, reason: Reason) {
        if self.live() && self.closing.is_none() {
            let action = if self.is_datagram() {
                A_DISCARD
            } else {
                A_RESET
            };
            self.finish(reason, action);
        }
    }

    /// Time passed: past the linger deadline, a `close()` gives up and resets.
    pub fn timeout(&mut self, now: Instant) {
        match self.closing {
            Some(deadline) if self.live() && now >= deadline => {
                let action = if self.is_datagram() {
                    A_DISCARD
                } else {
                    A_RESET
                };
                self.finish(Reason::LingerTimeout, action);
            }
            _ => {}
        }
    }
}
