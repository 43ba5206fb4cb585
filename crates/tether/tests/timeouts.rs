//! The timing side of the lifecycle, over loopback: connect, handshake (TLS and
//! framed), idle and linger timeouts, `idle_for`, admission by
//! `max_connections`, slow-loris eviction, and what 10,000 idle sockets with
//! idle timeouts cost a sleeping loop. Cutting a live link is `dead_peers.rs`.
//!
//! Every timeout `t` is asserted to end the socket within `[t, t + SLACK]` of
//! when it started to run: never early, never faster than that.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::pki::Ca;
use common::*;
use tether::{Cx, DiscardMethod, IoMux, Reason, RecvMode, SocketId, State, Timeouts, TlsContext};

/// How late a timeout may end its socket (scheduling, a loaded machine).
const SLACK: Duration = Duration::from_secs(1);
/// How long one loop may run before the test counts as hung.
const LIMIT: Duration = Duration::from_secs(15);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether a timeout of `t` that fired `took` after it started did so within
/// `[t - early, t + SLACK]`. `early` is the part of the start that the
/// measurement cannot see (zero where it can).
fn timely(t: Duration, took: Duration, early: Duration) -> bool {
    took + early >= t && took <= t + SLACK
}

/// Asserts [`timely`], and prints the figure.
fn assert_timely(what: &str, t: Duration, took: Duration, early: Duration) {
    println!("{what}: set {t:?}, observed {took:?}");
    assert!(
        timely(t, took, early),
        "{what}: ended after {took:?}, not within [{t:?}, {t:?} + {SLACK:?}]"
    );
}

/// When each socket had each callback, first time only.
#[derive(Clone, Default)]
struct Stamps(Rc<RefCell<HashMap<(SocketId, &'static str), Instant>>>);

impl Stamps {
    fn note(&self, s: SocketId, ev: &Ev) {
        let what = match ev {
            Ev::Connected => "connected",
            Ev::Accepted => "accepted",
            Ev::Received(_) => "received",
            Ev::Closed(_) => "closed",
            _ => return,
        };
        self.0
            .borrow_mut()
            .entry((s, what))
            .or_insert_with(Instant::now);
    }

    fn get(&self, s: SocketId, what: &'static str) -> Instant {
        *self
            .0
            .borrow()
            .get(&(s, what))
            .unwrap_or_else(|| panic!("{s} had no {what}"))
    }

    /// A user that stamps its callbacks, then runs `hook`.
    fn rec(&self, mut hook: impl FnMut(&mut Cx<Log>, SocketId, &Ev) + 'static) -> Rec {
        let stamps = self.clone();
        Rec::with(move |cx, s, ev| {
            stamps.note(s, ev);
            hook(cx, s, ev)
        })
    }

    /// A listener whose connections echo (stamped).
    fn echo_listener(&self) -> Rec {
        let stamps = self.clone();
        Rec::listener(move || Some(stamps.rec(echo)))
    }
}

/// An accepted connection that echoes what it receives and answers the
/// peer's end with its own (framed: one message at a time).
fn echo(cx: &mut Cx<Log>, s: SocketId, ev: &Ev) {
    match ev {
        Ev::Accepted => cx.recv(s, 4096, RecvMode::Partial).unwrap(),
        Ev::Received(d) => {
            cx.send(s, d).unwrap();
            cx.recv(s, 4096, RecvMode::Partial).unwrap();
        }
        Ev::PeerShutdown => cx.shutdown(s).unwrap(),
        _ => {}
    }
}

/// A framed listener on loopback with `user`, listening.
fn framed_listener(m: &mut IoMux<Log>, user: Rec) -> (SocketId, SocketAddr) {
    let l = m.stream(user);
    m.set_framing(l, b"").unwrap();
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen(l).unwrap();
    (l, inet(m, l))
}

fn timeouts(connect: Option<u64>, handshake: Option<u64>, idle: Option<u64>) -> Timeouts {
    Timeouts {
        connect: connect.map(ms),
        handshake: handshake.map(ms),
        idle: idle.map(ms),
    }
}

fn assert_no_timeout(m: &IoMux<Log>) {
    assert!(
        !m.shared().timed_out,
        "the loop hit its limit: {:#?}",
        m.shared().events
    );
}

fn incoming(log: &Log) -> usize {
    log.events
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Incoming(_)))
        .count()
}

/// A std peer in its own thread; `finished` is set when it returns (also when
/// it panics), so the loop can wait for it.
fn peer<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (thread::JoinHandle<T>, Arc<AtomicBool>) {
    struct Finished(Arc<AtomicBool>);
    impl Drop for Finished {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Finished(finished.clone());
    let handle = thread::spawn(move || {
        let _flag = flag;
        f()
    });
    (handle, finished)
}

/// How a std client's connection ended: the time from its connect until the
/// read that saw the end, and what that read returned.
fn wait_for_end(stream: &mut impl Read) -> (Duration, Result<usize, ErrorKind>) {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (start.elapsed(), Ok(0)),
            Ok(_) => continue,
            Err(e) => return (start.elapsed(), Err(e.kind())),
        }
    }
}

// ----- connect -----

/// A listener that never accepts, its backlog full: further SYNs are dropped.
fn full_backlog() -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, ms(200)) {
            Ok(s) => fillers.push(s),
            // The backlog is full: this SYN went unanswered.
            Err(_) => return (listener, addr, fillers),
        }
    }
    panic!(
        "a listener with backlog 0 took {} connections",
        fillers.len()
    );
}

