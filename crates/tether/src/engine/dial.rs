//! Connecting to a host name: the name is resolved off the loop, then the
//! addresses race (Happy Eyeballs, RFC 8305) and the first to connect becomes
//! the socket's connection.
//!
//! While this runs the socket is `Connecting` with no descriptor of its own;
//! the attempts are registered under the socket's token with [`ATTEMPT_BIT`]
//! set, so their readiness comes here and never to the socket. The winner
//! moves into the socket (and under its token); the losers are closed, and
//! nobody is told of them. If every attempt fails, the socket ends with the
//! last failure's reason; a name that does not resolve ends it with
//! `ResolveFailed`. All of it counts against the connect timeout, which the
//! lifecycle keeps as for any connect.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_proto::{Reason, SockAddr};

use crate::engine::failure::{connect_reason, open_failure};
use crate::engine::io::Io;
use crate::engine::task::Task;
use crate::engine::timers::TimerId;
use crate::engine::Engine;
use crate::log::Target;
use crate::transport::{self, resolve, Stream};
use crate::{Cx, Error, SocketId};

/// How long an attempt has to connect before the next address (of the other
/// family, first) is tried beside it: RFC 8305's recommended "Connection
/// Attempt Delay". An attempt that fails starts the next one at once.
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Set in the index of an attempt's token: its readiness is the race's.
pub(crate) const ATTEMPT_BIT: u32 = 1 << 31;

/// A closure a helper thread hands to the loop.
pub(crate) type Answer<S> = Box<dyn FnOnce(&mut Cx<S>) + Send>;

/// How a helper thread hands a closure to the loop (and wakes it).
pub(crate) type Post<S> = Arc<dyn Fn(Answer<S>) + Send + Sync>;

/// A connect to a name, from its lookup to its winner.
#[derive(Default)]
pub(crate) struct Dial {
    /// No answer from the resolver yet.
    resolving: bool,
    /// Addresses not tried yet, in the order they will be.
    next: VecDeque<SocketAddr>,
    /// Attempts in flight.
    attempts: Vec<Stream>,
    /// The socket the caller bound, for the one attempt it allows.
    bound: Option<socket2::Socket>,
    /// When the next attempt starts if none connected by then.
    timer: Option<TimerId>,
    /// The last attempt's failure.
    last: Option<(Reason, Error)>,
}

/// Happy Eyeballs order (RFC 8305, section 4): the families alternate,
/// IPv6 first; within a family, the resolver's order.
pub(crate) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let (mut v6, mut v4): (VecDeque<SocketAddr>, VecDeque<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6());
    let mut order = Vec::with_capacity(addrs.len());
    while !v6.is_empty() || !v4.is_empty() {
        order.extend(v6.pop_front());
        order.extend(v4.pop_front());
    }
    order
}

fn attempt_token(s: SocketId) -> mio::Token {
    SocketId {
        idx: s.idx | ATTEMPT_BIT,
        gen: s.gen,
    }
    .token()
}

