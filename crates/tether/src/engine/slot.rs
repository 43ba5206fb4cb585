//! What the loop keeps per socket.

use std::time::{Duration, Instant};

use slab::Slab;
use tether_proto::timeouts::{Stage, Timeouts};
use tether_proto::{Lifecycle, State};

use crate::engine::io::Io;
use crate::engine::timers::SocketTimer;
use crate::id::Gen;
use crate::log::Target;
use crate::message::framed::Framed;
use crate::security::tls::Tls;
use crate::transport::send_queue::SendQueue;
use crate::{DiscardMethod, Error, RecvMode, SocketId, SocketUser};

/// How long `close()` may take before it resets, unless `set_linger` says
/// otherwise: long enough for a slow peer to read a large last response.
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// One socket. Kept small because an idle connection is mostly this (120
/// bytes on a 64-bit target): what only some sockets have lives in
/// [`Extra`], allocated the first time one of them needs it, and buffers
/// that are not in use are not allocated.
pub(crate) struct Slot<S> {
    pub(crate) gen: Gen,
    /// The poller said readable and no read has hit WouldBlock since.
    pub(crate) readable: bool,
    /// Its user wants `on_sent` (asked when the user was given).
    pub(crate) wants_sent: bool,
    /// The poller reports room to write. From the start on a connecting
    /// socket (its connect completing is a writable edge); on an accepted
    /// plain one only from the first write the kernel refused: it is
    /// writable until then, and an edge saying so would be a wake-up for
    /// nothing.
    pub(crate) watch_writable: bool,
    /// The state its user was last told of.
    pub(crate) shown: State,
    /// `None` only while one of its callbacks runs.
    pub(crate) user: Option<Box<dyn SocketUser<S>>>,
    pub(crate) io: Io,
    pub(crate) life: Lifecycle,
    /// The pending recv.
    pub(crate) want: Option<Want>,
    /// When data last moved either way (for `idle_for` and the idle timeout).
    pub(crate) active: Stamp,
    /// The listener that took it, whose admission count it holds.
    pub(crate) origin: Option<SocketId>,
    /// What only some sockets have.
    pub(crate) extra: Extra,
}

/// What only some sockets have: a queue, a security or message layer,
/// timeouts, a gathering recv, how it ended, options not at their default.
/// An idle plain connection has none of it, so it is one pointer in the slot
/// until something needs it; reading through it never allocates.
#[derive(Default)]
pub(crate) struct Extra(Option<Box<Parts>>);

/// The parts behind [`Extra`]. What is large and rarer still (an end, the
/// timeouts) is boxed again, so that a TLS connection, which always has
/// parts, pays little for them.
#[derive(Default)]
pub(crate) struct Parts {
    /// Bytes that the kernel would not take yet (or, on TLS, held until the
    /// handshake is over); `None` when all went out.
    pub(crate) outq: Option<Box<SendQueue>>,
    /// The TLS session, on a TLS connection.
    pub(crate) tls: Option<Box<Tls>>,
    /// The message layer, on a framed socket.
    pub(crate) framed: Option<Box<Framed>>,
    /// Bytes gathered for an Exact recv that one read could not fill.
    pub(crate) partial: Vec<u8>,
    /// How it ended, once it did.
    pub(crate) end: Option<Box<End>>,
    /// Its timeouts, if any were set (or inherited from its listener).
    pub(crate) timeouts: Option<Box<Deadlines>>,
    /// The linger time in milliseconds, when `set_linger` changed it.
    pub(crate) linger_ms: Option<u32>,
    /// SO_REUSEPORT on the descriptor its bind makes (`set_reuse_port`).
    pub(crate) reuse_port: bool,
    /// Its one deadline on the loop's timer heap, if armed. Here rather than
    /// in the slot: a socket with a deadline has timeouts, is closing, or
    /// is a DTLS handshake, and the first two have parts anyway.
    pub(crate) timer: SocketTimer,
}