/// The SYN goes unanswered: ConnectTimeout at the connect timeout (the
/// shorter handshake and idle timeouts belong to later stages and do not run).
#[test]
fn connect_timeout_when_nobody_answers() {
    let (_listener, addr, _fillers) = full_backlog();
    let t = ms(300);
    let stamps = Stamps::default();
    let mut m = mux();
    let c = m.stream(stamps.rec(|_, _, _| {}));
    m.set_timeouts(c, timeouts(Some(300), Some(50), Some(50)))
        .unwrap();
    let start = Instant::now();
    m.connect(c, &addr.to_string()).unwrap();
    assert_eq!(m.state(c), State::Connecting);
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert_no_timeout(&m);
    let log = m.shared();
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::ConnectTimeout, "{done:?}");
    assert_eq!(log.of(c), vec![Ev::Closed(done)], "nothing but on_closed");
    assert_timely(
        "connect timeout",
        t,
        stamps.get(c, "closed") - start,
        Duration::ZERO,
    );
}

/// A timeout set up before `run` counts from the call, not from when the loop
/// last woke (here: when it was made, long before).
#[test]
fn a_connect_timeout_set_up_before_run_counts_from_the_call() {
    let mut m = mux();
    let (_listener, addr, _fillers) = full_backlog();
    thread::sleep(ms(400));
    let stamps = Stamps::default();
    let c = m.stream(stamps.rec(|_, _, _| {}));
    m.set_timeouts(c, timeouts(Some(300), None, None)).unwrap();
    let start = Instant::now();
    m.connect(c, &addr.to_string()).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert_no_timeout(&m);
    assert_eq!(m.shared().closed(c).reason, Reason::ConnectTimeout);
    assert_timely(
        "connect timeout set before run",
        ms(300),
        stamps.get(c, "closed") - start,
        Duration::ZERO,
    );
}

/// A connect timeout ends with the connect: the connection lives on past it.
#[test]
fn a_connection_made_in_time_outlives_its_connect_timeout() {
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", echo_listener());
    let addr = inet(&m, l).to_string();
    let c = m.stream(Rec::with(|cx, s, ev| match ev {
        Ev::Connected => {
            cx.set_timer(ms(500), move |cx| {
                cx.send(s, b"ping").unwrap();
                cx.recv(s, 4, RecvMode::Exact).unwrap();
            });
        }
        Ev::Received(_) => cx.close(s).unwrap(),
        _ => {}
    }));
    m.set_timeouts(c, timeouts(Some(200), Some(200), None))
        .unwrap();
    m.connect(c, &addr).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert_no_timeout(&m);
    assert_eq!(m.shared().received(c), b"ping");
    assert_eq!(m.shared().closed(c).reason, Reason::Normal);
}

// ----- handshake -----

/// A framed listener with a handshake timeout: a client that connects and
/// says nothing is reset (it never had a user: no callback at all); a client
/// that completes its HELLO in time is served, also long after the timeout.
#[test]
fn framed_handshake_timeout_evicts_a_silent_client() {
    let t = ms(300);
    let stamps = Stamps::default();
    let mut m = mux();
    let (l, addr) = framed_listener(&mut m, stamps.echo_listener());
    m.set_timeouts(l, timeouts(None, Some(300), None)).unwrap();

    let (silent, silent_done) = peer(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(ms(5000))).unwrap();
        wait_for_end(&mut s)
    });

    // The good client stays quiet past the handshake timeout once admitted.
    let c = m.stream(Rec::with(|cx, s, ev| match ev {
        Ev::Connected => {
            cx.set_timer(ms(600), move |cx| {
                cx.send(s, b"ping").unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            });
        }
        Ev::Received(_) => cx.close(s).unwrap(),
        _ => {}
    }));
    m.set_framing(c, b"hello").unwrap();
    m.connect(c, &addr.to_string()).unwrap();

    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && silent_done.load(Ordering::Acquire)
    });
    assert_no_timeout(&m);
    let (took, end) = silent.join().unwrap();
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the silent client");
    assert_timely("framed handshake timeout (client's view)", t, took, ms(20));

    let log = m.shared();
    assert_eq!(incoming(log), 1, "only the good client said HELLO");
    assert_eq!(log.received(c), b"ping");
    assert_eq!(log.closed(c).reason, Reason::Normal);
    let a = log.accepted()[0];
    assert_eq!(log.closed(a).reason, Reason::ByPeer);
}

/// A framed client whose server accepts and never answers its HELLO.
#[test]
fn framed_client_handshake_timeout_without_welcome() {
    let t = ms(300);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let (silent, _) = peer(move || {
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(ms(20))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !stopped.load(Ordering::Acquire) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        got
    });

    let stamps = Stamps::default();
    let mut m = mux();
    let c = m.stream(stamps.rec(|_, _, _| {}));
    m.set_framing(c, b"hi").unwrap();
    m.set_timeouts(c, timeouts(Some(5000), Some(300), None))
        .unwrap();
    let start = Instant::now();
    m.connect(c, &addr.to_string()).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    stop.store(true, Ordering::Release);
    assert_no_timeout(&m);
    let hello = silent.join().unwrap();
    assert_eq!(hello, b"\x00\x00\x00\x03\x01hi", "the HELLO went out");
    let log = m.shared();
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::HandshakeTimeout, "{done:?}");
    assert_eq!(log.of(c), vec![Ev::Closed(done)]);
    assert_timely(
        "framed client handshake timeout",
        t,
        stamps.get(c, "closed") - start,
        Duration::ZERO,
    );
}