impl<S: 'static> Engine<S> {
    /// Resolve `host` off the loop, then race its addresses. `bound` is the
    /// socket the caller bound, if any: then only the first address of its
    /// family is tried, from it.
    pub(crate) fn connect_name(
        &mut self,
        s: SocketId,
        host: &str,
        port: u16,
        bound: Option<socket2::Socket>,
    ) {
        let Some(post) = self.post.clone() else {
            let e = io::Error::other("this loop cannot resolve names");
            self.fail(s, Reason::ResolveFailed, Error::Io(e));
            return;
        };
        io_log!(debug, Target::Tcp, self.mux_id, socket = %s, host, port, "resolving");
        self.dials.insert(
            s,
            Box::new(Dial {
                resolving: true,
                bound,
                ..Dial::default()
            }),
        );
        resolve::resolve(
            host.to_owned(),
            port,
            Box::new(move |answer| post(Box::new(move |cx| cx.engine.resolved(s, answer)))),
        );
    }

    /// The resolver answered for `s` (which may have ended meanwhile).
    pub(crate) fn resolved(&mut self, s: SocketId, answer: io::Result<Vec<SocketAddr>>) {
        if !self.dials.get(&s).is_some_and(|d| d.resolving) {
            return;
        }
        match answer {
            Ok(addrs) => self.race(s, &addrs),
            Err(e) => {
                io_log!(debug, Target::Tcp, self.mux_id, socket = %s, error = %e, "resolve failed");
                self.dials.remove(&s);
                self.fail(s, Reason::ResolveFailed, Error::Io(e));
                self.settle(s);
            }
        }
    }

    /// Race `addrs` (as resolved) for `s`: its user hears `on_resolved` with
    /// them in the order they will be tried, then the first attempt starts.
    pub(crate) fn race(&mut self, s: SocketId, addrs: &[SocketAddr]) {
        let Some(dial) = self.dials.get_mut(&s) else {
            return;
        };
        dial.resolving = false;
        let mut order = interleave(addrs);
        if let Some(bound) = &dial.bound {
            let domain = bound.domain().ok();
            order.retain(|a| Some(socket2::Domain::for_address(*a)) == domain);
            order.truncate(1);
            if order.is_empty() {
                let why = "the bound address and the name's are not of the same IP family";
                dial.last = Some((Reason::AddressInvalid, Error::AddressMismatch(why)));
            }
        }
        dial.next = order.iter().copied().collect();
        io_log!(debug, Target::Tcp, self.mux_id, socket = %s, addrs = ?order, "resolved");
        self.announced.insert(s, order);
        self.tasks.push_back(Task::Resolved(s));
        self.next_attempt(s);
    }

    /// Start the next address's attempt (an address that fails at once is
    /// passed over for the one after); with none left and none in flight,
    /// the socket ends with the last failure.
    pub(crate) fn next_attempt(&mut self, s: SocketId) {
        let Some(dial) = self.dials.get_mut(&s) else {
            return;
        };
        if let Some(timer) = dial.timer.take() {
            self.timers.cancel(timer);
        }
        while let Some(addr) = dial.next.pop_front() {
            let started = transport::connect(&SockAddr::Inet(addr), dial.bound.take())
                .map_err(open_failure)
                .and_then(|mut stream| {
                    stream
                        .register(&self.registry, attempt_token(s), true)
                        .map(|()| stream)
                        .map_err(|e| (Reason::OpenFailed, Error::Io(e)))
                });
            match started {
                Ok(stream) => {
                    io_log!(debug, Target::Tcp, self.mux_id, socket = %s, %addr, "attempt");
                    dial.attempts.push(stream);
                    if !dial.next.is_empty() {
                        self.arm_next_attempt(s);
                    }
                    return;
                }
                Err(failure) => {
                    io_log!(debug, Target::Tcp, self.mux_id, socket = %s, %addr, error = %failure.1, "attempt failed");
                    dial.last = Some(failure);
                }
            }
        }
        if dial.attempts.is_empty() {
            let dial = self.dials.remove(&s).map(|d| *d).unwrap_or_default();
            let (reason, error) = dial
                .last
                .map_or((Reason::ConnectFailed, None), |(r, e)| (r, Some(e)));
            self.fail(s, reason, error);
            self.settle(s);
        }
    }

    /// The next attempt starts after `CONNECTION_ATTEMPT_DELAY` unless one
    /// connected or all failed before.
    fn arm_next_attempt(&mut self, s: SocketId) {
        let timer = self.set_timer(CONNECTION_ATTEMPT_DELAY, move |cx| {
            if let Some(dial) = cx.engine.dials.get_mut(&s) {
                dial.timer = None;
            }
            cx.engine.next_attempt(s);
        });
        if let Some(dial) = self.dials.get_mut(&s) {
            dial.timer = Some(timer);
        }
    }

    /// An attempt of `s` is ready: the first connected wins; failed ones
    /// drop out, and when none is left in flight the next starts at once.
    pub(crate) fn attempt_ready(&mut self, s: SocketId) {
        let Some(dial) = self.dials.get_mut(&s) else {
            return;
        };
        let mut winner = None;
        let mut i = 0;
        while i < dial.attempts.len() {
            let stream = &dial.attempts[i];
            match stream.take_error() {
                Ok(None) if stream.is_connected() => {
                    winner = Some(dial.attempts.swap_remove(i));
                    break;
                }
                Ok(None) => i += 1,
                Ok(Some(e)) | Err(e) => {
                    io_log!(debug, Target::Tcp, self.mux_id, socket = %s, error = %e, "attempt failed");
                    dial.last = Some((connect_reason(&e), Error::Io(e)));
                    // Dropping it closes it: nobody hears of it.
                    drop(dial.attempts.swap_remove(i));
                }
            }
        }
        match winner {
            Some(stream) => self.win(s, stream),
            None if dial.attempts.is_empty() => self.next_attempt(s),
            None => {}
        }
    }

    /// `stream` connected first: it becomes the socket's connection; the
    /// other attempts are closed unannounced.
    fn win(&mut self, s: SocketId, mut stream: Stream) {
        if let Some(dial) = self.dials.remove(&s) {
            if let Some(timer) = dial.timer {
                self.timers.cancel(timer);
            }
        }
        if let Err(e) = stream.reregister(&self.registry, s.token()) {
            self.fail(s, Reason::OpenFailed, Error::Io(e));
            self.settle(s);
            return;
        }
        io_log!(debug, Target::Tcp, self.mux_id, socket = %s, "connected");
        let Some(slot) = self.slot_mut(s) else {
            return;
        };
        slot.io = Io::Stream(stream);
        // What came before the move was reported under the attempt's token.
        slot.readable = true;
        self.send_hello(s);
        let Some(slot) = self.slot_mut(s) else {
            return;
        };
        slot.life.connected();
        self.settle(s);
        self.flush(s);
    }

    /// The socket `s` ended: its race, if one runs, ends unannounced.
    pub(crate) fn end_dial(&mut self, s: SocketId) {
        if let Some(dial) = self.dials.remove(&s) {
            if let Some(timer) = dial.timer {
                self.timers.cancel(timer);
            }
        }
        self.announced.remove(&s);
    }
}

#[cfg(test)]
impl<S: 'static> Engine<S> {
    /// Connect `s` as if a name had resolved to `addrs`.
    pub(crate) fn connect_resolved(&mut self, s: SocketId, addrs: &[SocketAddr]) {
        let slot = self.slot_mut(s).expect("a live socket");
        slot.life.connect().expect("a socket that may connect");
        self.dials.insert(
            s,
            Box::new(Dial {
                resolving: true,
                ..Dial::default()
            }),
        );
        self.race(s, addrs);
        self.settle(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate_ipv6_first() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let got = interleave(&[
            a("127.0.0.1:1"),
            a("10.0.0.1:1"),
            a("[::1]:1"),
            a("[::2]:1"),
            a("[::3]:1"),
        ]);
        assert_eq!(
            got,
            [
                a("[::1]:1"),
                a("127.0.0.1:1"),
                a("[::2]:1"),
                a("10.0.0.1:1"),
                a("[::3]:1")
            ]
        );
        assert_eq!(interleave(&[a("127.0.0.1:1")]), [a("127.0.0.1:1")]);
    }
}
