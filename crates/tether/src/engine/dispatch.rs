//! Callbacks: running a user's callback, and the queue of callbacks deferred
//! until the current one returns.

use tether_proto::Reason;

use crate::engine::task::Task;
use crate::{Closed, Cx, SocketId, SocketUser};

impl<S: 'static> Cx<S> {
    /// Run a callback of `s`'s user. The user is taken out of its slot for the
    /// call, so the callback can use `cx` freely, even on its own socket.
    pub(crate) fn call<R>(
        &mut self,
        s: SocketId,
        f: impl FnOnce(&mut dyn SocketUser<S>, &mut Cx<S>) -> R,
    ) -> Option<R> {
        let mut user = self.engine.slot_mut(s)?.user.take()?;
        let r = f(&mut *user, self);
        if let Some(slot) = self.engine.slot_mut(s) {
            // Unless set_user gave it a new one meanwhile.
            if slot.user.is_none() {
                slot.user = Some(user);
            }
        }
        Some(r)
    }

    /// Callbacks queued by operations, run in order once nobody is inside one.
    pub(crate) fn run_tasks(&mut self) {
        while let Some(task) = self.engine.tasks.pop_front() {
            match task {
                Task::Bound(s) => {
                    if let Some(local) = self.engine.slot(s).and_then(|slot| slot.io.local_addr()) {
                        self.call(s, |u, cx| u.on_bound(cx, s, &local));
                    }
                }
                Task::Resolved(s) => {
                    if let Some(addrs) = self.engine.announced.remove(&s) {
                        self.call(s, |u, cx| u.on_resolved(cx, s, &addrs));
                    }
                }
                Task::Connected(s) => {
                    self.call(s, |u, cx| u.on_connected(cx, s));
                }
                Task::TlsReady(s) => self.tls_ready(s),
                Task::Secured(s) => {
                    let info = self
                        .engine
                        .slot(s)
                        .filter(|slot| slot.life.closed().is_none())
                        .and_then(|slot| match slot.extra.tls() {
                            Some(tls) => Some(tls.info()),
                            None => slot.io.dtls().map(|d| d.info()),
                        });
                    if let Some(info) = info {
                        self.call(s, |u, cx| u.on_tls_ready(cx, s, &info));
                    }
                    // With no recv pending, the peer's end is seen now or
                    // never: the poller will not say it again.
                    self.engine.end_if_drained(s);
                    self.engine.settle(s);
                }
                Task::Accepted(s) => {
                    self.call(s, |u, cx| u.on_accepted(cx, s));
                }
                Task::Sent(s) => {
                    self.call(s, |u, cx| u.on_sent(cx, s));
                }
                Task::PeerShutdown(s) if self.engine.is_http(s) => self.http_peer_end(s),
                Task::PeerShutdown(s) => {
                    let farewell = self
                        .engine
                        .slot_mut(s)
                        .and_then(|slot| slot.extra.framed_mut())
                        .and_then(|f| f.farewell.take());
                    self.call(s, |u, cx| u.on_peer_shutdown(cx, s, farewell.as_deref()));
                    // Kept for Closed::farewell too.
                    if let Some(framed) = self
                        .engine
                        .slot_mut(s)
                        .and_then(|slot| slot.extra.framed_mut())
                    {
                        framed.farewell = farewell;
                    }
                }
                Task::Read(s) => self.pump(s),
                Task::Accept(s) => self.pump_accept(s),
                Task::Http(s) => self.http_step(s),
                Task::Closed(s) => self.finish(s),
                Task::State(s, from, to) => {
                    self.call(s, |u, cx| u.on_state(cx, s, from, to));
                }
            }
        }
    }

    /// The last callback of a socket: its slot goes, then `on_closed` runs.
    fn finish(&mut self, s: SocketId) {
        let Some(slot) = self.engine.slot(s) else {
            return;
        };
        if slot.life.closed().is_none() {
            return;
        }
        self.engine.end_dial(s);
        self.engine.end_http(s);
        let mut slot = self.engine.slots.remove(s.idx as usize);
        if let Some(parts) = slot.extra.get_mut() {
            self.engine.timers.disarm_socket(&mut parts.timer);
        }
        let end = slot.extra.take_end();
        let closed = Closed {
            reason: slot.life.closed().unwrap_or(Reason::Lost),
            unsent: slot.life.unsent() + end.kernel_unsent,
            unread: slot.life.unread() + end.kernel_unread,
            error: end.error,
            discard: end.discard,
            farewell: slot.extra.framed_mut().and_then(|f| f.farewell.take()),
        };
        io_log!(debug, slot.log_target(), self.engine.mux_id, socket = %s, reason = %closed.reason, closed.unsent, closed.unread, "closed");
        if let Some(mut user) = slot.user {
            user.on_closed(self, s, &closed);
        }
        if let Some(listener) = slot.origin {
            self.release_admission(listener);
        }
    }
}
