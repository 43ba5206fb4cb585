//! The operations behind `Cx`'s own calls: creating, binding, listening and
//! connecting sockets, moving bytes, ending, looking, and timers.

use std::time::{Duration, Instant};

use tether_proto::frame::Role;
use tether_proto::{Destination, Lifecycle, Op, Reason, Refused, SockAddr, State};

use crate::engine::failure::open_failure;
use crate::engine::io::{Io, Listening};
use crate::engine::slot::{find, Slot, Stamp, Want};
use crate::engine::task::Task;
use crate::engine::timers::TimerId;
use crate::engine::Engine;
use crate::log::Target;
use crate::security::tls::Tls;
use crate::transport::{self, Transport};
use crate::{ApiError, Cx, Error, RecvMode, SocketId, SocketUser, MAX_EXACT_RECV};

impl<S: 'static> Engine<S> {
    pub(crate) fn slot(&self, s: SocketId) -> Option<&Slot<S>> {
        self.slots
            .get(s.idx as usize)
            .filter(|slot| slot.gen == s.gen)
    }

    pub(crate) fn slot_mut(&mut self, s: SocketId) -> Option<&mut Slot<S>> {
        find(&mut self.slots, s)
    }

    pub(crate) fn live(&mut self, s: SocketId) -> Result<&mut Slot<S>, ApiError> {
        self.slot_mut(s).ok_or(ApiError::StaleSocket(s))
    }

    pub(crate) fn insert(
        &mut self,
        user: Option<Box<dyn SocketUser<S>>>,
        io: Io,
        life: Lifecycle,
    ) -> SocketId {
        self.gen = self.gen.next();
        let gen = self.gen;
        let now = Stamp::new(self.epoch, self.call_time());
        let idx = self.slots.insert(Slot::new(gen, user, io, life, now));
        SocketId {
            idx: idx as u32,
            gen,
        }
    }

    // ----- creating and opening -----
    /// A new stream socket (TCP or Local, chosen by the first address it gets),
    /// in state `NotConnected`, with `user` for its callbacks.
    pub(crate) fn stream(&mut self, user: impl SocketUser<S> + 'static) -> SocketId {
        self.insert(Some(Box::new(user)), Io::None, Lifecycle::new())
    }

    /// Shorthand: a new stream socket connecting to `addr`.
    pub(crate) fn connect_to(
        &mut self,
        addr: &str,
        user: impl SocketUser<S> + 'static,
    ) -> SocketId {
        let s = self.stream(user);
        let _ = self.connect(s, addr); // a fresh socket always may connect
        s
    }

    /// Shorthand: a new stream socket bound to `addr` and listening.
    pub(crate) fn listen_on(&mut self, addr: &str, user: impl SocketUser<S> + 'static) -> SocketId {
        let s = self.stream(user);
        // A failed bind closes the socket, and listen then refuses: nothing to do.
        let _ = self.bind(s, addr).and_then(|()| self.listen(s));
        s
    }

    /// Bind to a local address: `ip:port` (port 0: the system picks, reported by
    /// `on_bound`), `[v6]:port`, `unix:/path` or `unix:@name`. A Local path that
    /// holds a stale socket file is reused; a live one or any other file is not.
    pub(crate) fn bind(&mut self, s: SocketId, addr: &str) -> Result<(), ApiError> {
        let mux = self.mux_id;
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            return self.bind_udp(s, addr);
        }
        let reuse_port = slot.extra.reuse_port();
        if reuse_port && matches!(slot.io, Io::None) && slot.life.closed().is_none() {
            refuse_local_reuse_port(addr)?;
        }
        slot.life.bind()?;
        let result = SockAddr::parse(addr)
            .map_err(|e| (Reason::AddressInvalid, Error::Address(e)))
            .and_then(|a| {
                transport::bind(&a, reuse_port)
                    .map(|sock| (sock, Transport::of(&a)))
                    .map_err(open_failure)
            });
        match result {
            Ok((sock, kind)) => {
                io_log!(debug, Target::from(kind), mux, socket = %s, addr, "bound");
                slot.io = Io::Bound(sock, kind);
                self.tasks.push_back(Task::Bound(s));
            }
            Err((reason, error)) => self.fail(s, reason, error),
        }
        self.settle(s);
        Ok(())
    }

    /// Listen. An unbound socket first binds to every interface (IPv4 and IPv6)
    /// on a port the system picks, reported by `on_bound`.
    pub(crate) fn listen(&mut self, s: SocketId) -> Result<(), ApiError> {
        let stopping = self.stopping;
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            return self.listen_udp(s);
        }
        slot.life.listen()?;
        if stopping {
            self.fail(s, Reason::Stopped, None);
            self.settle(s);
            return Ok(());
        }
        let reuse_port = slot.extra.reuse_port();
        let bound = match std::mem::take(&mut slot.io) {
            Io::Bound(sock, kind) => Ok((sock, kind)),
            _ => match transport::bind(&transport::tcp::any(), reuse_port) {
                Ok(sock) => {
                    self.tasks.push_back(Task::Bound(s));
                    Ok((sock, Transport::Tcp))
                }
                Err(e) => Err(open_failure(e)),
            },
        };
        let mux = self.mux_id;
        let on_ring = self.ring.is_some();
        let result = bound.and_then(|(sock, kind)| {
            let mut listener =
                transport::listen(sock, kind).map_err(|e| (Reason::ListenFailed, Error::Io(e)))?;
            // A TCP listener on the ring takes its connections by a multishot
            // accept, armed below; it is not on the poller.
            if !(on_ring && kind == Transport::Tcp) {
                listener
                    .register(&self.registry, s.token())
                    .map_err(|e| (Reason::ListenFailed, Error::Io(e)))?;
            }
            io_log!(debug, Target::from(kind), mux, socket = %s, "listening");
            Ok(listener)
        });
        match result {
            Ok(listener) => {
                let mut listening = Listening::new(listener);
                listening.http = self.http.take_before_listen(s);
                self.live(s)?.io = Io::Listener(listening);
                if on_ring {
                    self.ring_listen(s);
                }
            }
            Err((reason, error)) => self.fail(s, reason, error),
        }
        self.settle(s);
        Ok(())
    }

    /// Connect to `addr` (`ip:port`, `[v6]:port`, `unix:/path`, `unix:@name`, or
    /// a host name with a port, resolved off the loop; see `engine/dial.rs`).
    /// `on_connected` follows, or `on_closed` with `ConnectRejected` (nothing
    /// listening), `ConnectFailed`, `ResolveFailed` or `AddressInvalid`.
    pub(crate) fn connect(&mut self, s: SocketId, addr: &str) -> Result<(), ApiError> {
        self.connect_with(s, addr, None)
    }

    /// Connect a stream socket, with the TLS session it will speak if any.
    pub(crate) fn connect_with(
        &mut self,
        s: SocketId,
        addr: &str,
        tls: Option<Box<Tls>>,
    ) -> Result<(), ApiError> {
        let stopping = self.stopping;
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            if tls.is_some() {
                return Err(ApiError::Unsupported {
                    op: "connect_tls",
                    transport: Transport::Udp,
                });
            }
            return self.connect_udp(s, addr);
        }
        // The layers this connection will carry are the lifecycle's to know
        // before it connects: its handshakes follow the transport's.
        if tls.is_some() && slot.life.set_security().is_err()
            || slot.extra.framed().is_some() && slot.life.set_message(Role::Client).is_err()
        {
            return Err(ApiError::Refused(Refused {
                op: Op::Connect,
                state: slot.life.state(),
            }));
        }
        slot.life.connect()?;
        if tls.is_some() {
            slot.extra.make().tls = tls;
        }
        if stopping {
            self.fail(s, Reason::Stopped, None);
            self.settle(s);
            return Ok(());
        }
        let bound = match std::mem::take(&mut slot.io) {
            Io::Bound(sock, _) => Some(sock),
            _ => None,
        };
        let result = match Destination::parse(addr) {
            Ok(Destination::Addr(a)) => transport::connect(&a, bound).map_err(open_failure),
            Ok(Destination::Name { host, port }) => {
                self.connect_name(s, &host, port, bound);
                self.settle(s);
                return Ok(());
            }
            Err(e) => Err((Reason::AddressInvalid, Error::Address(e))),
        };
        match result {
            Ok(mut stream) => match stream.register(&self.registry, s.token(), true) {
                Ok(()) => {
                    let slot = self.live(s)?;
                    slot.io = Io::Stream(stream);
                    io_log!(debug, slot.log_target(), self.mux_id, socket = %s, addr, "connecting");
                    self.send_hello(s);
                }
                Err(e) => self.fail(s, Reason::OpenFailed, Error::Io(e)),
            },
            Err((reason, error)) => self.fail(s, reason, error),
        }
        self.settle(s);
        Ok(())
    }

    // ----- moving bytes -----
    /// Queue `data` for sending; allowed while connecting (it goes out once
    /// connected) and until `shutdown`/`close`. The bytes are written at once when
    /// the kernel takes them, else copied and written in order as it does.
    /// `on_sent` follows once the last of them reached the kernel.
    #[inline]
    pub(crate) fn send(&mut self, s: SocketId, data: &[u8]) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        if slot.life.is_datagram() {
            return self.send_datagram(s, None, data);
        }
        if slot.extra.framed().is_some() {
            slot.life.check_send()?;
            return self.send_frame(s, tether_proto::frame::FrameType::Data, data, true);
        }
        self.send_parts(s, &[data], true)
    }

    /// Ask for the next `n` bytes (`Exact`) or for 1 to `n` bytes (`Partial`).
    /// One `on_received` answers one recv. Nothing is read while no recv is
    /// pending: that is how a slow consumer holds back a fast peer.
    #[inline]
    pub(crate) fn recv(&mut self, s: SocketId, n: usize, mode: RecvMode) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        if mode == RecvMode::Exact {
            unsupported_on_udp(slot, "exact recv")?;
        }
        if matches!(slot.io, Io::UdpListener(_)) {
            // Its datagrams go to its associations, or to on_incoming.
            return Err(ApiError::Unsupported {
                op: "recv on a UDP listener",
                transport: Transport::Udp,
            });
        }
        // The state's refusal comes first, then the recv's own misuse; the
        // lifecycle is asked once on the path that succeeds.
        let misuse = if slot.want.is_some() {
            Some(ApiError::RecvPending)
        } else if n == 0 {
            Some(ApiError::ZeroLengthRecv)
        } else if mode == RecvMode::Exact && n > MAX_EXACT_RECV {
            Some(ApiError::RecvTooLarge(n))
        } else {
            None
        };
        if let Some(misuse) = misuse {
            slot.life.check_recv()?;
            return Err(misuse);
        }
        slot.life.recv()?;
        slot.want = Some(Want::new(n, mode));
        // A TLS session may hold decrypted bytes, a framed socket frames it
        // read before, though the socket has nothing.
        if slot.readable || slot.extra.tls().is_some() || slot.extra.framed().is_some() {
            self.tasks.push_back(Task::Read(s));
        }
        if self.ring.is_some() {
            self.ring_regulate(s);
        }
        Ok(())
    }

    // ----- ending -----
    /// Half-close: once everything queued is sent, send FIN. Receiving goes on;
    /// the state becomes `NoSend`.
    pub(crate) fn shutdown(&mut self, s: SocketId) -> Result<(), ApiError> {
        let slot = self.live(s)?;
        unsupported_on_udp(slot, "shutdown")?;
        if slot.extra.framed().is_some() {
            return self.shutdown_with(s, &[]);
        }
        slot.life.shutdown()?;
        self.settle(s);
        Ok(())
    }

    /// Close gracefully: send what is queued, then FIN, then read and discard
    /// until the peer's FIN, so the peer never loses data to an RST. Past the
    /// linger time (`set_linger`, 30 s by default) the connection is reset and
    /// closes with `LingerTimeout`. A listener or unconnected socket closes now.
    pub(crate) fn close(&mut self, s: SocketId) -> Result<(), ApiError> {
        let now = self.call_time();
        let slot = self.live(s)?;
        if slot.extra.framed().is_some() && slot.life.check_send().is_ok() {
            // A framed peer learns of a graceful end by a FAREWELL.
            self.send_frame(s, tether_proto::frame::FrameType::Farewell, &[], false)?;
        }
        let slot = self.live(s)?;
        slot.life.close(now, slot.linger())?;
        slot.want = None;
        self.settle(s);
        Ok(())
    }

    /// Abort now with RST. Queued bytes are dropped and counted in `unsent`.
    ///
    /// A Local socket has no RST: it closes at once, and its peer sees
    /// ECONNRESET only if it had sent bytes we never read, else a plain end.
    pub(crate) fn reset(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.live(s)?.life.reset()?;
        self.settle(s);
        Ok(())
    }

    /// Drop the connection without telling the peer: TCP_REPAIR when the process
    /// may use it, else an RST (TCP) or a plain close (Local); `Closed::discard`
    /// says which happened.
    pub(crate) fn discard(&mut self, s: SocketId) -> Result<(), ApiError> {
        self.live(s)?.life.discard()?;
        self.settle(s);
        Ok(())
    }

    /// How long a later `close()` may take before it resets.
    pub(crate) fn set_linger(&mut self, s: SocketId, linger: Duration) -> Result<(), ApiError> {
        self.live(s)?.extra.make().linger_ms =
            Some(u32::try_from(linger.as_millis()).unwrap_or(u32::MAX));
        Ok(())
    }

    // ----- looking -----
    /// The socket's state; `NotConnected` for a stale id.
    pub(crate) fn state(&self, s: SocketId) -> State {
        self.slot(s)
            .map_or(State::NotConnected, |slot| slot.life.state())
    }

    /// Bytes accepted by `send` that have not reached the kernel yet (frame
    /// headers included on a framed socket; 0 for a stale id): the live form
    /// of [`Closed::unsent`](crate::Closed::unsent).
    ///
    /// It is the backpressure signal. A producer that sends only while this is
    /// 0 writes what the kernel takes at once and nothing more, keeping no copy
    /// of its data in tether, and fills one socket before it turns to the next;
    /// the `on_sent` of the send that had to wait tells it when to go on.
    ///
    /// ```no_run
    /// # use tether::{Cx, SocketId};
    /// const CHUNK: [u8; 65536] = [0; 65536];
    /// fn produce<S: 'static>(cx: &mut Cx<S>, s: SocketId) {
    ///     while cx.unsent(s) == 0 && cx.send(s, &CHUNK).is_ok() {}
    /// }
    /// ```
    pub(crate) fn unsent(&self, s: SocketId) -> u64 {
        self.slot(s).map_or(0, |slot| slot.life.unsent())
    }

    /// The local address, once bound or connected; `None` for an unnamed Unix
    /// socket or a stale id.
    pub(crate) fn local_addr(&self, s: SocketId) -> Option<SockAddr> {
        let slot = self.slot(s)?;
        if let Io::Association(a) = &slot.io {
            // An association's address is its listener's.
            return self.slot(a.listener)?.io.local_addr();
        }
        slot.io.local_addr()
    }

    /// The socket's transport: fixed at creation for UDP, by the first address
    /// for a stream socket (`None` until then, and for a stale id).
    pub(crate) fn transport(&self, s: SocketId) -> Option<Transport> {
        let slot = self.slot(s)?;
        if slot.life.is_datagram() {
            Some(Transport::Udp)
        } else {
            slot.io.kind()
        }
    }

    /// The socket's descriptor, for the options tether does not wrap (buffer
    /// sizes, TOS, ...), e.g. with `socket2::SockRef::from(&fd)`. Reading,
    /// writing or closing through it would bypass the lifecycle and its
    /// accounting: don't.
    pub(crate) fn as_fd(&self, s: SocketId) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.slot(s)?.io.fd()
    }

    /// The peer's address, once connected.
    pub(crate) fn peer_addr(&self, s: SocketId) -> Option<SockAddr> {
        self.slot(s)?.io.peer_addr()
    }

    /// Give the socket another user. Within one of the socket's own callbacks,
    /// the new user takes over once that callback returns.
    pub(crate) fn set_user(
        &mut self,
        s: SocketId,
        user: impl SocketUser<S> + 'static,
    ) -> Result<(), ApiError> {
        self.live(s)?.set_user(Box::new(user));
        Ok(())
    }

    // ----- the loop -----
    /// Run `f` once, `after` from now.
    pub(crate) fn set_timer(
        &mut self,
        after: Duration,
        f: impl FnOnce(&mut Cx<S>) + 'static,
    ) -> TimerId {
        let mut f = Some(f);
        let at = self.call_time() + after;
        self.timers.add(
            at,
            None,
            Box::new(move |cx| {
                if let Some(f) = f.take() {
                    f(cx)
                }
            }),
        )
    }

    /// Run `f` every `every`, first after one period, until cancelled.
    pub(crate) fn set_interval(
        &mut self,
        every: Duration,
        f: impl FnMut(&mut Cx<S>) + 'static,
    ) -> TimerId {
        let at = self.call_time() + every;
        self.timers.add(at, Some(every), Box::new(f))
    }

    /// Cancel a timer; false if it already ran (one-shot) or was cancelled.
    pub(crate) fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.timers.cancel(id)
    }

    /// The time an operation counts a deadline from (see `Clock::at_call`).
    pub(crate) fn call_time(&self) -> Instant {
        self.clock.at_call(self.running.then_some(self.now))
    }
}

/// SO_REUSEPORT is a TCP option: a Local address refuses it before anything
/// about the socket changes.
fn refuse_local_reuse_port(addr: &str) -> Result<(), ApiError> {
    match SockAddr::parse(addr) {
        Ok(a) if Transport::of(&a) == Transport::Local => Err(ApiError::Unsupported {
            op: "reuse_port",
            transport: Transport::Local,
        }),
        _ => Ok(()),
    }
}

/// A connectionless socket has no listening, no half-close, no byte stream.
fn unsupported_on_udp<S>(slot: &Slot<S>, op: &'static str) -> Result<(), ApiError> {
    if slot.life.is_datagram() {
        Err(ApiError::Unsupported {
            op,
            transport: Transport::Udp,
        })
    } else {
        Ok(())
    }
}
