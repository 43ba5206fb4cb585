//! What the loop keeps per socket.

use std::time::{Duration, Instant};

use slab::Slab;
use tether_proto::timeouts::{Stage, Timeouts};
use tether_proto::{Lifecycle, State};

use crate::engine::io::Io;
use crate::engine::timers::SocketTimer;
use crate::log::Target;
use crate::message::framed::Framed;
use crate::security::tls::Tls;
use crate::transport::send_queue::SendQueue;
use crate::{DiscardMethod, Error, RecvMode, SocketId, SocketUser};

/// How long `close()` may take before it resets, unless `set_linger` says
/// otherwise: long enough for a slow peer to read a large last response.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// One socket. Kept small because an idle connection is mostly this: buffers
/// that are not in use are not allocated.
pub(crate) struct Slot<S> {
    pub(crate) gen: u32,
    /// `None` only while one of its callbacks runs.
    pub(crate) user: Option<Box<dyn SocketUser<S>>>,
    pub(crate) io: Io,
    pub(crate) life: Lifecycle,
    /// The pending recv.
    pub(crate) want: Option<Want>,
    /// Bytes gathered for an Exact recv that one read could not fill.
    pub(crate) partial: Vec<u8>,
    /// Bytes that the kernel would not take yet (or, on TLS, held until the
    /// handshake is over); `None` when all went out.
    pub(crate) outq: Option<Box<SendQueue>>,
    /// The TLS session, on a TLS connection.
    pub(crate) tls: Option<Box<Tls>>,
    /// The message layer, on a framed socket.
    pub(crate) framed: Option<Box<Framed>>,
    /// The poller said readable and no read has hit WouldBlock since.
    pub(crate) readable: bool,
    /// The linger time in milliseconds (a `Duration` would take 16 bytes of
    /// every socket for a number that is rarely set).
    pub(crate) linger_ms: u32,
    /// How it ended, once it did.
    pub(crate) end: Option<Box<End>>,
    /// When data last moved either way (for `idle_for` and the idle timeout).
    pub(crate) active: Instant,
    /// Its timeouts, if any were set (or inherited from its listener).
    pub(crate) timeouts: Option<Box<Deadlines>>,
    /// The listener that took it, whose admission count it holds.
    pub(crate) origin: Option<SocketId>,
    /// The state its user was last told of.
    pub(crate) shown: State,
    /// Its user wants `on_sent` (asked when the user was given).
    pub(crate) wants_sent: bool,
    /// SO_REUSEPORT on the descriptor its bind makes (`set_reuse_port`).
    pub(crate) reuse_port: bool,
    /// The poller reports room to write. From the start on a connecting
    /// socket (its connect completing is a writable edge); on an accepted
    /// plain one only from the first write the kernel refused: it is
    /// writable until then, and an edge saying so would be a wake-up for
    /// nothing.
    pub(crate) watch_writable: bool,
    /// Its one deadline on the loop's timer heap, if armed.
    pub(crate) timer: SocketTimer,
}

/// A socket's timeouts and when its current stage began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) config: Timeouts,
    /// When the current stage began.
    pub(crate) since: Instant,
    /// The stage `since` is for; a change restarts it.
    pub(crate) stage: Option<Stage>,
}

/// The live slot `s` names. A free function rather than a method of `Cx`, so
/// the slot can be borrowed beside the loop's other fields (tasks, timers).
pub(crate) fn find<S>(slots: &mut Slab<Slot<S>>, s: SocketId) -> Option<&mut Slot<S>> {
    slots
        .get_mut(s.idx as usize)
        .filter(|slot| slot.gen == s.gen)
}

/// A pending recv.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    pub(crate) n: usize,
    pub(crate) mode: RecvMode,
}

/// The part of `Closed` the lifecycle machine does not know.
#[derive(Debug, Default)]
pub(crate) struct End {
    pub(crate) error: Option<Error>,
    pub(crate) discard: Option<DiscardMethod>,
    /// Bytes an abort left in the kernel's queues.
    pub(crate) kernel_unsent: u64,
    pub(crate) kernel_unread: u64,
}

impl<S> Slot<S> {
    /// A slot; `user` is `None` only for a framed connection awaiting its
    /// admission, which has no user until its listener accepts it.
    pub(crate) fn new(
        gen: u32,
        user: Option<Box<dyn SocketUser<S>>>,
        io: Io,
        life: Lifecycle,
        now: Instant,
    ) -> Self {
        let wants_sent = user.as_ref().is_none_or(|u| u.wants_on_sent());
        Slot {
            gen,
            user,
            io,
            life,
            want: None,
            partial: Vec::new(),
            outq: None,
            tls: None,
            framed: None,
            readable: false,
            linger_ms: DEFAULT_LINGER.as_millis() as u32,
            end: None,
            active: now,
            timeouts: None,
            origin: None,
            shown: State::NotConnected,
            timer: None,
            wants_sent,
            reuse_port: false,
            watch_writable: true,
        }
    }

    /// Where this socket's log lines go: a TLS socket's all go to
    /// `tether::tls`, whatever its transport.
    pub(crate) fn log_target(&self) -> Target {
        match (&self.tls, self.io.kind()) {
            (Some(_), _) => Target::Tls,
            (None, Some(kind)) => kind.into(),
            (None, None) if self.life.is_datagram() => Target::Udp,
            (None, None) => Target::Tcp,
        }
    }

    /// Give the socket its user (the one `on_sent` asks is asked now).
    pub(crate) fn set_user(&mut self, user: Box<dyn SocketUser<S>>) {
        self.wants_sent = user.wants_on_sent();
        self.user = Some(user);
    }

    pub(crate) fn linger(&self) -> Duration {
        Duration::from_millis(u64::from(self.linger_ms))
    }

    pub(crate) fn end(&mut self) -> &mut End {
        self.end.get_or_insert_with(Box::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle plaintext connection with nothing queued costs this slot and its
    /// kernel socket, nothing more: the budget is 256 bytes (the test prints the size).
    #[test]
    fn idle_socket_state_is_small() {
        let size = std::mem::size_of::<Slot<()>>();
        println!(
            "size_of::<Slot<()>>() = {size} bytes (Lifecycle {} bytes)",
            std::mem::size_of::<Lifecycle>()
        );
        assert!(size <= 256, "per-socket state grew to {size} bytes");
    }
}
