//! The rules every step applies: the connection opens once its handshakes
//! are done, the FIN follows the last accepted byte, the socket closes by
//! itself once both directions are done, and closes exactly once.

use std::time::{Duration, Instant};

use crate::frame::{FrameError, FrameType};

use super::*;

impl Lifecycle {
    /// Every handshake done: the connection opens. Only the side that
    /// connected hears Connected; an accepted one heard Accepted already.
    pub(super) fn advance(&mut self) {
        if self.phase == Phase::Connecting && self.handshake().is_none() {
            self.phase = Phase::Open;
            if !self.has(F_SERVER) {
                self.events |= E_CONNECTED;
            }
            self.flush_fin();
        }
    }

    /// Rule 1: the FIN follows the last accepted byte, never precedes it, and
    /// waits for the handshakes (it would otherwise cut them off).
    #[inline]
    pub(super) fn flush_fin(&mut self) {
        if self.phase == Phase::Open
            && !self.holds_output()
            && self.send == SendSide::Draining
            && self.queued == 0
        {
            self.send = SendSide::FinPending;
            self.actions |= A_FIN;
        }
    }

    /// Rule 3: both directions done and all input delivered: close by itself.
    #[inline]
    pub(super) fn maybe_finish(&mut self) {
        if self.phase == Phase::Open
            && self.send == SendSide::Finished
            && self.recv == RecvSide::Finished
        {
            let reason = match self.began {
                Some(Side::Peer) => Reason::ByPeer,
                _ => Reason::Normal,
            };
            self.finish(reason, A_RELEASE);
        }
    }

    /// Rule 4: one terminal transition, one Closed event, after all others.
    pub(super) fn finish(&mut self, reason: Reason, action: u8) {
        self.phase = Phase::Done(reason);
        self.drop_held();
        self.flags &= !F_RECV;
        // A terminal action replaces draining, timers and a FIN not yet carried
        // out: a graceful end comes only after `fin_sent`, so a FIN still
        // pending here belongs to an abort or a failure, and a dead connection
        // is not sent one.
        self.actions = action;
        self.events |= E_CLOSED;
    }
}
/// The error for a frame on a connection without a message layer.
pub(super) fn not_framed(kind: FrameType) -> FrameError {
    FrameError::OutOfOrder {
        got: kind,
        rule: "on a connection without a message layer: it carries no frames",
    }
}

/// `now + linger`; a linger too long to represent is as good as forever (an
/// instant at least half as far that fits), never as good as zero.
pub(super) fn deadline(now: Instant, mut linger: Duration) -> Instant {
    loop {
        if let Some(deadline) = now.checked_add(linger) {
            return deadline;
        }
        linger /= 2;
    }
}

#[inline]
pub(super) fn lowest_bit(bits: u8) -> Option<u8> {
    (bits != 0).then(|| bits & bits.wrapping_neg())
}