fn tls_contexts() -> (TlsContext, TlsContext) {
    let ca = Ca::new("timeouts test CA");
    let id = ca.server();
    let server = TlsContext::builder()
        .certificate_pem(id.cert_pem.as_bytes(), id.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let client = TlsContext::builder()
        .roots_pem(ca.cert_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    (server, client)
}

/// A TLS listener with a handshake timeout: the accepted connection of a
/// client that never sends its ClientHello ends with HandshakeTimeout; a
/// client that completes the handshake is served, also past the timeout.
#[test]
fn tls_handshake_timeout_evicts_a_silent_client() {
    let t = ms(300);
    let (server_ctx, client_ctx) = tls_contexts();
    let stamps = Stamps::default();
    let mut m = mux();
    let l = m.stream(stamps.echo_listener());
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen_tls(l, &server_ctx).unwrap();
    m.set_timeouts(l, timeouts(None, Some(300), None)).unwrap();
    let addr = inet(&m, l);

    let (silent, silent_done) = peer(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(ms(5000))).unwrap();
        wait_for_end(&mut s)
    });
    let c = m.stream(Rec::with(|cx, s, ev| match ev {
        Ev::Connected => {
            cx.set_timer(ms(600), move |cx| {
                cx.send(s, b"ping").unwrap();
                cx.recv(s, 4, RecvMode::Exact).unwrap();
            });
        }
        Ev::Received(_) => cx.close(s).unwrap(),
        _ => {}
    }));
    m.connect_tls(c, &addr.to_string(), "localhost", &client_ctx)
        .unwrap();

    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && silent_done.load(Ordering::Acquire) && log.accepted().len() == 2
    });
    assert_no_timeout(&m);
    let (took, end) = silent.join().unwrap();
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "the silent client");
    let log = m.shared();
    assert_eq!(log.received(c), b"ping");
    assert_eq!(log.closed(c).reason, Reason::Normal);
    let (evicted, served): (Vec<SocketId>, Vec<SocketId>) = log
        .accepted()
        .into_iter()
        .partition(|&a| log.closed(a).reason == Reason::HandshakeTimeout);
    assert_eq!((evicted.len(), served.len()), (1, 1), "{:#?}", log.events);
    let a = evicted[0];
    assert_eq!(
        log.of(a),
        vec![Ev::Accepted, Ev::Closed(log.closed(a))],
        "on_accepted, then on_closed"
    );
    assert_timely(
        "TLS handshake timeout",
        t,
        stamps.get(a, "closed") - stamps.get(a, "accepted"),
        Duration::ZERO,
    );
    assert_timely("TLS handshake timeout (client's view)", t, took, ms(20));
    assert_eq!(log.closed(served[0]).reason, Reason::ByPeer);
}

/// The idle timeout of a TLS server's connection runs from the end of its
/// handshake, also with no handshake timeout set.
#[test]
fn tls_idle_timeout_runs_after_the_handshake() {
    let t = ms(300);
    let (server_ctx, client_ctx) = tls_contexts();
    let stamps = Stamps::default();
    let mut m = mux();
    let l = m.stream(stamps.echo_listener());
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen_tls(l, &server_ctx).unwrap();
    m.set_timeouts(l, timeouts(None, None, Some(300))).unwrap();
    let addr = inet(&m, l).to_string();
    let c = m.stream(stamps.rec(|_, _, _| {}));
    m.connect_tls(c, &addr, "localhost", &client_ctx).unwrap();
    run_until(&mut m, ms(5000), move |log| log.is_closed(c));
    assert_no_timeout(&m);
    let log = m.shared();
    let a = log.accepted()[0];
    let done = log.closed(a);
    assert_eq!(done.reason, Reason::IdleTimeout, "{done:?}");
    assert_eq!(
        log.closed(c).reason,
        Reason::Lost,
        "the client sees the RST"
    );
    assert_timely(
        "TLS server idle timeout",
        t,
        stamps.get(a, "closed") - stamps.get(c, "connected"),
        ms(20),
    );
}

// ----- idle -----

fn idle_timeout_resets_a_quiet_stream(t: Transport) {
    let idle = ms(300);
    let spot = t.spot();
    let stamps = Stamps::default();
    let mut m = mux();
    let l = m.listen_on(&spot.addr, stamps.echo_listener());
    m.set_timeouts(l, timeouts(None, None, Some(300))).unwrap();
    let mut client = Peer::connect(&m, l);
    let (quiet, quiet_done) = peer(move || {
        client.set_read_timeout(Some(ms(5000)));
        wait_for_end(&mut client)
    });
    run_until(&mut m, LIMIT, move |_| quiet_done.load(Ordering::Acquire));
    assert_no_timeout(&m);
    let (took, end) = quiet.join().unwrap();
    let log = m.shared();
    let a = log.accepted()[0];
    let done = log.closed(a);
    assert_eq!(done.reason, Reason::IdleTimeout, "{t:?}: {done:?}");
    assert_eq!((done.unsent, done.unread), (0, 0), "{t:?}");
    match t {
        // A reset: the peer cannot take it for a graceful end.
        Transport::Tcp => assert_eq!(end, Err(ErrorKind::ConnectionReset)),
        // A Unix socket has no RST: its peer sees the stream end.
        Transport::Local => assert_eq!(end, Ok(0)),
    }
    assert_timely(
        &format!("{t:?} idle timeout (tether)"),
        idle,
        stamps.get(a, "closed") - stamps.get(a, "accepted"),
        Duration::ZERO,
    );
    assert_timely(&format!("{t:?} idle timeout (peer)"), idle, took, ms(20));
}

