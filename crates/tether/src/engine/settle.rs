//! Carrying out what the lifecycle asks (FIN, RST, release) and queueing what
//! it reports; closing every socket when the loop stops.

use tether_proto::{Action, Event, Reason, State};

use crate::engine::io::Io;
use crate::engine::slot::{find, Slot};
use crate::engine::task::Task;
use crate::engine::Engine;
use crate::security::tls::Flushed;
use crate::transport::Stream;
use crate::DiscardMethod;
use crate::{sys, Cx, Error, SocketId};

impl<S: 'static> Engine<S> {
    /// Carry out what the lifecycle asks, and queue what it reports.
    #[inline]
    pub(crate) fn settle(&mut self, s: SocketId) {
        // Most steps of a busy connection change nothing the lifecycle
        // reports: that check is all they cost.
        if let Some(slot) = self.slot(s) {
            if !(slot.life.is_quiet()
                && slot.extra.timeouts().is_none()
                && slot.life.state() == slot.shown)
            {
                self.settle_changes(s);
            }
        }
    }

    #[inline(never)]
    fn settle_changes(&mut self, s: SocketId) {
        self.unlink_udp(s);
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let mut flush = false;
        let mut close_notify = false;
        while let Some(action) = slot.life.poll_action() {
            match action {
                Action::ArmTimer(at) => self.timers.arm_socket(&mut slot.extra.make().timer, s, at),
                Action::DrainInput => {
                    if slot.readable {
                        self.tasks.push_back(Task::Read(s));
                    }
                }
                Action::SendFin if slot.extra.tls().is_some() => {
                    // close_notify first, the FIN once it is written. (Every
                    // send is out by now, so nothing else is in the way.) The
                    // end is decided only once the FIN went out.
                    if let (Io::Stream(stream), Some(tls)) = (&slot.io, slot.extra.tls_mut()) {
                        tls.close_notify();
                        match tls.flush(stream, true).1 {
                            Ok(Flushed::Done { fin: true, .. }) => send_fin(slot, self.mux_id, s),
                            Ok(_) => flush = true,
                            Err(e) => {
                                slot.end().error.get_or_insert(Error::Io(e));
                                slot.life.fail(Reason::Lost);
                            }
                        }
                    }
                }
                Action::SendFin if slot.io.dtls().is_some() => close_notify = true,
                Action::SendFin => send_fin(slot, self.mux_id, s),
                Action::Reset | Action::Discard => {
                    // Its requests end before its descriptor does.
                    let stashed = Engine::<S>::ring_retire(self.ring.as_deref_mut(), s);
                    abort(slot, action == Action::Discard);
                    if stashed > 0 {
                        slot.end().kernel_unread += stashed;
                    }
                }
                Action::Release => {
                    // A connection lost under us (a user timeout, keepalive
                    // giving up) may leave sent bytes unacknowledged in the
                    // kernel: they did not reach the peer, so they are unsent.
                    // (Plain TCP only: under TLS the kernel holds records, not the user's
                    // bytes, and a lost TLS session's last records are its own.)
                    let lost =
                        slot.life.closed() == Some(Reason::Lost) && slot.extra.tls().is_none();
                    if let (true, Io::Stream(stream @ Stream::Tcp(_))) = (lost, &slot.io) {
                        let unsent = sys::pending_out(stream);
                        slot.end().kernel_unsent = unsent;
                    }
                    // Datagrams a DTLS socket decrypted and nobody asked for.
                    if let Some(unread) = slot.io.inbox().map(|(i, _)| i.unread()) {
                        slot.end().kernel_unread = unread;
                    }
                    // On the ring, the ring closes it (no system call of
                    // its own); a reset or discard above stays synchronous:
                    // its RST or silent drop happens now, not when the
                    // ring's deferred work runs.
                    Engine::<S>::ring_release(self.ring.as_deref_mut(), s, &mut slot.io);
                }
            }
        }
        // A new timeout stage (connecting, handshaking, open) counts from now.
        if let Some(d) = slot.extra.timeouts_mut() {
            let stage = slot.life.stage();
            if stage != d.stage {
                d.stage = stage;
                d.since = self.clock.at_call(self.running.then_some(self.now));
                self.arm(s);
            }
        }
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        // The last change (into NotConnected) is told just before on_closed,
        // after the socket's other callbacks; any other, before this step's.
        let state = slot.life.state();
        if state != slot.shown && slot.life.closed().is_none() {
            self.tasks.push_back(Task::State(s, slot.shown, state));
            slot.shown = state;
        }
        while let Some(event) = slot.life.poll_event() {
            let task = match event {
                Event::Accepted => Task::Accepted(s),
                Event::Secured => Task::Secured(s),
                Event::Connected => Task::Connected(s),
                Event::PeerShutdown => Task::PeerShutdown(s),
                Event::Closed(_) => {
                    let from = std::mem::replace(&mut slot.shown, State::NotConnected);
                    if from != State::NotConnected {
                        self.tasks
                            .push_back(Task::State(s, from, State::NotConnected));
                    }
                    slot.want = None;
                    slot.extra.take_outq();
                    Task::Closed(s)
                }
            };
            self.tasks.push_back(task);
        }
        if flush {
            self.flush(s);
        }
        if close_notify {
            self.dtls_close_notify(s);
        }
    }
}

