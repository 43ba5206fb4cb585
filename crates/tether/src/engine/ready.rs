//! Readiness from the poller: a connect completing, input, room to write.

use std::io::{self, ErrorKind};

use tether_proto::{Handshake, Reason};

use crate::engine::failure::connect_reason;
use crate::engine::slot::find;
use crate::engine::task::Task;
use crate::engine::Engine;
use crate::transport::Io;
use crate::{Cx, Error, SocketId};

impl<S: 'static> Engine<S> {
    /// A connecting socket became ready: connected, failed, or neither yet.
    /// Returns true once connected.
    fn check_connect(&mut self, s: SocketId) -> bool {
        let mux = self.mux_id;
        let Some(slot) = find(&mut self.slots, s) else {
            return false;
        };
        let Io::Stream(stream) = &slot.io else {
            return false;
        };
        match stream.take_error() {
            Ok(None) if stream.is_connected() => {
                io_log!(debug, slot.log_target(), mux, socket = %s, "connected");
                // The transport is up: the lifecycle opens the connection, or
                // the next handshake (TLS, then framing) begins.
                slot.life.connected();
                self.settle(s);
                self.flush(s);
                true
            }
            Ok(None) => false,
            Ok(Some(e)) | Err(e) => {
                io_log!(debug, slot.log_target(), mux, socket = %s, error = %e, "connect failed");
                self.fail(s, connect_reason(&e), Error::Io(e));
                self.settle(s);
                false
            }
        }
    }
}

impl<S: 'static> Cx<S> {
    pub(crate) fn on_ready(&mut self, s: SocketId, event: &mio::event::Event) {
        let Some(slot) = self.engine.slot_mut(s) else {
            return;
        };
        match &slot.io {
            Io::Listener(..) => self.pump_accept(s),
            Io::Udp(..) => self.engine.on_udp_ready(s, event),
            Io::Stream(_) => {
                if !slot.life.wire_up() && !self.engine.check_connect(s) {
                    return;
                }
                let Some(slot) = self.engine.slot_mut(s) else {
                    return;
                };
                let Io::Stream(stream) = &slot.io else { return };
                if event.is_error() {
                    let error = match stream.take_error() {
                        Ok(Some(e)) | Err(e) => e,
                        Ok(None) => io::Error::from(ErrorKind::ConnectionReset),
                    };
                    self.engine.fail(s, Reason::Lost, Error::Io(error));
                    self.engine.settle(s);
                    return;
                }
                if event.is_readable() || event.is_read_closed() {
                    slot.readable = true;
                }
                if event.is_read_closed() {
                    // Edge-triggered: told once. The lifecycle keeps it through
                    // a handshake still running.
                    slot.life.fin_known();
                    self.engine.end_if_drained(s);
                    self.engine.settle(s);
                }
                if event.is_writable() {
                    self.engine.flush(s);
                }
                // Only a layer above the transport has a handshake to drive.
                let handshake = self
                    .engine
                    .slot(s)
                    .filter(|slot| slot.tls.is_some() || slot.framed.is_some())
                    .and_then(|slot| slot.life.handshake());
                if handshake == Some(Handshake::Security) {
                    // What came is the handshake's. Once that is over, tls_ready
                    // reads for the recv, after on_connected is queued.
                    self.engine.drive_tls(s);
                } else if let Some(slot) = self.engine.slot(s) {
                    let handshaking = handshake == Some(Handshake::Message);
                    if slot.readable
                        && (slot.want.is_some() || slot.life.is_draining() || handshaking)
                    {
                        // Read now if nothing this readiness caused waits
                        // before it (the loop runs each event's tasks before
                        // the next event): the same order as through the
                        // queue, without the round trip through it.
                        if self.engine.tasks.is_empty() {
                            self.pump(s);
                        } else {
                            self.engine.tasks.push_back(Task::Read(s));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