#[test]
fn idle_timeout_resets_a_quiet_tcp_stream() {
    idle_timeout_resets_a_quiet_stream(Transport::Tcp);
}

#[test]
fn idle_timeout_closes_a_quiet_local_stream() {
    idle_timeout_resets_a_quiet_stream(Transport::Local);
}

/// A peer that sends every 100 ms keeps a connection with a 300 ms idle
/// timeout for as long as it does; once it stops, the connection ends 300 ms
/// after the last data moved.
#[test]
fn traffic_resets_the_idle_clock() {
    let idle = ms(300);
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", echo_listener());
    m.set_timeouts(l, timeouts(None, None, Some(300))).unwrap();
    let addr = inet(&m, l);
    let (talker, talker_done) = peer(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(ms(5000))).unwrap();
        let start = Instant::now();
        let mut last = start;
        let mut gap = Duration::ZERO;
        let mut byte = [0u8; 1];
        while start.elapsed() < ms(1200) {
            gap = gap.max(last.elapsed());
            last = Instant::now();
            s.write_all(b"x")
                .unwrap_or_else(|e| panic!("{e} after {:?}, longest gap {gap:?}", start.elapsed()));
            s.read_exact(&mut byte).unwrap_or_else(|e| {
                panic!("echo: {e} after {:?}, longest gap {gap:?}", start.elapsed())
            });
            thread::sleep(ms(100));
        }
        let lived_while_talking = start.elapsed();
        let (_, end) = wait_for_end(&mut s);
        (lived_while_talking, last.elapsed(), end)
    });
    run_until(&mut m, LIMIT, move |_| talker_done.load(Ordering::Acquire));
    assert_no_timeout(&m);
    let (lived, after_last, end) = talker.join().unwrap();
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    let log = m.shared();
    let a = log.accepted()[0];
    assert_eq!(log.closed(a).reason, Reason::IdleTimeout);
    assert!(
        log.received(a).len() >= 10,
        "{} messages",
        log.received(a).len()
    );
    println!("alive while talking: {lived:?} (idle timeout {idle:?})");
    assert!(lived > ms(1000), "{lived:?}");
    assert_timely(
        "idle timeout after the last message",
        idle,
        after_last,
        Duration::ZERO,
    );
}

/// An echo server with a 300 ms idle timeout whose callbacks keep the loop
/// busy: 500 ms on "slow"; 150 ms on "busy", leaving a timer due when done.
/// Meanwhile the peers' next messages wait in the kernel.
fn busy_echo_server(m: &mut IoMux<Log>) -> SocketAddr {
    let l = m.listen_on(
        "127.0.0.1:0",
        Rec::listener(|| {
            Some(Rec::with(|cx, s, ev| {
                echo(cx, s, ev);
                if let Ev::Received(d) = ev {
                    if d.windows(4).any(|w| w == b"busy") {
                        thread::sleep(ms(150));
                        cx.set_timer(Duration::ZERO, |_| {});
                    }
                    if d.windows(4).any(|w| w == b"slow") {
                        thread::sleep(ms(500));
                    }
                }
            }))
        }),
    );
    m.set_timeouts(l, timeouts(None, None, Some(300))).unwrap();
    inet(m, l)
}

/// A peer that writes each message at its time (ms from the start), not
/// waiting for the echoes, then waits for the end. Returns the time from its
/// last write to the end, and the end.
type Talk = (Duration, Result<usize, ErrorKind>);
fn talker(
    addr: SocketAddr,
    script: Vec<(u64, &'static [u8])>,
) -> (thread::JoinHandle<Talk>, Arc<AtomicBool>) {
    peer(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let mut last = start;
        for (at, msg) in script {
            thread::sleep(ms(at).saturating_sub(start.elapsed()));
            last = Instant::now();
            s.write_all(msg)
                .unwrap_or_else(|e| panic!("{e} after {:?}", start.elapsed()));
        }
        s.set_read_timeout(Some(ms(5000))).unwrap();
        let (_, end) = wait_for_end(&mut s);
        (last.elapsed(), end)
    })
}

/// A loop that is busy (a callback that takes 500 ms) does not take a
/// connection whose data waits for it unread for an idle one: data that
/// arrived before the deadline counts, though the loop looks at it late.
/// `own`: the slow callback is the talking connection's own; else another
/// connection's, while the talker's data waits with no event in hand.
fn busy_loop_does_not_mistake_waiting_data_for_idleness(own: bool) {
    let mut m = mux();
    let addr = busy_echo_server(&mut m);
    let script = (0..10)
        .map(|i| (i * 100, if own && i == 3 { &b"slow"[..] } else { b"x" }))
        .collect();
    let (talker, talker_done) = talker(addr, script);
    let trigger = (!own).then(|| {
        peer(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            thread::sleep(ms(250));
            s.write_all(b"slow").unwrap();
            s.set_read_timeout(Some(ms(5000))).unwrap();
            wait_for_end(&mut s)
        })
    });
    run_until(&mut m, LIMIT, move |_| talker_done.load(Ordering::Acquire));
    assert_no_timeout(&m);
    let (took, end) = talker.join().unwrap();
    if let Some((trigger, _)) = trigger {
        let (_, end) = trigger.join().unwrap();
        assert_eq!(end, Err(ErrorKind::ConnectionReset), "the quiet trigger");
    }
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    let log = m.shared();
    let talked = log
        .accepted()
        .into_iter()
        .max_by_key(|&a| log.received(a).len())
        .unwrap();
    assert_eq!(log.closed(talked).reason, Reason::IdleTimeout);
    assert!(log.received(talked).len() >= 9, "{:?}", log.of(talked));
    assert_timely(
        "idle timeout after the last message (busy loop)",
        ms(300),
        took,
        Duration::ZERO,
    );
}

