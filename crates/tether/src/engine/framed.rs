//! The message layer in the engine: frames between the byte stream and the
//! user, admission on HELLO, the handshake and the end by FAREWELL.

use std::io::{self, ErrorKind};

use tether_proto::frame::{self, Decoder, FrameError, FrameType, HEADER_LEN};
use tether_proto::{Handshake, Lifecycle, Op, Reason, Refused};

use crate::engine::io::Io;
use crate::engine::read::read_stream;
use crate::engine::slot::{find, Slot};
use crate::engine::task::Task;
use crate::engine::tls::secured;
use crate::engine::Engine;
use crate::log::Target;
use crate::message::framed::{after_farewell, Framed};
use crate::security::tls::read_failure;
use crate::transport::send_queue::SendQueue;
use crate::transport::Read;
use crate::{Admission, ApiError, Cx, Error, PeerInfo, SocketId};

impl<S: 'static> Engine<S> {
    /// One frame out. Before admission a client's frames wait for WELCOME;
    /// `marked` frames are the user's sends (one `on_sent` each).
    pub(crate) fn send_frame(
        &mut self,
        s: SocketId,
        kind: FrameType,
        payload: &[u8],
        marked: bool,
    ) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        let Some(framed) = slot.extra.framed_mut() else {
            return Ok(());
        };
        if payload.len() > framed.max_payload() {
            return Err(ApiError::MessageTooLarge {
                len: payload.len(),
                max: framed.max_payload(),
            });
        }
        let header = frame::header(kind, payload.len()).map_err(|_| ApiError::MessageTooLarge {
            len: payload.len(),
            max: frame::WIRE_MAX_PAYLOAD,
        })?;
        let parts = [&header[..], payload];
        slot.life.check_send()?;
        if slot.life.frame_out(kind).is_err() {
            // Our own frame out of order: the caller's misuse (or ours).
            return Err(ApiError::Refused(Refused {
                op: Op::Send,
                state: slot.life.state(),
            }));
        }
        // A client's messages wait for WELCOME (its HELLO goes first).
        if kind != FrameType::Hello && slot.life.holds_output() {
            slot.life.send(HEADER_LEN + payload.len())?;
            framed
                .held
                .get_or_insert_with(Box::default)
                .push_parts(&parts, 0, marked);
            return Ok(());
        }
        self.send_parts(s, &parts, marked)
    }

    /// A framed client's connect went out: its HELLO is the first thing sent.
    pub(crate) fn send_hello(&mut self, s: SocketId) {
        let hello = find(&mut self.slots, s)
            .and_then(|slot| slot.extra.framed_mut())
            .and_then(|framed| framed.hello.take());
        if let Some(hello) = hello {
            let _ = self.send_frame(s, FrameType::Hello, &hello, false);
        }
    }

    /// Messages sent before WELCOME go out now, in order.
    fn release(&mut self, s: SocketId, held: &SendQueue) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        match slot.extra.tls_mut() {
            Some(tls) if secured(&slot.life) => tls.queue(held.pending(), held.sends()),
            _ => slot.extra.outq().append(held),
        }
    }

    /// The byte stream ended without a FAREWELL: the peer vanished or broke off.
    fn framed_eof(&mut self, s: SocketId) {
        let Some(slot) = find(&mut self.slots, s) else {
            return;
        };
        let server = slot.origin.is_some();
        let (reason, why) = match (slot.life.handshake(), server) {
            (Some(_), true) => (
                Reason::Lost,
                "the peer closed the connection before its HELLO",
            ),
            (Some(_), false) => (
                Reason::ConnectFailed,
                "the server closed the connection before WELCOME or REJECT",
            ),
            (None, _) => (
                Reason::Lost,
                "the peer closed the connection without FAREWELL",
            ),
        };
        self.fail(
            s,
            reason,
            Error::Io(io::Error::new(ErrorKind::UnexpectedEof, why)),
        );
    }

    /// The peer broke a rule: reset, and say which rule.
    fn protocol_error(&mut self, s: SocketId, e: FrameError) {
        io_log!(debug, Target::Framed, self.mux_id, socket = %s, error = %e, "protocol error");
        if let Some(slot) = find(&mut self.slots, s) {
            // The lifecycle may have ended the connection for this very
            // frame (a rule of the order): the error is still this one's.
            let ours = matches!(slot.life.closed(), None | Some(Reason::ProtocolError));
            if ours && slot.extra.error().is_none() {
                slot.end().error = Some(Error::Frame(e));
            }
            slot.life.violated();
        }
        self.settle(s);
    }
}