impl Extra {
    /// The parts, made now if the socket had none.
    pub(crate) fn make(&mut self) -> &mut Parts {
        self.0.get_or_insert_with(Box::default)
    }

    pub(crate) fn get(&self) -> Option<&Parts> {
        self.0.as_deref()
    }

    pub(crate) fn get_mut(&mut self) -> Option<&mut Parts> {
        self.0.as_deref_mut()
    }

    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.get()?.tls.as_deref()
    }

    pub(crate) fn tls_mut(&mut self) -> Option<&mut Tls> {
        self.get_mut()?.tls.as_deref_mut()
    }

    pub(crate) fn framed(&self) -> Option<&Framed> {
        self.get()?.framed.as_deref()
    }

    pub(crate) fn framed_mut(&mut self) -> Option<&mut Framed> {
        self.get_mut()?.framed.as_deref_mut()
    }

    pub(crate) fn has_outq(&self) -> bool {
        self.get().is_some_and(|p| p.outq.is_some())
    }

    pub(crate) fn outq_mut(&mut self) -> Option<&mut SendQueue> {
        self.get_mut()?.outq.as_deref_mut()
    }

    pub(crate) fn take_outq(&mut self) -> Option<Box<SendQueue>> {
        self.get_mut()?.outq.take()
    }

    /// The queue, made now if there was none.
    pub(crate) fn outq(&mut self) -> &mut SendQueue {
        self.make().outq.get_or_insert_with(Box::default)
    }

    pub(crate) fn timeouts(&self) -> Option<&Deadlines> {
        self.get()?.timeouts.as_deref()
    }

    pub(crate) fn timeouts_mut(&mut self) -> Option<&mut Deadlines> {
        self.get_mut()?.timeouts.as_deref_mut()
    }

    /// The error it ended with, if any yet.
    pub(crate) fn error(&self) -> Option<&Error> {
        self.get()?.end.as_ref()?.error.as_ref()
    }

    /// How it ended, taken for `Closed`.
    pub(crate) fn take_end(&mut self) -> End {
        self.get_mut()
            .and_then(|p| p.end.take())
            .map(|end| *end)
            .unwrap_or_default()
    }

    /// The bytes an Exact recv gathered so far (none without parts).
    pub(crate) fn gathered(&self) -> usize {
        self.get().map_or(0, |p| p.partial.len())
    }

    pub(crate) fn reuse_port(&self) -> bool {
        self.get().is_some_and(|p| p.reuse_port)
    }

    pub(crate) fn linger(&self) -> Duration {
        match self.get().and_then(|p| p.linger_ms) {
            Some(ms) => Duration::from_millis(u64::from(ms)),
            None => DEFAULT_LINGER,
        }
    }
}