#[test]
fn a_slow_callback_of_the_connection_does_not_make_it_idle() {
    busy_loop_does_not_mistake_waiting_data_for_idleness(true);
}

#[test]
fn a_slow_callback_of_another_connection_does_not_make_it_idle() {
    busy_loop_does_not_mistake_waiting_data_for_idleness(false);
}

/// The slow callback runs while the loop takes in what arrived before it judges
/// a due deadline: what came during that callback must count too. "busy" keeps
/// the loop for 150 ms and leaves a timer due, so the "slow" sent meanwhile is
/// read by that taking-in; the idle deadline (300 ms) is due when the 500 ms
/// callback returns, with the talker's next messages waiting unread.
#[test]
fn a_slow_callback_while_taking_in_does_not_make_it_idle() {
    let mut m = mux();
    let addr = busy_echo_server(&mut m);
    let mut script = vec![(50, &b"busy"[..]), (100, b"slow")];
    script.extend((2..=11).map(|i| (i * 100, &b"x"[..])));
    let (talker, talker_done) = talker(addr, script);
    run_until(&mut m, LIMIT, move |_| talker_done.load(Ordering::Acquire));
    assert_no_timeout(&m);
    let (took, end) = talker.join().unwrap();
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    let log = m.shared();
    assert_eq!(log.closed(log.accepted()[0]).reason, Reason::IdleTimeout);
    assert_timely(
        "idle timeout after the last message (slow callback while taking in)",
        ms(300),
        took,
        Duration::ZERO,
    );
}

/// `idle_for` grows while nothing moves and drops back once data does.
#[test]
fn idle_for_is_the_time_since_data_moved() {
    let samples: Rc<RefCell<Vec<(&str, Duration)>>> = Rc::default();
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", echo_listener());
    let addr = inet(&m, l).to_string();
    let record = samples.clone();
    let c = m.stream(Rec::with(move |cx, s, ev| {
        let note = |cx: &mut Cx<Log>, what| {
            record
                .borrow_mut()
                .push((what, cx.idle_for(s).expect("a live socket")))
        };
        match ev {
            Ev::Connected => {
                cx.send(s, b"one").unwrap();
                cx.recv(s, 3, RecvMode::Exact).unwrap();
            }
            Ev::Received(d) if d == b"one" => {
                note(cx, "at the first echo");
                let early = record.clone();
                cx.set_timer(ms(100), move |cx| {
                    early
                        .borrow_mut()
                        .push(("100 ms later", cx.idle_for(s).unwrap()))
                });
                let late = record.clone();
                cx.set_timer(ms(250), move |cx| {
                    late.borrow_mut()
                        .push(("250 ms later", cx.idle_for(s).unwrap()));
                    cx.send(s, b"two").unwrap();
                    cx.recv(s, 3, RecvMode::Exact).unwrap();
                });
            }
            Ev::Received(_) => {
                note(cx, "at the second echo");
                cx.close(s).unwrap();
            }
            _ => {}
        }
    }));
    m.connect(c, &addr).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert_no_timeout(&m);
    assert_eq!(m.idle_for(c), None, "a closed socket has none");
    let samples = samples.borrow();
    println!("idle_for: {samples:?}");
    let at: Vec<Duration> = samples.iter().map(|(_, d)| *d).collect();
    assert_eq!(at.len(), 4, "{samples:?}");
    assert!(
        at[0] < at[1] && at[1] < at[2],
        "grows while quiet: {samples:?}"
    );
    assert!(at[2] >= ms(250), "{samples:?}");
    assert!(at[3] < at[1], "drops once data moved: {samples:?}");
}

/// UDP: the idle timeout discards the socket silently, whether the timeout
/// was set before or after the bind; datagrams arriving keep it.
#[test]
fn udp_idle_timeout_is_a_silent_discard() {
    let idle = ms(300);
    let stamps = Stamps::default();
    let mut m = mux();
    let set_before = m.udp(stamps.rec(|_, _, _| {}));
    m.set_timeouts(set_before, timeouts(None, None, Some(300)))
        .unwrap();
    let start = Instant::now();
    m.bind(set_before, "127.0.0.1:0").unwrap();
    let set_after = m.udp(stamps.rec(|_, _, _| {}));
    m.bind(set_after, "127.0.0.1:0").unwrap();
    m.set_timeouts(set_after, timeouts(None, None, Some(300)))
        .unwrap();
    let fed = m.udp(stamps.rec(|cx, s, ev| {
        if let Ev::Bound(_) | Ev::ReceivedFrom(..) = ev {
            cx.recv(s, 64, RecvMode::Partial).unwrap();
        }
    }));
    m.bind(fed, "127.0.0.1:0").unwrap();
    m.set_timeouts(fed, timeouts(None, None, Some(300)))
        .unwrap();
    let to = inet(&m, fed);
    let (feeder, fed_done) = peer(move || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let mut last = start;
        let mut gap = Duration::ZERO;
        while start.elapsed() < ms(1000) {
            gap = gap.max(last.elapsed());
            last = Instant::now();
            sock.send_to(b"tick", to).unwrap();
            thread::sleep(ms(100));
        }
        (last, gap)
    });
    run_until(&mut m, LIMIT, move |log| {
        [set_before, set_after, fed]
            .iter()
            .all(|&s| log.is_closed(s))
            && fed_done.load(Ordering::Acquire)
    });
    assert_no_timeout(&m);
    let (last, gap) = feeder.join().unwrap();
    let log = m.shared();
    for s in [set_before, set_after, fed] {
        let done = log.closed(s);
        assert_eq!(done.reason, Reason::IdleTimeout, "{s}: {done:?}");
        assert_eq!(done.discard, Some(DiscardMethod::Silent), "{s}: {done:?}");
    }
    for s in [set_before, set_after] {
        assert_timely(
            "UDP idle timeout",
            idle,
            stamps.get(s, "closed") - start,
            Duration::ZERO,
        );
    }
    let ticks = log
        .of(fed)
        .iter()
        .filter(|e| matches!(e, Ev::ReceivedFrom(..)))
        .count();
    assert!(ticks >= 8, "{ticks} datagrams");
    assert!(
        stamps.get(fed, "closed") - start > ms(1000),
        "closed after {:?}; the longest gap between datagrams was {gap:?}",
        stamps.get(fed, "closed") - start
    );
    assert_timely(
        "UDP idle timeout after the last datagram",
        idle,
        stamps.get(fed, "closed") - last,
        Duration::ZERO,
    );
}