impl<S: 'static> Cx<S> {
    /// Read frames for the handshake or the pending recv; a frame that arrived
    /// whole in the read buffer is handed to the user from there.
    pub(crate) fn pump_framed(&mut self, s: SocketId) {
        let mut rbuf = std::mem::take(&mut self.engine.rbuf);
        for _ in 0..16 {
            let Some(slot) = find(&mut self.engine.slots, s) else {
                break;
            };
            let Some(framed) = slot.extra.framed_mut() else {
                break;
            };
            if !slot.life.wants_input() || !wants_frame(&slot.life, slot.want.is_some()) {
                break;
            }
            let mut decoder = std::mem::take(&mut framed.decoder);
            let mut stash = std::mem::take(&mut framed.stash);
            let from_stash = !stash.is_empty();
            let outcome = if from_stash {
                Read::Data(stash.len())
            } else {
                let fin_seen = slot.life.fin_seen();
                let Slot {
                    io: Io::Stream(stream),
                    extra,
                    readable,
                    ..
                } = slot
                else {
                    put_back(slot, decoder, stash);
                    break;
                };
                read_stream(stream, extra.tls_mut(), readable, fin_seen, &mut rbuf)
            };
            let n = match outcome {
                Read::Data(n) => n,
                other => {
                    put_back(slot, decoder, stash);
                    match other {
                        Read::Eof => self.engine.framed_eof(s),
                        Read::Failed(e) => self.engine.fail(s, read_failure(&e), e),
                        _ => {}
                    }
                    self.engine.settle(s);
                    break;
                }
            };
            if !from_stash {
                slot.life.read(n);
                slot.active = self.engine.stamp;
            }
            let input = if from_stash { &stash[..] } else { &rbuf[..n] };
            let (used, more) = self.frames(s, &mut decoder, input);
            let rest = if from_stash {
                stash.drain(..used);
                stash
            } else {
                // Nobody wants the rest now: keep it for the next recv. The one
                // copy a message can cost, and only when no recv is pending.
                rbuf[used..n].to_vec()
            };
            match find(&mut self.engine.slots, s) {
                Some(slot) => put_back(slot, decoder, rest),
                None => break,
            }
            if !more {
                break;
            }
        }
        self.engine.rbuf = rbuf;
        // The turn's reads ran out with frames still wanted and bytes waiting:
        // readiness will not be reported again, so come back for them.
        if let Some(slot) = self.engine.slot(s) {
            let wanted = wants_frame(&slot.life, slot.want.is_some());
            let waiting = slot.readable || slot.extra.framed().is_some_and(|f| !f.stash.is_empty());
            if wanted && waiting && slot.life.wants_input() {
                self.engine.tasks.push_back(Task::Read(s));
            }
        }
    }

    /// Decode and act on frames from `input` while they are wanted. Returns the
    /// bytes used and whether reading may go on.
    fn frames(&mut self, s: SocketId, decoder: &mut Decoder, input: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        while pos < input.len() {
            let wanted = self.engine.slot(s).is_some_and(|slot| {
                slot.life.wants_input() && wants_frame(&slot.life, slot.want.is_some())
            });
            if !wanted {
                return (pos, false);
            }
            match decoder.decode(&input[pos..]) {
                Err(e) => {
                    self.engine.protocol_error(s, e);
                    return (input.len(), false);
                }
                Ok((used, frame)) => {
                    pos += used;
                    if let Some(frame) = frame {
                        if !self.on_frame(s, frame.kind, frame.payload, &input[pos..]) {
                            return (pos, false);
                        }
                    }
                }
            }
        }
        (pos, true)
    }

    /// One frame from the peer, and the bytes read after it. Returns whether
    /// reading may go on.
    fn on_frame(&mut self, s: SocketId, kind: FrameType, payload: &[u8], after: &[u8]) -> bool {
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return false;
        };
        let Some(framed) = slot.extra.framed_mut() else {
            return false;
        };
        slot.life.delivered(HEADER_LEN + payload.len());
        // The lifecycle judges the order; a client's WELCOME is its admission
        // and its REJECT its end.
        if let Err(e) = slot.life.frame_in(kind) {
            self.engine.protocol_error(s, e);
            return false;
        }
        match kind {
            FrameType::Hello => self.admission(s, payload),
            FrameType::Welcome => {
                framed.welcome = (!payload.is_empty()).then(|| payload.to_vec());
                let held = framed.held.take();
                if let Some(held) = held {
                    self.engine.release(s, &held);
                }
                self.engine.settle(s);
                self.engine.flush(s);
                true
            }
            FrameType::Reject => {
                framed.farewell = Some(payload.to_vec());
                self.engine.settle(s);
                false
            }
            FrameType::Data => {
                slot.want = None;
                self.call(s, |u, cx| u.on_received(cx, s, payload));
                true
            }
            FrameType::Farewell => {
                let next = match after_farewell(after) {
                    Ok(Some(next)) => slot.life.frame_in(next).err(),
                    Ok(None) => None,
                    Err(e) => Some(e),
                };
                if let Some(e) = next {
                    self.engine.protocol_error(s, e);
                    return false;
                }
                framed.farewell = Some(payload.to_vec());
                slot.want = None;
                slot.life.eof();
                self.engine.settle(s);
                false
            }
        }
    }

    /// A HELLO: the listener's user decides, seeing the peer and its data.
    fn admission(&mut self, s: SocketId, hello: &[u8]) -> bool {
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return false;
        };
        let listener = slot.origin;
        let info = PeerInfo {
            peer: slot.io.peer_addr(),
            hello: Some(hello.to_vec()),
        };
        let admission = listener.and_then(|l| self.call(l, |u, cx| u.on_incoming(cx, l, &info)));
        let (user, welcome) = match admission {
            Some(Admission::Accept(user)) => (user, Vec::new()),
            Some(Admission::AcceptWith(user, data)) => (user, data),
            Some(Admission::Reject(reason)) => {
                // REJECT, then a graceful close, so the client reads the reason.
                // The answer ends the handshake: the connection is up for the
                // lifecycle, only to close (FIN after the REJECT, then drain);
                // with no user, nobody hears of it.
                let now = self.engine.call_time();
                let _ = self.engine.send_frame(s, FrameType::Reject, &reason, false);
                if let Some(slot) = find(&mut self.engine.slots, s) {
                    let _ = slot.life.reject(now, slot.linger());
                }
                self.engine.settle(s);
                return false;
            }
            _ => {
                if let Some(slot) = find(&mut self.engine.slots, s) {
                    let _ = slot.life.reset();
                }
                self.engine.settle(s);
                return false;
            }
        };
        let Some(slot) = find(&mut self.engine.slots, s) else {
            return false;
        };
        slot.set_user(user);
        // Its user learns of it from here: its first state change is out of
        // NotConnected, as every user's is.
        slot.shown = tether_proto::State::NotConnected;
        // WELCOME is the admission: the lifecycle reports `on_accepted` now
        // that the user exists (and `on_tls_ready`, held until then).
        let _ = self
            .engine
            .send_frame(s, FrameType::Welcome, &welcome, false);
        self.engine.settle(s);
        true
    }
}

