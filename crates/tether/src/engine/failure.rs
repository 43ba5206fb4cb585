//! Failures: how each one ends a socket, and with which reason.

use tether_proto::Reason;

use crate::engine::Engine;
use crate::transport::OpenError;
use crate::{Error, SocketId};

impl<S: 'static> Engine<S> {
    /// Record a failure: the lifecycle ends with `reason`, `error` says why.
    pub(crate) fn fail(&mut self, s: SocketId, reason: Reason, error: impl Into<Option<Error>>) {
        if let Some(slot) = self.slot_mut(s) {
            let error = error.into();
            // Until its WELCOME a framed client is still connecting: a
            // connection that dies then was not admitted. A reset is how a
            // listener denies (`ConnectRejected`, as for a plain connect refused
            // or reset); anything else is `ConnectFailed`.
            let awaiting_welcome = slot.extra.framed().is_some()
                && slot.origin.is_none()
                && slot.life.handshake().is_some();
            let reason = match (awaiting_welcome, reason, &error) {
                (true, Reason::Lost, Some(Error::Io(e))) => connect_reason(e),
                (true, Reason::Lost, _) => Reason::ConnectFailed,
                _ => reason,
            };
            if slot.life.closed().is_none() {
                slot.end().error = error;
            }
            slot.life.fail(reason);
        }
    }
}

/// The close reason for each way opening a socket can fail.
pub(crate) fn open_failure(e: OpenError) -> (Reason, Error) {
    match e {
        OpenError::Open(e) => (Reason::OpenFailed, Error::Io(e)),
        OpenError::Bind(e) => (Reason::BindFailed, Error::Io(e)),
        OpenError::Connect(e) => (connect_reason(&e), Error::Io(e)),
        OpenError::Mismatch(why) => (Reason::AddressInvalid, Error::AddressMismatch(why)),
    }
}

/// A refusal means nothing listens there; a reset before the connection was
/// seen up means the listener took it and denied it (a tether listener's
/// `Admission::Deny`). Anything else is a failure to reach it.
pub(crate) fn connect_reason(e: &std::io::Error) -> Reason {
    if matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::ECONNRESET)
    ) {
        Reason::ConnectRejected
    } else {
        Reason::ConnectFailed
    }
}