// ----- linger -----

/// close() to a peer that neither reads nor closes gives up at the linger time.
#[test]
fn close_to_a_silent_peer_ends_at_the_linger_time() {
    let linger = ms(200);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let (holder, _) = peer(move || {
        let (s, _) = server.accept().unwrap();
        // Hold the connection, reading nothing, until the test is over.
        let _ = rx.recv_timeout(ms(10_000));
        drop(s);
    });
    let closing = Rc::new(Cell::new(None));
    let closing_at = closing.clone();
    let stamps = Stamps::default();
    let mut m = mux();
    let c = m.stream(stamps.rec(move |cx, s, ev| {
        if let Ev::Connected = ev {
            cx.send(s, &[7u8; 100_000]).unwrap();
            cx.set_linger(s, ms(200)).unwrap();
            closing_at.set(Some(Instant::now()));
            cx.close(s).unwrap();
        }
    }));
    m.connect(c, &addr.to_string()).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    tx.send(()).unwrap();
    holder.join().unwrap();
    assert_no_timeout(&m);
    let done = m.shared().closed(c);
    assert_eq!(done.reason, Reason::LingerTimeout, "{done:?}");
    assert_timely(
        "linger timeout",
        linger,
        stamps.get(c, "closed") - closing.get().unwrap(),
        Duration::ZERO,
    );
}

// ----- admission -----

/// max_connections(2): of three clients, two are taken; the third waits in the
/// kernel's backlog (its connect succeeded) and is taken only once one of the
/// two closed and its on_closed returned.
fn admission_waits_for_on_closed(t: Transport) {
    let spot = t.spot();
    let connected = Arc::new(AtomicUsize::new(0));
    // What the loop saw: Incoming count and clients connected, 300 ms after
    // the second was taken; Incoming count inside the first's on_closed.
    let checkpoint = Rc::new(Cell::new(None));
    let in_on_closed = Rc::new(Cell::new(None));

    let mut m = mux();
    let seen = in_on_closed.clone();
    let l = m.listen_on(
        &spot.addr,
        Rec::listener(move || {
            let seen = seen.clone();
            Some(Rec::with(move |cx, _, ev| {
                if let Ev::Closed(_) = ev {
                    if seen.get().is_none() {
                        seen.set(Some(incoming(cx.shared())));
                    }
                }
            }))
        }),
    );
    m.max_connections(l, Some(2)).unwrap();

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut p = Peer::connect(&m, l);
        let connected = connected.clone();
        clients.push(peer(move || {
            connected.fetch_add(1, Ordering::AcqRel);
            p.set_read_timeout(Some(ms(10_000)));
            wait_for_end(&mut p).1
        }));
    }

    // Once two are taken: wait 300 ms, look, then close the first.
    let phase = Rc::new(Cell::new(0));
    let (check, watched) = (checkpoint.clone(), connected.clone());
    let watch = m.set_interval(ms(5), move |cx| {
        let log = cx.shared();
        if phase.get() == 0 && log.accepted().len() == 2 {
            phase.set(1);
            let (check, watched) = (check.clone(), watched.clone());
            cx.set_timer(ms(300), move |cx| {
                let log = cx.shared();
                check.set(Some((incoming(log), watched.load(Ordering::Acquire))));
                let first = log.accepted()[0];
                cx.close(first).unwrap();
            });
        }
    });
    run_until(&mut m, LIMIT, |log| log.accepted().len() == 3);
    m.cancel_timer(watch);
    assert_no_timeout(&m);
    for (client, _) in clients {
        // The loop reset or closed them all when it stopped.
        let _ = client.join().unwrap();
    }

    let log = m.shared();
    assert_eq!(
        checkpoint.get(),
        Some((2, 3)),
        "{t:?}: 300 ms after two were taken, all three clients were connected \
         (kernel backlog) and only two had been offered (Incoming, connected)"
    );
    assert_eq!(
        in_on_closed.get(),
        Some(2),
        "{t:?}: nothing was taken while the first's on_closed ran"
    );
    let first = log.accepted()[0];
    let closed_at = log
        .events
        .iter()
        .position(|(s, e)| *s == first && matches!(e, Ev::Closed(_)))
        .unwrap();
    let third_at = log
        .events
        .iter()
        .enumerate()
        .filter(|(_, (s, e))| *s == l && matches!(e, Ev::Incoming(_)))
        .map(|(i, _)| i)
        .nth(2)
        .expect("a third Incoming");
    assert!(
        closed_at < third_at,
        "{t:?}: the third came after the first closed"
    );
    assert_eq!(log.closed(first).reason, Reason::Normal);
}