fn put_back<S>(slot: &mut Slot<S>, decoder: Decoder, stash: Vec<u8>) {
    if let Some(framed) = slot.extra.framed_mut() {
        framed.decoder = decoder;
        framed.stash = stash;
    }
}

/// Frames are read before any recv while the message handshake runs, else
/// only for a pending recv.
fn wants_frame(life: &Lifecycle, recv_pending: bool) -> bool {
    life.handshake() == Some(Handshake::Message) || recv_pending
}

impl<S: 'static> Engine<S> {
    /// Make a stream socket framed (the wire format of `tether_proto::frame`),
    /// before it connects or listens. A client sends `hello` as its connect data; a listener's
    /// connections inherit the framing, and its `on_incoming` sees each client's
    /// address and connect data before deciding. Messages then move whole:
    /// one `send` is one message, one `on_received` one message (whatever the
    /// recv's length), at most 16 MiB unless `set_frame_limit` says otherwise.
    pub(crate) fn set_framing(&mut self, s: SocketId, hello: &[u8]) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            return Err(ApiError::Unsupported {
                op: "framing",
                transport: crate::Transport::Udp,
            });
        }
        if slot.life.state() != tether_proto::State::NotConnected {
            return Err(ApiError::Refused(Refused {
                op: tether_proto::Op::SetFraming,
                state: slot.life.state(),
            }));
        }
        if hello.len() > frame::DEFAULT_MAX_PAYLOAD {
            return Err(ApiError::MessageTooLarge {
                len: hello.len(),
                max: frame::DEFAULT_MAX_PAYLOAD,
            });
        }
        let max = slot
            .extra
            .framed()
            .map_or(frame::DEFAULT_MAX_PAYLOAD, |f| f.max_payload());
        slot.extra.make().framed = Some(Box::new(Framed::new(hello, max)));
        Ok(())
    }

    /// The largest message a framed socket accepts from its peer and lets its
    /// user send (16 MiB by default). A peer that announces a longer frame
    /// breaks the protocol: its connection is reset before any of it is held.
    pub(crate) fn set_frame_limit(
        &mut self,
        s: SocketId,
        max_payload: usize,
    ) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        let framed = slot
            .extra
            .make()
            .framed
            .get_or_insert_with(|| Box::new(Framed::new(&[], max_payload)));
        framed.decoder = Decoder::new(max_payload);
        framed.max_payload = max_payload;
        Ok(())
    }

    /// Half-close a framed socket with disconnect data: FAREWELL(`data`), then
    /// FIN, after every message queued before. The peer's `on_peer_shutdown`
    /// gets `data`.
    pub(crate) fn shutdown_with(&mut self, s: SocketId, data: &[u8]) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        let Some(framed) = slot.extra.framed() else {
            return Err(ApiError::Unsupported {
                op: "shutdown_with",
                transport: slot.io.kind().unwrap_or(crate::Transport::Tcp),
            });
        };
        if data.len() > framed.max_payload() {
            return Err(ApiError::MessageTooLarge {
                len: data.len(),
                max: framed.max_payload(),
            });
        }
        slot.life.check_send()?;
        self.send_frame(s, FrameType::Farewell, data, false)?;
        self.live(s)?.life.shutdown()?;
        self.settle(s);
        Ok(())
    }

    /// The accept data of the WELCOME a framed client was admitted with.
    pub(crate) fn welcome(&self, s: SocketId) -> Option<&[u8]> {
        self.slot(s)?.extra.framed()?.welcome.as_deref()
    }
}
