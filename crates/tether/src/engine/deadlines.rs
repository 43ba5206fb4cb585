//! Deadlines: the loop's timer heap fired, socket timeouts judged.

use std::time::Instant;

use crate::engine::io::Io;
use crate::engine::slot::find;
use crate::engine::timers::Due;
use crate::engine::Engine;
use crate::log::Target;
use crate::{Cx, SocketId};

impl<S: 'static> Cx<S> {
    pub(crate) fn fire_timers(&mut self) {
        let now = self.engine.now;
        while let Some(due) = self.engine.timers.pop_due(now) {
            match due {
                Due::Socket(s) => {
                    let Some(slot) = self.engine.slot(s) else {
                        continue;
                    };
                    if matches!(slot.io, Io::Listener(..)) {
                        self.pump_accept(s);
                    } else {
                        self.engine.on_deadline(s, now);
                    }
                }
                Due::User(id, at) => {
                    if let Some(mut f) = self.engine.timers.take(id) {
                        f(self);
                        self.engine.timers.restore(id, at, now, f);
                    }
                }
            }
            self.run_tasks();
        }
    }
}

impl<S: 'static> Engine<S> {
    /// Put the socket's current deadline on the timer heap.
    pub(crate) fn arm(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let timeout = match (slot.extra.timeouts(), slot.life.stage()) {
            (Some(d), Some(stage)) => d
                .config
                .deadline(stage, d.since, slot.active.at(self.epoch)),
            _ => None,
        };
        // A DTLS handshake's retransmission shares the socket's one timer.
        let retransmit = slot.io.dtls().and_then(|d| d.deadline());
        let at = match (timeout, retransmit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            self.timers.arm_socket(&mut slot.extra.make().timer, s, at);
        }
    }

    /// One of the socket's deadlines came up: the linger of a `close()`, or a
    /// timeout; an idle deadline that activity pushed back is armed again.
    pub(crate) fn on_deadline(&mut self, s: SocketId, now: Instant) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        slot.life.timeout(now);
        if let (Some(d), Some(stage)) = (slot.extra.timeouts(), slot.life.stage()) {
            match d
                .config
                .expired(stage, d.since, slot.active.at(self.epoch), now)
            {
                Some(reason) => {
                    io_log!(debug, Target::Timer, self.mux_id, socket = %s, %reason, "timed out");
                    slot.life.expire(reason);
                }
                None => self.arm(s),
            }
        }
        self.settle(s);
        self.dtls_tick(s, now);
        self.arm(s);
    }
}