#[test]
fn admission_waits_for_on_closed_tcp() {
    admission_waits_for_on_closed(Transport::Tcp);
}

#[test]
fn admission_waits_for_on_closed_local() {
    admission_waits_for_on_closed(Transport::Local);
}

// ----- slow loris -----

const LORIS: usize = 200;
const LORIS_WAVES: usize = 4;

/// 200 clients that send one byte of their HELLO per second, to a framed
/// listener with a handshake timeout of 2 s: each is evicted within the bound
/// of its connect, while a client that behaves is served every 200 ms
/// throughout.
#[test]
fn slow_loris_clients_are_evicted_while_good_ones_are_served() {
    let t = Duration::from_secs(2);
    let mut m = mux();
    let (l, addr) = framed_listener(&mut m, echo_listener());
    m.set_timeouts(l, timeouts(None, Some(2000), None)).unwrap();

    // The attackers: waves of 50, 500 ms apart; one byte each per second.
    let (attack, attack_done) = peer(move || {
        let hello = b"\x00\x00\x00\x0a\x01slowloris";
        let mut lorises: Vec<(TcpStream, Instant, usize, Option<Duration>)> = Vec::new();
        let start = Instant::now();
        let mut buf = [0u8; 16];
        loop {
            let wave = lorises.len() / (LORIS / LORIS_WAVES);
            if lorises.len() < LORIS && start.elapsed() >= ms(500) * wave as u32 {
                for _ in 0..LORIS / LORIS_WAVES {
                    let s = TcpStream::connect(addr).expect("loris connects");
                    s.set_nonblocking(true).unwrap();
                    lorises.push((s, Instant::now(), 0, None));
                }
            }
            for (s, at, sent, evicted) in lorises.iter_mut().filter(|l| l.3.is_none()) {
                let ended = match s.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => panic!("a loris was answered"),
                    Err(e) => e.kind() != ErrorKind::WouldBlock,
                };
                if ended {
                    *evicted = Some(at.elapsed());
                } else if at.elapsed() >= Duration::from_secs(*sent as u64) {
                    let _ = s.write(&hello[*sent..*sent + 1]);
                    *sent += 1;
                }
            }
            if lorises.len() == LORIS && lorises.iter().all(|l| l.3.is_some()) {
                break;
            }
            if start.elapsed() > Duration::from_secs(12) {
                break;
            }
            thread::sleep(ms(20));
        }
        lorises
            .into_iter()
            .map(|(_, _, sent, evicted)| (sent, evicted))
            .collect::<Vec<_>>()
    });

    // The good clients: one every 200 ms while the attack lasts.
    let latencies: Rc<RefCell<Vec<Duration>>> = Rc::default();
    let good: Rc<RefCell<Vec<SocketId>>> = Rc::default();
    let (lat, clients, done) = (latencies.clone(), good.clone(), attack_done.clone());
    let addr_s = addr.to_string();
    let launcher = m.set_interval(ms(200), move |cx| {
        if done.load(Ordering::Acquire) {
            return;
        }
        let start = Instant::now();
        let lat = lat.clone();
        let n = clients.borrow().len();
        let c = cx.stream(Rec::with(move |cx, s, ev| match ev {
            Ev::Connected => {
                cx.send(s, format!("good {n}").as_bytes()).unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => {
                lat.borrow_mut().push(start.elapsed());
                cx.close(s).unwrap();
            }
            _ => {}
        }));
        cx.set_framing(c, b"good").unwrap();
        cx.connect(c, &addr_s).unwrap();
        clients.borrow_mut().push(c);
    });
    let watched = good.clone();
    run_until(&mut m, Duration::from_secs(20), move |log| {
        attack_done.load(Ordering::Acquire) && watched.borrow().iter().all(|&c| log.is_closed(c))
    });
    m.cancel_timer(launcher);
    assert_no_timeout(&m);
    let lorises = attack.join().unwrap();

    assert_eq!(lorises.len(), LORIS);
    let lifetimes: Vec<Duration> = lorises
        .iter()
        .enumerate()
        .map(|(i, (sent, evicted))| {
            let lived = evicted.unwrap_or_else(|| panic!("loris {i} was never evicted"));
            assert!(*sent >= 2 && *sent < 10, "loris {i} sent {sent} bytes");
            lived
        })
        .collect();
    let (min, max) = (
        *lifetimes.iter().min().unwrap(),
        *lifetimes.iter().max().unwrap(),
    );
    println!("{LORIS} slow clients evicted after {min:?} to {max:?} (handshake timeout {t:?})");
    for (i, lived) in lifetimes.iter().enumerate() {
        assert!(
            timely(t, *lived, ms(50)),
            "loris {i} evicted after {lived:?}"
        );
    }

    let log = m.shared();
    let good = good.borrow();
    let latencies = latencies.borrow();
    println!(
        "{} good clients served during the attack, slowest in {:?}",
        good.len(),
        latencies.iter().max()
    );
    assert!(good.len() >= 10, "{} good clients", good.len());
    for (i, &c) in good.iter().enumerate() {
        assert_eq!(
            log.received(c),
            format!("good {i}").as_bytes(),
            "client {i}"
        );
        assert_eq!(log.closed(c).reason, Reason::Normal, "client {i}");
    }
    assert_eq!(
        incoming(log),
        good.len(),
        "no loris ever reached on_incoming"
    );
    assert!(latencies.iter().all(|&d| d < SLACK), "{latencies:?}");
}

