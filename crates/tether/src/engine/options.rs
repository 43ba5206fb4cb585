//! Per-socket options behind `Cx`: timeouts, idle time, TCP keepalive and
//! user timeout, a listener's admission limit, and SO_REUSEPORT before bind.

use std::io::{self};
use std::os::fd::BorrowedFd;
use std::time::Duration;

use tether_proto::timeouts::Timeouts;

use crate::engine::io::Io;
use crate::engine::slot::Deadlines;
use crate::engine::task::Task;
use crate::engine::Engine;
use crate::transport::{tcp, Transport};
use crate::{ApiError, Keepalive, SocketId};

impl<S: 'static> Engine<S> {
    /// Set the socket's timeouts: `connect` (ends with `ConnectTimeout`),
    /// `handshake` for TLS and framed connections (`HandshakeTimeout`), `idle`
    /// with no data either way (`IdleTimeout`: reset, or for UDP a discard). On
    /// a listener they apply to every connection it takes, from its accept: a
    /// handshake timeout there is what evicts a client that connects and
    /// dribbles.
    pub(crate) fn set_timeouts(&mut self, s: SocketId, timeouts: Timeouts) -> Result<(), ApiError> {
        // The clock at the call, like every timer's: `self.now` is when the
        // loop last woke, which before `run` may be long ago.
        let now = self.call_time();
        let slot = self.live(s)?;
        let deadlines = (!timeouts.is_empty()).then(|| {
            Box::new(Deadlines {
                config: timeouts,
                since: slot.extra.timeouts().map_or(now, |d| d.since),
                stage: slot.life.stage(),
            })
        });
        if deadlines.is_some() || slot.extra.timeouts().is_some() {
            slot.extra.make().timeouts = deadlines;
        }
        self.arm(s);
        Ok(())
    }

    /// How long since data last moved either way on the socket (or since it
    /// was made, if none has).
    pub(crate) fn idle_for(&self, s: SocketId) -> Option<Duration> {
        Some(
            self.call_time()
                .saturating_duration_since(self.slot(s)?.active.at(self.epoch)),
        )
    }

    /// TCP keepalive (`None`: off), so a peer that vanished is found even when
    /// nothing is being sent. On a listener, the connections it takes inherit
    /// it. Needs the socket's descriptor: set it after `bind`, `listen` or
    /// `connect`.
    pub(crate) fn set_keepalive(
        &mut self,
        s: SocketId,
        keepalive: Option<Keepalive>,
    ) -> Result<(), ApiError> {
        self.with_tcp_fd(s, "keepalive", |fd| tcp::set_keepalive(&fd, keepalive))
    }

    /// TCP_USER_TIMEOUT (`None`: the system's default): how long sent data may
    /// stay unacknowledged before the connection is given up as `Lost`
    /// (ETIMEDOUT). This bounds how long a peer can vanish with data in
    /// flight. On a listener, the connections it takes inherit it.
    pub(crate) fn set_user_timeout(
        &mut self,
        s: SocketId,
        timeout: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.with_tcp_fd(s, "user timeout", |fd| tcp::set_user_timeout(&fd, timeout))
    }

    /// Admission: at most `max` connections taken by this listener open at
    /// once (`None`: no limit). At the limit the listener takes no more: they
    /// wait in the kernel's backlog, not accepted and dropped, until one of its
    /// connections has closed and its `on_closed` has returned, so the
    /// application reacts to each end before the next connection starts.
    /// Raising the limit takes the waiting connections once the current
    /// callback returns (never inside this call).
    pub(crate) fn max_connections(
        &mut self,
        s: SocketId,
        max: Option<u32>,
    ) -> Result<(), ApiError> {
        if self.max_associations(s, max) {
            return Ok(());
        }
        let slot = self.live(s)?;
        let Io::Listener(listening) = &mut slot.io else {
            return Err(ApiError::Refused(tether_proto::Refused {
                op: tether_proto::Op::MaxConnections,
                state: slot.life.state(),
            }));
        };
        listening.max = max;
        if !listening.full() {
            // Taken once the current callback returns: `on_incoming` never
            // runs inside an operation.
            self.tasks.push_back(Task::Accept(s));
        }
        Ok(())
    }

    /// SO_REUSEPORT on the descriptor the socket's bind will make (its own
    /// `bind`, or the one `listen` makes for an unbound socket). Only on a
    /// fresh stream socket: once it has a descriptor (bound, listening,
    /// connecting) or has closed it is refused with `Op::SetOption`; on UDP it
    /// is unsupported, and a later bind to a Local address refuses it.
    pub(crate) fn set_reuse_port(&mut self, s: SocketId, on: bool) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            return Err(ApiError::Unsupported {
                op: "reuse_port",
                transport: Transport::Udp,
            });
        }
        let fresh = matches!(slot.io, Io::None)
            && slot.life.closed().is_none()
            && slot.life.state() == tether_proto::State::NotConnected;
        if !fresh {
            return Err(ApiError::Refused(tether_proto::Refused {
                op: tether_proto::Op::SetOption,
                state: slot.life.state(),
            }));
        }
        if on || slot.extra.reuse_port() {
            slot.extra.make().reuse_port = on;
        }
        Ok(())
    }

    /// Set a TCP option on the socket's descriptor.
    fn with_tcp_fd(
        &self,
        s: SocketId,
        op: &'static str,
        set: impl FnOnce(BorrowedFd<'_>) -> io::Result<()>,
    ) -> Result<(), ApiError> {
        let slot = self.slot(s).ok_or(ApiError::StaleSocket(s))?;
        let transport = self.transport(s);
        match (slot.io.fd(), transport) {
            (Some(fd), Some(Transport::Tcp)) => {
                set(fd).map_err(|e| ApiError::SocketOption(e.raw_os_error().unwrap_or(0)))
            }
            (None, None | Some(Transport::Tcp)) => Err(ApiError::Refused(tether_proto::Refused {
                op: tether_proto::Op::SetOption,
                state: slot.life.state(),
            })),
            (_, transport) => Err(ApiError::Unsupported {
                op,
                transport: transport.unwrap_or(Transport::Tcp),
            }),
        }
    }
}