impl<S: 'static> Cx<S> {
    /// The loop is ending: close every socket, each with its `on_closed`. A
    /// callback may open new sockets meanwhile; they are closed in turn.
    pub(crate) fn stop_all(&mut self) {
        self.engine.stopping = true;
        for _ in 0..64 {
            if self.engine.slots.is_empty() {
                break;
            }
            let ids: Vec<SocketId> = self
                .engine
                .slots
                .iter()
                .map(|(idx, slot)| SocketId {
                    idx: idx as u32,
                    gen: slot.gen,
                })
                .collect();
            for s in ids {
                if let Some(slot) = self.engine.slot_mut(s) {
                    slot.life.stop();
                }
                self.engine.settle(s);
            }
            self.run_tasks();
        }
        self.engine.timers.clear();
        self.engine.stopping = false;
    }
}

/// Abort a connection: count what the kernel still holds, then RST, or
/// forget it silently if `discard` and the process may.
fn abort<S>(slot: &mut Slot<S>, discard: bool) {
    let io = slot.io.close();
    let (unsent, unread, method) = match &io {
        Io::Stream(stream @ Stream::Tcp(_)) => {
            let counts = (sys::pending_out(stream), sys::pending_in(stream));
            let method = if discard && sys::set_repair(stream).is_ok() {
                DiscardMethod::Silent
            } else {
                let _ = sys::set_abortive(stream);
                DiscardMethod::Reset
            };
            (counts.0, counts.1, method)
        }
        // What a Unix socket wrote already sits in the peer's receive queue, which
        // closing does not take back (and SIOCOUTQ counts it in kernel memory, not
        // bytes): only TCP has bytes in the kernel that an abort loses.
        Io::Stream(stream @ Stream::Local(_)) => (0, sys::pending_in(stream), DiscardMethod::Close),
        // Nobody is told of a UDP socket's end. Sent datagrams are counted by
        // tether's own queue; those waiting to be received are read and counted.
        Io::Udp(sock, _) => (0, sys::drain_datagrams(sock), DiscardMethod::Silent),
        Io::UdpListener(l) => (0, sys::drain_datagrams(&l.sock), DiscardMethod::Silent),
        // Its datagrams wait in its own queue, not the kernel's.
        Io::Association(a) => (0, a.inbox.unread(), DiscardMethod::Silent),
        Io::DtlsClient(c) => (
            0,
            c.inbox.unread() + sys::drain_datagrams(&c.sock),
            DiscardMethod::Silent,
        ),
        _ => return,
    };
    // Decrypted bytes nobody took are unread too (the kernel's count of a TLS
    // socket is of records, close enough to the bytes they carry).
    let decrypted = slot
        .extra
        .tls_mut()
        .map_or(0, |t| t.buffered_plaintext() as u64);
    let end = slot.end();
    end.kernel_unsent = unsent;
    end.kernel_unread = unread + decrypted;
    if discard {
        end.discard = Some(method);
    }
    drop(io);
}

/// Half-close the stream (FIN). The end is decided after it went out: a peer
/// that reset meanwhile makes it fail (ENOTCONN), and the socket is `Lost`,
/// not ended gracefully.
pub(crate) fn send_fin<S>(slot: &mut Slot<S>, mux: u32, s: SocketId) {
    let Io::Stream(stream) = &slot.io else { return };
    io_log!(trace, slot.log_target(), mux, socket = %s, "FIN");
    match stream.shutdown_write() {
        Ok(()) => slot.life.fin_sent(),
        Err(e) => {
            slot.end().error.get_or_insert(Error::Io(e));
            slot.life.fail(Reason::Lost);
        }
    }
}