// ----- 10,000 idle sockets -----

/// Raise the descriptor limit to at least `want` (root may raise the hard
/// limit too); returns the soft limit now in force.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write the one struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                let soft = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// CPU time (user + system) of the calling thread: the loop's, whatever the
/// other tests of this binary do meanwhile.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes the one struct given; a zeroed rusage is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Times the calling thread went to sleep (voluntary context switches):
/// about one per loop turn that waited.
fn thread_sleeps() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The loop's side of the 10,000: counts accepted connections, then measures.
struct Fleet {
    target: usize,
    accepted: Cell<usize>,
    started: Cell<Option<Instant>>,
    /// The timer that watches the client process while it connects.
    watch: Cell<Option<tether::TimerId>>,
    /// CPU time, sleeps and wall time of the measured period.
    result: Cell<Option<(Duration, u64, Duration)>>,
}

impl Fleet {
    /// All taken: measure the next 3 s of doing nothing.
    fn ready(self: &Rc<Self>, cx: &mut Cx<Log>) {
        if self.accepted.get() < self.target || self.started.get().is_some() {
            return;
        }
        self.started.set(Some(Instant::now()));
        if let Some(watch) = self.watch.take() {
            cx.cancel_timer(watch);
        }
        let (cpu, sleeps, wall) = (thread_cpu(), thread_sleeps(), Instant::now());
        let fleet = self.clone();
        cx.set_timer(Duration::from_secs(3), move |cx| {
            fleet.result.set(Some((
                thread_cpu() - cpu,
                thread_sleeps() - sleeps,
                wall.elapsed(),
            )));
            cx.terminate();
        });
    }
}

/// Where the helper process connects, and how many times.
const FLEET_ADDR: &str = "TETHER_TEST_IDLE_FLEET_ADDR";
const FLEET_COUNT: &str = "TETHER_TEST_IDLE_FLEET_COUNT";

/// Not a test by itself: the clients of
/// `ten_thousand_idle_sockets_leave_the_loop_asleep`, run by it as a child
/// process (this binary again), so that the 10,000 client descriptors do not
/// count against the loop's process. Holds its connections until its stdin
/// closes.
#[test]
#[ignore = "a helper process of ten_thousand_idle_sockets_leave_the_loop_asleep"]
fn idle_fleet_clients() {
    let (Ok(addr), Ok(count)) = (std::env::var(FLEET_ADDR), std::env::var(FLEET_COUNT)) else {
        return;
    };
    let count: usize = count.parse().unwrap();
    raise_nofile(count as u64 + 100);
    let conns: Vec<TcpStream> = (0..count)
        .map(|i| TcpStream::connect(&addr).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(conns);
}

/// 10,000 idle TCP connections (20,000 sockets: both ends are tether's), each
/// with an idle timeout of 60 s: the loop sleeps. Measured as the CPU time its
/// thread uses over 3 s of nothing happening.
#[test]
fn ten_thousand_idle_sockets_leave_the_loop_asleep() {
    const N: usize = 10_000;
    let limit = raise_nofile(N as u64 + 2_000);
    assert!(limit > N as u64 + 1_000, "only {limit} descriptors");
    let idle = Timeouts {
        idle: Some(Duration::from_secs(60)),
        ..Timeouts::default()
    };
    let setup = Instant::now();
    let mut m = IoMux::new(Log::default()).unwrap();
    let fleet = Rc::new(Fleet {
        target: N,
        accepted: Cell::new(0),
        started: Cell::new(None),
        watch: Cell::new(None),
        result: Cell::new(None),
    });
    let server_fleet = fleet.clone();
    let l = m.listen_on(
        "127.0.0.1:0",
        Rec::listener(move || {
            let fleet = server_fleet.clone();
            Some(Rec::with(move |cx, _, ev| match ev {
                Ev::Accepted => {
                    fleet.accepted.set(fleet.accepted.get() + 1);
                    fleet.ready(cx);
                }
                Ev::Closed(done) if fleet.result.get().is_none() => {
                    panic!("an idle connection closed: {done:?}")
                }
                _ => {}
            }))
        }),
    );
    m.set_timeouts(l, idle).unwrap();

    let mut clients = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idle_fleet_clients",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(FLEET_ADDR, inet(&m, l).to_string())
        .env(FLEET_COUNT, N.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the client process starts");
    let stdin = clients.stdin.take();
    // Until all are in, stop if the client process dies.
    let children = Rc::new(RefCell::new(clients));
    let child = children.clone();
    let watch_fleet = fleet.clone();
    let watch = m.set_interval(ms(100), move |cx| {
        if watch_fleet.started.get().is_none() {
            if let Ok(Some(status)) = child.borrow_mut().try_wait() {
                eprintln!("the client process ended: {status}");
                cx.terminate();
            }
        }
    });
    // Cancelled before the quiet period starts.
    fleet.watch.set(Some(watch));
    run_for(&mut m, Duration::from_secs(60));
    drop(stdin);
    let _ = children.borrow_mut().wait();
    assert_no_timeout(&m);
    let (cpu, sleeps, wall) = fleet.result.get().expect("the quiet period was measured");
    let opened = fleet.started.get().unwrap() - setup;
    println!(
        "{N} idle connections (idle timeout 60 s) opened in {opened:?}; over {wall:?} \
         of quiet the loop's thread used {cpu:?} of CPU and slept {sleeps} times"
    );
    assert!(
        cpu < ms(300),
        "the loop used {cpu:?} of CPU over {wall:?} with nothing to do"
    );
}
