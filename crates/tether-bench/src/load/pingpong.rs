//! Request/response loads: pingpong over a stream (plain, TLS, or a fixed
//! number of round trips) and over UDP.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use super::{established, open, poll_events, Clock, Measured, Window};
use crate::common::Target;
use crate::sys;
use crate::tlsio::Wire;

/// When a pingpong ends.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// After a warm-up and a measured window.
    Window(Window),
    /// Once every connection has made this many round trips (it sends no
    /// more after its last): a fixed amount of work, for counting
    /// instructions and calls rather than timing.
    Trips(u64),
}

/// Request/response: each connection sends `size` bytes, waits for them to come
/// back, and again.
pub(crate) fn pingpong(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    conns: usize,
    size: usize,
    w: Window,
) -> Measured {
    pingpong_until(target, tls, conns, size, Until::Window(w))
}

/// Plain pingpong of exactly `conns` × `trips` round trips: no warm-up, no
/// window; the figures cover the whole run from the first connect to the
/// last echo (connections still open). No latency histogram.
pub(crate) fn pingpong_trips(target: &Target, conns: usize, size: usize, trips: u64) -> Measured {
    pingpong_until(target, None, conns, size, Until::Trips(trips))
}

fn pingpong_until(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    conns: usize,
    size: usize,
    until: Until,
) -> Measured {
    struct C {
        wire: Wire,
        connected: bool,
        started: bool,
        sent: usize,
        got: usize,
        at: Instant,
        trips: u64,
    }
    let (w, limit) = match until {
        Until::Window(w) => (w, u64::MAX),
        Until::Trips(n) => (
            Window {
                warmup: Duration::ZERO,
                measure: Duration::ZERO,
            },
            n.max(1),
        ),
    };
    let begun = (Instant::now(), 0, sys::process_cpu(), sys::thread_cpu());
    let msg = vec![0xa5u8; size];
    let mut buf = vec![0u8; 256 * 1024];
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut cs: Vec<C> = (0..conns)
        .map(|i| C {
            wire: open(&poll, target, tls, i),
            connected: false,
            started: false,
            sent: 0,
            got: 0,
            at: now,
            trips: 0,
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut clock = Clock::new(w);
    let (mut started, mut done, mut finished) = (0, 0u64, 0);
    let deadline = now + Duration::from_secs(30);
    loop {
        poll_events(&mut poll, &mut events);
        let now = Instant::now();
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if !c.started {
                if !established(&mut c.wire, &mut c.connected) {
                    continue;
                }
                c.started = true;
                started += 1;
                c.at = now;
                c.sent = 0;
            }
            if ev.is_writable() {
                let _ = c.wire.flush();
            }
            loop {
                match c.wire.read(&mut buf) {
                    Ok(0) => panic!("the server closed a pingpong connection"),
                    Ok(n) => {
                        c.got += n;
                        if c.got >= size {
                            assert_eq!(c.got, size, "more came back than was sent");
                            done += 1;
                            if clock.measuring() {
                                let _ = hist.record((now - c.at).as_nanos() as u64);
                            }
                            c.got = 0;
                            c.sent = 0;
                            c.at = now;
                            c.trips += 1;
                            if c.trips == limit {
                                // Its last: nothing more to send.
                                c.sent = size;
                                finished += 1;
                            }
                        }
                        // A short plain read emptied the socket (the next edge
                        // says when more comes): asking again would only get
                        // EAGAIN, a system call per round trip that would make
                        // the load generator, not the server, set the pace.
                        if n < buf.len() && !c.wire.is_tls() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("pingpong read: {e}"),
                }
            }
            while c.sent < size {
                match c.wire.write(&msg[c.sent..]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("pingpong write: {e}"),
                }
            }
        }
        if started == conns {
            clock.start(now);
        } else {
            assert!(
                now < deadline,
                "only {started} of {conns} connections came up"
            );
        }
        if finished == conns {
            return Measured::since(begun, now, done);
        }
        if limit == u64::MAX && clock.tick(now, done) {
            let mut m = clock.end.take().expect("measured");
            m.latency = Some(hist);
            return m;
        }
    }
}

/// UDP request/response with `window` datagrams of `size` bytes in flight.
pub(crate) fn udp(target: SocketAddr, window: usize, size: usize, w: Window) -> Measured {
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut sock = mio::net::UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    sock.connect(target).expect("connect");
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE)
        .expect("register");
    let msg = vec![0x3cu8; size];
    let mut buf = vec![0u8; 64 * 1024];
    let mut clock = Clock::new(w);
    clock.start(Instant::now());
    let (mut in_flight, mut done, mut lost) = (0usize, 0u64, 0u64);
    let mut last = Instant::now();
    loop {
        while in_flight < window {
            match sock.send(&msg) {
                Ok(_) => in_flight += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("udp send: {e}"),
            }
        }
        poll_events(&mut poll, &mut events);
        let now = Instant::now();
        loop {
            match sock.recv(&mut buf) {
                Ok(_) => {
                    done += 1;
                    in_flight = in_flight.saturating_sub(1);
                    last = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("udp recv: {e}"),
            }
        }
        if now - last > Duration::from_millis(20) {
            // Lost on the way (a full socket buffer): send them again.
            lost += in_flight as u64;
            in_flight = 0;
            last = now;
        }
        if clock.tick(now, done) {
            let mut m = clock.end.take().expect("measured");
            m.errors = lost;
            return m;
        }
    }
}
