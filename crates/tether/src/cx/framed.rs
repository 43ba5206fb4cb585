//! Framed messages on [`Cx`]: switching a socket to the message layer,
//! its limit, and disconnect data.

use tether_proto::frame::{self, Decoder, FrameType};
use tether_proto::Refused;

use crate::message::framed::Framed;
use crate::{ApiError, Cx, SocketId};

impl<S: 'static> Cx<S> {
    /// Make a stream socket framed (DESIGN section 5), before it connects or
    /// listens. A client sends `hello` as its connect data; a listener's
    /// connections inherit the framing, and its `on_incoming` sees each client's
    /// address and connect data before deciding. Messages then move whole:
    /// one `send` is one message, one `on_received` one message (whatever the
    /// recv's length), at most 16 MiB unless `set_frame_limit` says otherwise.
    pub fn set_framing(&mut self, s: SocketId, hello: &[u8]) -> Result<(), ApiError> {
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
            .framed
            .as_ref()
            .map_or(frame::DEFAULT_MAX_PAYLOAD, |f| f.max_payload());
        slot.framed = Some(Box::new(Framed::new(hello, max)));
        Ok(())
    }

    /// The largest message a framed socket accepts from its peer and lets its
    /// user send (16 MiB by default). A peer that announces a longer frame
    /// breaks the protocol: its connection is reset before any of it is held.
    pub fn set_frame_limit(&mut self, s: SocketId, max_payload: usize) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        let framed = slot
            .framed
            .get_or_insert_with(|| Box::new(Framed::new(&[], max_payload)));
        framed.decoder = Decoder::new(max_payload);
        framed.max_payload = max_payload;
        Ok(())
    }

    /// Half-close a framed socket with disconnect data: FAREWELL(`data`), then
    /// FIN, after every message queued before. The peer's `on_peer_shutdown`
    /// gets `data`.
    pub fn shutdown_with(&mut self, s: SocketId, data: &[u8]) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        let Some(framed) = slot.framed.as_ref() else {
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
    pub fn welcome(&self, s: SocketId) -> Option<&[u8]> {
        self.slot(s)?.framed.as_ref()?.welcome.as_deref()
    }
}