/// A time as nanoseconds since the loop's epoch: half the room of an
/// `Instant`, and every socket keeps one. 2^64 ns is 584 years.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// `at` on the clock that began at `epoch` (an earlier time is the epoch).
    pub(crate) fn new(epoch: Instant, at: Instant) -> Stamp {
        let ns = at.saturating_duration_since(epoch).as_nanos();
        Stamp(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The instant it stands for.
    pub(crate) fn at(self, epoch: Instant) -> Instant {
        epoch + Duration::from_nanos(self.0)
    }
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

/// A pending recv. Its size is kept in 32 bits (every socket has room for
/// one): an Exact recv is at most `MAX_EXACT_RECV` (1 GiB), and a larger
/// "at most n" is the same recv as one of 4 GiB - 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    n: u32,
    pub(crate) mode: RecvMode,
}

impl Want {
    pub(crate) fn new(n: usize, mode: RecvMode) -> Want {
        Want {
            n: u32::try_from(n).unwrap_or(u32::MAX),
            mode,
        }
    }

    /// How many bytes it asks for (at most, or exactly).
    pub(crate) fn n(self) -> usize {
        self.n as usize
    }
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
        gen: Gen,
        user: Option<Box<dyn SocketUser<S>>>,
        io: Io,
        life: Lifecycle,
        now: Stamp,
    ) -> Self {
        let wants_sent = user.as_ref().is_none_or(|u| u.wants_on_sent());
        Slot {
            gen,
            user,
            io,
            life,
            want: None,
            readable: false,
            active: now,
            origin: None,
            shown: State::NotConnected,
            wants_sent,
            watch_writable: true,
            extra: Extra::default(),
        }
    }

    /// Where this socket's log lines go: a TLS socket's all go to
    /// `tether::tls`, whatever its transport.
    pub(crate) fn log_target(&self) -> Target {
        match (self.extra.tls(), self.io.kind()) {
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
        self.extra.linger()
    }

    /// How it ends, being written.
    pub(crate) fn end(&mut self) -> &mut End {
        self.extra.make().end.get_or_insert_with(Box::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle plaintext connection with nothing queued costs this slot and its
    /// kernel socket, nothing more: the budget is 120 bytes (the test prints
    /// the size), so that with what the allocator keeps around it a
    /// connection costs at most 128. mio's debug builds add a checking field to every socket it
    /// registers, 8 bytes that make the `Io` 16 bytes larger; release builds,
    /// the ones measured, do not have it.
    #[test]
    fn idle_socket_state_is_small() {
        let size = std::mem::size_of::<Slot<()>>();
        println!(
            "size_of::<Slot<()>>() = {size} bytes (Lifecycle {}, Io {})",
            std::mem::size_of::<Lifecycle>(),
            std::mem::size_of::<Io>(),
        );
        let budget = if cfg!(debug_assertions) { 136 } else { 120 };
        assert!(size <= budget, "per-socket state grew to {size} bytes");
    }

    /// The slot's budget holds only while an idle plain connection keeps
    /// nothing in `Extra`: echo traffic over an accepted connection (reads,
    /// writes the kernel takes at once, a recv pending between them) must
    /// not make its parts.
    #[test]
    fn echo_traffic_leaves_a_plain_connection_without_parts() {
        use std::io::{Read, Write};

        use crate::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode};

        const TRIPS: usize = 100;

        #[derive(Default)]
        struct Seen {
            conn: Option<SocketId>,
            echoes: usize,
        }
        struct Listener;
        impl SocketUser<Seen> for Listener {
            fn on_incoming(
                &mut self,
                _: &mut Cx<Seen>,
                _: SocketId,
                _: &PeerInfo,
            ) -> Admission<Seen> {
                Admission::Accept(Box::new(Echo))
            }
            fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &Closed) {}
        }
        struct Echo;
        impl SocketUser<Seen> for Echo {
            fn on_accepted(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
                cx.shared_mut().conn = Some(s);
                cx.recv(s, 1024, RecvMode::Partial).unwrap();
            }
            fn on_received(&mut self, cx: &mut Cx<Seen>, s: SocketId, data: &[u8]) {
                cx.send(s, data).unwrap();
                cx.recv(s, 1024, RecvMode::Partial).unwrap();
                cx.shared_mut().echoes += 1;
            }
            fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &Closed) {}
        }

        let mut mux = IoMux::new(Seen::default()).unwrap();
        let l = mux.listen_on("127.0.0.1:0", Listener);
        let addr = mux.local_addr(l).unwrap().to_string();
        let client = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let mut back = [0u8; 4];
            for _ in 0..TRIPS {
                c.write_all(b"ping").unwrap();
                c.read_exact(&mut back).unwrap();
                assert_eq!(&back, b"ping");
            }
            c
        });
        while mux.shared().echoes < TRIPS {
            mux.turn(None).unwrap();
        }
        let _client = client.join().unwrap();
        let s = mux.shared().conn.unwrap();
        let slot = mux.engine.slot(s).unwrap();
        assert!(slot.want.is_some(), "the next recv is pending");
        assert!(
            slot.extra.get().is_none(),
            "a plain echo connection made its parts"
        );
    }
}
